"""TFDS's standard builder test on dummy_data/ (see make_dummy_data.py)."""
import tensorflow_datasets as tfds

from tfds_builders.mpii import mpii_dataset_builder


class MpiiDatasetBuilderTest(tfds.testing.DatasetBuilderTestCase):
  """Builds every config from the dummy manual dir and checks split sizes."""

  DATASET_CLASS = mpii_dataset_builder.Builder
  SPLITS = {
      'train': 3,  # two people in image 0, the keypoint-derived person of image 2
      'validation': 1,  # image 1, person 0 (valid.h5)
      'test': 1,  # image 3
  }


if __name__ == '__main__':
  tfds.testing.test_main()
