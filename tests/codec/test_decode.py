"""Tests of rhpe_jax.codec.decode against NumPy renderings and hand values."""
import jax
import numpy as np
import pytest

from rhpe_jax.codec import decode
from rhpe_jax.core import keypoint_sets

SIGMA = 1.3  # the project's target Gaussian (output pixels)
PEAK = 12.0


def render_gaussian(height, width, centre, sigma=SIGMA, peak=PEAK):
  """A Gaussian heatmap at a sub-pixel centre, sampled at pixel centres."""
  ys, xs = np.mgrid[0:height, 0:width]
  return peak * np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2)
                       / (2 * sigma ** 2))


def stack_maps(centres, height=62, width=62, **kwargs):
  return np.stack([render_gaussian(height, width, c, **kwargs) for c in centres],
                  axis=-1).astype(np.float32)


def test_subpixel_gaussian_centres_within_0_01_px():
  # The log-parabola fit is exact for a Gaussian; float32 rounding leaves
  # far less than the stated bound of 0.01 px.
  rng = np.random.default_rng(0)
  centres = rng.uniform(2.0, 59.0, size=(3, 16, 2))
  maps = np.stack([stack_maps(c) for c in centres])  # (3, 62, 62, 16)
  coords, confidence = decode.heatmaps_to_keypoints(maps)
  assert coords.shape == (3, 16, 2) and confidence.shape == (3, 16)
  np.testing.assert_allclose(np.asarray(coords), centres, atol=0.01)
  np.testing.assert_allclose(np.asarray(confidence), maps.max(axis=(1, 2)), rtol=0)


def test_relu_cut_peak_uses_value_fit_within_0_1_px():
  # Neighbours cut to 0 by a ReLU: the log fit is impossible, the value fit
  # must still land within 0.1 px (checked on 50 random centres).
  rng = np.random.default_rng(1)
  centres = rng.uniform(2.0, 59.0, size=(50, 2))
  maps = np.maximum(stack_maps(centres) - 6.0, 0.0)
  coords, _ = decode.heatmaps_to_keypoints(maps)
  assert np.all(np.isfinite(np.asarray(coords)))
  np.testing.assert_allclose(np.asarray(coords), centres, atol=0.1)


def test_integer_centres_are_exact():
  centres = np.array([[10.0, 20.0], [0.0, 5.0], [61.0, 61.0], [30.0, 0.0]])
  coords, _ = decode.heatmaps_to_keypoints(stack_maps(centres))
  np.testing.assert_array_equal(np.asarray(coords), centres)


def test_value_parabola_hand_value():
  # Row ... 0, 0, 4, 3, 0 ...: a zero neighbour rules out the log fit; the
  # parabola through (-1, 0), (0, 4), (1, 3) peaks at
  # 0.5 * (0 - 3) / (0 - 8 + 3) = 0.3 right of the arg-max.
  maps = np.zeros((3, 7, 1), np.float32)
  maps[1, 2:5, 0] = [0.0, 4.0, 3.0]
  coords, confidence = decode.heatmaps_to_keypoints(maps)
  np.testing.assert_allclose(np.asarray(coords)[0], [3.3, 1.0], atol=1e-6)
  assert float(confidence[0]) == 4.0


def test_log_parabola_hand_value():
  # Values 1, e^2, e: log values 0, 2, 1 -> offset 0.5 * (0 - 1) / (0 - 4 + 1) = 1/6.
  maps = np.ones((3, 3, 1), np.float64)
  maps[1, :, 0] = [1.0, np.e ** 2, np.e]
  maps[0, 1, 0] = maps[2, 1, 0] = 1.0
  coords, _ = decode.heatmaps_to_keypoints(maps.astype(np.float32))
  np.testing.assert_allclose(np.asarray(coords)[0], [1 + 1 / 6, 1.0], atol=1e-5)


def test_flat_border_and_constant_maps_give_no_nan():
  maps = np.zeros((5, 6, 3), np.float32)
  maps[:, :, 1] = 7.0  # constant: arg-max is pixel 0
  maps[2, 5, 2] = 1.0  # isolated peak on the right border
  coords, confidence = decode.heatmaps_to_keypoints(maps)
  coords = np.asarray(coords)
  assert np.all(np.isfinite(coords))
  np.testing.assert_array_equal(coords, [[0.0, 0.0], [0.0, 0.0], [5.0, 2.0]])
  np.testing.assert_array_equal(np.asarray(confidence), [0.0, 7.0, 1.0])


def test_two_pixel_plateau_resolves_to_its_middle():
  # Equal maxima at x = 1 and 2 (arg-max takes 1): the parabola through
  # (0, 0), (1, 5), (2, 5) peaks at 1.5, the largest offset allowed.
  maps = np.zeros((3, 5, 1), np.float32)
  maps[1, 1:4, 0] = [5.0, 5.0, 1.0]
  coords, _ = decode.heatmaps_to_keypoints(maps)
  np.testing.assert_allclose(np.asarray(coords)[0], [1.5, 1.0], atol=1e-6)


def test_jit_and_vmap_match_eager():
  rng = np.random.default_rng(2)
  maps = np.stack([stack_maps(rng.uniform(2, 29, (4, 2)), 32, 32) for _ in range(3)])
  eager = decode.heatmaps_to_keypoints(maps)
  jitted = jax.jit(decode.heatmaps_to_keypoints)(maps)
  mapped = jax.vmap(decode.heatmaps_to_keypoints)(maps)
  for a, b in ((eager, jitted), (eager, mapped)):
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[0]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(a[1]), np.asarray(b[1]), atol=1e-6)


def test_bad_heatmap_shape_raises():
  with pytest.raises(ValueError, match='heatmaps must have shape'):
    decode.heatmaps_to_keypoints(np.zeros((4, 4)))


def reference_flip(maps, perm):
  """Loop version: out[y, x, j] = maps[y, W - 1 - x, perm[j]]."""
  out = np.empty_like(maps)
  width = maps.shape[-2]
  for x in range(width):
    for j in range(maps.shape[-1]):
      out[..., :, x, j] = maps[..., :, width - 1 - x, perm[j]]
  return out


def test_flip_heatmaps_matches_loop_reference():
  rng = np.random.default_rng(3)
  maps = rng.normal(size=(2, 5, 7, 16)).astype(np.float32)
  perm = keypoint_sets.MPII.flip_permutation
  np.testing.assert_array_equal(
      np.asarray(decode.flip_heatmaps(maps, perm)), reference_flip(maps, perm))


def test_flipped_keypoints_mirror_and_swap():
  # A right ankle at x = 10 in a width-62 map is a left ankle at 61 - 10 = 51
  # in the mirrored map.
  centres = np.array([[10.3, 20.0]] + [[30.0, 30.0]] * 15)
  maps = stack_maps(centres)
  coords, _ = decode.heatmaps_to_keypoints(
      decode.flip_heatmaps(maps, keypoint_sets.MPII.flip_permutation))
  np.testing.assert_allclose(np.asarray(coords)[5], [61 - 10.3, 20.0], atol=0.01)


def test_merge_flipped_symmetric_case():
  # A pose mirrored about the grid centre: the network's (ideal) output for
  # the mirrored input equals the mirrored output, so merging returns the
  # original maps exactly, and decoding recovers the pose.
  perm = keypoint_sets.MPII.flip_permutation
  rng = np.random.default_rng(4)
  centres = rng.uniform(3, 58, (16, 2))
  maps = stack_maps(centres)
  mirrored_centres = np.stack([61 - centres[perm, 0], centres[perm, 1]], -1)
  mirrored_output = stack_maps(mirrored_centres)
  merged = np.asarray(decode.merge_flipped(maps, mirrored_output, perm))
  np.testing.assert_allclose(merged, maps, atol=1e-5)
  coords, _ = decode.heatmaps_to_keypoints(merged)
  np.testing.assert_allclose(np.asarray(coords), centres, atol=0.01)
  # A non-matching second prediction is averaged in: half of each.
  merged_zero = np.asarray(decode.merge_flipped(maps, np.zeros_like(maps), perm))
  np.testing.assert_allclose(merged_zero, 0.5 * maps, atol=1e-6)


def test_input_mirror_aligns_with_grid_mirror():
  x_in = np.linspace(-0.5, 247.5, 97)
  lhs = np.asarray(decode.input_to_grid(248 - 1 - x_in, 4))
  rhs = 62 - 1 - np.asarray(decode.input_to_grid(x_in, 4))
  np.testing.assert_allclose(lhs, rhs, atol=1e-5)


def test_flip_bad_permutation_raises():
  with pytest.raises(ValueError, match='permutation'):
    decode.flip_heatmaps(np.zeros((4, 4, 3)), [0, 0, 1])


def test_transform_points_hand_values():
  # Rotate by 90 degrees counter-clockwise, then translate by (10, 20):
  # (x, y) -> (-y + 10, x + 20).
  affine = np.array([[0.0, -1.0, 10.0], [1.0, 0.0, 20.0]])
  points = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
  expected = np.array([[10.0, 21.0], [8.0, 20.0], [6.0, 23.0]])
  np.testing.assert_allclose(np.asarray(decode.transform_points(points, affine)),
                             expected, atol=1e-6)


def test_transform_points_batched_affine():
  rng = np.random.default_rng(5)
  affines = rng.normal(size=(4, 2, 3))
  points = rng.normal(size=(4, 16, 2))
  expected = np.einsum('bij,bkj->bki', affines[:, :, :2], points) + affines[:, None, :, 2]
  np.testing.assert_allclose(
      np.asarray(decode.transform_points(points, affines)), expected, rtol=1e-5, atol=1e-5)
  # One affine for a batch of point sets.
  expected_one = points @ affines[0, :, :2].T + affines[0, :, 2]
  np.testing.assert_allclose(
      np.asarray(decode.transform_points(points, affines[0])), expected_one,
      rtol=1e-5, atol=1e-5)


def test_invert_affine_round_trip_and_hand_value():
  # Scale by 2 and shift by (4, -6): inverse scales by 1/2 and shifts by (-2, 3).
  inverse = np.asarray(decode.invert_affine(np.array([[2.0, 0, 4], [0, 2.0, -6]])))
  np.testing.assert_allclose(inverse, [[0.5, 0, -2], [0, 0.5, 3]], atol=1e-6)
  rng = np.random.default_rng(6)
  affines = rng.normal(size=(5, 2, 3)) + np.array([[3.0, 0, 0], [0, 3.0, 0]])
  points = rng.uniform(-100, 100, size=(5, 16, 2))
  back = decode.transform_points(
      decode.transform_points(points, affines), decode.invert_affine(affines))
  np.testing.assert_allclose(np.asarray(back), points, atol=1e-3)


def test_bad_affine_shape_raises():
  with pytest.raises(ValueError, match='affine'):
    decode.transform_points(np.zeros((16, 2)), np.eye(3))


def test_grid_input_hand_values_and_round_trip():
  # Output pixel 0 covers input pixels 0..3, centre 1.5; pixel 61 covers 244..247.
  np.testing.assert_allclose(np.asarray(decode.grid_to_input(np.array([0.0, 61.0]), 4)),
                             [1.5, 245.5])
  # The image edges map onto each other: input -0.5 <-> grid -0.5, 247.5 <-> 61.5.
  np.testing.assert_allclose(np.asarray(decode.input_to_grid(np.array([-0.5, 247.5]), 4)),
                             [-0.5, 61.5])
  np.testing.assert_allclose(np.asarray(decode.input_to_grid(np.array([1.5]), stride=2)),
                             [0.5])
  points = np.random.default_rng(7).uniform(-5, 70, size=(3, 16, 2))
  np.testing.assert_allclose(
      np.asarray(decode.input_to_grid(decode.grid_to_input(points, 4), 4)), points, atol=1e-5)
