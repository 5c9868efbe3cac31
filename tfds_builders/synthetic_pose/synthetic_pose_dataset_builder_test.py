"""Tests of the synthetic_pose builder: a small config built the TFDS way."""
from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders.synthetic_pose import synthetic_pose_dataset_builder as builder_lib

# Small enough to build in a couple of seconds; not one of BUILDER_CONFIGS.
TINY = builder_lib.SyntheticPoseConfig(
    name='tiny_test', resolution=64, num_train=6, num_validation=3, seed=7)


class SyntheticPoseTest(tfds.testing.DatasetBuilderTestCase):
  """Builds, reloads and reads TINY; checks split sizes and feature specs."""

  DATASET_CLASS = builder_lib.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = [TINY]
  SPLITS = {'train': 6, 'validation': 3}


def _build_and_read(data_dir: str) -> dict[str, list[dict]]:
  builder = builder_lib.Builder(data_dir=data_dir, config=TINY)
  builder.download_and_prepare()
  out = {}
  for split in ('train', 'validation'):
    examples = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
    out[split] = sorted(examples, key=lambda ex: ex['image_name'])
  return out


def _records(path: pathlib.Path) -> list[tf.train.Example]:
  records = tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
  return [tf.train.Example.FromString(r) for r in records]


class RebuildTest(tfds.testing.TestCase):
  """Two builds of one config into separate directories hold the same data."""

  def test_two_builds_are_identical(self):
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
      first, second = _build_and_read(d1), _build_and_read(d2)
      records1 = sorted(pathlib.Path(d1).rglob('*.tfrecord*'))
      records2 = sorted(pathlib.Path(d2).rglob('*.tfrecord*'))
      self.assertLen(records1, 2)
      self.assertEqual([p.name for p in records1], [p.name for p in records2])
      # Same records in the same order. (Record bytes may still differ between
      # processes: protobuf writes a tf.train.Example's feature map in an order
      # of its own, so records are compared as parsed protos.)
      for p1, p2 in zip(records1, records2):
        r1, r2 = _records(p1), _records(p2)
        self.assertNotEmpty(r1)
        self.assertEqual(r1, r2, p1.name)
    for split, size in (('train', 6), ('validation', 3)):
      self.assertLen(first[split], size)
      for ex1, ex2 in zip(first[split], second[split]):
        self.assertEqual(sorted(ex1), sorted(ex2))
        for key in ex1:
          np.testing.assert_array_equal(ex1[key], ex2[key], err_msg=key)
    names = [ex['image_name'] for ex in first['train']]
    self.assertEqual(names, [f'synthetic_train_{i:06d}'.encode() for i in range(6)])
    # The splits are different pictures.
    train_images = {ex['image'].tobytes() for ex in first['train']}
    self.assertFalse(train_images & {ex['image'].tobytes() for ex in first['validation']})

  def test_examples_are_the_generator_output(self):
    """A stored example decodes to the generator's annotations (image via JPEG)."""
    from rhpe_jax.data import synthetic
    with tempfile.TemporaryDirectory() as d:
      built = _build_and_read(d)
    for split in ('train', 'validation'):
      for i, ex in enumerate(built[split]):
        ref = synthetic.generate_example(
            synthetic.example_seed(TINY.seed, split, i), TINY.resolution,
            image_name=f'synthetic_{split}_{i:06d}', image_index=i)
        for key in ('keypoints', 'keypoint_status', 'other_keypoints',
                    'other_keypoint_status', 'objpos', 'head_box', 'head_size', 'scale'):
          np.testing.assert_array_equal(ex[key], ref[key], err_msg=key)
        self.assertEqual(int(ex['image_index']), i)
        # TFDS stores the image as a JPEG (TF's encoder, default settings).
        jpeg = tf.io.decode_jpeg(tf.image.encode_jpeg(ref['image'])).numpy()
        np.testing.assert_array_equal(ex['image'], jpeg)

  def test_registered_configs(self):
    configs = builder_lib.Builder.builder_configs
    self.assertEqual(
        {(c.name, c.resolution, c.num_train, c.num_validation) for c in configs.values()},
        {('default', 128, 2000, 200), ('large', 256, 20000, 1000)})
    self.assertEqual(builder_lib.Builder.name, 'synthetic_pose')

  def test_bad_config(self):
    with self.assertRaisesRegex(ValueError, 'resolution'):
      builder_lib.SyntheticPoseConfig(name='bad', resolution=8)
    with self.assertRaisesRegex(ValueError, 'split sizes'):
      builder_lib.SyntheticPoseConfig(name='bad', num_train=-1)


if __name__ == '__main__':
  tfds.testing.test_main()
