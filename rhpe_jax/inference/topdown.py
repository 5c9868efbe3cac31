"""The one top-down path: person windows of images -> crops -> heat maps ->
keypoints and scores in image pixels, in numpy.

Whatever runs the network is a `HeatmapFn` (uint8 crops (B, S, S, 3) -> the
last stage's heat maps (B, h, w, K)): the JAX predictor
(rhpe_jax.inference.predictor) or an exported model in onnxruntime
(rhpe_jax.inference.estimator). Everything around it is here, once, for the
Python API, the command lines (one image, a folder, a detector's boxes, a
video) and evaluation:

- `crop_windows`: each window cut at each box scale (rhpe_jax.inference.crop);
- `heatmaps`: the network in batches padded to a power of two (few shapes,
  few compilations), with the flip test (the mirrored crops' maps, un-mirrored
  and averaged: decode.merge_flipped);
- `poses_in_input`: the maps of the other box scales brought onto the scale-1
  crop's grid (bilinear, zeros outside) and averaged, then decoded
  (rhpe_jax.codec.decode) into the scale-1 crop's input pixels; evaluation of
  a TFDS split enters here with its stored crops' maps;
- `predict_crops`: heat maps, averaging and decoding of cut crops, keypoints
  mapped into their images' pixels (`to_image`); PoseEstimator.predict_batch
  cuts the crops of images and boxes and calls it.

Nothing here imports JAX or TensorFlow.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from rhpe_jax.codec import decode
from rhpe_jax.inference import crop as crop_lib

HeatmapFn = Callable[[np.ndarray], np.ndarray]
Window = tuple[tuple[float, float], float]  # (centre (x, y), side) in image pixels


def padded_size(count: int, batch_size: int) -> int:
  """The batch `count` crops go in: the next power of two, at most `batch_size`."""
  size = 1
  while size < count and size < batch_size:
    size *= 2
  return min(size, batch_size)


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
  """Box scales with 1.0 first (the frame the others' maps are averaged in)."""
  scales = tuple(float(s) for s in scales)
  if not scales or any(not (s > 0 and np.isfinite(s)) for s in scales):
    raise ValueError(f'scales must be positive numbers, got {list(scales)}')
  if 1.0 not in scales:
    raise ValueError(f'scales must include 1.0 (the frame heat maps are averaged in), '
                     f'got {list(scales)}')
  return (1.0,) + tuple(s for s in scales if s != 1.0)


def crop_windows(image: np.ndarray, windows: Sequence[Window], input_size: int,
                 scales: Sequence[float] = (1.0,)) -> tuple[np.ndarray, np.ndarray]:
  """Crops (len(scales), N, S, S, 3) uint8 of every window at every box
  scale, and their input-to-image matrices (len(scales), N, 3, 3)."""
  crops = np.zeros((len(scales), len(windows), input_size, input_size, 3), np.uint8)
  matrices = np.zeros((len(scales), len(windows), 3, 3))
  for s, scale in enumerate(scales):
    for n, (centre, side) in enumerate(windows):
      crops[s, n], matrices[s, n] = crop_lib.crop(image, centre, side * scale, input_size)
  return crops, matrices


def heatmaps(heatmap_fn: HeatmapFn, crops: np.ndarray, *, batch_size: int,
             flip_permutation: Sequence[int] | None = None) -> np.ndarray:
  """The network's heat maps (N, h, w, K) float32 of crops (N, S, S, 3), in
  batches of at most `batch_size` padded to a power of two; with
  `flip_permutation`, averaged with the un-mirrored maps of the mirrored crops."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  out = []
  for first in range(0, len(crops), batch_size):
    chunk = crops[first:first + batch_size]
    padded = np.zeros((padded_size(len(chunk), batch_size),) + chunk.shape[1:], np.uint8)
    padded[:len(chunk)] = chunk
    maps = np.asarray(heatmap_fn(padded), np.float32)
    if flip_permutation is not None:
      mirrored = np.asarray(heatmap_fn(np.ascontiguousarray(padded[:, :, ::-1])), np.float32)
      maps = decode.merge_flipped(maps, mirrored, flip_permutation)
    out.append(maps[:len(chunk)])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def grid_to_grid_affine(target_input_to_image: np.ndarray, source_input_to_image: np.ndarray,
                        stride: int) -> np.ndarray:
  """(..., 2, 3) map from the target crop's heat-map grid to the source crop's.

  Both crops see one image through their `input_to_image` ((..., 2 or 3, 3));
  a target grid pixel goes grid -> input -> image, then image -> input ->
  grid of the source; rows whose source affine is singular (batch padding)
  get the identity.
  """
  def hom(a):
    a = np.asarray(a, np.float64)[..., :2, :]
    last = np.broadcast_to(np.array([0.0, 0.0, 1.0]), a.shape[:-2] + (1, 3))
    return np.concatenate([a, last], axis=-2)

  half = (stride - 1) / 2  # grid -> input: x_in = s x + (s - 1) / 2 (decode.grid_to_input)
  g2i = np.array([[stride, 0, half], [0, stride, half], [0, 0, 1.0]])
  source = hom(source_input_to_image)
  singular = np.abs(np.linalg.det(source)) < 1e-12
  source = np.where(singular[..., None, None], np.eye(3), source)
  full = np.linalg.inv(g2i) @ np.linalg.inv(source) @ hom(target_input_to_image) @ g2i
  full = np.where(singular[..., None, None], np.eye(3), full)
  return full[..., :2, :]


def poses_in_input(maps_by_scale: Sequence[np.ndarray], input_to_image_by_scale: Sequence[
    np.ndarray], stride: int) -> tuple[np.ndarray, np.ndarray]:
  """Keypoints (N, K, 2) in input pixels of the first (scale-1) crops and
  scores (N, K): the maps of every scale (each (N, h, w, K)) on the first's
  grid, averaged, decoded."""
  maps = np.asarray(maps_by_scale[0], np.float32)
  if len(maps_by_scale) > 1:
    total = maps.copy()
    height, width = maps.shape[1:3]
    for other, matrices in zip(maps_by_scale[1:], input_to_image_by_scale[1:]):
      affine = grid_to_grid_affine(input_to_image_by_scale[0], matrices, stride)
      for n in range(len(maps)):
        total[n] += crop_lib.sample_bilinear(np.asarray(other[n], np.float32), affine[n],
                                             height, width)
    maps = total / len(maps_by_scale)
  coords, scores = decode.heatmaps_to_keypoints(maps)
  return decode.grid_to_input(coords, stride), scores


def to_image(keypoints: np.ndarray, input_to_image: np.ndarray) -> np.ndarray:
  """Keypoints (N, K, 2) in input pixels through each crop's (N, 2 or 3, 3)
  matrix into image pixels (float64)."""
  matrices = np.asarray(input_to_image, np.float64)[..., :2, :]
  return decode.transform_points(np.asarray(keypoints, np.float64), matrices)


def predict_crops(heatmap_fn: HeatmapFn, crops: np.ndarray, matrices: np.ndarray, *,
                  stride: int, batch_size: int,
                  flip_permutation: Sequence[int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Keypoints (N, K, 2) in image pixels and scores (N, K) of crops
  (len(scales), N, S, S, 3) with their matrices (`crop_windows`)."""
  maps = [heatmaps(heatmap_fn, c, batch_size=batch_size, flip_permutation=flip_permutation)
          for c in crops]
  keypoints, scores = poses_in_input(maps, matrices, stride)
  return to_image(keypoints, matrices[0]), np.asarray(scores, np.float64)
