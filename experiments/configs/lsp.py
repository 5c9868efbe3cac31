"""LSP (original, 1000 training images) with PCK@0.2 evaluation on its test half."""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'lsp/original'
  config.train_split = 'train'
  config.eval_split = 'test'
  config.keypoint_set = 'lsp'
  config.eval_metric = 'pck'
  config.eval_pck_threshold = 0.2
  config.eval_every_steps = 1000
  return config
