"""The CPU-sized demo: synthetic_pose, a quarter-width network at 128 px."""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'synthetic_pose'
  config.eval_split = 'validation'
  config.max_other_people = 2
  config.shuffle_buffer = 512

  config.input_size = 128
  config.rotation_deg = 20.0

  config.width = 0.25
  config.num_iterations = 1
  config.relu_output = False  # a small net trained fast loses ReLU output channels

  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.lr_boundaries_epochs = (20, 25)
  config.lr_factors = (0.3, 0.3)
  config.grad_clip_norm = 10.0

  config.batch_size = 16
  config.num_epochs = 30
  config.log_every_steps = 25
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  config.eval_metric = 'pck'
  config.eval_pck_threshold = 0.2
  config.torso_definition = 'mean_diagonals'
  return config
