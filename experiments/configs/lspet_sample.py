r"""A CPU recipe that learns real poses: a few hundred LSPET images, 20 minutes.

Train on one build of LSPET images and evaluate on a separate build of other
images (experiments/lspet_subset.py writes them; see docs/lspet_sample.md):

  python -m experiments.train --config=experiments/configs/lspet_sample.py \
      --config.data_dir=TRAIN_BUILD --workdir=W
  python -m experiments.evaluate --config=experiments/configs/lspet_sample.py \
      --config.data_dir=HELD_OUT_BUILD --workdir=W --checkpoint=latest

Both use split `train` of their build. Periodic evaluation during training
runs on the training build (no held-out data is looked at while training).
"""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'lsp/extended'
  config.train_split = 'train'
  config.eval_split = 'train'
  config.keypoint_set = 'lsp'
  config.max_other_people = 1  # LSPET annotates one person per image
  config.shuffle_buffer = 1024

  config.input_size = 128
  config.box_scale = 1.25
  config.rotation_deg = 30.0
  config.rotation_prob = 1.0
  config.scale_min = 0.8
  config.scale_max = 1.2
  config.translate_frac = 0.05
  config.flip_prob = 0.5

  config.width = 0.125
  config.num_iterations = 1
  config.relu_output = False  # a small net trained fast loses ReLU output channels
  config.sigma = 2.0  # wider targets: a stronger signal early (docs/lspet_sample.md)

  config.optimizer = 'adam'
  config.learning_rate = 3e-3
  config.batch_size = 16
  config.num_train_steps = 1800  # about 16 minutes on 2 cores
  config.lr_schedule = 'cosine'
  config.warmup_steps = 100

  config.log_every_steps = 100
  config.eval_every_steps = 0  # the last step is evaluated (on the training build)
  config.num_eval_examples = 64
  config.checkpoint_every_steps = 500
  config.num_summary_images = 0
  config.eval_metric = 'pck'
  config.eval_pck_threshold = 0.2
  config.torso_definition = 'lsp_diagonal'
  return config
