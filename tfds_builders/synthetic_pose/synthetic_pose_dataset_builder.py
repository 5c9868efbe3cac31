"""synthetic_pose: articulated figures drawn from seeds, in MPII's 16-joint layout.

Nothing is downloaded: every example is made by `rhpe_jax.data.synthetic` from a
seed derived from (config seed, split, index), so two builds of a config are
identical and any example can be regenerated alone. The features are those of
every pose dataset of the project (`rhpe_jax.data.pose_features`).
"""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from rhpe_jax.data import pose_features
from rhpe_jax.data import synthetic


@dataclasses.dataclass
class SyntheticPoseConfig(tfds.core.BuilderConfig):
  """Image side (pixels), split sizes and the seed the examples derive from."""

  resolution: int = 128
  num_train: int = 2000
  num_validation: int = 200
  seed: int = 0

  def __post_init__(self):
    if self.resolution < synthetic.MIN_RESOLUTION:
      raise ValueError(
          f'resolution must be >= {synthetic.MIN_RESOLUTION}, got {self.resolution}')
    if self.num_train < 0 or self.num_validation < 0:
      raise ValueError(
          f'split sizes must be >= 0, got {self.num_train}, {self.num_validation}')
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}')


class Builder(tfds.core.GeneratorBasedBuilder):
  """Procedural person-centred pose images with occlusion labels."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticPoseConfig(
          name='default', resolution=128, num_train=2000, num_validation=200,
          seed=0, description='128 px, 2000 train / 200 validation: builds in seconds on a CPU.'),
      SyntheticPoseConfig(
          name='large', resolution=256, num_train=20000, num_validation=1000,
          seed=0, description='256 px, 20000 train / 1000 validation.'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'default'

  def _info(self) -> tfds.core.DatasetInfo:
    r = self.builder_config.resolution
    return self.dataset_info_from_configs(
        features=pose_features.pose_features(synthetic.NUM_JOINTS, (r, r, 3)),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    config = self.builder_config
    return {
        'train': self._generate_examples('train', config.num_train),
        'validation': self._generate_examples('validation', config.num_validation),
    }

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    yield from synthetic.generate_split(split, num_examples, config.resolution, config.seed)
