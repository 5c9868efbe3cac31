"""Tests of the tf.data pipelines: shapes, determinism, resume, sharding, eval."""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
import tensorflow as tf

from rhpe_jax.data import augment
from rhpe_jax.data import input_pipeline as ip
from rhpe_jax.core import keypoint_sets

DATA = SHARED_DATA
STORED = 24
SIZE = 16
CONFIG = augment.AugmentConfig(input_size=SIZE, max_other_people=3)


def raw_examples(n: int, num_keypoints: int = 16, people: int = 2, seed: int = 0,
                 first_index: int = 0) -> dict[str, np.ndarray]:
  """n small random examples in the pose_features schema (crops at scale 1.5)."""
  rng = np.random.default_rng(seed)
  c2i = np.zeros((n, 2, 3), np.float32)
  c2i[:, 0, 0] = c2i[:, 1, 1] = 1.5
  c2i[:, :, 2] = rng.uniform(0, 100, (n, 2))
  centre = rng.uniform(10, 14, (n, 2))
  objpos = np.einsum('nij,nj->ni', c2i[:, :, :2], centre) + c2i[:, :, 2]
  status = rng.choice([0, 1, 2, 2], (n, num_keypoints)).astype(np.int32)
  return {
      'image': rng.integers(0, 256, (n, STORED, STORED, 3)).astype(np.uint8),
      'keypoints': rng.uniform(3, STORED - 3, (n, num_keypoints, 2)).astype(np.float32),
      'keypoint_status': status,
      'other_keypoints': rng.uniform(3, STORED - 3, (n, people, num_keypoints, 2)
                                     ).astype(np.float32),
      'other_keypoint_status': rng.choice([0, 2], (n, people, num_keypoints)).astype(np.int32),
      'crop_to_image': c2i,
      'objpos': objpos.astype(np.float32),
      # window = box_scale * 200 * scale / 1.5 stored px = 18 px
      'scale': np.full(n, 18 * 1.5 / (200 * augment.DEFAULT_BOX_SCALE), np.float32),
      'head_size': rng.uniform(5, 9, n).astype(np.float32),
      'image_index': np.arange(first_index, first_index + n, dtype=np.int32),
      'person_index': rng.integers(0, 3, n).astype(np.int32),
  }


def raw_dataset(n: int, **kwargs) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices(raw_examples(n, **kwargs))


def take(ds: tf.data.Dataset, count: int) -> list[dict[str, np.ndarray]]:
  return list(ds.take(count).as_numpy_iterator())


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def train(ds, **kwargs):
  args = dict(config=CONFIG, seed=3, global_batch_size=4)
  args.update(kwargs)
  return ip.make_train_dataset(ds, **args)


def test_train_batches_have_fixed_shapes_and_types():
  ds = train(raw_dataset(10), global_batch_size=6, local_device_count=2)
  expected = {
      'image': ((2, 3, SIZE, SIZE, 3), np.uint8),
      'keypoints': ((2, 3, 16, 2), np.float32),
      'keypoint_status': ((2, 3, 16), np.int32),
      'other_keypoints': ((2, 3, 3, 16, 2), np.float32),
      'other_keypoint_status': ((2, 3, 3, 16), np.int32),
      'input_to_image': ((2, 3, 2, 3), np.float32),
      'head_size': ((2, 3), np.float32),
      'image_index': ((2, 3), np.int32),
      'person_index': ((2, 3), np.int32),
      'valid': ((2, 3), np.int32),
  }
  batch = take(ds, 1)[0]
  assert set(batch) == set(expected)
  for k, (shape, dtype) in expected.items():
    assert batch[k].shape == shape and batch[k].dtype == dtype, k
  assert np.all(batch['valid'] == 1)
  # Two real people, one padding row with status 0.
  assert np.all(batch['other_keypoint_status'][:, :, 2] == 0)


def test_same_seed_gives_the_same_stream():
  first = take(train(raw_dataset(10)), 5)
  assert_same_batches(first, take(train(raw_dataset(10)), 5))
  assert_same_batches(first, take(train(raw_dataset(10), num_threads=1), 5))
  other = take(train(raw_dataset(10), seed=4), 5)
  assert not np.array_equal(np.stack([b['image_index'] for b in first]),
                            np.stack([b['image_index'] for b in other]))


def test_every_epoch_is_a_new_permutation():
  batches = take(train(raw_dataset(10), global_batch_size=5), 6)
  order = np.concatenate([b['image_index'].ravel() for b in batches])
  epochs = order.reshape(3, 10)
  for epoch in epochs:
    assert sorted(epoch) == list(range(10))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[0], np.arange(10))


@pytest.mark.parametrize('start_step', [1, 3, 5])
def test_resume_yields_the_fresh_stream(start_step):
  # 10 examples, 4 per step: step 3 starts inside the second epoch.
  fresh = take(train(raw_dataset(10)), 7)
  resumed = take(train(raw_dataset(10), start_step=start_step), 7 - start_step)
  assert_same_batches(fresh[start_step:], resumed)


def test_resume_of_a_mixture_yields_the_fresh_stream():
  mpii = raw_dataset(7)
  lsp = ip.map_joints(raw_dataset(5, num_keypoints=14, first_index=100, seed=1), 'lsp_to_mpii')
  kwargs = dict(mix_weights=[2.0, 1.0])
  fresh = take(train([mpii, lsp], **kwargs), 6)
  resumed = take(train([mpii, lsp], start_step=4, **kwargs), 2)
  assert_same_batches(fresh[4:], resumed)
  ids = np.concatenate([b['image_index'].ravel() for b in fresh])
  assert np.any(ids >= 100) and np.any(ids < 100)


def test_mix_datasets_follows_weights_and_resumes_across_blocks():
  a = tf.data.Dataset.range(50).map(lambda i: {'id': i})
  b = tf.data.Dataset.range(1000, 1030).map(lambda i: {'id': i})
  fresh = [x['id'] for x in ip.mix_datasets([a, b], [3, 1], seed=9).take(3000).as_numpy_iterator()]
  fresh = np.array(fresh)
  assert abs(np.mean(fresh < 1000) - 0.75) < 0.03
  # Each dataset runs through whole epochs: the first 50 'a' items are a permutation.
  assert sorted(fresh[fresh < 1000][:50]) == list(range(50))
  start = ip.MIX_BLOCK + 300  # inside the second choice block
  resumed = ip.mix_datasets([a, b], [3, 1], seed=9, start_index=start).take(200)
  np.testing.assert_array_equal([x['id'] for x in resumed.as_numpy_iterator()],
                                fresh[start:start + 200])


def test_process_shards_are_disjoint_and_cover_the_data():
  seen = []
  for process in range(3):
    ds = train(raw_dataset(11), global_batch_size=3, process_index=process, process_count=3,
               shard_input=True)
    size = len(range(process, 11, 3))
    ids = [int(b['image_index'][0, 0]) for b in take(ds, 2 * size)]
    assert sorted(ids[:size]) == sorted(ids[size:])  # an epoch is the whole shard
    seen.append(set(ids))
  assert sum(len(s) for s in seen) == 11
  assert set().union(*seen) == set(range(11))


def test_encoded_images_give_the_same_batches():
  raw = raw_examples(6)
  encoded = dict(raw)
  encoded['image'] = np.array([tf.io.encode_png(im).numpy() for im in raw['image']], object)
  a = take(train(tf.data.Dataset.from_tensor_slices(raw)), 3)
  b = take(train(tf.data.Dataset.from_tensor_slices(encoded)), 3)
  assert_same_batches(a, b)


def reference_eval_keypoints(raw, i, config):
  """Input pixels of raw example i without augmentation, by hand."""
  c2i = raw['crop_to_image'][i].astype(np.float64)
  centre = np.linalg.solve(c2i[:, :2], raw['objpos'][i] - c2i[:, 2])
  side = config.box_scale * 200 * raw['scale'][i] / 1.5
  return (raw['keypoints'][i] - centre) * config.input_size / side + (config.input_size - 1) / 2


def test_eval_pads_the_last_batch_and_maps_back_to_the_image():
  raw = raw_examples(10)
  ds = ip.make_eval_dataset(tf.data.Dataset.from_tensor_slices(raw), config=CONFIG,
                            global_batch_size=4, local_device_count=2)
  batches = take(ds, 10)
  assert len(batches) == 3
  flat = {k: np.concatenate([b[k].reshape((-1,) + b[k].shape[2:]) for b in batches])
          for k in batches[0]}
  np.testing.assert_array_equal(flat['valid'], [1] * 10 + [0] * 2)
  np.testing.assert_array_equal(flat['image_index'][:10], np.arange(10))
  assert not flat['image'][10:].any() and not flat['keypoint_status'][10:].any()
  for i in range(10):
    known = raw['keypoint_status'][i] > 0
    np.testing.assert_allclose(flat['keypoints'][i][known],
                               reference_eval_keypoints(raw, i, CONFIG)[known], atol=1e-3)
    a = flat['input_to_image'][i].astype(np.float64)
    back = flat['keypoints'][i] @ a[:, :2].T + a[:, 2]
    c2i = raw['crop_to_image'][i]
    original = raw['keypoints'][i] @ c2i[:, :2].T + c2i[:, 2]
    np.testing.assert_allclose(back[known], original[known], atol=1e-3)
    np.testing.assert_array_equal(flat['keypoint_status'][i], raw['keypoint_status'][i])
    assert flat['head_size'][i] == raw['head_size'][i]


def test_eval_processes_yield_equal_batch_counts():
  seen = []
  for process in range(3):
    ds = ip.make_eval_dataset(raw_dataset(10), config=CONFIG, global_batch_size=6,
                              process_index=process, process_count=3, shard_input=True)
    batches = take(ds, 10)
    assert len(batches) == 2  # ceil(ceil(10 / 3) / 2)
    valid = np.concatenate([b['valid'].ravel() for b in batches])
    ids = np.concatenate([b['image_index'].ravel() for b in batches])
    assert valid.sum() == len(range(process, 10, 3))
    seen.extend(ids[valid == 1].tolist())
  assert sorted(seen) == list(range(10))
  with pytest.raises(ValueError, match='num_examples_total'):
    ip.make_eval_dataset(raw_dataset(4), config=CONFIG, global_batch_size=2,
                         process_index=0, process_count=2)


def test_other_people_are_padded_or_truncated():
  counts = [0, 1, 5]
  rng = np.random.default_rng(2)
  examples = []
  for i, p in enumerate(counts):
    ex = {k: v[i] for k, v in raw_examples(3).items()}
    ex['other_keypoints'] = rng.uniform(3, 20, (p, 16, 2)).astype(np.float32)
    ex['other_keypoint_status'] = np.full((p, 16), 2, np.int32)
    ex['other_keypoint_status'][:, 0] = 1
    examples.append(ex)
  spec = {k: tf.TensorSpec(np.shape(v), tf.as_dtype(np.asarray(v).dtype))
          for k, v in examples[0].items()}
  spec['other_keypoints'] = tf.TensorSpec((None, 16, 2), tf.float32)
  spec['other_keypoint_status'] = tf.TensorSpec((None, 16), tf.int32)
  ds = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=spec)
  with pytest.raises(ValueError, match='assert_cardinality'):
    ip.make_eval_dataset(ds, config=CONFIG, global_batch_size=1)
  ds = ds.apply(tf.data.experimental.assert_cardinality(3))
  out = take(ip.make_eval_dataset(ds, config=CONFIG, global_batch_size=1), 3)
  for ex, batch, p in zip(examples, out, counts):
    st = batch['other_keypoint_status'][0, 0]
    assert st.shape == (3, 16)
    kept = min(p, 3)
    np.testing.assert_array_equal(st[:kept], ex['other_keypoint_status'][:kept])
    assert not st[kept:].any() and not batch['other_keypoints'][0, 0][kept:].any()
    if p:
      # Same transform as the person's own keypoints (no augmentation in eval).
      raw = {k: np.asarray(v)[None] for k, v in ex.items()}
      raw['keypoints'] = ex['other_keypoints'][:1]
      np.testing.assert_allclose(batch['other_keypoints'][0, 0, 0],
                                 reference_eval_keypoints(raw, 0, CONFIG), atol=1e-3)


def test_lsp_joint_mapping_fills_mpii_slots():
  raw = raw_examples(4, num_keypoints=14)
  config = augment.AugmentConfig(input_size=SIZE, joint_mapping='lsp_to_mpii')
  out = take(ip.make_eval_dataset(tf.data.Dataset.from_tensor_slices(raw), config=config,
                                  global_batch_size=4), 1)[0]
  lsp, mpii = keypoint_sets.LSP.keypoint_names, keypoint_sets.MPII.keypoint_names
  assert out['keypoints'].shape == (1, 4, 16, 2)
  for i in range(4):
    expect = reference_eval_keypoints(raw, i, config)
    for k, name in enumerate(lsp):
      slot = mpii.index('upper_neck' if name == 'neck' else name)
      assert out['keypoint_status'][0, i, slot] == raw['keypoint_status'][i, k]
      if raw['keypoint_status'][i, k]:
        np.testing.assert_allclose(out['keypoints'][0, i, slot], expect[k], atol=1e-3)
    assert out['keypoint_status'][0, i, mpii.index('pelvis')] == 0
    assert out['keypoint_status'][0, i, mpii.index('thorax')] == 0
  with pytest.raises(ValueError, match='needs 14 keypoints'):
    ip.map_joints(raw_dataset(2), 'lsp_to_mpii')


def test_batch_for_devices_keeps_order():
  ds = tf.data.Dataset.range(13).map(lambda i: {'x': tf.stack([i, -i])})
  batches = take(ip.batch_for_devices(ds, 2, 3), 5)
  assert len(batches) == 2  # 13 // 6, the rest is dropped
  np.testing.assert_array_equal(batches[1]['x'][:, :, 0], [[6, 7, 8], [9, 10, 11]])
  assert batches[0]['x'].shape == (2, 3, 2)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match='multiple'):
    train(raw_dataset(4), global_batch_size=5, local_device_count=2)
  with pytest.raises(ValueError, match='lack features'):
    train(raw_dataset(4).map(lambda ex: {k: v for k, v in ex.items() if k != 'objpos'}))
  with pytest.raises(ValueError, match='infinite'):
    train(raw_dataset(4).repeat())
  with pytest.raises(ValueError, match='mix_weights'):
    train([raw_dataset(4), raw_dataset(4)])
  with pytest.raises(ValueError, match='one weight per dataset'):
    ip.mix_datasets([raw_dataset(4)], [1.0, 2.0], seed=0)
  with pytest.raises(ValueError, match='process_index'):
    train(raw_dataset(4), process_index=2, process_count=2)


def test_load_split_reads_a_built_dataset_per_process(tmp_path):
  import tensorflow_datasets as tfds
  from rhpe_jax.data import pose_features
  raw = raw_examples(7)
  examples = [{k: v[i] for k, v in raw.items()} for i in range(7)]
  for i, ex in enumerate(examples):
    ex.update(head_box=np.zeros(4, np.float32), original_size=np.array([40, 40], np.int32),
              image_name=f'im{i}.jpg', single_person=True)
  tfds.dataset_builders.store_as_tfds_dataset(
      name='rhpe_test_pose', version='1.0.0', data_dir=tmp_path,
      features=pose_features.pose_features(16, (STORED, STORED, 3)),
      split_datasets={'train': list(enumerate(examples))})
  full = ip.load_split('rhpe_test_pose', 'train', str(tmp_path), shard_for_process=False)
  assert full.element_spec['image'].dtype == tf.string
  assert ip.num_examples(full) == 7
  ids = []
  for process in range(2):
    part = ip.load_split('rhpe_test_pose', 'train', str(tmp_path), process_index=process,
                         process_count=2)
    ids.append({int(x['image_index']) for x in part.as_numpy_iterator()})
  assert not ids[0] & ids[1] and ids[0] | ids[1] == set(range(7))
  batch = take(train(full), 1)[0]
  assert batch['image'].shape == (1, 4, SIZE, SIZE, 3)
  with pytest.raises(FileNotFoundError, match='tfds build'):
    ip.load_split('rhpe_no_such_pose', 'train', str(tmp_path))


def test_real_mpii_images_round_trip_in_eval():
  root = DATA / 'mpii_sample'
  if not (root / 'annotations.json').exists():
    pytest.skip(f'real MPII sample not found at {root}')
  records = json.loads((root / 'annotations.json').read_text())
  n = len(records)
  joints = np.array([r['joints'] for r in records], np.float32)
  status = np.array([r['joints_vis'] for r in records], np.int32) * 2
  raw = {
      'image': np.array([(root / 'images' / r['image']).read_bytes() for r in records], object),
      'keypoints': joints,
      'keypoint_status': status,
      'other_keypoints': np.zeros((n, 0, 16, 2), np.float32),
      'other_keypoint_status': np.zeros((n, 0, 16), np.int32),
      'crop_to_image': np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)),
      'objpos': np.array([r['center'] for r in records], np.float32),
      'scale': np.array([r['scale'] for r in records], np.float32),
      'head_size': np.ones(n, np.float32),
      'image_index': np.arange(n, dtype=np.int32),
      'person_index': np.zeros(n, np.int32),
  }
  config = augment.AugmentConfig()
  batches = take(ip.make_eval_dataset(tf.data.Dataset.from_tensor_slices(raw), config=config,
                                      global_batch_size=n), 1)
  out = {k: v[0] for k, v in batches[0].items()}
  inside = []
  for i in range(n):
    known = status[i] > 0
    a = out['input_to_image'][i].astype(np.float64)
    back = out['keypoints'][i] @ a[:, :2].T + a[:, 2]
    np.testing.assert_allclose(back[known], joints[i][known], atol=1e-3)
    # objpos is the input centre; the window is box_scale * 200 * scale pixels.
    k = config.box_scale * 200 * raw['scale'][i] / config.input_size
    expect = (joints[i] - raw['objpos'][i]) / k + (config.input_size - 1) / 2
    np.testing.assert_allclose(out['keypoints'][i][known], expect[known], atol=1e-2)
    kp = out['keypoints'][i][known]
    inside.extend(np.all((kp > -0.5) & (kp < config.input_size - 0.5), axis=1))
  assert np.mean(inside) > 0.9  # the annotated person fills the crop
  assert out['image'].mean() > 20  # real pixels, not the zero fill


def test_benchmark_reports_a_rate():
  rate = ip.benchmark_input_pipeline(raw_dataset(8), steps=3, batch=4, config=CONFIG,
                                     warmup_steps=1)
  assert math.isfinite(rate) and rate > 0
