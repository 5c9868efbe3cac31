"""Person-centred crops of an original image, as the TFDS builders store them.

A crop is the square of side `crop_side_factor x 200 x scale` around a
person's `objpos` (MPII's centre and scale; a COCO box becomes one through
`box_center_scale`), resampled to R x R. MPII and the COCO
keypoint builder both crop through here, so the stored `crop_to_image` means
the same in every dataset. Pure NumPy/SciPy: the tests check it against
sums written by hand.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rhpe_jax.core import keypoint_sets


# MPII's unit of person size: scale 1 is a person 200 pixels tall.
MPII_SCALE_UNIT = 200.0


def box_center_scale(bbox: Sequence[float]) -> tuple[np.ndarray, float]:
  """A COCO box [x, y, width, height] as MPII's (objpos, scale): the box's
  centre, and its longer side in MPII's unit (scale = person height / 200 px),
  so that `box_scale` adds the same margin around a box as around an MPII
  person. The builder and `predict --boxes` both crop through this."""
  x, y, w, h = (float(v) for v in bbox)
  if not (w > 0 and h > 0 and np.all(np.isfinite([x, y, w, h]))):
    raise ValueError(f'a person box needs a positive width and height, got {list(bbox)}')
  return np.array([x + w / 2.0, y + h / 2.0], np.float32), max(w, h) / MPII_SCALE_UNIT


def crop_to_image_transform(objpos: np.ndarray, scale: float, resolution: int,
                            crop_side_factor: float) -> np.ndarray:
  """(2, 3) affine from crop pixels to original pixels (both 0-based centres).

  The crop spans [-0.5, R - 0.5] and covers the square of side
  S = crop_side_factor x 200 x scale centred on objpos, so
  x_orig = objpos_x - S/2 + (u + 0.5) S/R.
  """
  side = crop_side_factor * MPII_SCALE_UNIT * float(scale)
  step = side / resolution
  cx, cy = float(objpos[0]), float(objpos[1])
  return np.array([[step, 0.0, cx - side / 2 + 0.5 * step],
                   [0.0, step, cy - side / 2 + 0.5 * step]], np.float64)


def image_to_crop_points(points: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
  """Maps (..., 2) original-pixel points into the crop (inverse of the affine)."""
  a = np.asarray(crop_to_image, np.float64)
  inv = np.linalg.inv(a[:, :2])
  return (np.asarray(points, np.float64) - a[:, 2]) @ inv.T


def crop_fields(image: np.ndarray, crop_to_image: np.ndarray, resolution: int,
                keypoints: np.ndarray, status: np.ndarray,
                others: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
  """The fields of a top-down example that the crop decides: the R x R crop,
  the person's keypoints in crop pixels (0 where missing) with their status,
  the image's other persons' (`others`: (keypoints, status) pairs) likewise,
  and `crop_to_image`. Every builder's examples share them (pose_features)."""
  def to_crop(points: np.ndarray, seen: np.ndarray) -> np.ndarray:
    out = image_to_crop_points(points, crop_to_image)
    return np.where((np.asarray(seen) != keypoint_sets.MISSING)[..., None], out, 0.0
                    ).astype(np.float32)

  num_keypoints = len(status)
  other_keypoints = np.zeros((len(others), num_keypoints, 2), np.float32)
  other_status = np.zeros((len(others), num_keypoints), np.int32)
  for n, (points, seen) in enumerate(others):
    other_keypoints[n], other_status[n] = to_crop(points, seen), seen
  return {
      'image': crop_image(image, crop_to_image, resolution),
      'keypoints': to_crop(keypoints, status),
      'keypoint_status': np.asarray(status, np.int32),
      'other_keypoints': other_keypoints,
      'other_keypoint_status': other_status,
      'crop_to_image': np.asarray(crop_to_image, np.float32),
  }


def _box_reduce(image: np.ndarray, k: int) -> np.ndarray:
  """Averages k x k blocks: output pixel i covers inputs k*i .. k*i + k - 1.

  Blocks cut by the right or bottom border average the pixels they have.
  """
  h, w, c = image.shape
  hk, wk = -(-h // k), -(-w // k)
  padded = np.zeros((hk * k, wk * k, c), np.float64)
  padded[:h, :w] = image
  counts = np.zeros((hk * k, wk * k), np.float64)
  counts[:h, :w] = 1.0
  sums = padded.reshape(hk, k, wk, k, c).sum(axis=(1, 3))
  n = counts.reshape(hk, k, wk, k).sum(axis=(1, 3))
  return sums / n[..., None]


def _block_start(coords: np.ndarray, k: int, size: int) -> int:
  """First k-block (of an axis of `size` pixels) a bilinear sample may read."""
  lo = int(np.floor((coords.min() - (k - 1) / 2.0) / k)) - 1
  return int(np.clip(lo, 0, -(-size // k) - 1))


def _block_end(coords: np.ndarray, k: int, size: int) -> int:
  """One past the last k-block a bilinear sample may read."""
  hi = int(np.floor((coords.max() - (k - 1) / 2.0) / k)) + 2
  return int(np.clip(hi, 1, -(-size // k)))


def crop_image(image: np.ndarray, crop_to_image: np.ndarray, resolution: int) -> np.ndarray:
  """Resamples an (H, W, 3) image into an R x R crop: bilinear, zeros outside.

  Crop pixel (u, v) takes the bilinear value at crop_to_image @ [u, v, 1];
  points outside the image's area [-0.5, W - 0.5] x [-0.5, H - 0.5] are 0.
  A large downscale first averages k x k blocks (k = floor of the step) so
  the bilinear pass does not alias; the affine is adjusted so that
  crop_to_image stays exact.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'crop_image: expected an (H, W, 3) image, got shape {image.shape}')
  a = np.asarray(crop_to_image, np.float64)
  h, w = image.shape[:2]
  u, v = np.meshgrid(np.arange(resolution, dtype=np.float64),
                     np.arange(resolution, dtype=np.float64))
  x = a[0, 0] * u + a[0, 1] * v + a[0, 2]
  y = a[1, 0] * u + a[1, 1] * v + a[1, 2]
  inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
  step = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
  k = max(1, int(step))
  # Only the k-aligned blocks that the samples can touch are reduced.
  bx0, by0 = _block_start(x, k, w), _block_start(y, k, h)
  bx1, by1 = _block_end(x, k, w), _block_end(y, k, h)
  source = image[by0 * k:by1 * k, bx0 * k:bx1 * k].astype(np.float64)
  if k > 1:
    source = _box_reduce(source, k)
  # Reduced pixel i is centred on original k*(i + b0) + (k - 1)/2.
  x = (x - (k - 1) / 2.0) / k - bx0
  y = (y - (k - 1) / 2.0) / k - by0
  out = np.zeros((resolution, resolution, 3), np.float64)
  for ch in range(3):
    out[..., ch] = ndimage.map_coordinates(source[..., ch], [y, x], order=1, mode='nearest')
  out[~inside] = 0.0
  return np.clip(np.round(out), 0, 255).astype(np.uint8)
