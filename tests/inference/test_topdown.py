"""rhpe_jax.inference.topdown: the grid-to-grid map of two crops step by step
by hand, the heat-map resampling against a plain bilinear sum, the batches
padded to a power of two, the box scales checked."""
import numpy as np
import pytest

from rhpe_jax.inference import crop
from rhpe_jax.inference import topdown


def test_grid_to_grid_affine_and_resampling_against_numpy():
  # Scale-1 crop: input x -> 2 x + 10 (image); scale-1.5 crop of the same centre.
  size, mid = 64, 31.5
  t1 = np.array([[2.0, 0, 10], [0, 2.0, 20]])
  k = 2.0 * 1.5
  centre = t1[:, :2] @ [mid, mid] + t1[:, 2]
  t2 = np.array([[k, 0, centre[0] - k * mid], [0, k, centre[1] - k * mid]])
  a = topdown.grid_to_grid_affine(t1[None], t2[None], 4)[0]
  # A grid-1 point -> input-1 -> image -> input-2 -> grid-2, step by step.
  g1 = np.array([3.0, 11.0])
  in1 = 4 * (g1 + 0.5) - 0.5
  image = t1[:, :2] @ in1 + t1[:, 2]
  in2 = (image - t2[:, 2]) / k
  g2 = (in2 + 0.5) / 4 - 0.5
  np.testing.assert_allclose(a[:, :2] @ g1 + a[:, 2], g2)

  rng = np.random.default_rng(2)
  maps = rng.uniform(0, 1, (1, 16, 16, 2)).astype(np.float32)
  out = crop.sample_bilinear(maps[0], a, 16, 16)[None]

  def bilinear(m, x, y):
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    value = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
      for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
        if 0 <= yy < m.shape[0] and 0 <= xx < m.shape[1]:
          value += wx * wy * m[yy, xx]
    return value

  for y in range(16):
    for x in range(16):
      sx, sy = a[:, :2] @ [x, y] + a[:, 2]
      for c in range(2):
        assert out[0, y, x, c] == pytest.approx(bilinear(maps[0, :, :, c], sx, sy), abs=1e-5)


def test_padded_size_and_scales():
  assert [topdown.padded_size(n, 8) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 8]
  assert topdown.padded_size(3, 3) == 3
  assert topdown.check_scales([0.9, 1.0, 1.1]) == (1.0, 0.9, 1.1)
  for bad in ([0.9], [1.0, -1.0], []):
    with pytest.raises(ValueError, match='scales'):
      topdown.check_scales(bad)


def test_heatmaps_pads_batches_and_merges_the_flip():
  """A fake network whose maps show where each crop is bright: the batches it
  sees are powers of two, and the flip average of a mirror-symmetric crop
  with the identity permutation is its own map."""
  seen = []

  def network(crops):
    seen.append(len(crops))
    return crops[:, ::4, ::4, :2].astype(np.float32)

  crops = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3)).astype(np.uint8)
  maps = topdown.heatmaps(network, crops, batch_size=4)
  assert seen == [4, 1] and maps.shape == (5, 4, 4, 2)
  np.testing.assert_array_equal(maps, crops[:, ::4, ::4, :2])
  symmetric = np.concatenate([crops[:, :, :8], crops[:, :, :8][:, :, ::-1]], axis=2)
  flipped = topdown.heatmaps(network, symmetric, batch_size=8, flip_permutation=[1, 0])
  mirrored = symmetric[:, ::4, ::4, :2].astype(np.float32)
  expected = 0.5 * (mirrored + symmetric[:, :, ::-1][:, ::4, ::4, :2][:, :, ::-1][..., ::-1])
  np.testing.assert_allclose(flipped, expected)
