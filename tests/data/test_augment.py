"""Tests of the crop geometry against NumPy references and painted marks."""
from __future__ import annotations

import itertools
import json
import math
import pathlib

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
import tensorflow as tf

from rhpe_jax.data import augment
from rhpe_jax.data import input_pipeline
from rhpe_jax.core import keypoint_sets

STORED = 96  # stored image side in the tests
SIZE = 64  # network input side in the tests
RADIUS = 4
BACKGROUND = (40, 40, 40)
# 16 colours that differ by >= 120 in some channel from each other and the background.
COLOURS = np.array([c for c in itertools.product((0, 120, 240), repeat=3)
                    if max(c) >= 120][:16], np.int32)
# stored -> original: a similarity with scale 2 (and an offset), as MPII crops.
CROP_TO_IMAGE = np.array([[2.0, 0.0, 10.0], [0.0, 2.0, -4.0]])
WINDOW = 60.0  # window side in stored pixels at scale factor 1


def grid_keypoints() -> np.ndarray:
  """16 keypoints on a 4 x 4 grid, 12 px apart, around the stored centre."""
  offsets = np.array([-18.0, -6.0, 6.0, 18.0])
  xs, ys = np.meshgrid(offsets + 47.5, offsets + 48.5)
  return np.stack([xs.ravel(), ys.ravel()], axis=1)


def painted_image(keypoints: np.ndarray) -> np.ndarray:
  """Gray image with a disc of joint j's colour (radius 4) at each keypoint."""
  image = np.empty((STORED, STORED, 3), np.uint8)
  image[:] = BACKGROUND
  yy, xx = np.mgrid[:STORED, :STORED]
  for j, (x, y) in enumerate(keypoints):
    image[(xx - x) ** 2 + (yy - y) ** 2 <= RADIUS ** 2] = COLOURS[j]
  return image


def original_objpos_and_scale(centre_stored: np.ndarray) -> tuple[np.ndarray, float]:
  """objpos (original pixels) and MPII scale giving a WINDOW-px stored window."""
  objpos = CROP_TO_IMAGE[:, :2] @ centre_stored + CROP_TO_IMAGE[:, 2]
  scale = WINDOW * 2.0 / (200.0 * augment.DEFAULT_BOX_SCALE)
  return objpos, scale


def make_example(keypoints: np.ndarray | None = None, status: np.ndarray | None = None,
                 centre: tuple[float, float] = (47.5, 48.5)) -> dict[str, tf.Tensor]:
  keypoints = grid_keypoints() if keypoints is None else keypoints
  num_keypoints = len(keypoints)
  status = np.full(num_keypoints, 2) if status is None else status
  objpos, scale = original_objpos_and_scale(np.array(centre))
  other = keypoints[None] + np.array([3.0, -2.0])
  return {
      'image': tf.constant(painted_image(keypoints)),
      'keypoints': tf.constant(keypoints, tf.float32),
      'keypoint_status': tf.constant(status, tf.int32),
      'other_keypoints': tf.constant(other, tf.float32),
      'other_keypoint_status': tf.constant(status[None], tf.int32),
      'crop_to_image': tf.constant(CROP_TO_IMAGE, tf.float32),
      'objpos': tf.constant(objpos, tf.float32),
      'scale': tf.constant(scale, tf.float32),
      'head_size': tf.constant(7.0),
      'image_index': tf.constant(3),
      'person_index': tf.constant(1),
  }


def numpy_params(params) -> dict:
  return {k: np.asarray(v) for k, v in params.items()}


def reference_stored_to_input(points, centre, side, p):
  """Hand-derived inverse of the crop: u = c_in + F R(-a) (x - c - t w) / k."""
  w = side * p['scale']
  k = w / SIZE
  c = np.asarray(centre) + p['translate'] * w
  a = float(p['angle'])
  rot_inv = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
  flip = np.diag([-1.0, 1.0]) if p['flip'] else np.eye(2)
  mid = (SIZE - 1) / 2.0
  return mid + (np.asarray(points) - c) @ rot_inv.T @ flip.T / k


def reference_input_to_stored_affine(centre, side, p):
  """Forward map built from where three input points land."""
  w = side * p['scale']
  k = w / SIZE
  c = np.asarray(centre) + p['translate'] * w
  a = float(p['angle'])
  rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  flip = np.diag([-1.0, 1.0]) if p['flip'] else np.eye(2)
  mid = (SIZE - 1) / 2.0
  src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  dst = c + k * (src - mid) @ flip.T @ rot.T
  # Solve dst = A @ [src, 1].
  homog = np.concatenate([src, np.ones((3, 1))], axis=1)
  return np.linalg.solve(homog, dst).T


def perm_reference() -> np.ndarray:
  """MPII flip permutation written from the joint names."""
  names = keypoint_sets.MPII.keypoint_names
  swap = {'r': 'l', 'l': 'r'}
  return np.array([names.index(swap[n[0]] + n[1:]) if n[:2] in ('r_', 'l_') else i
                   for i, n in enumerate(names)])


def test_marks_follow_keypoints_under_random_augmentation():
  config = augment.AugmentConfig(input_size=SIZE, rotation_prob=1.0)
  example = make_example()
  perm = perm_reference()
  checked, flips = 0, 0
  for seed in range(40):
    params = augment.sample_params(tf.constant([seed, 11], tf.int64), config)
    out = input_pipeline.preprocess_example(example, config, params)
    image = out['image'].numpy().astype(np.int32)
    kp = out['keypoints'].numpy()
    a = out['input_to_image'].numpy()
    flipped = np.linalg.det(a[:, :2]) < 0  # mirror <=> orientation reversed
    flips += flipped
    assert flipped == bool(params['flip'])
    for j in range(16):
      x, y = np.round(kp[j]).astype(int)
      if not (0 <= x < SIZE and 0 <= y < SIZE):
        continue
      expected = COLOURS[perm[j] if flipped else j]
      np.testing.assert_allclose(image[y, x], expected, atol=3,
                                 err_msg=f'seed {seed} slot {j} flipped {flipped}')
      checked += 1
  assert checked > 40 * 12
  assert 5 < flips < 35


def test_keypoints_and_matrix_match_numpy_reference():
  config = augment.AugmentConfig(input_size=SIZE, rotation_prob=1.0)
  example = make_example()
  centre = np.array([47.5, 48.5])
  perm = perm_reference()
  c2i = np.concatenate([CROP_TO_IMAGE, [[0, 0, 1]]])
  for seed in range(10):
    params = augment.sample_params(tf.constant([7, seed], tf.int64), config)
    p = numpy_params(params)
    out = input_pipeline.preprocess_example(example, config, params)
    expected = reference_stored_to_input(grid_keypoints(), centre, WINDOW, p)
    if p['flip']:
      expected = expected[perm]
    np.testing.assert_allclose(out['keypoints'].numpy(), expected, atol=1e-3)
    other = reference_stored_to_input(grid_keypoints() + [3.0, -2.0], centre, WINDOW, p)
    np.testing.assert_allclose(out['other_keypoints'].numpy()[0],
                               other[perm] if p['flip'] else other, atol=1e-3)
    fwd = np.concatenate([reference_input_to_stored_affine(centre, WINDOW, p), [[0, 0, 1]]])
    np.testing.assert_allclose(out['input_to_image'].numpy(), (c2i @ fwd)[:2], atol=1e-3)


def test_sampled_parameters_cover_the_configured_ranges():
  config = augment.AugmentConfig(rotation_deg=20, rotation_prob=0.4, scale_min=0.8,
                                 scale_max=1.2, translate_frac=0.05, flip_prob=0.5)
  draws = [numpy_params(augment.sample_params(tf.constant([1, s], tf.int64), config))
           for s in range(400)]
  angles = np.array([d['angle'] for d in draws])
  scales = np.array([d['scale'] for d in draws])
  shifts = np.array([d['translate'] for d in draws])
  flips = np.array([d['flip'] for d in draws])
  assert np.all(np.abs(angles) <= math.radians(20) + 1e-12)
  assert abs(np.mean(angles != 0) - 0.4) < 0.08
  assert np.abs(angles).max() > math.radians(18)
  assert scales.min() >= 0.8 and scales.max() <= 1.2 and np.ptp(scales) > 0.35
  assert np.all(np.abs(shifts) <= 0.05) and np.abs(shifts).max() > 0.045
  assert abs(flips.mean() - 0.5) < 0.08
  # Same seed, same draw; parameters are not all the same number.
  again = numpy_params(augment.sample_params(tf.constant([1, 5], tf.int64), config))
  assert again['angle'] == draws[5]['angle'] and again['scale'] == draws[5]['scale']
  assert np.corrcoef(scales, shifts[:, 0])[0, 1] < 0.3


def test_forced_flip_mirrors_image_and_swaps_left_right():
  base = dict(input_size=SIZE, rotation_deg=0.0, scale_min=1.0, scale_max=1.0,
              translate_frac=0.0)
  example = make_example()
  plain = input_pipeline.preprocess_example(
      example, augment.AugmentConfig(flip_prob=0.0, **base), augment.identity_params())
  flipped = input_pipeline.preprocess_example(
      example, augment.AugmentConfig(flip_prob=1.0, **base),
      augment.sample_params(tf.constant([0, 0], tf.int64),
                            augment.AugmentConfig(flip_prob=1.0, **base)))
  # Unflipped position of every stored keypoint, by hand: k = 60 / 64.
  centre = np.array([47.5, 48.5])
  mid = (SIZE - 1) / 2
  unflipped = (grid_keypoints() - centre) / (WINDOW / SIZE) + mid
  np.testing.assert_allclose(plain['keypoints'].numpy(), unflipped, atol=1e-3)
  l_wrist, r_wrist = 15, 10
  mirrored_l_wrist = np.array([SIZE - 1 - unflipped[l_wrist, 0], unflipped[l_wrist, 1]])
  np.testing.assert_allclose(flipped['keypoints'].numpy()[r_wrist], mirrored_l_wrist, atol=1e-3)
  x, y = np.round(mirrored_l_wrist).astype(int)
  np.testing.assert_allclose(flipped['image'].numpy()[y, x], COLOURS[l_wrist], atol=3)
  # Every pair swaps; centre joints stay.
  for a, b in [(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13), (6, 6), (9, 9)]:
    expect = [SIZE - 1 - unflipped[b, 0], unflipped[b, 1]]
    np.testing.assert_allclose(flipped['keypoints'].numpy()[a], expect, atol=1e-3)
  # The picture is the mirror image (up to rounding).
  diff = flipped['image'].numpy().astype(int) - plain['image'].numpy()[:, ::-1].astype(int)
  assert np.abs(diff).max() <= 1


def test_eval_crop_maps_back_to_original_pixels():
  # A general similarity stored -> original (rotation, scale 1.7, offset).
  a = math.radians(25)
  c2i = np.array([[1.7 * math.cos(a), -1.7 * math.sin(a), 310.25],
                  [1.7 * math.sin(a), 1.7 * math.cos(a), 95.5]])
  rng = np.random.default_rng(0)
  stored_kp = rng.uniform(20, 76, (16, 2))
  centre = np.array([50.0, 44.0])
  objpos = c2i[:, :2] @ centre + c2i[:, 2]
  scale = 2.3
  example = make_example(stored_kp)
  example.update(crop_to_image=tf.constant(c2i, tf.float32),
                 objpos=tf.constant(objpos, tf.float32), scale=tf.constant(scale))
  config = augment.AugmentConfig(input_size=SIZE)
  out = input_pipeline.preprocess_example(example, config, augment.identity_params())
  a23 = out['input_to_image'].numpy().astype(np.float64)
  back = out['keypoints'].numpy() @ a23[:, :2].T + a23[:, 2]
  original_kp = stored_kp @ c2i[:, :2].T + c2i[:, 2]
  np.testing.assert_allclose(back, original_kp, atol=1e-3)
  # objpos lands at the input centre; the window is box_scale*200*scale/1.7 stored px.
  side = augment.DEFAULT_BOX_SCALE * 200 * scale / 1.7
  mid = (SIZE - 1) / 2
  expect = (stored_kp - centre) * SIZE / side + mid
  np.testing.assert_allclose(out['keypoints'].numpy(), expect, atol=1e-3)


def test_keypoints_outside_the_input_keep_their_status():
  kp = grid_keypoints()
  kp[0] = [95.0, 95.0]  # far corner: outside a 60 px window around the centre
  status = np.full(16, 2)
  status[3], status[4] = 1, 0
  out = input_pipeline.preprocess_example(
      make_example(kp, status), augment.AugmentConfig(input_size=SIZE),
      augment.identity_params())
  np.testing.assert_array_equal(out['keypoint_status'].numpy(), status)
  assert out['keypoints'].numpy()[0].min() > SIZE - 0.5
  np.testing.assert_array_equal(out['keypoints'].numpy()[4], [0.0, 0.0])  # missing -> 0


def test_missing_scale_falls_back_to_keypoint_box():
  kp = grid_keypoints()
  example = make_example(kp)
  example['scale'] = tf.constant(-1.0)
  out = input_pipeline.preprocess_example(example, augment.AugmentConfig(input_size=SIZE),
                                          augment.identity_params())
  # Box of the grid: x 29.5..65.5, y 30.5..66.5, side 36 -> window 36*box_scale.
  k = 36 * augment.DEFAULT_BOX_SCALE / SIZE
  expect = (kp - [47.5, 48.5]) / k + (SIZE - 1) / 2
  np.testing.assert_allclose(out['keypoints'].numpy(), expect, atol=1e-3)
  assert np.all(np.isfinite(out['input_to_image'].numpy()))


def numpy_bilinear_warp(image: np.ndarray, a23: np.ndarray, size: int) -> np.ndarray:
  """Reference: out[y, x] = bilinear(image, A @ [x, y, 1]), zeros outside."""
  h, w, _ = image.shape
  padded = np.zeros((h + 2, w + 2, image.shape[2]))
  padded[1:-1, 1:-1] = image
  out = np.zeros((size, size, image.shape[2]))
  for y in range(size):
    for x in range(size):
      sx, sy = a23 @ [x, y, 1.0]
      if not (-1 < sx < w and -1 < sy < h):
        continue
      x0, y0 = math.floor(sx), math.floor(sy)
      fx, fy = sx - x0, sy - y0
      p = padded[y0 + 1:y0 + 3, x0 + 1:x0 + 3]
      out[y, x] = ((1 - fy) * ((1 - fx) * p[0, 0] + fx * p[0, 1])
                   + fy * ((1 - fx) * p[1, 0] + fx * p[1, 1]))
  return np.clip(np.round(out), 0, 255)


def test_warp_matches_numpy_bilinear_with_pixel_centres():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (13, 17, 3)).astype(np.uint8)
  a = math.radians(33)
  a23 = np.array([[0.7 * math.cos(a), -0.7 * math.sin(a), 6.3],
                  [0.7 * math.sin(a), 0.7 * math.cos(a), -1.9]])
  got = augment.warp_image(tf.constant(image), tf.constant(np.concatenate([a23, [[0, 0, 1]]])),
                           20).numpy()
  want = numpy_bilinear_warp(image.astype(np.float64), a23, 20)
  assert got.dtype == np.uint8
  # Float rounding may move a value across .5; truncation would move half of them.
  assert np.abs(got.astype(int) - want).max() <= 1
  assert np.mean(got != want) < 0.02
  # Identity with a half-pixel shift averages neighbours: a pixel-centre check.
  shift = np.array([[1.0, 0, 0.5], [0, 1.0, 0], [0, 0, 1]])
  half = augment.warp_image(tf.constant(image), tf.constant(shift), 13).numpy().astype(int)
  want_half = np.round((image[:, :12].astype(np.float64) + image[:, 1:13]) / 2)
  np.testing.assert_array_equal(half[:, :12], want_half)


def test_lsp_to_mpii_puts_joints_in_their_slots():
  lsp, mpii = keypoint_sets.LSP.keypoint_names, keypoint_sets.MPII.keypoint_names
  rename = {'neck': 'upper_neck'}
  kp = np.arange(28, dtype=np.float32).reshape(14, 2) + 1
  st = np.array([2, 1] * 7, np.int32)
  out_kp, out_st = augment.lsp_to_mpii(tf.constant(kp), tf.constant(st))
  out_kp, out_st = out_kp.numpy(), out_st.numpy()
  assert out_kp.shape == (16, 2)
  for k, name in enumerate(lsp):
    slot = mpii.index(rename.get(name, name))
    np.testing.assert_array_equal(out_kp[slot], kp[k])
    assert out_st[slot] == st[k]
  for name in ('pelvis', 'thorax'):
    assert out_st[mpii.index(name)] == 0
    np.testing.assert_array_equal(out_kp[mpii.index(name)], [0, 0])
  # Batched (other people) too.
  okp, ost = augment.lsp_to_mpii(tf.constant(np.stack([kp, kp + 100])),
                                 tf.constant(np.stack([st, 2 - st])))
  np.testing.assert_array_equal(okp.numpy()[1, mpii.index('l_wrist')],
                                kp[lsp.index('l_wrist')] + 100)
  assert ost.numpy()[1, mpii.index('l_wrist')] == 2 - st[lsp.index('l_wrist')]
  with pytest.raises(ValueError, match='14 joints'):
    augment.lsp_to_mpii(tf.zeros([16, 2]), tf.zeros([16], tf.int32))


def test_lsp_flip_uses_lsp_pairs():
  kp = grid_keypoints()[:14]
  example = make_example(kp)
  config = augment.AugmentConfig(input_size=SIZE, flip_prob=1.0, rotation_deg=0,
                                 scale_min=1, scale_max=1, translate_frac=0)
  out = input_pipeline.preprocess_example(
      example, config, augment.sample_params(tf.constant([0, 0], tf.int64), config))
  unflipped = (kp - [47.5, 48.5]) / (WINDOW / SIZE) + (SIZE - 1) / 2
  names = keypoint_sets.LSP.keypoint_names
  r, l = names.index('r_wrist'), names.index('l_wrist')
  np.testing.assert_allclose(out['keypoints'].numpy()[r],
                             [SIZE - 1 - unflipped[l, 0], unflipped[l, 1]], atol=1e-3)
  head = names.index('head_top')
  np.testing.assert_allclose(out['keypoints'].numpy()[head],
                             [SIZE - 1 - unflipped[head, 0], unflipped[head, 1]], atol=1e-3)


def test_config_validation_and_from_mapping():
  with pytest.raises(ValueError, match='scale_min'):
    augment.AugmentConfig(scale_min=1.5, scale_max=1.0)
  with pytest.raises(ValueError, match='flip_prob'):
    augment.AugmentConfig(flip_prob=1.5)
  with pytest.raises(ValueError, match='joint_mapping'):
    augment.AugmentConfig(joint_mapping='mpii_to_lsp')
  with pytest.raises(ValueError, match="unknown keypoint set 'crowdpose'"):
    augment.AugmentConfig(keypoint_set='crowdpose')
  with pytest.raises(ValueError, match='input_size'):
    augment.AugmentConfig(input_size=0)
  cfg = augment.AugmentConfig.from_mapping({'input_size': 128, 'learning_rate': 0.1})
  assert cfg.input_size == 128 and cfg.rotation_deg == 30.0
  with pytest.raises(ValueError, match='cannot infer the keypoint set'):
    augment.resolve_keypoint_set(augment.AugmentConfig(), 17)


# --------------------------------------------------------------------------
# Placeholders of missing joints (docs/annotations.md) never enter the window.

MPII_SAMPLE_JSON = (SHARED_DATA
                    / 'mpii_sample' / 'annotations.json')
PLACEHOLDERS = ([-1.0, -1.0],  # MPII JSON conversions (joints_vis 0)
                [0.0, 0.0],  # valid.h5 and the project's stored examples
                [0.0, -26.1],  # LSPET joints.mat, flag 0 (outside the image)
                [np.nan, np.nan], [1e6, -1e6])


def numpy_keypoint_window(kp: np.ndarray, status: np.ndarray) -> tuple[np.ndarray, float]:
  """Centre and side of the fallback window, from the annotated joints only."""
  pts = kp[status > 0]
  lo, hi = pts.min(0), pts.max(0)
  return (lo + hi) / 2, augment.DEFAULT_BOX_SCALE * float(np.max(hi - lo))


def test_keypoint_box_ignores_placeholders_of_missing_joints():
  kp = grid_keypoints()
  status = np.full(16, 2)
  status[[0, 3, 15]] = 0  # corners of the grid: the box shrinks without them
  status[5] = 1  # occluded joints carry real locations and count
  want_centre, want_side = numpy_keypoint_window(kp, status)
  for placeholder in PLACEHOLDERS:
    held = kp.copy()
    held[status == 0] = placeholder
    centre, side = augment.person_window(
        CROP_TO_IMAGE, tf.constant([0.0, 0.0]), tf.constant(0.0), augment.DEFAULT_BOX_SCALE,
        tf.constant([STORED, STORED]), tf.constant(held, tf.float32), tf.constant(status))
    np.testing.assert_allclose(centre.numpy(), want_centre, atol=1e-4, err_msg=str(placeholder))
    assert float(side) == pytest.approx(want_side, rel=1e-6)


def test_real_mpii_json_placeholders_stay_out_of_window_and_output():
  if not MPII_SAMPLE_JSON.is_file():
    pytest.skip(f'real MPII sample not found at {MPII_SAMPLE_JSON}')
  records = [r for r in json.loads(MPII_SAMPLE_JSON.read_text()) if 0 in r['joints_vis']]
  assert len(records) == 2  # 051423444.jpg and 004645041.jpg: both ankles at [-1, -1]
  config = augment.AugmentConfig(input_size=SIZE, flip_prob=1.0)
  perm = keypoint_sets.MPII.flip_permutation
  for r in records:
    kp = np.array(r['joints'], np.float64) - 1.0
    status = np.array(r['joints_vis']) * keypoint_sets.VISIBLE
    want_centre, want_side = numpy_keypoint_window(kp, status)
    assert np.all(kp[status == 0] == -2.0)  # the placeholder, 0-based
    centre, side = augment.person_window(
        np.eye(2, 3), tf.constant([0.0, 0.0]), tf.constant(0.0), augment.DEFAULT_BOX_SCALE,
        tf.constant([720, 1280]), tf.constant(kp, tf.float32), tf.constant(status))
    np.testing.assert_allclose(centre.numpy(), want_centre, atol=1e-3)
    assert float(side) == pytest.approx(want_side, rel=1e-6)
    # Through a flipped crop, missing joints keep status 0 and coordinates 0.
    example = make_example()
    example.update(keypoints=tf.constant(kp, tf.float32), keypoint_status=tf.constant(status),
                   other_keypoints=tf.constant(kp[None], tf.float32),
                   other_keypoint_status=tf.constant(status[None]),
                   crop_to_image=tf.constant(np.eye(2, 3), tf.float32),
                   objpos=tf.constant(r['center'], tf.float32),
                   scale=tf.constant(r['scale'], tf.float32))
    out = input_pipeline.preprocess_example(
        example, config, augment.sample_params(tf.constant([1, 2], tf.int64), config))
    np.testing.assert_array_equal(out['keypoint_status'].numpy(), status[perm])
    missing = status[perm] == 0
    assert np.all(out['keypoints'].numpy()[missing] == 0)
    assert np.all(out['other_keypoints'].numpy()[0][missing] == 0)
