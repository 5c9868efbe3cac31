"""The square window of an image that the network sees, and its crop.

One image's crop is the training pipeline's (rhpe_jax.data.augment) without
augmentation: every caller (one image, a folder, a list of persons) cuts it
here.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np


def window(image_shape: tuple[int, ...], center: Sequence[float] | None,
           scale: float | None, box_scale: float) -> tuple[tuple[float, float], float]:
  """Centre and side (pixels) of the square the network sees: the whole
  image padded to a square, or MPII's person window (side = box_scale x 200
  x scale around the centre)."""
  height, width = image_shape[:2]
  if center is None:
    if scale is not None:
      raise ValueError('--scale needs --center')
    return ((width - 1) / 2.0, (height - 1) / 2.0), float(max(height, width))
  if len(center) != 2:
    raise ValueError(f'--center needs two numbers X Y, got {list(center)}')
  if scale is None or not scale > 0:
    raise ValueError(f'--center needs a positive --scale, got {scale}')
  return (float(center[0]), float(center[1])), float(box_scale * 200.0 * scale)


def crop(image: np.ndarray, centre: Sequence[float], side: float, input_size: int
         ) -> tuple[np.ndarray, np.ndarray]:
  """The (S, S, 3) uint8 network input of a window and its (3, 3)
  input-to-image matrix (the training pipeline's crop, without augmentation)."""
  pixels, matrix = _crop_fn(input_size)(np.asarray(image, np.uint8),
                                        np.asarray(centre, np.float64), np.float64(side))
  return pixels.numpy(), matrix.numpy()


@functools.lru_cache(maxsize=4)
def _crop_fn(input_size: int):
  """The crop as one TensorFlow graph (eager op by op costs ~7 ms an image)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                tf.TensorSpec([2], tf.float64), tf.TensorSpec([], tf.float64)])
  def fn(image, centre, side):
    matrix = augment.input_to_stored_matrix(centre, side, input_size, augment.identity_params())
    return augment.warp_image(image, matrix, input_size), matrix

  return fn
