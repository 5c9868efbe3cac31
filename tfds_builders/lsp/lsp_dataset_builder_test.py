"""TFDS's standard builder test on dummy_data/ (see make_dummy_data.py)."""
import tensorflow_datasets as tfds

from tfds_builders.lsp import lsp_dataset_builder


class LspOriginalTest(tfds.testing.DatasetBuilderTestCase):
  """LSP layout (3, 14, N): first half train, second half test."""

  DATASET_CLASS = lsp_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['original']
  SPLITS = {'train': 2, 'test': 2}


class LspExtendedTest(tfds.testing.DatasetBuilderTestCase):
  """LSPET layout (14, 3, N): train only."""

  DATASET_CLASS = lsp_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['extended']
  SPLITS = {'train': 3}


if __name__ == '__main__':
  tfds.testing.test_main()
