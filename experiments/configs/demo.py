"""The CPU-sized demo: synthetic_pose, an eighth-width network at 128 px, a few minutes."""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'synthetic_pose'
  config.eval_split = 'validation'
  config.max_other_people = 2
  config.shuffle_buffer = 512

  config.input_size = 128
  config.rotation_deg = 20.0
  # synthetic_pose draws right limbs darker; a mirrored image (with the joint
  # swap) would invert that cue and make left and right ambiguous.
  config.flip_prob = 0.0

  config.width = 0.125
  config.num_iterations = 1
  config.relu_output = False  # a small net trained fast loses ReLU output channels

  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.lr_boundaries_epochs = (9, 11)
  config.lr_factors = (0.3, 0.3)

  config.batch_size = 16
  config.num_epochs = 12  # 1500 steps of 16 on the 2000 training images
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  config.eval_metric = 'pck'
  config.eval_pck_threshold = 0.2
  config.torso_definition = 'mean_diagonals'
  return config
