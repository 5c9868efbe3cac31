"""The config every run starts from (`default_config()`, the paper's MPII
setting) and the names its keys allow.

Light on purpose (ml_collections only): the command lines check a config as
soon as their flags are parsed, before TensorFlow or JAX is imported
(rhpe_jax.core.config_checks), and the modules that act on these names take them
from here, so that the checker and the code cannot disagree.
"""
from __future__ import annotations

import ml_collections

# The names the code accepts for a key (keypoint-set names live with the
# keypoint sets, rhpe_jax.core.keypoint_sets).
OCCLUSION_MODES = ('include', 'ignore', 'exclude')  # occlusion_mode: rhpe_jax.codec.targets
COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')  # compute_dtype: rhpe_jax.model.network
OPTIMIZERS = ('sgd', 'adam')  # optimizer: rhpe_jax.training.steps
LR_SCHEDULES = ('step', 'cosine')  # lr_schedule: rhpe_jax.training.steps
EVAL_METRICS = ('pckh', 'pck')  # eval_metric: rhpe_jax.evaluation
TORSO_DEFINITIONS = ('lsp_diagonal', 'mean_diagonals')  # torso_definition: rhpe_jax.evaluation.metrics
# The joint mapping of an entry of extra_train_datasets: rhpe_jax.data.augment.
JOINT_MAPPINGS = (None, 'lsp_to_mpii')

# Keys renamed since runs began to write their config (old: new): a config
# file, a --config. override or a run's config.json that still sets an old
# key works, with one line (rhpe_jax.core.config_checks.upgrade_old_keys).
# The dict that config.keypoint_set held then is dataset_keypoint_set now.
RENAMED_KEYS = {'skeleton': 'keypoint_set', 'init_from_skeleton': 'init_from_keypoint_set'}


def default_config() -> ml_collections.ConfigDict:
  """The paper's MPII setting; other configs start from it and change what differs."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data: a TFDS dataset name (with config, e.g. 'lsp/extended'), its splits,
  # and its keypoint set; `extra_train_datasets` are mixed in (through
  # `joint_mapping`) for joint training.
  config.dataset = 'mpii'
  config.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS default
  config.train_split = 'train'
  config.eval_split = 'validation'
  # A built-in set by name (rhpe_jax.core.keypoint_sets.BUILT_IN_NAMES) or
  # 'dataset': the set the dataset brings, which
  # rhpe_jax.data.datasets.resolve_keypoint_set reads from its metadata into
  # dataset_keypoint_set (KeypointSet.to_dict).
  config.keypoint_set = 'mpii'
  config.dataset_keypoint_set = ml_collections.config_dict.placeholder(dict)
  # OKS sigmas of the COCO evaluation, one per keypoint; empty: the set's own,
  # else rhpe_jax.core.keypoint_sets.oks_sigmas's rule (COCO's by name, 0.079 otherwise).
  config.keypoint_sigmas = ()
  config.extra_train_datasets = ()  # e.g. (('lsp/extended', 'train', 'lsp_to_mpii', 0.5),)
  config.shuffle_buffer = 2048
  config.max_other_people = 8

  # Fine-tuning: a new run (step 0) starts from the network of another
  # workdir's checkpoint; its trunk and fusion layers are copied and its heads
  # carried by keypoint name to this config's set (rhpe_jax.model.transfer).
  # The source's set: '' reads INIT_FROM/keypoint_set.json (training writes
  # it), else a built-in name ('mpii', 'lsp', 'coco').
  config.init_from = ''
  config.init_from_checkpoint = 'latest'  # 'latest' | 'best' | a step number
  config.init_from_keypoint_set = ''

  # Input and augmentation (rhpe_jax.data.input_pipeline).
  config.input_size = 248
  config.box_scale = 1.5 * 248 / 256  # the release's 300 x scale patch at 256 px, cropped to 248
  config.rotation_deg = 30.0
  config.rotation_prob = 0.4
  config.scale_min = 0.75
  config.scale_max = 1.25
  config.translate_frac = 0.03
  config.flip_prob = 0.5

  # Network (rhpe_jax.model.network.RecurrentPoseNet).
  config.num_iterations = 2
  config.use_parts = True
  config.width = 1.0
  config.compute_dtype = 'float32'  # 'bfloat16' on accelerators
  config.remat = False
  config.relu_output = True  # ReLU after the prediction layers (the paper)
  # Batch-norm scale and offset per fusion pass, as in the authors' release
  # (experiments.import_matconvnet sets it); False shares them.
  config.batch_norm_per_pass = False
  config.scan_unroll = 0  # fusion passes per scan step; 0 unrolls them all (fast on CPU)

  # Targets and loss (rhpe_jax.codec.targets, rhpe_jax.training.losses).
  config.occlusion_mode = 'include'  # 'include' | 'ignore' | 'exclude'
  config.sigma = 1.3
  config.peak = 12.0
  config.part_sigma_along = 0.15
  config.part_sigma_across = 0.08

  # Optimiser. The loss is summed over pixels and maps and averaged over the
  # batch, so the release's learning rates (for a loss summed over a batch of
  # 20) are multiplied by 20: 1e-5 -> 2e-4.
  config.optimizer = 'sgd'  # 'sgd' | 'adam'
  config.learning_rate = 2e-4
  config.momentum = 0.95
  config.weight_decay = 0.0
  # Step schedule in epochs: multiply the rate by `factor` at each boundary
  # (the release: 1e-5 for 30 epochs, 5e-6 for 5, then 1e-6).
  config.lr_schedule = 'step'  # 'step' | 'cosine' (to 0 at the last step)
  config.lr_boundaries_epochs = (30, 35)
  config.lr_factors = (0.5, 0.2)
  config.warmup_steps = 0  # linear warm-up from 0 before the schedule
  config.grad_clip_norm = 0.0  # 0 turns clipping off

  config.batch_size = 20  # global, across all devices and hosts
  config.num_epochs = 40
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.num_train_examples = -1  # -1: read from the dataset's metadata

  # Book-keeping. A period <= 0 turns the periodic action off; the last step
  # is always logged, evaluated (unless eval_every_steps <= 0) and saved.
  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.num_eval_examples = -1  # -1: the whole split
  config.eval_pck_threshold = 0.5  # PCKh@0.5 (MPII); PCK@0.2 for LSP
  config.eval_metric = 'pckh'  # 'pckh' | 'pck'
  config.torso_definition = 'lsp_diagonal'
  config.num_summary_images = 4
  config.prefetch_batches = 2
  return config
