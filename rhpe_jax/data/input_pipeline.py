"""tf.data input pipelines for training and evaluation.

Raw examples follow `rhpe_jax.data.pose_features` (the image may be decoded uint8
or still-encoded bytes, as TFDS gives it with `SkipDecoding`). The pipelines
decode, cut the augmented person-centred crop (`rhpe_jax.data.augment`) and batch
for the local devices: every element is a dict of arrays shaped
(local_devices, per_device_batch, ...).

Determinism and exact resume. A training stream depends only on its seed and
the data: each input dataset is reshuffled every epoch with a seed derived
from (seed, epoch), several datasets are interleaved by a stateless choice
sequence, and every example's augmentation is drawn from a stateless seed
(seed, process, position in the stream), not from thread timing. So
`start_step=k` can jump straight to epoch floor(k * B / n) of each dataset and
skip only the rest of that epoch, before any image is decoded: a resumed run
yields exactly the batches of a fresh run from step k on, at the price of
reading at most one epoch of undecoded records.

Multiple processes. Prefer `load_split(..., shard_for_process=True)` (TFDS's
`split_for_jax_process`: each process reads only its own part of the files)
and leave `shard_input=False`; `shard_input=True` applies
`Dataset.shard(process_count, process_index)` to datasets that hold the whole
split (e.g. in memory), reading and dropping the other processes' records.
Sharding happens before shuffling, so shards are disjoint and together cover
the data.

Importing this module (through `rhpe_jax.data.augment`) hides GPUs from TensorFlow.
"""
from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from rhpe_jax.data import augment

AugmentConfig = augment.AugmentConfig

# The features the pipelines read from every raw example.
RAW_KEYS = ('image', 'keypoints', 'keypoint_status', 'other_keypoints',
            'other_keypoint_status', 'crop_to_image', 'objpos', 'scale',
            'head_size', 'image_index', 'person_index')

# What a COCO-format build (tfds_builders/coco_keypoints) adds per person:
# the evaluation pipeline carries them to the predictions when the dataset
# has them (COCO AP, rhpe_jax.evaluation.coco_eval), the training one never.
COCO_KEYS = ('coco_image_id', 'coco_annotation_id', 'coco_category_id', 'bbox', 'area')
# The image's regions COCOeval ignores, of two kinds: its iscrowd regions
# and its persons annotated without keypoints. Each kind's (M, 4) xywh boxes
# and (M,) areas are padded to MAX_CROWD_REGIONS rows (a fixed shape to
# batch) with their count `<kind>_count`; an image with more stops the pass
# with an error naming it.
REGION_KINDS = ('crowd', 'unlabelled')
CROWD_KEYS = tuple(f'{kind}_{what}' for kind in REGION_KINDS for what in ('boxes', 'areas'))
MAX_CROWD_REGIONS = 32

# Independent uses of the user's seed.
_TAG_AUGMENT, _TAG_MIX, _TAG_SHUFFLE = 0, 1, 2
# Mixture choices are drawn in blocks of this many (one stateless draw each).
MIX_BLOCK = 1024
DEFAULT_SHUFFLE_BUFFER = 10_000


def _sub_seed(seed: int, *tags: int) -> int:
  """A well-mixed 62-bit seed for one use of `seed`, so uses stay independent."""
  words = np.random.SeedSequence([int(seed) % 2**64, *tags]).generate_state(2, np.uint32)
  return int((int(words[0]) << 30) ^ int(words[1]))


# --------------------------------------------------------------------------
# Per-example work.


def decode_image(image: tf.Tensor) -> tf.Tensor:
  """Encoded bytes (JPEG/PNG) or a decoded array -> (H, W, 3) uint8."""
  if image.dtype == tf.string:
    image = tf.io.decode_image(image, channels=3, expand_animations=False)
  elif image.dtype != tf.uint8:
    raise ValueError(f'image must be uint8 or encoded bytes, got {image.dtype.name}')
  image.set_shape([None, None, 3])
  return image


def pad_people(keypoints: tf.Tensor, status: tf.Tensor, max_people: int
               ) -> tuple[tf.Tensor, tf.Tensor]:
  """Pads/truncates (P, J, 2), (P, J) to exactly `max_people` (status 0 on padding)."""
  num_keypoints = keypoints.shape[-2]
  keypoints, status = keypoints[:max_people], status[:max_people]
  missing = max_people - tf.shape(status)[0]
  keypoints = tf.pad(keypoints, [[0, missing], [0, 0], [0, 0]])
  status = tf.pad(status, [[0, missing], [0, 0]])
  keypoints.set_shape([max_people, num_keypoints, 2])
  status.set_shape([max_people, num_keypoints])
  return keypoints, status


def preprocess_example(example: Mapping[str, tf.Tensor], config: AugmentConfig,
                       params: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """One raw example -> the fixed-shape network example (see module doc).

  `params` comes from `augment.sample_params` (training) or
  `augment.identity_params()` (evaluation).
  """
  out = augment.crop_example(
      decode_image(example['image']), example['keypoints'], example['keypoint_status'],
      example['other_keypoints'], example['other_keypoint_status'],
      example['crop_to_image'], example['objpos'], example['scale'], params, config)
  other_kp, other_st = pad_people(out['other_keypoints'], out['other_keypoint_status'],
                                  config.max_other_people)
  return {
      'image': out['image'],
      'keypoints': out['keypoints'],
      'keypoint_status': out['keypoint_status'],
      'other_keypoints': other_kp,
      'other_keypoint_status': other_st,
      'input_to_image': out['input_to_image'],
      'head_size': tf.cast(example['head_size'], tf.float32),
      'image_index': tf.cast(example['image_index'], tf.int32),
      'person_index': tf.cast(example['person_index'], tf.int32),
      'valid': tf.constant(1, tf.int32),
      **coco_fields(example),
  }


def coco_fields(example: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """The COCO ids, box, area and padded crowd regions of a raw example
  that has them (COCO_KEYS, CROWD_KEYS); nothing for other datasets."""
  out = {}
  if 'coco_image_id' in example:
    out['coco_image_id'] = tf.cast(example['coco_image_id'], tf.int64)
    out['coco_annotation_id'] = tf.cast(example['coco_annotation_id'], tf.int64)
    out['bbox'] = tf.cast(example['bbox'], tf.float32)
    out['area'] = tf.cast(example['area'], tf.float32)
  if 'coco_category_id' in example:  # builds of version 1.1.0 on
    out['coco_category_id'] = tf.cast(example['coco_category_id'], tf.int64)
  for kind in REGION_KINDS:
    if f'{kind}_boxes' not in example:
      continue
    boxes = tf.reshape(tf.cast(example[f'{kind}_boxes'], tf.float32), [-1, 4])
    areas = tf.reshape(tf.cast(example[f'{kind}_areas'], tf.float32), [-1])
    count = tf.shape(boxes)[0]
    check = tf.debugging.Assert(
        count <= MAX_CROWD_REGIONS,
        [f'a COCO image has more than {MAX_CROWD_REGIONS} {kind} regions '
         '(input_pipeline.MAX_CROWD_REGIONS): coco_image_id',
         example.get('coco_image_id', tf.constant(-1, tf.int64)), 'regions', count])
    with tf.control_dependencies([check]):
      missing = MAX_CROWD_REGIONS - count
    out[f'{kind}_boxes'] = tf.ensure_shape(tf.pad(boxes, [[0, missing], [0, 0]]),
                                           [MAX_CROWD_REGIONS, 4])
    out[f'{kind}_areas'] = tf.ensure_shape(tf.pad(areas, [[0, missing]]), [MAX_CROWD_REGIONS])
    out[f'{kind}_count'] = tf.cast(count, tf.int32)
  return out


# --------------------------------------------------------------------------
# Dataset-level helpers.


def _check_raw(ds: tf.data.Dataset, what: str) -> None:
  spec = ds.element_spec
  if not isinstance(spec, Mapping):
    raise ValueError(f'{what}: expected a dataset of feature dicts, got {spec}')
  missing = [k for k in RAW_KEYS if k not in spec]
  if missing:
    raise ValueError(f'{what}: examples lack features {missing} (see rhpe_jax/data/pose_features.py)')


def num_examples(ds: tf.data.Dataset, what: str = 'dataset') -> int:
  """The finite, known number of elements of `ds` (clear error otherwise)."""
  n = int(ds.cardinality())
  if n == tf.data.INFINITE_CARDINALITY:
    raise ValueError(f'{what} is infinite; pass the finite split, the pipeline repeats it')
  if n == tf.data.UNKNOWN_CARDINALITY:
    raise ValueError(
        f'{what} has unknown size; declare it with '
        'ds.apply(tf.data.experimental.assert_cardinality(n))')
  if n == 0:
    raise ValueError(f'{what} is empty')
  return n


def map_joints(ds: tf.data.Dataset, mapping: str | None) -> tf.data.Dataset:
  """Renumbers the joints of raw examples; 'lsp_to_mpii' puts 14 LSP joints
  into the 16 MPII slots (pelvis, thorax missing) so LSP/LSPET mix with MPII."""
  if mapping is None:
    return ds
  if mapping != 'lsp_to_mpii':
    raise ValueError(f'unknown joint mapping {mapping!r}; expected one of {augment.JOINT_MAPPINGS}')
  num_keypoints = ds.element_spec['keypoints'].shape[-2]
  if num_keypoints != 14:
    raise ValueError(f"joint mapping 'lsp_to_mpii' needs 14 keypoints, the dataset has "
                     f'{num_keypoints}')

  def fn(example):
    example = dict(example)
    example['keypoints'], example['keypoint_status'] = augment.lsp_to_mpii(
        example['keypoints'], example['keypoint_status'])
    example['other_keypoints'], example['other_keypoint_status'] = augment.lsp_to_mpii(
        example['other_keypoints'], example['other_keypoint_status'])
    return example

  return ds.map(fn)


def _prepare_raw(ds: tf.data.Dataset, config: AugmentConfig, process_index: int,
                 process_count: int, shard_input: bool, what: str,
                 optional_keys: Sequence[str] = ()) -> tf.data.Dataset:
  """Shard (optional), keep the features used (and those of `optional_keys`
  the dataset has), map joints: all before decoding."""
  _check_raw(ds, what)
  if shard_input and process_count > 1:
    ds = ds.shard(process_count, process_index)
  keys = RAW_KEYS + tuple(k for k in optional_keys if k in ds.element_spec)
  ds = ds.map(lambda ex: {k: ex[k] for k in keys})
  return map_joints(ds, config.joint_mapping)


def _split_batch(global_batch_size: int, process_count: int, process_index: int,
                 local_device_count: int) -> tuple[int, int]:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'bad process_index {process_index} for process_count {process_count}')
  if local_device_count < 1:
    raise ValueError(f'local_device_count must be >= 1, got {local_device_count}')
  if global_batch_size < 1 or global_batch_size % (process_count * local_device_count):
    raise ValueError(
        f'global_batch_size {global_batch_size} is not a positive multiple of '
        f'process_count x local_device_count = {process_count * local_device_count}')
  per_process = global_batch_size // process_count
  return per_process, per_process // local_device_count


def _options(num_threads: int | None) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  # Parallelism comes from the parallel map over examples, not inside ops.
  options.threading.max_intra_op_parallelism = 1
  if num_threads:
    options.threading.private_threadpool_size = num_threads
  return options


def batch_for_devices(ds: tf.data.Dataset, local_device_count: int,
                      per_device_batch: int) -> tf.data.Dataset:
  """Batches examples into (local_device_count, per_device_batch, ...) arrays.

  A last incomplete batch is dropped (evaluation pads before batching).
  """
  ds = ds.batch(local_device_count * per_device_batch, drop_remainder=True)

  def split(x):
    shape = [local_device_count, per_device_batch] + x.shape[1:].as_list()
    if None in shape:
      out = tf.reshape(x, tf.concat([shape[:2], tf.shape(x)[1:]], axis=0))
      out.set_shape(shape)
      return out
    return tf.reshape(x, shape)

  return ds.map(lambda batch: tf.nest.map_structure(split, batch))


def _epoch_stream(ds: tf.data.Dataset, key: int, start: int, shuffle_buffer: int,
                  what: str) -> tf.data.Dataset:
  """Infinite stream of `ds` reshuffled per epoch, from element `start` on.

  Epoch e is shuffled with a seed drawn statelessly from (key, e), so a
  stream can begin at any epoch without replaying the earlier ones. (Like
  every TF shuffle, the order also depends on `tf.random.set_seed` if the
  program sets a global seed: fresh and resumed runs must agree on it.)
  """
  n = num_examples(ds, what)
  first_epoch, offset = divmod(start, n)
  buffer = max(1, min(shuffle_buffer, n))
  key_t = tf.constant(key, tf.int64)

  def one_epoch(epoch):
    seed = tf.random.stateless_uniform(
        [], seed=tf.stack([key_t, epoch]), minval=0, maxval=2**62, dtype=tf.int64)
    return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)

  return tf.data.Dataset.counter(first_epoch).flat_map(one_epoch).skip(offset)


def _block_choices(key: int, block: tf.Tensor, boundaries: np.ndarray) -> tf.Tensor:
  """The dataset chosen for the MIX_BLOCK positions of `block` (int64)."""
  u = tf.random.stateless_uniform(
      [MIX_BLOCK], seed=tf.stack([tf.constant(key, tf.int64), tf.cast(block, tf.int64)]),
      dtype=tf.float64)
  return tf.searchsorted(tf.constant(boundaries, tf.float64), u, side='right',
                         out_type=tf.int64)


def _choice_counts(key: int, boundaries: np.ndarray, count: int, n: int) -> list[int]:
  """How often each dataset is chosen among the first `n` positions."""
  full, rest = divmod(n, MIX_BLOCK)

  def block_counts(block):
    return tf.math.bincount(tf.cast(_block_choices(key, block, boundaries), tf.int32),
                            minlength=count, maxlength=count, dtype=tf.int64)

  totals = tf.data.Dataset.range(full).map(block_counts).reduce(
      tf.zeros([count], tf.int64), lambda a, b: a + b)
  last = _block_choices(key, tf.constant(full, tf.int64), boundaries)[:rest]
  totals += tf.math.bincount(tf.cast(last, tf.int32), minlength=count, maxlength=count,
                             dtype=tf.int64)
  return [int(c) for c in totals.numpy()]


def mix_datasets(datasets: Sequence[tf.data.Dataset], weights: Sequence[float], seed: int,
                 *, start_index: int = 0,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER) -> tf.data.Dataset:
  """Deterministic infinite mixture of finite datasets, each reshuffled per epoch.

  Position i of the stream comes from dataset c with probability
  weights[c] / sum(weights), decided by a stateless draw from (seed, i), so the
  stream is a function of `seed` alone, and `start_index` starts it at
  position i (what a fresh stream yields from i on) after reading at most one
  epoch of each dataset. The datasets need known cardinality and compatible
  element specs.
  """
  datasets = list(datasets)
  weights = np.asarray(weights, np.float64)
  if not datasets or weights.shape != (len(datasets),):
    raise ValueError(f'need one weight per dataset, got {weights.shape[0] if weights.ndim else 0} '
                     f'weights for {len(datasets)} datasets')
  if np.any(weights < 0) or not weights.sum() > 0 or not np.all(np.isfinite(weights)):
    raise ValueError(f'weights must be non-negative with a positive sum, got {weights.tolist()}')
  if start_index < 0:
    raise ValueError(f'start_index must be >= 0, got {start_index}')
  if len(datasets) == 1:
    return _epoch_stream(datasets[0], _sub_seed(seed, _TAG_SHUFFLE, 0), start_index,
                         shuffle_buffer, 'dataset 0')
  boundaries = np.cumsum(weights / weights.sum())[:-1]
  key = _sub_seed(seed, _TAG_MIX)
  counts = _choice_counts(key, boundaries, len(datasets), start_index)
  streams = [
      _epoch_stream(ds, _sub_seed(seed, _TAG_SHUFFLE, c), counts[c], shuffle_buffer,
                    f'dataset {c}')
      for c, ds in enumerate(datasets)]
  first_block, offset = divmod(start_index, MIX_BLOCK)
  choices = (tf.data.Dataset.counter(first_block)
             .map(lambda b: _block_choices(key, b, boundaries))
             .unbatch().skip(offset))
  return tf.data.Dataset.choose_from_datasets(streams, choices)


# --------------------------------------------------------------------------
# The pipelines.


def make_train_dataset(
    raw_ds: tf.data.Dataset | Sequence[tf.data.Dataset], *, config: AugmentConfig,
    seed: int, global_batch_size: int, process_index: int = 0, process_count: int = 1,
    local_device_count: int = 1, start_step: int = 0,
    mix_weights: Sequence[float] | None = None, shard_input: bool = False,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    num_threads: int | None = None) -> tf.data.Dataset:
  """Infinite, deterministic, augmented training batches for this process.

  Args:
    raw_ds: a finite raw dataset, or several to mix with `mix_weights` (e.g.
      MPII and LSPET after `map_joints(lspet, 'lsp_to_mpii')`).
    config: crop geometry and augmentation; `config.joint_mapping` applies to
      every input dataset.
    seed: the stream is a function of the seed and the data only.
    global_batch_size: examples per step over all processes.
    process_index, process_count: this process and how many there are.
    local_device_count: batches are shaped (local_device_count,
      global_batch_size / process_count / local_device_count, ...).
    start_step: first step to yield; equals a fresh stream from that step on.
    mix_weights: sampling weights, one per dataset when raw_ds is a list.
    shard_input: apply `ds.shard(process_count, process_index)` (for datasets
      holding the whole split; `load_split` shards at load time instead).
    shuffle_buffer: shuffle buffer (in undecoded examples) per dataset.
    num_threads: size of a private tf.data thread pool (None: TF's default).
  """
  per_process, per_device = _split_batch(global_batch_size, process_count, process_index,
                                         local_device_count)
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}')
  datasets = [raw_ds] if isinstance(raw_ds, tf.data.Dataset) else list(raw_ds)
  if mix_weights is None:
    if len(datasets) != 1:
      raise ValueError(f'{len(datasets)} datasets need mix_weights')
    mix_weights = [1.0]
  datasets = [_prepare_raw(ds, config, process_index, process_count, shard_input,
                           f'training dataset {i}') for i, ds in enumerate(datasets)]
  start_index = start_step * per_process
  ds = mix_datasets(datasets, mix_weights, seed, start_index=start_index,
                    shuffle_buffer=shuffle_buffer)
  key = tf.constant(_sub_seed(seed, _TAG_AUGMENT, process_index), tf.int64)

  def fn(index, example):
    params = augment.sample_params(tf.stack([key, index]), config)
    return preprocess_example(example, config, params)

  ds = ds.enumerate(start=start_index).map(
      fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = batch_for_devices(ds, local_device_count, per_device)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(num_threads))


def _zeros_like_spec(spec):
  return tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), spec)


def make_eval_dataset(
    raw_ds: tf.data.Dataset, *, config: AugmentConfig, global_batch_size: int,
    process_index: int = 0, process_count: int = 1, local_device_count: int = 1,
    shard_input: bool = False, num_examples_total: int | None = None,
    num_threads: int | None = None) -> tf.data.Dataset:
  """One pass of un-augmented crops in data order, padded to whole batches.

  Padding rows are zeros with `valid` = 0. Every process yields the same
  number of batches, ceil(ceil(N / process_count) / per_process_batch) with N
  the size of the whole split, so that collective steps stay in lockstep.
  `input_to_image` maps predictions back to original image pixels. A COCO-format
  build's ids, box, area and crowd regions come along (`coco_fields`).

  Args:
    num_examples_total: N; needed when raw_ds is already this process's shard
      (process_count > 1 and not shard_input), else read from raw_ds.
  """
  per_process, per_device = _split_batch(global_batch_size, process_count, process_index,
                                         local_device_count)
  if num_examples_total is None:
    if process_count > 1 and not shard_input:
      raise ValueError('num_examples_total (size of the whole split) is required when '
                       'raw_ds is already this process\'s shard')
    num_examples_total = num_examples(raw_ds, 'evaluation dataset')
  ds = _prepare_raw(raw_ds, config, process_index, process_count, shard_input,
                    'evaluation dataset', optional_keys=COCO_KEYS + CROWD_KEYS)
  num_batches = math.ceil(math.ceil(num_examples_total / process_count) / per_process)
  ds = ds.map(lambda ex: preprocess_example(ex, config, augment.identity_params()),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  padding = _zeros_like_spec(ds.element_spec)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat())
  ds = ds.take(num_batches * per_process)
  ds = batch_for_devices(ds, local_device_count, per_device)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(num_threads))


# --------------------------------------------------------------------------
# Loading and timing.


def load_split(name: str, split: str, data_dir: str, *, shard_for_process: bool = True,
               skip_decoding: bool = True, process_index: int | None = None,
               process_count: int | None = None) -> tf.data.Dataset:
  """A prepared TFDS split in file order (the pipelines shuffle it).

  Args:
    name: dataset name, optionally with config, e.g. 'mpii' or 'lsp/extended'.
    split: TFDS split, e.g. 'train' or 'train[:90%]'.
    data_dir: where `tfds build` wrote the dataset.
    shard_for_process: read only this process's part (`tfds.split_for_jax_process`).
    skip_decoding: keep images as encoded bytes so that shuffling and resume
      skips stay cheap; the pipelines decode them.
    process_index, process_count: default to JAX's.
  """
  base, _, config_name = name.partition('/')
  build_cmd = (f'tfds build tfds_builders/{base}'
               + (f' --config {config_name}' if config_name else '')
               + f' --data_dir {data_dir}')
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise FileNotFoundError(
        f'dataset {name!r} is not built in {data_dir}; run `{build_cmd}`') from None
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'dataset {name!r} is not built in {data_dir}; run `{build_cmd}`')
  if shard_for_process:
    if process_index is None or process_count is None:
      import jax  # pylint: disable=g-import-not-at-top
      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    split = tfds.split_for_jax_process(split, process_index=process_index,
                                       process_count=process_count)
  decoders = {'image': tfds.decode.SkipDecoding()} if skip_decoding else None
  # No auto-cache: TFDS would cache small splits in memory, and the per-epoch
  # streams that read them partially would discard and warn at every epoch.
  read_config = tfds.ReadConfig(try_autocache=False)
  return builder.as_dataset(split=split, decoders=decoders, shuffle_files=False,
                            read_config=read_config)


def benchmark_input_pipeline(raw_ds: tf.data.Dataset, steps: int, batch: int, *,
                             config: AugmentConfig | None = None,
                             num_threads: int | None = None, warmup_steps: int = 5,
                             seed: int = 0) -> float:
  """Images per second of the full training pipeline (after `warmup_steps`)."""
  ds = make_train_dataset(raw_ds, config=config or AugmentConfig(), seed=seed,
                          global_batch_size=batch, num_threads=num_threads)
  iterator = iter(ds)
  for _ in range(warmup_steps):
    next(iterator)
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return steps * batch / (time.perf_counter() - start)
