"""Geometry of the network input: person-centred crops and their augmentation.

One affine matrix per example takes network-input pixels to stored-image
pixels; it is built from the person's window (centre and side, from MPII's
`objpos` and `scale`) and the sampled augmentation (rotation, scale,
translation, horizontal flip). The image is resampled ONCE through it
(bilinear, zeros outside) and keypoints go through its inverse, so image and
labels cannot drift apart. Pixel coordinates refer to pixel centres
(docs/conventions.md): the input spans [-0.5, S - 0.5], its centre is
(S - 1) / 2.

    input -> stored:  M = T(c + t w) . R(angle) . (w / S) . F . T(-(S - 1) / 2)

with c the window centre and w = side * scale its side in stored pixels, t the
translation jitter (a fraction of w, in stored axes), R a rotation, F =
diag(-1, 1) when flipped (a mirror of the input about its centre). A flipped
example also renames its joints (left <-> right, `KeypointSet.flip_permutation`)
so that slot "r_wrist" still holds the person's right wrist as it appears in
the mirrored picture.

Everything here is graph-mode TensorFlow on single examples, for tf.data map
functions. JAX owns the accelerator, TF only feeds it: the command lines and
`train_and_evaluate` keep TF off the GPUs (rhpe_jax.core.runtime.setup).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from rhpe_jax.core import config as config_lib
from rhpe_jax.core import keypoint_sets

# The release cuts a 300 x scale patch, resizes it to 256 px and crops 248 px:
# the network sees a window of 300 * 248 / 256 = 1.5 * 200 * 248 / 256 * scale.
DEFAULT_BOX_SCALE = 1.5 * 248 / 256

JOINT_MAPPINGS = config_lib.JOINT_MAPPINGS


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Crop geometry and augmentation ranges.

  Attributes:
    input_size: side S of the (square) network input in pixels.
    box_scale: window side = box_scale * 200 * scale original pixels (MPII's
      scale = person height / 200).
    rotation_deg: rotations are uniform in [-rotation_deg, rotation_deg].
    rotation_prob: fraction of training examples that are rotated at all. 0.4,
      as in the hourglass recipe that MPII training commonly follows (the
      paper and release give no probability): most crops stay upright like the
      test crops, while 40 % teach rotated poses.
    scale_min, scale_max: the window side is multiplied by a factor uniform in
      [scale_min, scale_max] (> 1 zooms out: the person looks smaller).
    translate_frac: the window centre moves by up to this fraction of the
      (scaled) window side, independently in x and y.
    flip_prob: probability of a horizontal flip (with left/right swap).
    max_other_people: other people's keypoints are padded/truncated to this.
    joint_mapping: None, or 'lsp_to_mpii' to place 14 LSP joints in the 16
      MPII slots (pelvis and thorax missing).
    keypoint_set: the keypoint set of the flip permutation, a built-in name
      or 'dataset' (then `dataset_keypoint_set` holds it); None infers it from
      the number of keypoints after mapping (16 -> mpii, 14 -> lsp).
    dataset_keypoint_set: the dataset's own set (`KeypointSet.to_dict`) for
      'dataset'.
  """

  input_size: int = 248
  box_scale: float = DEFAULT_BOX_SCALE
  rotation_deg: float = 30.0
  rotation_prob: float = 0.4
  scale_min: float = 0.75
  scale_max: float = 1.25
  translate_frac: float = 0.03
  flip_prob: float = 0.5
  max_other_people: int = 8
  joint_mapping: str | None = None
  keypoint_set: str | None = None
  dataset_keypoint_set: Mapping[str, Any] | None = None

  def __post_init__(self):
    if int(self.input_size) != self.input_size or self.input_size < 1:
      raise ValueError(f'input_size must be a positive integer, got {self.input_size!r}')
    if not self.box_scale > 0:
      raise ValueError(f'box_scale must be positive, got {self.box_scale!r}')
    if not 0 <= self.rotation_deg <= 180:
      raise ValueError(f'rotation_deg must be in [0, 180], got {self.rotation_deg!r}')
    for name in ('rotation_prob', 'flip_prob'):
      if not 0 <= getattr(self, name) <= 1:
        raise ValueError(f'{name} must be in [0, 1], got {getattr(self, name)!r}')
    if not 0 < self.scale_min <= self.scale_max:
      raise ValueError(
          f'need 0 < scale_min <= scale_max, got {self.scale_min!r}, {self.scale_max!r}')
    if not 0 <= self.translate_frac < 0.5:
      raise ValueError(f'translate_frac must be in [0, 0.5), got {self.translate_frac!r}')
    if int(self.max_other_people) != self.max_other_people or self.max_other_people < 0:
      raise ValueError(
          f'max_other_people must be a non-negative integer, got {self.max_other_people!r}')
    if self.joint_mapping not in JOINT_MAPPINGS:
      raise ValueError(
          f'unknown joint_mapping {self.joint_mapping!r}; expected one of {JOINT_MAPPINGS}')
    if self.keypoint_set is not None:
      keypoint_sets.of_config(self)  # Raises for unknown names and bad sets.

  @classmethod
  def from_mapping(cls, cfg: Mapping[str, Any]) -> 'AugmentConfig':
    """Reads the fields present in `cfg` (a dict or ml_collections.ConfigDict)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: cfg[n] for n in names if n in cfg})


def resolve_keypoint_set(config: AugmentConfig, num_keypoints: int) -> keypoint_sets.KeypointSet:
  """The keypoint set whose flip permutation applies to `num_keypoints` keypoints."""
  if config.keypoint_set is not None:
    keypoint_set = keypoint_sets.of_config(config)
  elif num_keypoints == keypoint_sets.MPII.num_keypoints:
    keypoint_set = keypoint_sets.MPII
  elif num_keypoints == keypoint_sets.LSP.num_keypoints:
    keypoint_set = keypoint_sets.LSP
  else:
    raise ValueError(f'cannot infer the keypoint set of {num_keypoints} keypoints; set '
                     'keypoint_set')
  if keypoint_set.num_keypoints != num_keypoints:
    raise ValueError(
        f'keypoint set {keypoint_set.name!r} has {keypoint_set.num_keypoints} keypoints, the '
        f'data has {num_keypoints}')
  return keypoint_set


# --------------------------------------------------------------------------
# Augmentation parameters.


def sample_params(seed: tf.Tensor, config: AugmentConfig) -> dict[str, tf.Tensor]:
  """Random augmentation drawn from a stateless seed (2,) int64.

  One uniform vector is drawn, so the parameters are independent and depend
  on nothing but the seed (not on threads or iteration order).
  """
  u = tf.random.stateless_uniform([6], seed=seed, dtype=tf.float64)
  rotate = u[1] < config.rotation_prob
  max_angle = config.rotation_deg * math.pi / 180.0
  return {
      'flip': u[0] < config.flip_prob,
      'angle': tf.where(rotate, (2.0 * u[2] - 1.0) * max_angle, tf.constant(0.0, tf.float64)),
      'scale': config.scale_min + (config.scale_max - config.scale_min) * u[3],
      'translate': (2.0 * u[4:6] - 1.0) * config.translate_frac,
  }


def identity_params() -> dict[str, tf.Tensor]:
  """No augmentation (evaluation): the plain person-centred crop."""
  return {
      'flip': tf.constant(False),
      'angle': tf.constant(0.0, tf.float64),
      'scale': tf.constant(1.0, tf.float64),
      'translate': tf.zeros([2], tf.float64),
  }


# --------------------------------------------------------------------------
# Affine helpers ((2, 3) or (3, 3) matrices acting on [x, y, 1]).


def to_homogeneous(affine: tf.Tensor) -> tf.Tensor:
  """(2, 3) affine -> (3, 3) matrix with last row [0, 0, 1]."""
  affine = tf.convert_to_tensor(affine)
  last = tf.constant([[0.0, 0.0, 1.0]], affine.dtype)
  return tf.concat([affine[:2], last], axis=0)


def invert_affine(affine: tf.Tensor) -> tf.Tensor:
  """Inverse of a (2, 3) or (3, 3) affine map, as (3, 3)."""
  m = to_homogeneous(affine)
  a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
  det = a * d - b * c
  lin_inv = tf.stack([tf.stack([d, -b]), tf.stack([-c, a])]) / det
  t_inv = -tf.linalg.matvec(lin_inv, m[:2, 2])
  return to_homogeneous(tf.concat([lin_inv, t_inv[:, None]], axis=1))


def transform_points(points: tf.Tensor, affine: tf.Tensor) -> tf.Tensor:
  """Points (..., 2) through a (2, 3) or (3, 3) affine map: in the argument
  order of `rhpe_jax.codec.decode.transform_points`, its JAX counterpart."""
  affine = tf.cast(affine, points.dtype)
  return tf.linalg.matvec(affine[:2, :2], points) + affine[:2, 2]


# --------------------------------------------------------------------------
# The crop.


def person_window(crop_to_image: tf.Tensor, objpos: tf.Tensor, scale: tf.Tensor,
                  box_scale: float, image_hw: tf.Tensor, keypoints: tf.Tensor,
                  status: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Centre (2,) and side () of the person's window in stored-image pixels.

  The window is `box_scale * 200 * scale` original pixels around `objpos`,
  carried into the stored frame through the inverse of `crop_to_image`. An
  example without a usable objpos/scale (scale <= 0) falls back to the box of
  its annotated keypoints (height ~ keypoint extent), and without two distinct
  keypoints to the whole stored image, so that bad records never yield NaNs.
  All in float64.
  """
  c2i = tf.cast(crop_to_image, tf.float64)
  image_to_crop = invert_affine(c2i)
  # Stored pixels per original pixel (crop_to_image is a similarity).
  pixel_ratio = tf.sqrt(tf.abs(tf.linalg.det(image_to_crop[:2, :2])))
  scale = tf.cast(scale, tf.float64)
  objpos = tf.cast(objpos, tf.float64)
  centre_a = transform_points(objpos, image_to_crop)
  side_a = box_scale * 200.0 * scale * pixel_ratio
  ok_a = (scale > 0) & tf.reduce_all(tf.math.is_finite(objpos))

  kp = tf.cast(keypoints, tf.float64)
  known = status > 0
  big = tf.constant(1e30, tf.float64)
  lo = tf.reduce_min(tf.where(known[:, None], kp, big), axis=0)
  hi = tf.reduce_max(tf.where(known[:, None], kp, -big), axis=0)
  extent = tf.reduce_max(hi - lo)
  ok_b = (tf.reduce_sum(tf.cast(known, tf.int32)) >= 2) & (extent > 1.0)
  centre_b = tf.where(ok_b, (lo + hi) / 2.0, tf.zeros([2], tf.float64))
  side_b = box_scale * extent

  hw = tf.cast(image_hw, tf.float64)
  centre_c = tf.stack([(hw[1] - 1.0) / 2.0, (hw[0] - 1.0) / 2.0])
  side_c = tf.maximum(hw[0], hw[1])

  centre = tf.where(ok_a, centre_a, tf.where(ok_b, centre_b, centre_c))
  side = tf.where(ok_a, side_a, tf.where(ok_b, side_b, side_c))
  return centre, side


def input_to_stored_matrix(centre: tf.Tensor, side: tf.Tensor, input_size: int,
                           params: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """(3, 3) float64 map from input pixels to stored pixels (see module doc)."""
  centre = tf.cast(centre, tf.float64)
  width = tf.cast(side, tf.float64) * tf.cast(params['scale'], tf.float64)
  k = width / input_size
  angle = tf.cast(params['angle'], tf.float64)
  cos, sin = tf.cos(angle), tf.sin(angle)
  fx = tf.where(params['flip'], tf.constant(-1.0, tf.float64), tf.constant(1.0, tf.float64))
  lin = tf.stack([tf.stack([k * cos * fx, -k * sin]),
                  tf.stack([k * sin * fx, k * cos])])
  shift = centre + tf.cast(params['translate'], tf.float64) * width
  mid = (input_size - 1) / 2.0
  offset = shift - tf.linalg.matvec(lin, tf.constant([mid, mid], tf.float64))
  return to_homogeneous(tf.concat([lin, offset[:, None]], axis=1))


def warp_image(image: tf.Tensor, input_to_stored: tf.Tensor, input_size: int) -> tf.Tensor:
  """Resamples `image` (H, W, C) once onto the S x S input (bilinear, zeros outside).

  The op takes the output->input map, i.e. exactly `input_to_stored`; integer
  coordinates are pixel centres on both sides. Interpolation runs in float32
  and is rounded back to uint8 (the op would truncate uint8).
  """
  m = tf.cast(input_to_stored, tf.float32)
  m = m / m[2, 2]
  transform = tf.concat([tf.reshape(m[:2], [6]), tf.zeros([2], tf.float32)], axis=0)
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None],
      transforms=transform[None],
      output_shape=tf.constant([input_size, input_size], tf.int32),
      fill_value=tf.constant(0.0, tf.float32),
      interpolation='BILINEAR',
      fill_mode='CONSTANT')[0]
  return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def flip_joints(values: tf.Tensor, flip: tf.Tensor, flip_permutation: np.ndarray,
                axis: int) -> tf.Tensor:
  """Renames joints left <-> right along `axis` when `flip` is true."""
  return tf.where(flip, tf.gather(values, flip_permutation, axis=axis), values)


def lsp_to_mpii(keypoints: tf.Tensor, status: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """LSP keypoints (..., 14, 2), status (..., 14) into the 16 MPII slots.

  Pelvis and thorax come out missing (status 0, coordinates 0).
  """
  if keypoints.shape[-2] != keypoint_sets.LSP.num_keypoints:
    raise ValueError(
        f'lsp_to_mpii needs {keypoint_sets.LSP.num_keypoints} joints, got shape {keypoints.shape}')
  # For every MPII slot the LSP joint it takes, or 14 = an appended empty one.
  source = np.full(keypoint_sets.MPII.num_keypoints, keypoint_sets.LSP.num_keypoints)
  source[keypoint_sets.LSP_TO_MPII] = np.arange(keypoint_sets.LSP.num_keypoints)
  kp = tf.concat([keypoints, tf.zeros_like(keypoints[..., :1, :])], axis=-2)
  st = tf.concat([status, tf.zeros_like(status[..., :1])], axis=-1)
  return tf.gather(kp, source, axis=-2), tf.gather(st, source, axis=-1)


def crop_example(image: tf.Tensor, keypoints: tf.Tensor, status: tf.Tensor,
                 other_keypoints: tf.Tensor, other_status: tf.Tensor,
                 crop_to_image: tf.Tensor, objpos: tf.Tensor, scale: tf.Tensor,
                 params: Mapping[str, tf.Tensor], config: AugmentConfig
                 ) -> dict[str, tf.Tensor]:
  """Cuts the augmented person-centred input out of one stored image.

  Args:
    image: (H, W, 3) uint8 stored image.
    keypoints, status: (J, 2) stored pixels and (J,) status of the person.
    other_keypoints, other_status: (P, J, 2), (P, J) of the other people.
    crop_to_image: (2, 3) stored pixels -> original pixels.
    objpos, scale: person centre (original pixels) and MPII scale.
    params: from `sample_params` or `identity_params`.
    config: geometry.

  Returns:
    image (S, S, 3) uint8; keypoints (J, 2) float32 in input pixels and
    keypoint_status (J,), other_keypoints/other_keypoint_status (P, ...), all
    renamed on flips, coordinates of missing joints set to 0; input_to_image
    (2, 3) float32 (input pixels -> original pixels).
  """
  num_keypoints = keypoints.shape[-2]
  perm = resolve_keypoint_set(config, num_keypoints).flip_permutation
  size = config.input_size
  centre, side = person_window(crop_to_image, objpos, scale, config.box_scale,
                               tf.shape(image)[:2], keypoints, status)
  m = input_to_stored_matrix(centre, side, size, params)
  stored_to_input = invert_affine(m)
  flip = params['flip']

  def to_input(points, st, axis):
    pts = tf.cast(transform_points(tf.cast(points, tf.float64), stored_to_input), tf.float32)
    pts = tf.where((st > 0)[..., None], pts, tf.zeros_like(pts))
    return flip_joints(pts, flip, perm, axis), flip_joints(st, flip, perm, axis)

  kp, st = to_input(keypoints, tf.cast(status, tf.int32), axis=0)
  okp, ost = to_input(other_keypoints, tf.cast(other_status, tf.int32), axis=1)
  input_to_image = tf.matmul(to_homogeneous(tf.cast(crop_to_image, tf.float64)), m)
  return {
      'image': warp_image(image, m, size),
      'keypoints': kp,
      'keypoint_status': st,
      'other_keypoints': okp,
      'other_keypoint_status': ost,
      'input_to_image': tf.cast(input_to_image[:2], tf.float32),
  }
