"""Tests of the procedural pose generator (rhpe_jax.data.synthetic).

Each property is checked on the generator's outputs with NumPy written here:
joints against the drawn masks, status codes against the masks drawn over the
figure, angles and lengths against anatomical bounds, metadata against the
MPII conventions of docs/conventions.md.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import synthetic

R = 96  # small images keep the tests fast; the geometry scales with R


def _examples(n: int, resolution: int = R, split: str = 'train', base: int = 0):
  return [synthetic.generate_example(synthetic.example_seed(base, split, i), resolution)
          for i in range(n)]


@pytest.fixture(scope='module')
def examples():
  return _examples(120)


def _pixel(kp: np.ndarray) -> np.ndarray:
  """Nearest pixel (column, row) of 0-based pixel-centre coordinates."""
  return np.floor(kp + 0.5).astype(int)


def _inside(kp: np.ndarray, size: int) -> np.ndarray:
  ij = _pixel(kp)
  return np.all((ij >= 0) & (ij < size), axis=-1)


def _signed_angle(frm: np.ndarray, to: np.ndarray) -> np.ndarray:
  """Angle (deg) turning `frm` into `to`; positive is clockwise on screen."""
  cross = frm[..., 0] * to[..., 1] - frm[..., 1] * to[..., 0]
  dot = np.sum(frm * to, axis=-1)
  return np.degrees(np.arctan2(cross, dot))


# ------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes():
  for seed in (0, 1, 12345):
    a = synthetic.generate_example(seed, 64)
    b = synthetic.generate_example(seed, 64)
    assert sorted(a) == sorted(b)
    for key in a:
      assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype, key
      assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key
  images = {synthetic.generate_example(s, 64)['image'].tobytes() for s in range(8)}
  assert len(images) == 8


def test_examples_regenerate_alone():
  full = list(synthetic.generate_split('validation', 5, 64, base_seed=3))
  tail = list(synthetic.generate_split('validation', 5, 64, base_seed=3, start=3))
  assert [k for k, _ in full] == [f'synthetic_validation_{i:06d}' for i in range(5)]
  assert [k for k, _ in tail] == [k for k, _ in full[3:]]
  for (_, ex), (_, ex_tail) in zip(full[3:], tail):
    np.testing.assert_array_equal(ex['image'], ex_tail['image'])
  alone = synthetic.generate_example(
      synthetic.example_seed(3, 'validation', 4), 64,
      image_name='synthetic_validation_000004', image_index=4)
  for key, value in full[4][1].items():
    np.testing.assert_array_equal(value, alone[key], err_msg=key)
  assert set(full[0][1]) == set(synthetic.FEATURE_KEYS)  # no test masks in splits


def test_seeds_differ_across_splits_bases_and_indices():
  seeds = {(s, b, i): synthetic.example_seed(b, s, i)
           for s in ('train', 'validation') for b in (0, 1) for i in range(500)}
  assert len(set(seeds.values())) == len(seeds)
  assert synthetic.example_seed(0, 'train', 7) == synthetic.example_seed(0, 'train', 7)


# ---------------------------------------------------------- masks and labels


def test_joints_lie_on_the_drawn_body(examples):
  checked = 0
  for ex in examples:
    kp, mask = ex['keypoints'], ex['limb_mask']
    inside = _inside(kp, R)
    ij = _pixel(kp[inside])
    assert mask[ij[:, 1], ij[:, 0]].all(), ex['keypoints']
    checked += inside.sum()
    # The part map and the body mask describe the same pixels.
    np.testing.assert_array_equal(ex['part_map'] >= 0, mask)
  assert checked > 0.9 * len(examples) * 16


def test_occlusion_flags_follow_what_is_drawn_over(examples):
  num_occluded = num_in_frame = num_front = 0
  for ex in examples:
    kp, status = ex['keypoints'], ex['keypoint_status']
    cover = ex['occluder_mask'] | ex['front_mask']
    inside = _inside(kp, R)
    assert set(np.unique(status)) <= {keypoint_sets.OCCLUDED, keypoint_sets.VISIBLE}
    assert np.all(status[~inside] == keypoint_sets.OCCLUDED)
    ij = _pixel(kp[inside])
    covered = cover[ij[:, 1], ij[:, 0]]
    expected = np.where(covered, keypoint_sets.OCCLUDED, keypoint_sets.VISIBLE)
    np.testing.assert_array_equal(status[inside], expected)
    num_occluded += covered.sum()
    num_in_frame += inside.sum()
    num_front += ex['front_mask'][ij[:, 1], ij[:, 0]].any()
    # What covers a joint was really drawn over the figure's body.
    assert not (cover & ~ex['limb_mask'] & (ex['part_map'] >= 0)).any()
  # Occlusion happens, but most joints stay visible.
  assert 0.03 < num_occluded / num_in_frame < 0.35
  assert num_front > 0


def test_visible_pixels_show_the_figure_not_the_occluder(examples):
  """Where an occluder covers the body, the image shows the occluder's pixels."""
  diffs = []
  for ex in examples:
    over = ex['occluder_mask'] & ex['limb_mask']
    if over.sum() < 20:
      continue
    img = ex['image'].astype(float)
    # The covered body pixels look like the rest of the occluder (same
    # texture), not like the uncovered body.
    occ_only = ex['occluder_mask'] & ~ex['limb_mask']
    body_only = ex['limb_mask'] & ~ex['occluder_mask'] & ~ex['front_mask']
    if occ_only.sum() < 20 or body_only.sum() < 20:
      continue
    m_over = img[over].mean(0)
    diffs.append(np.linalg.norm(m_over - img[occ_only].mean(0))
                 < np.linalg.norm(m_over - img[body_only].mean(0)))
  assert len(diffs) >= 10
  assert np.mean(diffs) > 0.8


def test_other_people_are_recorded_and_partly_in_frame(examples):
  counts = []
  for ex in examples:
    other_kp, other_status = ex['other_keypoints'], ex['other_keypoint_status']
    p = other_kp.shape[0]
    counts.append(p)
    assert other_kp.shape == (p, 16, 2) and other_status.shape == (p, 16)
    assert other_kp.dtype == np.float32 and other_status.dtype == np.int32
    assert set(np.unique(other_status)) <= {keypoint_sets.OCCLUDED, keypoint_sets.VISIBLE}
    for k in range(p):
      inside = _inside(other_kp[k], R)
      assert inside.sum() >= synthetic.MIN_DISTRACTOR_JOINTS_IN_FRAME
      assert np.all(other_status[k][~inside] == keypoint_sets.OCCLUDED)
  assert set(counts) == {0, 1, 2}


def test_right_limbs_are_darker_than_left(examples):
  """The side cue: right parts are drawn darker than the matching left parts."""
  votes = []
  for ex in examples:
    lum = ex['image'].astype(float).mean(-1)
    seen = ~(ex['occluder_mask'] | ex['front_mask'])
    for part in ('thigh', 'shin', 'upper_arm', 'forearm'):
      r = (ex['part_map'] == synthetic.PART_NAMES.index(f'r_{part}')) & seen
      l = (ex['part_map'] == synthetic.PART_NAMES.index(f'l_{part}')) & seen
      if r.sum() >= 8 and l.sum() >= 8:
        votes.append(lum[r].mean() < lum[l].mean())
  assert len(votes) > 200
  assert np.mean(votes) > 0.95


# --------------------------------------------------------- pose plausibility


def _poses(examples):
  """Every figure's joints (active and distractors), as (N, 16, 2)."""
  kps = [ex['keypoints'][None] for ex in examples]
  kps += [ex['other_keypoints'] for ex in examples]
  return np.concatenate(kps).astype(np.float64)


def test_frontal_view_puts_the_right_side_on_the_image_left(examples):
  kp = _poses(examples)
  up = kp[:, 7] - kp[:, 6]  # pelvis -> thorax
  for r, l, centre in ((12, 13, 7), (2, 3, 6)):
    across = kp[:, r] - kp[:, l]
    # Upright and frontal: the right joint is to the image left of the left one.
    cross = up[:, 0] * across[:, 1] - up[:, 1] * across[:, 0]
    assert np.all(cross < 0)
    # Shoulders and hips sit symmetrically across the torso axis.
    np.testing.assert_allclose(kp[:, r] + kp[:, l], 2 * kp[:, centre], atol=1e-3)
    cosine = np.sum(up * across, -1) / np.linalg.norm(up, axis=-1) / np.linalg.norm(across, axis=-1)
    assert np.abs(cosine).max() < 1e-4


def test_joint_angles_stay_within_limits(examples):
  kp = _poses(examples)
  up = kp[:, 7] - kp[:, 6]
  down = -up
  rotation = _signed_angle(np.array([0.0, -1.0]), up)
  assert np.abs(rotation).max() <= 45.0 + 1e-3
  assert np.abs(rotation).max() > 35.0  # the range is used
  neck = _signed_angle(up, kp[:, 8] - kp[:, 7])
  head = _signed_angle(kp[:, 8] - kp[:, 7], kp[:, 9] - kp[:, 8])
  assert np.abs(neck).max() <= 20.0 + 1e-3
  assert np.abs(head).max() <= 15.0 + 1e-3
  # Right limbs: + = clockwise on screen = away from the body towards the
  # image left; left limbs mirror it. Flexion turns back towards the midline.
  limbs = {'arm': (12, 11, 10, 13, 14, 15), 'leg': (2, 1, 0, 3, 4, 5)}
  ranges = {'arm': ((-30.0, 170.0), (0.0, 150.0)), 'leg': ((-20.0, 80.0), (0.0, 120.0))}
  for limb, (r0, r1, r2, l0, l1, l2) in limbs.items():
    (lo, hi), (flo, fhi) = ranges[limb]
    for sign, (a, b, c) in ((1.0, (r0, r1, r2)), (-1.0, (l0, l1, l2))):
      proximal = kp[:, b] - kp[:, a]
      distal = kp[:, c] - kp[:, b]
      spread = sign * _signed_angle(down, proximal)
      flexion = -sign * _signed_angle(proximal, distal)
      assert spread.min() >= lo - 1e-3 and spread.max() <= hi + 1e-3, limb
      assert flexion.min() >= flo - 1e-3 and flexion.max() <= fhi + 1e-3, limb
      # The generator uses a good part of each range.
      assert spread.max() - spread.min() > 0.6 * (hi - lo), limb
      assert flexion.max() > 0.6 * fhi, limb


def test_segment_proportions_are_adult(examples):
  kp = _poses(examples)
  length = lambda a, b: np.linalg.norm(kp[:, a] - kp[:, b], axis=-1)
  thigh_r, thigh_l = length(2, 1), length(3, 4)
  shin_r, shin_l = length(1, 0), length(4, 5)
  upper_r, upper_l = length(12, 11), length(13, 14)
  fore_r, fore_l = length(11, 10), length(14, 15)
  torso, neck, head = length(6, 7), length(7, 8), length(8, 9)
  shoulders, hips = length(12, 13), length(2, 3)
  # Both sides of one figure match.
  for r, l in ((thigh_r, thigh_l), (shin_r, shin_l), (upper_r, upper_l), (fore_r, fore_l)):
    np.testing.assert_allclose(r, l, rtol=1e-4)
  # Adult ratios (stature = head top to ankle, standing).
  stature = head + neck + torso + thigh_r + shin_r
  bounds = {
      'thigh/shin': (thigh_r / shin_r, 0.8, 1.25),
      'upper/forearm': (upper_r / fore_r, 1.0, 1.6),
      'torso/thigh': (torso / thigh_r, 0.9, 1.5),
      'head/stature': (head / stature, 0.10, 0.16),
      'leg/stature': ((thigh_r + shin_r) / stature, 0.45, 0.58),
      'arm/stature': ((upper_r + fore_r) / stature, 0.28, 0.4),
      'shoulders/hips': (shoulders / hips, 1.2, 2.2),
      'shoulders/stature': (shoulders / stature, 0.17, 0.27),
  }
  for name, (ratio, lo, hi) in bounds.items():
    assert ratio.min() >= lo and ratio.max() <= hi, (name, ratio.min(), ratio.max())


# ------------------------------------------------------------------ metadata


def test_person_centred_crop_metadata(examples):
  centre = (R - 1) / 2
  for ex in examples:
    kp = ex['keypoints'].astype(np.float64)
    # objpos is the figure centre: the middle of its joints' bounding box.
    np.testing.assert_allclose(ex['objpos'], (kp.min(0) + kp.max(0)) / 2, atol=1e-4)
    assert np.abs(ex['objpos'] - centre).max() <= 0.04 * R + 1e-4
    # scale = figure height / 200 with height the standing stature, about half
    # the image side (+-20 %), like MPII's 400 x scale crops.
    seg = lambda a, b: np.linalg.norm(kp[a] - kp[b])
    stature = seg(9, 8) + seg(8, 7) + seg(7, 6) + seg(2, 1) + seg(1, 0)
    np.testing.assert_allclose(200 * ex['scale'], stature, rtol=1e-4)
    assert 0.4 * R - 1e-3 <= stature <= 0.6 * R + 1e-3
    x1, y1, x2, y2 = ex['head_box']
    for j in (8, 9):
      assert x1 <= kp[j, 0] <= x2 and y1 <= kp[j, 1] <= y2
    assert (y2 - y1) < 0.3 * stature and (x2 - x1) < 0.3 * stature
    np.testing.assert_allclose(ex['head_size'], 0.6 * np.hypot(x2 - x1, y2 - y1), rtol=1e-5)
    np.testing.assert_array_equal(ex['crop_to_image'], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(ex['original_size'], [R, R])
    assert ex['person_index'] == 0 and bool(ex['single_person'])
  heights = np.array([200 * ex['scale'] / R for ex in examples])
  assert heights.min() < 0.44 and heights.max() > 0.56  # the +-20 % is used


def test_split_names_and_indices():
  keys = []
  for key, ex in synthetic.generate_split('train', 124, 48, start=122):
    keys.append(key)
    assert ex['image_name'] == key
    assert int(ex['image_index']) == int(key[-6:])
    assert re.fullmatch(r'synthetic_train_\d{6}', key)
  assert keys == ['synthetic_train_000122', 'synthetic_train_000123']


def test_features_encode_with_the_project_schema():
  tfds = pytest.importorskip('tensorflow_datasets')
  from rhpe_jax.data import pose_features
  features = pose_features.pose_features(16, (128, 128, 3))
  for _, ex in synthetic.generate_split('train', 3, 128):
    assert ex['image'].dtype == np.uint8 and ex['image'].shape == (128, 128, 3)
    serialized = features.serialize_example(ex)
    decoded = tfds.as_numpy(features.deserialize_example(serialized))
    np.testing.assert_array_equal(decoded['keypoints'], ex['keypoints'])
    np.testing.assert_array_equal(decoded['other_keypoint_status'], ex['other_keypoint_status'])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize('kwargs, match', [
    ({'seed': 0, 'resolution': 16}, 'resolution'),
    ({'seed': 0, 'resolution': 64.0}, 'resolution'),
    ({'seed': -1, 'resolution': 64}, 'seed'),
])
def test_bad_generate_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.generate_example(**kwargs)


def test_bad_split_arguments():
  with pytest.raises(ValueError, match='num_examples'):
    list(synthetic.generate_split('train', -1, 64))
  with pytest.raises(ValueError, match='split'):
    synthetic.example_seed(0, '', 3)
  with pytest.raises(ValueError, match='height_fraction'):
    synthetic.GeneratorOptions(height_fraction=2.0)
