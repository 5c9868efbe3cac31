"""The square window of an image that the network sees, and its crop, in numpy.

One image's crop is the training pipeline's (rhpe_jax.data.augment:
`input_to_stored_matrix` without augmentation, `warp_image`'s bilinear
resampling with zeros outside, rounded to uint8), written in numpy so that
prediction needs neither TensorFlow nor JAX (tests/inference/test_crop.py
measures the two against each other on real images). `sample_bilinear` also
brings heat maps of another box scale onto the scale-1 grid
(rhpe_jax.inference.topdown).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rhpe_jax.data import person_crops


def window(image_shape: tuple[int, ...], center: Sequence[float] | None,
           scale: float | None, box_scale: float) -> tuple[tuple[float, float], float]:
  """Centre and side (pixels) of the square the network sees: the whole
  image padded to a square, or MPII's person window (side = box_scale x 200
  x scale around the centre)."""
  height, width = image_shape[:2]
  if center is None:
    if scale is not None:
      raise ValueError('a scale needs a center')
    return ((width - 1) / 2.0, (height - 1) / 2.0), float(max(height, width))
  if len(center) != 2:
    raise ValueError(f'center needs two numbers x, y, got {list(center)}')
  if scale is None or not scale > 0:
    raise ValueError(f'a center needs a positive scale, got {scale}')
  side = box_scale * person_crops.MPII_SCALE_UNIT * scale
  return (float(center[0]), float(center[1])), float(side)


def box_window(bbox: Sequence[float] | None, image_shape: tuple[int, ...], box_scale: float
               ) -> tuple[tuple[float, float], float]:
  """The window of a person box [x, y, w, h] (`person_crops.box_center_scale`,
  as the COCO builder crops), or of the whole image for None."""
  if bbox is None:
    return window(image_shape, None, None, box_scale)
  center, scale = person_crops.box_center_scale(bbox)
  return window(image_shape, (float(center[0]), float(center[1])), scale, box_scale)


def input_to_image(centre: Sequence[float], side: float, input_size: int) -> np.ndarray:
  """(3, 3) float64 map from network-input pixels to image pixels of the
  window (augment.input_to_stored_matrix without augmentation): pixel
  centres map to pixel centres, the input's centre (S - 1) / 2 to `centre`."""
  k = float(side) / input_size
  mid = (input_size - 1) / 2.0
  return np.array([[k, 0.0, float(centre[0]) - k * mid],
                   [0.0, k, float(centre[1]) - k * mid],
                   [0.0, 0.0, 1.0]])


def sample_bilinear(source: np.ndarray, affine: np.ndarray, height: int, width: int
                    ) -> np.ndarray:
  """`source` (H, W, C) sampled bilinearly at `affine` (2, 3 or 3, 3: output
  pixel -> source pixel, pixel centres at integers) of every pixel of a
  (height, width) grid; neighbours outside the source count as 0. float32,
  as TensorFlow's ImageProjectiveTransformV3 computes it."""
  m = np.asarray(affine, np.float32)
  ys, xs = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32),
                       indexing='ij')
  x = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
  y = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
  x0, y0 = np.floor(x), np.floor(y)
  rows, cols = source.shape[:2]

  def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    yy, xx = yy.astype(np.int64), xx.astype(np.int64)
    inside = (yy >= 0) & (yy < rows) & (xx >= 0) & (xx < cols)
    values = source[np.where(inside, yy, 0), np.where(inside, xx, 0)].astype(np.float32)
    return np.where(inside[..., None], values, np.float32(0))

  # In TensorFlow's order of operations: along x on both rows, then along y.
  wx0, wx1 = (x0 + 1 - x)[..., None], (x - x0)[..., None]
  top = wx0 * at(y0, x0) + wx1 * at(y0, x0 + 1)
  bottom = wx0 * at(y0 + 1, x0) + wx1 * at(y0 + 1, x0 + 1)
  return (y0 + 1 - y)[..., None] * top + (y - y0)[..., None] * bottom


def crop(image: np.ndarray, centre: Sequence[float], side: float, input_size: int
         ) -> tuple[np.ndarray, np.ndarray]:
  """The (S, S, 3) uint8 network input of a window and its (3, 3)
  input-to-image matrix (the training pipeline's crop, without augmentation)."""
  matrix = input_to_image(centre, side, input_size)
  pixels = sample_bilinear(np.asarray(image), matrix, input_size, input_size)
  return np.clip(np.round(pixels), 0, 255).astype(np.uint8), matrix
