"""TFDS's standard builder test on dummy_data/ (see make_dummy_data.py)."""
import tensorflow_datasets as tfds

from tfds_builders.coco_keypoints import coco_keypoints_dataset_builder


class Coco2017Test(tfds.testing.DatasetBuilderTestCase):
  """The official layout: annotations/person_keypoints_*2017.json, train2017/, val2017/."""

  DATASET_CLASS = coco_keypoints_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['coco2017']
  SPLITS = {'train': 2, 'validation': 1}


class CustomTest(tfds.testing.DatasetBuilderTestCase):
  """A user's layout: annotations/<split>.json and images/; 5 keypoints."""

  DATASET_CLASS = coco_keypoints_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['custom']
  SPLITS = {'train': 2, 'validation': 2}


class WholebodyTest(tfds.testing.DatasetBuilderTestCase):
  """COCO-WholeBody's released layout: annotations/coco_wholebody_val_v1.0.json
  and val2017/; 133 keypoints from five fields, part boxes."""

  DATASET_CLASS = coco_keypoints_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['wholebody']
  SPLITS = {'validation': 2}


if __name__ == '__main__':
  tfds.testing.test_main()
