"""Joint training on MPII and LSPET through the LSP-to-MPII mapping (paper Table IV).

LSPET examples fill the 14 MPII slots they share (pelvis and thorax missing).
"""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.extra_train_datasets = (('lsp/extended', 'train', 'lsp_to_mpii', 0.3),)
  return config
