"""Tests of rhpe_jax.codec.targets against a plain NumPy renderer written here.

The reference renders element by element and person by person in float64,
writing each oriented Gaussian through its covariance matrix (rotation by the
segment's angle), independently of the implementation's unit-axis form.
Maps with a pixel within `MARGIN` of a region's cut (in exponent units) are
left out of the comparison: there float32 and float64 may legitimately put the
pixel on different sides (and hence change the map's foreground fraction).
"""
from __future__ import annotations

import functools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import SHARED_DATA

from rhpe_jax.core import keypoint_sets
from rhpe_jax.codec.targets import Targets, render_batch, render_targets

DATA = SHARED_DATA
PAIRS = keypoint_sets.MPII.part_pairs
J = keypoint_sets.MPII.num_keypoints
MARGIN = 1e-4
MODES = ('include', 'ignore', 'exclude')


# ----------------------------------------------------------------------------
# Independent reference.

def _elements(kp, st, pairs, sigma, psa, psx, min_sigma):
  """[(centre, covariance, status)] of one person: keypoints, then parts."""
  out = []
  for j in range(len(st)):
    out.append((kp[j], sigma ** 2 * np.eye(2), int(st[j])))
  for a, b in pairs:
    if st[a] > 0 and st[b] > 0:
      d = kp[b] - kp[a]
      length = math.hypot(d[0], d[1])
      angle = math.atan2(d[1], d[0])
      rot = np.array([[math.cos(angle), -math.sin(angle)],
                      [math.sin(angle), math.cos(angle)]])
      s_along = max(psa * length, min_sigma)
      s_across = max(psx * length, min_sigma)
      cov = rot @ np.diag([s_along ** 2, s_across ** 2]) @ rot.T
      part_status = 1 if (st[a] == 1 or st[b] == 1) else 2
      out.append(((kp[a] + kp[b]) / 2, cov, part_status))
    else:
      out.append((None, None, 0))
  return out


def _exponent(h, w, centre, cov):
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  d = np.stack([xs - centre[0], ys - centre[1]], axis=-1)
  inv = np.linalg.inv(cov)
  return 0.5 * np.einsum('hwi,ij,hwj->hw', d, inv, d)


def reference(kp, st, others, ost, h, w, pairs, mode, sigma=1.3, peak=12.0,
              psa=0.15, psx=0.08, min_sigma=0.5, cutoff=1e-18):
  """Returns (keypoint_maps, keypoint_weights, part_maps, part_weights, margins).

  margins (C,): per map, the smallest |exponent - cut| over its pixels and people.
  """
  kp = np.asarray(kp, np.float32).astype(np.float64)
  others = np.asarray(others, np.float32).astype(np.float64).reshape(-1, len(st), 2)
  ost = np.asarray(ost).reshape(-1, len(st))
  cut = -math.log(cutoff)
  active = _elements(kp, st, pairs, sigma, psa, psx, min_sigma)
  other_elems = [_elements(others[p], ost[p], pairs, sigma, psa, psx, min_sigma)
                 for p in range(len(ost))]
  num = len(active)
  target = np.zeros((h, w, num))
  weight = np.zeros((h, w, num))
  margins = np.full(num, np.inf)
  for c, (centre, cov, status) in enumerate(active):
    region = np.zeros((h, w), bool)
    protect = np.zeros((h, w), bool)
    if status > 0:
      e = _exponent(h, w, centre, cov)
      margins[c] = min(margins[c], np.abs(e - cut).min())
      region = e <= cut
      f = region.sum() / (h * w)
      occluded = status == 1
      if occluded and mode == 'ignore':
        w_in, w_out = 0.0, (1.0 if f > 0.5 else f)
      elif f > 0.5:
        w_in, w_out = 1.0, 1.0
      else:
        w_in, w_out = 1.0 - f, f
      weight[..., c] = np.where(region, w_in, w_out)
      if not occluded or mode == 'include':
        target[..., c] = np.where(region, peak * np.exp(-e), 0.0)
      if not (occluded and mode == 'ignore'):
        protect = region
    for elems in other_elems:
      o_centre, o_cov, o_status = elems[c]
      if o_status > 0:
        e = _exponent(h, w, o_centre, o_cov)
        margins[c] = min(margins[c], np.abs(e - cut).min())
        weight[..., c][(e <= cut) & ~protect] = 0.0
  nj = len(st)
  return (target[..., :nj], weight[..., :nj], target[..., nj:], weight[..., nj:],
          margins)


def _random_person(rng, h, w):
  if rng.random() < 0.5:  # anywhere, parts of any length
    kp = rng.uniform([-4, -4], [w + 4, h + 4], size=(J, 2))
  else:  # a compact person
    centre = rng.uniform([0, 0], [w, h])
    kp = centre + rng.normal(scale=min(h, w) / 5, size=(J, 2))
  st = rng.integers(0, 3, size=J)
  return kp.astype(np.float32), st.astype(np.int32)


def _random_case(rng, h, w, num_others, mode):
  kp, st = _random_person(rng, h, w)
  people = [_random_person(rng, h, w) for _ in range(num_others)]
  others = np.array([p[0] for p in people], np.float32).reshape(num_others, J, 2)
  ost = np.array([p[1] for p in people], np.int32).reshape(num_others, J)
  return kp, st, others, ost, reference(kp, st, others, ost, h, w, PAIRS, mode)


def _assert_matches(got: Targets, ref, atol=1e-4, min_checked=0.8):
  """Compares every map clear of the cut; at least `min_checked` of them."""
  *ref, margins = ref
  clear = margins > MARGIN
  assert clear.mean() >= min_checked, f'only {clear.sum()} of {clear.size} maps clear of the cut'
  num_keypoints = ref[0].shape[-1]
  for name, g, r in zip(Targets._fields, got, ref):
    g = np.asarray(g)
    assert g.dtype == np.float32, name
    assert g.shape == r.shape, (name, g.shape, r.shape)
    assert np.all(np.isfinite(g)), name
    keep = clear[:num_keypoints] if name.startswith('keypoint') else clear[num_keypoints:]
    g, r = g[..., keep], r[..., keep]
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=atol, err_msg=name)
    # Region masks must agree exactly.
    np.testing.assert_array_equal(g > 0, r > 0, err_msg=name)


# ----------------------------------------------------------------------------
# Random cases.

@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('grid', [(16, 20), (62, 62)])
def test_random_cases_match_reference(mode, grid):
  h, w = grid
  rng = np.random.default_rng(100 * MODES.index(mode) + grid[0])
  for num_others in (0, 3, 3):
    kp, st, others, ost, ref = _random_case(rng, h, w, num_others, mode)
    ost[2:] = 0  # a padding row (and fewer shapes to compile)
    ref = reference(kp, st, others, ost, h, w, PAIRS, mode)
    got = render_targets(kp, st, grid_shape=grid, part_pairs=PAIRS, occlusion_mode=mode,
                         other_keypoints=others, other_status=ost)
    _assert_matches(got, ref)


def test_padding_rows_with_garbage_are_ignored():
  rng = np.random.default_rng(3)
  kp, st, others, ost, ref = _random_case(rng, 16, 20, 2, 'ignore')
  pad_kp = np.full((3, J, 2), np.nan, np.float32)
  got = render_targets(kp, st, grid_shape=(16, 20), part_pairs=PAIRS,
                       occlusion_mode='ignore',
                       other_keypoints=np.concatenate([others, pad_kp]),
                       other_status=np.concatenate([ost, np.zeros((3, J), np.int32)]))
  _assert_matches(got, ref)


def test_no_parts_gives_empty_part_maps():
  rng = np.random.default_rng(4)
  kp, st = _random_person(rng, 16, 20)
  got = render_targets(kp, st, grid_shape=(16, 20), part_pairs=())
  ref = reference(kp, st, np.zeros((0, J, 2)), np.zeros((0, J)), 16, 20, (), 'include')
  assert got.part_maps.shape == (16, 20, 0) and got.part_weights.shape == (16, 20, 0)
  _assert_matches(got, ref)


# ----------------------------------------------------------------------------
# Hand-checked edge cases.

def test_single_keypoint_by_hand():
  kp = np.zeros((1, 2), np.float32) + [15.3, 14.6]
  got = render_targets(kp, np.array([2]), grid_shape=(30, 32), part_pairs=())
  ys, xs = np.mgrid[0:30, 0:32]
  d2 = (xs - 15.3) ** 2 + (ys - 14.6) ** 2
  # exp(-d2 / (2 * 1.3^2)) >= 1e-18  <=>  d2 <= 2 * 1.69 * 18 * ln(10), radius 11.8.
  region = d2 <= 3.38 * 18 * math.log(10)
  f = region.sum() / (30 * 32)
  assert 0.4 < f < 0.5
  np.testing.assert_allclose(got.keypoint_maps[..., 0],
                             np.where(region, 12 * np.exp(-d2 / 3.38), 0), atol=1e-5)
  np.testing.assert_allclose(got.keypoint_weights[..., 0], np.where(region, 1 - f, f),
                             atol=1e-6)
  assert float(got.keypoint_maps.max()) == pytest.approx(
      12 * math.exp(-(0.09 + 0.16) / 3.38), rel=1e-6)


def test_coincident_part_ends_give_small_round_blob():
  kp = np.zeros((J, 2), np.float32) + [8.0, 7.0]
  kp[1] = kp[0] = [6.25, 5.5]
  st = np.full(J, 2, np.int32)
  got = render_targets(kp, st, grid_shape=(16, 20), part_pairs=PAIRS)
  assert all(np.all(np.isfinite(np.asarray(a))) for a in got)
  ys, xs = np.mgrid[0:16, 0:20]
  d2 = (xs - 6.25) ** 2 + (ys - 5.5) ** 2
  expected = np.where(d2 / (2 * 0.25) <= 18 * math.log(10), 12 * np.exp(-d2 / 0.5), 0)
  np.testing.assert_allclose(got.part_maps[..., 0], expected, atol=1e-5)
  # Parts between the many coincident joints at (8, 7) are blobs there too.
  k = PAIRS.index((13, 14))
  assert float(got.part_maps[7, 8, k]) == pytest.approx(12.0)


def test_keypoints_outside_the_grid():
  kp = np.array([[-100.0, -100.0], [-2.0, 5.0], [5.0, 5.0]], np.float32)
  st = np.array([2, 2, 2])
  got = render_targets(kp, st, grid_shape=(16, 20), part_pairs=((0, 2), (1, 2)))
  assert all(np.all(np.isfinite(np.asarray(a))) for a in got)
  # Far away: n = 0, so nothing to learn from.
  assert np.all(np.asarray(got.keypoint_maps[..., 0]) == 0)
  assert np.all(np.asarray(got.keypoint_weights[..., 0]) == 0)
  # Partly inside: n counts only pixels inside the grid.
  ref = reference(kp, st, np.zeros((0, 3, 2)), np.zeros((0, 3)), 16, 20,
                  ((0, 2), (1, 2)), 'include')
  assert np.all(ref[-1] > MARGIN)
  _assert_matches(got, ref)
  inside = np.asarray(got.keypoint_maps[..., 1]) > 0
  assert inside.sum() > 0
  assert float(got.keypoint_weights[0, 19, 1]) == pytest.approx(inside.sum() / 320, rel=1e-6)


@pytest.mark.parametrize('mode', MODES)
def test_all_missing(mode):
  rng = np.random.default_rng(5)
  kp = np.full((J, 2), np.nan, np.float32)
  others, ost = _random_person(rng, 16, 20)
  got = render_targets(kp, np.zeros(J, np.int32), grid_shape=(16, 20), part_pairs=PAIRS,
                       occlusion_mode=mode, other_keypoints=others[None],
                       other_status=ost[None])
  for a in got:
    a = np.asarray(a)
    assert np.all(a == 0) and np.all(np.isfinite(a))


def test_missing_keypoint_contributes_nothing_even_if_inside():
  kp = np.array([[5.0, 5.0], [9.0, 9.0]], np.float32)
  got = render_targets(kp, np.array([0, 2]), grid_shape=(16, 20), part_pairs=((0, 1),))
  assert np.all(np.asarray(got.keypoint_maps[..., 0]) == 0)
  assert np.all(np.asarray(got.keypoint_weights[..., 0]) == 0)
  assert np.all(np.asarray(got.part_weights) == 0)  # a part needs both ends
  assert float(got.keypoint_maps[9, 9, 1]) == pytest.approx(12.0)


@pytest.mark.parametrize('mode', MODES)
def test_large_region_is_unweighted(mode):
  # sigma 5 on an 8x8 grid: every pixel is inside the region (f = 1 > 0.5).
  kp = np.array([[3.5, 3.5], [3.5, 3.5]], np.float32)
  st = np.array([2, 1])
  got = render_targets(kp, st, grid_shape=(8, 8), part_pairs=(), occlusion_mode=mode,
                       sigma=5.0)
  w = np.asarray(got.keypoint_weights)
  t = np.asarray(got.keypoint_maps)
  np.testing.assert_array_equal(w[..., 0], 1.0)
  np.testing.assert_allclose(t[0, 0, 0], 12 * math.exp(-2 * 3.5 ** 2 / 50), rtol=1e-6)
  np.testing.assert_array_equal(w[..., 1], 0.0 if mode == 'ignore' else 1.0)
  assert np.all(t[..., 1] > 0) if mode == 'include' else np.all(t[..., 1] == 0)


def test_f_just_over_half_on_a_strip():
  # A wide keypoint region that covers part of a strip: check the switch at 0.5.
  kp = np.array([[0.0, 0.0]], np.float32)
  for sigma in (1.3, 2.0, 2.1, 2.2, 2.3, 3.0):  # n = 12, 19, 20, 21, 21, 28
    got = render_targets(kp, np.array([2]), grid_shape=(1, 40), part_pairs=(), sigma=sigma)
    n = int(np.sum(np.arange(40) ** 2 / (2 * sigma ** 2) <= 18 * math.log(10)))
    w = np.asarray(got.keypoint_weights[0, :, 0])
    if n / 40 > 0.5:
      np.testing.assert_array_equal(w, 1.0)
    else:
      np.testing.assert_allclose(w[:n], 1 - n / 40, rtol=1e-6)
      np.testing.assert_allclose(w[n:], n / 40, rtol=1e-6)


def test_other_person_overlap_active_wins():
  h, w = 40, 60
  kp = np.array([[16.0, 20.0], [44.0, 20.0]], np.float32)
  other = np.array([[[22.0, 20.0], [44.0, 20.0]]], np.float32)
  st = np.array([2, 2])
  ost = np.array([[2, 1]])
  alone = render_targets(kp, st, grid_shape=(h, w), part_pairs=((0, 1),))
  got = render_targets(kp, st, grid_shape=(h, w), part_pairs=((0, 1),),
                       other_keypoints=other, other_status=ost)
  ys, xs = np.mgrid[0:h, 0:w]
  cut = 18 * math.log(10)
  r_active = ((xs - 16) ** 2 + (ys - 20) ** 2) / 3.38 <= cut
  r_other = ((xs - 22) ** 2 + (ys - 20) ** 2) / 3.38 <= cut
  f = r_active.sum() / (h * w)
  assert f < 0.5 and np.any(r_other & ~r_active)
  expected = np.where(r_active, 1 - f, np.where(r_other, 0.0, f))
  np.testing.assert_allclose(got.keypoint_weights[..., 0], expected, atol=1e-6)
  # Other people never change the targets.
  for a, b in zip(got[::2], alone[::2]):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Identical (occluded) second keypoint: active region wins, weights unchanged.
  np.testing.assert_array_equal(np.asarray(got.keypoint_weights[..., 1]),
                                np.asarray(alone.keypoint_weights[..., 1]))


def test_other_person_blocks_ignored_active_region_stays_zero():
  kp = np.array([[6.0, 8.0]], np.float32)
  got = render_targets(kp, np.array([1]), grid_shape=(16, 20), part_pairs=(),
                       occlusion_mode='ignore',
                       other_keypoints=np.array([[[13.0, 8.0]]], np.float32),
                       other_status=np.array([[2]]))
  ref = reference(kp, [1], [[[13.0, 8.0]]], [[2]], 16, 20, (), 'ignore')
  _assert_matches(got, ref)
  wts = np.asarray(got.keypoint_weights[8, :, 0])
  assert wts[6] == 0 and wts[13] == 0 and np.all(np.asarray(got.keypoint_maps) == 0)


def test_sub_pixel_centre_is_not_rounded():
  got = render_targets(np.array([[5.4, 5.0]], np.float32), np.array([2]),
                       grid_shape=(12, 12), part_pairs=())
  m = np.asarray(got.keypoint_maps[5, :, 0])
  assert m[5] > m[6] > m[4]  # a rounded centre would make m[4] == m[6]


# ----------------------------------------------------------------------------
# Real data: an MPII person on the 62x62 grid.

def test_real_mpii_person_matches_reference():
  path = DATA / 'mpii_sample' / 'annotations.json'
  if not path.exists():
    pytest.skip(f'shared test data not found at {path}')
  checked = 0
  for record in json.loads(path.read_text()):
    joints = np.array(record['joints'], np.float64) - 1  # 1-based -> 0-based
    vis = np.array(record['joints_vis'])
    centre = np.array(record['center'], np.float64) - 1
    side = 200 * record['scale']  # person-centred square -> 62x62 grid
    kp = ((joints - centre + side / 2) / side * 62 - 0.5).astype(np.float32)
    st = np.where(vis > 0, 2, 0).astype(np.int32)
    st[[3, 9]] = np.minimum(st[[3, 9]], 1)  # some occluded, to exercise the modes
    for mode in MODES:
      ref = reference(kp, st, np.zeros((0, J, 2)), np.zeros((0, J)), 62, 62, PAIRS, mode)
      got = render_targets(kp, st, grid_shape=(62, 62), part_pairs=PAIRS,
                           occlusion_mode=mode)
      _assert_matches(got, ref)
      checked += 1
  assert checked == 15


def test_real_mpii_placeholders_change_nothing():
  # The two sample persons with missing ankles (stored as [-1, -1] by the JSON
  # conversion), as the active person and as another person: moving the
  # placeholders anywhere (or to NaN) leaves every map and weight unchanged,
  # and another person's missing joints block no pixel.
  path = DATA / 'mpii_sample' / 'annotations.json'
  if not path.exists():
    pytest.skip(f'shared test data not found at {path}')
  records = [r for r in json.loads(path.read_text()) if 0 in r['joints_vis']]
  assert len(records) == 2

  def grid(record):  # person-centred 62 x 62 grid, as in the test above
    joints = np.array(record['joints'], np.float64) - 1
    centre = np.array(record['center'], np.float64) - 1
    side = 200 * record['scale']
    kp = ((joints - centre + side / 2) / side * 62 - 0.5).astype(np.float32)
    return kp, np.array(record['joints_vis'], np.int32) * keypoint_sets.VISIBLE

  (kp, st), (okp, ost) = grid(records[0]), grid(records[1])
  assert np.any(st == 0) and np.any(ost == 0)
  kwargs = dict(grid_shape=(62, 62), part_pairs=PAIRS, occlusion_mode='exclude')
  base = render_targets(kp, st, other_keypoints=okp[None], other_status=ost[None], **kwargs)
  for placeholder in ([0.0, 0.0], [31.0, 31.0], [np.nan, np.nan]):
    moved_kp, moved_okp = kp.copy(), okp.copy()
    moved_kp[st == 0] = placeholder
    moved_okp[ost == 0] = placeholder
    got = render_targets(moved_kp, st, other_keypoints=moved_okp[None],
                         other_status=ost[None], **kwargs)
    for a, b in zip(got, base):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A person whose every joint is missing (placeholders in the middle of the
  # grid) is no person: the weights are those without other people.
  alone = render_targets(kp, st, **kwargs)
  nobody = render_targets(kp, st, other_keypoints=np.full((1, J, 2), 31.0, np.float32),
                          other_status=np.zeros((1, J), np.int32), **kwargs)
  for a, b in zip(nobody, alone):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------
# jit, vmap and errors.

def test_jit_and_render_batch_match_single_calls():
  rng = np.random.default_rng(7)
  cases = [_random_case(rng, 16, 20, 3, 'exclude') for _ in range(3)]
  kwargs = dict(grid_shape=(16, 20), part_pairs=PAIRS, occlusion_mode='exclude')
  singles = [render_targets(c[0], c[1], other_keypoints=c[2], other_status=c[3], **kwargs)
             for c in cases]
  jitted = jax.jit(functools.partial(render_targets, **kwargs))
  batch = render_batch(np.stack([c[0] for c in cases]), np.stack([c[1] for c in cases]),
                       other_keypoints=np.stack([c[2] for c in cases]),
                       other_status=np.stack([c[3] for c in cases]), **kwargs)
  assert batch.keypoint_maps.shape == (3, 16, 20, J)
  assert batch.part_weights.shape == (3, 16, 20, len(PAIRS))
  for i, (c, single) in enumerate(zip(cases, singles)):
    _assert_matches(single, c[4])
    via_jit = jitted(c[0], c[1], other_keypoints=c[2], other_status=c[3])
    for a, b, d in zip(single, via_jit, batch):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6)
      np.testing.assert_allclose(np.asarray(d[i]), np.asarray(a), rtol=1e-6, atol=1e-6)


def test_render_batch_without_other_people():
  rng = np.random.default_rng(8)
  kp, st = zip(*[_random_person(rng, 16, 20) for _ in range(2)])
  batch = render_batch(np.stack(kp), np.stack(st), grid_shape=(16, 20), part_pairs=PAIRS)
  for i in range(2):
    single = render_targets(kp[i], st[i], grid_shape=(16, 20), part_pairs=PAIRS)
    for a, b in zip(single, batch):
      np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-6, atol=1e-6)


def test_bad_input_raises_clear_errors():
  kp = np.zeros((J, 2), np.float32)
  st = np.full(J, 2)
  with pytest.raises(ValueError, match="'occluded'"):
    render_targets(kp, st, grid_shape=(8, 8), part_pairs=PAIRS, occlusion_mode='occluded')
  with pytest.raises(ValueError, match='keypoints'):
    render_targets(kp[:, :1], st, grid_shape=(8, 8), part_pairs=PAIRS)
  with pytest.raises(ValueError, match='status'):
    render_targets(kp, st[:3], grid_shape=(8, 8), part_pairs=PAIRS)
  with pytest.raises(ValueError, match='out of range'):
    render_targets(kp, st, grid_shape=(8, 8), part_pairs=((0, J),))
  with pytest.raises(ValueError, match='together'):
    render_targets(kp, st, grid_shape=(8, 8), part_pairs=PAIRS, other_keypoints=kp[None])
  with pytest.raises(ValueError, match='other_status'):
    render_targets(kp, st, grid_shape=(8, 8), part_pairs=PAIRS, other_keypoints=kp[None],
                   other_status=st[None, :4])
  with pytest.raises(ValueError, match='grid_shape'):
    render_targets(kp, st, grid_shape=(8,), part_pairs=PAIRS)
  with pytest.raises(ValueError, match='sigma'):
    render_targets(kp, st, grid_shape=(8, 8), part_pairs=PAIRS, sigma=0.0)
  with pytest.raises(ValueError, match='tail_cutoff'):
    render_targets(kp, st, grid_shape=(8, 8), part_pairs=PAIRS, tail_cutoff=0.0)


def test_no_nan_even_in_intermediates():
  # Op by op with jax_debug_nans: coincident part ends and NaN coordinates of
  # missing joints (active and padding) must not create a NaN anywhere.
  kp = np.full((J, 2), 7.0, np.float32)
  kp[0] = np.nan
  st = np.full(J, 2, np.int32)
  st[0] = 0
  others = np.full((2, J, 2), np.nan, np.float32)
  others[0, 1:] = 9.0
  ost = np.zeros((2, J), np.int32)
  ost[0, 1:] = 1
  with jax.disable_jit(), jax.debug_nans(True):
    got = render_targets(kp, st, grid_shape=(16, 20), part_pairs=PAIRS,
                         other_keypoints=others, other_status=ost)
  assert all(np.all(np.isfinite(np.asarray(a))) for a in got)
  assert float(got.part_maps[7, 7, PAIRS.index((13, 14))]) == pytest.approx(12.0)
