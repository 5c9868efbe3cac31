"""Datasets of a training config: TFDS splits turned into device batches.

Glue between a config (dataset names, splits, augmentation) and
`input_pipeline`; batches come out as NumPy trees shaped
(local_devices, per_device_batch, ...) and are prefetched to the devices.
"""
from __future__ import annotations

import json
import os
from typing import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from flax import jax_utils

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import augment
from rhpe_jax.data import input_pipeline

# The key of a dataset's metadata (tfds.core.MetadataDict) that holds its
# keypoint set (keypoint_sets.KeypointSet.to_dict).
KEYPOINT_SET_KEY = 'keypoint_set'


def augment_config(config: ml_collections.ConfigDict) -> augment.AugmentConfig:
  """The crop and augmentation settings of a config."""
  return augment.AugmentConfig.from_mapping(config)


def data_dir(config: ml_collections.ConfigDict) -> str | None:
  return config.data_dir or None


def dataset_keypoint_set(name: str, data_dir_: str | None) -> dict | None:
  """The keypoint set a built dataset's metadata holds (None if it has none)."""
  builder = tfds.builder(name, data_dir=data_dir_)
  metadata = builder.info.metadata or {}
  if KEYPOINT_SET_KEY not in metadata:  # a builder read back from files only
    path = os.path.join(builder.data_dir, 'metadata.json')
    if os.path.exists(path):
      with open(path) as f:
        metadata = json.load(f)
  values = metadata.get(KEYPOINT_SET_KEY)
  return None if values is None else dict(values)


def resolve_keypoint_set(config: ml_collections.ConfigDict, workdir: str | None = None
                         ) -> keypoint_sets.KeypointSet:
  """The config's keypoint set; with `keypoint_set = 'dataset'`, `dataset_keypoint_set`
  is filled in from the dataset's metadata or, without the dataset, from the
  copy a training run left in `workdir`. Raises ValueError naming where it looked."""
  if config.keypoint_set == keypoint_sets.DATASET and not config.dataset_keypoint_set:
    values, looked = None, []
    try:
      values = dataset_keypoint_set(config.dataset, data_dir(config))
      looked.append(f'the metadata of {config.dataset} in {data_dir(config) or "TFDS default"}')
    except Exception as error:  # pylint: disable=broad-except  # not built here
      looked.append(f'{config.dataset} ({type(error).__name__}: {error})'.splitlines()[0])
    if values is None and workdir:
      found = keypoint_sets.read_from_workdir(workdir)
      values = None if found is None else found.to_dict()
      looked.append(os.path.join(workdir, keypoint_sets.WORKDIR_FILE))
    if values is None:
      raise ValueError("config.keypoint_set is 'dataset' but no keypoint set was found in "
                       + ' or '.join(looked))
    with config.unlocked():
      config.dataset_keypoint_set = values
  return keypoint_sets.of_config(config)


def _load(config, name: str, split: str, process_index: int | None = None,
          process_count: int | None = None) -> tuple:
  """(this process's shard of `name`/`split`, size of the whole split)."""
  ds = input_pipeline.load_split(name, split, data_dir(config),
                                 process_index=process_index, process_count=process_count)
  builder = tfds.builder(name, data_dir=data_dir(config))
  return ds, builder.info.splits[split].num_examples


class TrainData:
  """The training stream of a config (with mixed-in datasets, if any).

  The process layout defaults to JAX's; passing it explicitly lets one
  process build another process's stream (e.g. to check that several
  processes train as one process would on the same global batches).
  """

  def __init__(self, config: ml_collections.ConfigDict, *,
               process_index: int | None = None, process_count: int | None = None,
               local_device_count: int | None = None):
    self.config = config
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    self.local_device_count = (jax.local_device_count() if local_device_count is None
                               else local_device_count)
    load = lambda name, split: _load(config, name, split, self.process_index,
                                     self.process_count)
    main, self.num_examples = load(config.dataset, config.train_split)
    if config.num_train_examples > 0:
      self.num_examples = config.num_train_examples
    self._datasets, self._weights = [main], [1.0]
    for name, split, mapping, weight in config.extra_train_datasets:
      extra, _ = load(name, split)
      self._datasets.append(input_pipeline.map_joints(extra, mapping))
      self._weights.append(float(weight))

  def dataset(self, start_step: int = 0):
    """This process's batches (local devices, per-device batch, ...) from `start_step`."""
    return input_pipeline.make_train_dataset(
        self._datasets if len(self._datasets) > 1 else self._datasets[0],
        config=augment_config(self.config), seed=self.config.seed,
        global_batch_size=self.config.batch_size,
        process_index=self.process_index, process_count=self.process_count,
        local_device_count=self.local_device_count, start_step=start_step,
        mix_weights=self._weights if len(self._datasets) > 1 else None,
        shuffle_buffer=self.config.shuffle_buffer)

  def iterator(self, start_step: int = 0) -> Iterator[dict]:
    """Batches from `start_step` on, already on the local devices."""
    return jax_utils.prefetch_to_device(_owned_numpy(self.dataset(start_step)),
                                        self.config.prefetch_batches)


def _owned_numpy(ds) -> Iterator[dict]:
  """NumPy batches in memory of their own.

  tf.data hands out arrays over buffers it reuses, and a CPU `device_put`
  may alias host memory rather than copy it: without the copy, a prefetched
  batch on a CPU device changes under the step that reads it (the stream
  would then depend on timing, and resumed runs would differ).
  """
  for batch in ds.as_numpy_iterator():
    yield jax.tree_util.tree_map(np.array, batch)


def eval_dataset(config: ml_collections.ConfigDict, split: str | None = None,
                 batch_size: int | None = None):
  """One pass over the evaluation split, padded to whole batches (`valid` = 0)."""
  split = split or config.eval_split
  if config.num_eval_examples > 0:
    available = tfds.builder(config.dataset, data_dir=data_dir(config)).info.splits[split]
    if config.num_eval_examples < available.num_examples:  # else: all of it
      split = f'{split}[:{config.num_eval_examples}]'
  ds, total = _load(config, config.dataset, split)
  return input_pipeline.make_eval_dataset(
      ds, config=augment_config(config),
      global_batch_size=batch_size or config.batch_size,
      process_index=jax.process_index(), process_count=jax.process_count(),
      local_device_count=jax.local_device_count(), num_examples_total=total)
