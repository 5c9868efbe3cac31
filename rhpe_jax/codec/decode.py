"""From heatmaps to keypoints, and between the frames a keypoint passes through.

Every function runs on numpy arrays in numpy (a prediction without JAX,
rhpe_jax.inference.topdown) and on anything else in `jax.numpy`, so it runs
under `jit` and `vmap` too; JAX is imported only then. Coordinates follow
docs/conventions.md: 0-based pixel centres, `[x, y]` order, `(2, 3)` affines
acting on `[x, y, 1]`.

Test-time flipping: mirror the input image as `x -> W_in - 1 - x` (a plain
left-right flip of the pixel array), run the network, and pass its heatmaps
through `flip_heatmaps` (or `merge_flipped`). The output grid mirrors as
`x -> W_out - 1 - x`; with the network's grid of stride s
(rhpe_jax.model.STRIDE) and `W_in = s * W_out` (248 -> 62) the two mirrors agree exactly, because
`x_out = (x_in + 0.5) / s - 0.5` maps `W_in - 1 - x_in` to `W_out - 1 - x_out`.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

ArrayLike = Union[np.ndarray, Sequence, Any]  # Any: a jax.Array

def _namespace(*arrays: Any) -> Any:
  """numpy for numpy arrays, numbers and sequences of them; jax.numpy otherwise."""
  if all(isinstance(a, (np.ndarray, np.generic, int, float, list, tuple)) for a in arrays):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


# Below this curvature (in heatmap units) the peak is treated as flat and the
# arg-max is not refined.
_MIN_CURVATURE = 1e-12


def _parabola_offset(left: Any, centre: Any,
                     right: Any) -> Any:
  """Vertex of the parabola through (-1, left), (0, centre), (1, right).

  Returns 0 where the three points are not a proper maximum (flat or convex),
  and clamps to [-0.5, 0.5]: a true maximum at the arg-max pixel cannot lie
  further than half a pixel away.
  """
  xp = _namespace(left)
  curvature = left - 2.0 * centre + right
  ok = curvature < -_MIN_CURVATURE
  safe = xp.where(ok, curvature, -1.0)
  offset = xp.where(ok, 0.5 * (left - right) / safe, 0.0)
  return xp.clip(offset, -0.5, 0.5)


def _refine(left: Any, centre: Any, right: Any,
            inside: Any) -> Any:
  """Sub-pixel offset along one axis from the arg-max and its two neighbours.

  Where all three values are positive the parabola is fitted to their
  logarithm, which is exact for a Gaussian peak (the training target); where
  a neighbour is zero or negative (e.g. a ReLU output cut to 0) it is fitted to
  the values themselves. At the image border (`inside` false) no refinement.
  """
  xp = _namespace(left)
  positive = (left > 0) & (centre > 0) & (right > 0)
  log = lambda v: xp.log(xp.where(positive, v, 1.0))
  log_offset = _parabola_offset(log(left), log(centre), log(right))
  value_offset = _parabola_offset(left, centre, right)
  offset = xp.where(positive, log_offset, value_offset)
  return xp.where(inside, offset, 0.0)


def _first_argmax(values: Any, positions: Any) -> Any:
  """`jnp.argmax` along the last axis (`positions` = 0, 1, ...) for finite values.

  Two single-operand reductions (the maximum, then the smallest position that
  reaches it): `jnp.argmax` lowers to a two-operand reduction that the TFLite
  converter cannot turn into builtin ops (rhpe_jax.deploy.export).
  """
  xp = _namespace(values)
  peak = xp.max(values, axis=-1, keepdims=True)
  return xp.min(xp.where(values == peak, positions, positions[-1]), axis=-1)


def heatmaps_to_keypoints(heatmaps: ArrayLike) -> tuple[Any, Any]:
  """Keypoints and confidences from heatmaps `(..., H, W, J)`.

  Each keypoint is the arg-max pixel refined to sub-pixel precision by a
  separable parabola fit in x and in y through the maximum and its two
  neighbours (on log values where they are positive, which recovers the centre
  of a Gaussian exactly; on raw values otherwise). The offset is clamped to
  [-0.5, 0.5] pixel; flat peaks and peaks on the border are not refined, so
  the result is never NaN for finite input.

  Returns:
    coords: `(..., J, 2)` `[x, y]` in heatmap pixels (0-based centres).
    confidence: `(..., J)` the maximum value of each map (the paper's
      visibility score).
  """
  xp = _namespace(heatmaps)
  heatmaps = xp.asarray(heatmaps)
  if heatmaps.ndim < 3:
    raise ValueError(
        f'heatmaps must have shape (..., H, W, J), got shape {heatmaps.shape}')
  height, width = heatmaps.shape[-3], heatmaps.shape[-2]
  if height < 1 or width < 1:
    raise ValueError(f'heatmaps have an empty spatial size {(height, width)}')
  maps = xp.moveaxis(heatmaps, -1, -3)  # (..., J, H, W)
  flat = maps.reshape(maps.shape[:-2] + (height * width,))
  positions = xp.arange(height * width, dtype=xp.int32)
  index = _first_argmax(flat, positions)
  iy, ix = index // width, index % width

  def value_at(y, x):
    # A masked sum rather than a gather: exact, and it keeps the batch size
    # free in a TFLite conversion (rhpe_jax.deploy.export), where a gather cannot.
    y = xp.clip(y, 0, height - 1)
    x = xp.clip(x, 0, width - 1)
    chosen = positions == (y * width + x)[..., None]
    return xp.sum(xp.where(chosen, flat, 0), axis=-1)

  centre = value_at(iy, ix)
  dx = _refine(value_at(iy, ix - 1), centre, value_at(iy, ix + 1),
               (ix > 0) & (ix < width - 1))
  dy = _refine(value_at(iy - 1, ix), centre, value_at(iy + 1, ix),
               (iy > 0) & (iy < height - 1))
  dtype = xp.result_type(heatmaps.dtype, xp.float32)
  coords = xp.stack([ix.astype(dtype) + dx.astype(dtype),
                     iy.astype(dtype) + dy.astype(dtype)], axis=-1)
  return coords, centre


def heatmaps_to_input(heatmaps: ArrayLike, stride: int) -> tuple[Any, Any]:
  """Heat maps (..., h, w, J) -> keypoints (..., J, 2) in input pixels of a
  network of `stride` (rhpe_jax.model.STRIDE) and confidences (..., J)."""
  coords, confidence = heatmaps_to_keypoints(heatmaps)
  return grid_to_input(coords, stride), confidence


def _check_permutation(heatmaps: Any, flip_permutation: ArrayLike
                       ) -> np.ndarray:
  perm = np.asarray(flip_permutation)
  num_keypoints = heatmaps.shape[-1]
  if perm.shape != (num_keypoints,) or sorted(perm.tolist()) != list(range(num_keypoints)):
    raise ValueError(
        f'flip_permutation must be a permutation of {num_keypoints} channels, '
        f'got {perm.tolist()}')
  return perm


def flip_heatmaps(heatmaps: ArrayLike, flip_permutation: ArrayLike) -> Any:
  """Mirrors heatmaps `(..., H, W, J)` left-right and swaps left/right channels.

  Channel j of the result is the mirrored channel `flip_permutation[j]`
  (`KeypointSet.flip_permutation`), so it shows joint j of the un-mirrored image.
  """
  xp = _namespace(heatmaps)
  heatmaps = xp.asarray(heatmaps)
  if heatmaps.ndim < 3:
    raise ValueError(
        f'heatmaps must have shape (..., H, W, J), got shape {heatmaps.shape}')
  perm = _check_permutation(heatmaps, flip_permutation)
  return xp.take(xp.flip(heatmaps, axis=-2), xp.asarray(perm), axis=-1)


def merge_flipped(heatmaps: ArrayLike, flipped_heatmaps_of_mirrored_input: ArrayLike,
                  flip_permutation: ArrayLike) -> Any:
  """Test-time flip averaging: mean of a prediction and the un-mirrored
  prediction of the mirrored input (mirrored as described in the module doc)."""
  xp = _namespace(heatmaps, flipped_heatmaps_of_mirrored_input)
  heatmaps = xp.asarray(heatmaps)
  other = xp.asarray(flipped_heatmaps_of_mirrored_input)
  if heatmaps.shape != other.shape:
    raise ValueError(
        f'heatmap shapes differ: {heatmaps.shape} vs {other.shape}')
  return 0.5 * (heatmaps + flip_heatmaps(other, flip_permutation))


def _check_affine(affine: Any) -> None:
  if affine.ndim < 2 or affine.shape[-2:] != (2, 3):
    raise ValueError(f'affine must have shape (..., 2, 3), got {affine.shape}')


def transform_points(points: ArrayLike, affine: ArrayLike) -> Any:
  """Maps points `(..., J, 2)` through a `(2, 3)` affine, or a batch
  `(..., 2, 3)` whose leading axes broadcast against those of `points`."""
  xp = _namespace(points, affine)
  points = xp.asarray(points)
  affine = xp.asarray(affine)
  if points.ndim < 2 or points.shape[-1] != 2:
    raise ValueError(f'points must have shape (..., J, 2), got {points.shape}')
  _check_affine(affine)
  linear = xp.swapaxes(affine[..., :, :2], -1, -2)  # (..., 2, 2), transposed
  return points @ linear + affine[..., None, :, 2]


def invert_affine(affine: ArrayLike) -> Any:
  """Inverse of `(..., 2, 3)` affines (closed-form 2x2 inverse; singular
  matrices give inf/NaN, as a singular map has no inverse)."""
  xp = _namespace(affine)
  affine = xp.asarray(affine)
  _check_affine(affine)
  a, b, tx = affine[..., 0, 0], affine[..., 0, 1], affine[..., 0, 2]
  c, d, ty = affine[..., 1, 0], affine[..., 1, 1], affine[..., 1, 2]
  det = a * d - b * c
  ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
  itx = -(ia * tx + ib * ty)
  ity = -(ic * tx + id_ * ty)
  return xp.stack([xp.stack([ia, ib, itx], -1),
                   xp.stack([ic, id_, ity], -1)], -2)


def grid_to_input(points: ArrayLike, stride: int) -> Any:
  """Output-grid pixel centres to input pixels: `x_in = s (x_out + 0.5) - 0.5`."""
  xp = _namespace(points)
  if stride <= 0:
    raise ValueError(f'stride must be positive, got {stride}')
  return stride * (xp.asarray(points) + 0.5) - 0.5


def input_to_grid(points: ArrayLike, stride: int) -> Any:
  """Input pixels to output-grid pixel centres: `x_out = (x_in + 0.5) / s - 0.5`."""
  xp = _namespace(points)
  if stride <= 0:
    raise ValueError(f'stride must be positive, got {stride}')
  return (xp.asarray(points) + 0.5) / stride - 0.5
