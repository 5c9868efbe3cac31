"""Heatmap targets and weight masks for one pose example (the loss's inputs).

The network is trained by a weighted squared error against Gaussian heatmaps;
these functions render the heatmaps and their weights on the output grid. They
are pure JAX (vectorised over joints, parts and people; no Python loops at run
time) so that they can run inside a jitted training step and be vmapped over a
batch.

Definitions (the project's spec; see docs/reference.md for the release's facts):

- Grid: `grid_shape = (H, W)`; pixel (x, y) has its centre at integer x, y.
- Keypoint element j: isotropic Gaussian g(p) = exp(-|p - c|^2 / (2 sigma^2))
  with centre c = keypoints[j], sub-pixel (not rounded).
- Part element k for the pair (a, b): an oriented Gaussian centred at the
  midpoint of the two keypoints, long axis along b - a, sigma_along =
  part_sigma_along * L and sigma_across = part_sigma_across * L with
  L = |b - a|; each sigma is clamped below at `min_part_sigma`, so coincident
  ends give a small round blob (never NaN). A part needs both ends annotated;
  its status is missing if either end is missing, else occluded if either end
  is occluded, else visible (the minimum of the two status codes).
- Region R of an element: the pixels where g >= tail_cutoff (the release cuts
  tails where exp(.) < 1e-18). The test is done on the exponent,
  d2 / (2 sigma^2) <= -log(tail_cutoff), which is robust to underflow. The
  drawn map is peak * g on R and 0 elsewhere.
- Per map (one per keypoint, then one per part) of the active person, with
  n = |R| (pixels inside the grid) and f = n / (H * W):
    missing:                     target 0, weight 0 everywhere;
    visible, or occluded in 'include' mode:
                                 target peak * g on R; weight 1 - f on R, f elsewhere;
    occluded in 'ignore' mode:   target 0; weight 0 on R, f elsewhere;
    occluded in 'exclude' mode:  target 0 (R is background); weight 1 - f on R,
                                 f elsewhere, so a response there costs as much as
                                 a missed visible keypoint.
  If f > 0.5 the map is unweighted: weight 1 everywhere (still 0 on R in
  'ignore' mode, still 0 everywhere when missing). If n == 0 (an element far
  outside the grid) the weight is 0 everywhere: nothing to learn from.
- Other people: for every other person p and map c whose element is annotated
  (status > 0; parts need both ends annotated), p's region gets weight 0 in
  map c, except on the active person's region R when the active element is
  annotated and not ignored (there the active target and weight win). Other
  people never add to the target. The release does the same by drawing them
  with negative magnitude and zeroing the gradient there.

Status codes are those of `rhpe_jax.core.keypoint_sets`: 0 missing, 1 occluded, 2 visible
(any code >= 2 counts as visible, any code <= 0 as missing). Coordinates of
missing joints are ignored (they may be garbage, even NaN). Everything is
float32.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rhpe_jax.core import config as config_lib

OCCLUSION_MODES = config_lib.OCCLUSION_MODES


class Targets(NamedTuple):
  """Heatmap targets and their per-pixel loss weights, channels last."""

  keypoint_maps: jax.Array  # (..., H, W, J) float32
  keypoint_weights: jax.Array  # (..., H, W, J) float32
  part_maps: jax.Array  # (..., H, W, K) float32, K may be 0
  part_weights: jax.Array  # (..., H, W, K) float32


def _check_static(grid_shape, part_pairs, occlusion_mode, num_keypoints: int):
  """Validates the static arguments; returns them in hashable canonical form."""
  if occlusion_mode not in OCCLUSION_MODES:
    raise ValueError(f'unknown occlusion_mode {occlusion_mode!r}; '
                     f'expected one of {OCCLUSION_MODES}')
  try:
    h, w = (int(v) for v in grid_shape)
  except (TypeError, ValueError):
    raise ValueError(f'grid_shape must be two integers (H, W), got {grid_shape!r}') from None
  if h <= 0 or w <= 0:
    raise ValueError(f'grid_shape must be positive, got {grid_shape!r}')
  pairs = []
  for pair in part_pairs:
    if len(pair) != 2:
      raise ValueError(f'part_pairs entries must be (a, b) joint pairs, got {pair!r}')
    a, b = int(pair[0]), int(pair[1])
    if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
      raise ValueError(f'part pair {pair!r} out of range for {num_keypoints} joints')
    pairs.append((a, b))
  return (h, w), tuple(pairs), occlusion_mode


def _check_params(sigma, peak, part_sigma_along, part_sigma_across, min_part_sigma,
                  tail_cutoff):
  """Rejects nonsensical concrete hyperparameters (traced ones pass unchecked)."""
  for name, value in (('sigma', sigma), ('part_sigma_along', part_sigma_along),
                      ('part_sigma_across', part_sigma_across),
                      ('min_part_sigma', min_part_sigma)):
    if isinstance(value, numbers.Real) and not value > 0:
      raise ValueError(f'{name} must be > 0, got {value!r}')
  if isinstance(peak, numbers.Real) and not math.isfinite(peak):
    raise ValueError(f'peak must be finite, got {peak!r}')
  if isinstance(tail_cutoff, numbers.Real) and not 0 < tail_cutoff <= 1:
    raise ValueError(f'tail_cutoff must be in (0, 1], got {tail_cutoff!r}')


def _cut_exponent(tail_cutoff):
  """-log(tail_cutoff): the largest exponent d2 / (2 sigma^2) inside a region."""
  if isinstance(tail_cutoff, numbers.Real):
    return -math.log(tail_cutoff)
  return -jnp.log(jnp.asarray(tail_cutoff, jnp.float32))


def _element_geometry(keypoints, status, part_pairs, sigma, part_sigma_along,
                      part_sigma_across, min_part_sigma):
  """Centres, unit long axes, sigmas and status of the J + K elements of one person.

  keypoints (..., J, 2), status (..., J) -> centre (..., C, 2), axis (..., C, 2),
  sigma_along (..., C), sigma_across (..., C), status (..., C) with C = J + K.
  """
  num_keypoints = keypoints.shape[-2]
  batch = keypoints.shape[:-2]
  kp_axis = jnp.broadcast_to(jnp.array([1.0, 0.0], jnp.float32), batch + (num_keypoints, 2))
  kp_sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), batch + (num_keypoints,))
  if not part_pairs:
    return keypoints, kp_axis, kp_sigma, kp_sigma, status
  ia = np.array([a for a, _ in part_pairs])
  ib = np.array([b for _, b in part_pairs])
  pa, pb = keypoints[..., ia, :], keypoints[..., ib, :]
  centre = 0.5 * (pa + pb)
  d = pb - pa
  length = jnp.sqrt(jnp.sum(d * d, axis=-1))
  safe = jnp.where(length > 0, length, 1.0)
  axis = jnp.where((length > 0)[..., None], d / safe[..., None],
                   jnp.array([1.0, 0.0], jnp.float32))
  min_sigma = jnp.asarray(min_part_sigma, jnp.float32)
  along = jnp.maximum(jnp.asarray(part_sigma_along, jnp.float32) * length, min_sigma)
  across = jnp.maximum(jnp.asarray(part_sigma_across, jnp.float32) * length, min_sigma)
  part_status = jnp.minimum(status[..., ia], status[..., ib])
  cat = functools.partial(jnp.concatenate, axis=-1)
  return (jnp.concatenate([keypoints, centre], axis=-2),
          jnp.concatenate([kp_axis, axis], axis=-2),
          cat([kp_sigma, along]), cat([kp_sigma, across]),
          cat([status, part_status]))


def _exponent(grid_shape, centre, axis, sigma_along, sigma_across):
  """Exponent d2 / (2 sigma^2) of each element at every pixel: (..., H, W, C)."""
  h, w = grid_shape
  ys = jnp.arange(h, dtype=jnp.float32)[:, None, None]
  xs = jnp.arange(w, dtype=jnp.float32)[None, :, None]
  expand = lambda v: v[..., None, None, :]  # (..., C) -> (..., 1, 1, C)
  dx = xs - expand(centre[..., 0])
  dy = ys - expand(centre[..., 1])
  ux, uy = expand(axis[..., 0]), expand(axis[..., 1])
  t = dx * ux + dy * uy  # along the long axis
  s = dy * ux - dx * uy  # across it
  return 0.5 * ((t / expand(sigma_along)) ** 2 + (s / expand(sigma_across)) ** 2)


@functools.partial(jax.jit, static_argnames=('grid_shape', 'part_pairs', 'occlusion_mode'))
def _render(keypoints, status, other_keypoints, other_status, sigma, peak,
            part_sigma_along, part_sigma_across, min_part_sigma, cut, *,
            grid_shape, part_pairs, occlusion_mode):
  """The jitted body of `render_targets` (arguments already checked)."""
  num_keypoints = keypoints.shape[0]
  # Coordinates of missing joints are meaningless (maybe NaN); zero them so that
  # no NaN arises even in intermediates (jax_debug_nans stays quiet).
  keypoints = jnp.where((status > 0)[:, None], keypoints, 0.0)
  other_keypoints = jnp.where((other_status > 0)[..., None], other_keypoints, 0.0)
  geometry = functools.partial(
      _element_geometry, part_pairs=part_pairs, sigma=sigma,
      part_sigma_along=part_sigma_along, part_sigma_across=part_sigma_across,
      min_part_sigma=min_part_sigma)

  centre, axis, s_along, s_across, elem_status = geometry(keypoints, status)
  exponent = _exponent(grid_shape, centre, axis, s_along, s_across)  # (H, W, C)
  region = exponent <= cut
  gauss = jnp.exp(-jnp.where(region, exponent, 0.0))

  annotated = elem_status > 0
  occluded = elem_status == 1
  # 'exclude': occluded regions are drawn as background (weighted, target 0).
  drawn = annotated & ~occluded
  ignored = jnp.zeros_like(occluded)
  if occlusion_mode == 'include':
    drawn = annotated
  elif occlusion_mode == 'ignore':
    ignored = occluded

  h, w = grid_shape
  frac = jnp.sum(region, axis=(0, 1)).astype(jnp.float32) / float(h * w)  # (C,)
  unweighted = frac > 0.5
  w_in = jnp.where(ignored, 0.0, jnp.where(unweighted, 1.0, 1.0 - frac))
  w_out = jnp.where(unweighted, 1.0, frac)
  weight = jnp.where(region, w_in, w_out)
  weight = jnp.where(annotated, weight, 0.0)
  target = jnp.where(region & drawn, jnp.asarray(peak, jnp.float32) * gauss, 0.0)

  if other_keypoints.shape[0]:
    o_centre, o_axis, o_along, o_across, o_status = geometry(other_keypoints, other_status)
    o_region = _exponent(grid_shape, o_centre, o_axis, o_along, o_across) <= cut
    o_region = o_region & (o_status > 0)[:, None, None, :]  # (P, H, W, C)
    # Outside the active region; inside it the active weight wins (and where
    # that weight is 0, missing or ignored, it stays 0 either way).
    blocked = jnp.any(o_region, axis=0) & ~region
    weight = jnp.where(blocked, 0.0, weight)

  target = target.astype(jnp.float32)
  weight = weight.astype(jnp.float32)
  return Targets(target[..., :num_keypoints], weight[..., :num_keypoints],
                 target[..., num_keypoints:], weight[..., num_keypoints:])


def _prepare(keypoints, status, other_keypoints, other_status, batch_dims: int):
  """Converts and shape-checks the per-person arrays (with `batch_dims` leading axes)."""
  keypoints = jnp.asarray(keypoints, jnp.float32)
  status = jnp.asarray(status, jnp.int32)
  lead = keypoints.shape[:batch_dims]
  if keypoints.ndim != batch_dims + 2 or keypoints.shape[-1] != 2:
    raise ValueError(f'keypoints must have shape {"(B, " if batch_dims else "("}J, 2), '
                     f'got {keypoints.shape}')
  num_keypoints = keypoints.shape[-2]
  if status.shape != lead + (num_keypoints,):
    raise ValueError(f'status must have shape {lead + (num_keypoints,)}, got {status.shape}')
  if (other_keypoints is None) != (other_status is None):
    raise ValueError('other_keypoints and other_status must be given together')
  if other_keypoints is None:
    other_keypoints = jnp.zeros(lead + (0, num_keypoints, 2), jnp.float32)
    other_status = jnp.zeros(lead + (0, num_keypoints), jnp.int32)
  other_keypoints = jnp.asarray(other_keypoints, jnp.float32)
  other_status = jnp.asarray(other_status, jnp.int32)
  if (other_keypoints.ndim != batch_dims + 3 or other_keypoints.shape[:batch_dims] != lead
      or other_keypoints.shape[-2:] != (num_keypoints, 2)):
    raise ValueError(f'other_keypoints must have shape {lead + ("P", num_keypoints, 2)}, '
                     f'got {other_keypoints.shape}')
  if other_status.shape != other_keypoints.shape[:-1]:
    raise ValueError(f'other_status must have shape {other_keypoints.shape[:-1]}, '
                     f'got {other_status.shape}')
  return keypoints, status, other_keypoints, other_status


def render_targets(keypoints: jax.Array, status: jax.Array, *,
                   grid_shape: tuple[int, int],
                   part_pairs: Sequence[tuple[int, int]],
                   occlusion_mode: str = 'include',
                   other_keypoints: jax.Array | None = None,
                   other_status: jax.Array | None = None,
                   sigma: float = 1.3, peak: float = 12.0,
                   part_sigma_along: float = 0.15, part_sigma_across: float = 0.08,
                   min_part_sigma: float = 0.5, tail_cutoff: float = 1e-18) -> Targets:
  """Renders the targets and weights of ONE example (see the module docstring).

  Args:
    keypoints: (J, 2) [x, y] of the active person in output-grid pixels.
    status: (J,) 0 missing, 1 occluded, 2 visible.
    grid_shape: static (H, W) of the output grid.
    part_pairs: static (a, b) joint pairs, one body-part map each (may be empty).
    occlusion_mode: static, 'include', 'ignore' or 'exclude'.
    other_keypoints: (P, J, 2) other people in the image (P may be 0).
    other_status: (P, J) their status; padding rows are all 0.
    sigma, peak, part_sigma_along, part_sigma_across, min_part_sigma, tail_cutoff:
      the Gaussians' shape (see the module docstring).

  Returns:
    Targets with (H, W, J) keypoint and (H, W, K) part maps and weights.
  """
  keypoints, status, other_keypoints, other_status = _prepare(
      keypoints, status, other_keypoints, other_status, batch_dims=0)
  grid_shape, part_pairs, occlusion_mode = _check_static(
      grid_shape, part_pairs, occlusion_mode, keypoints.shape[0])
  _check_params(sigma, peak, part_sigma_along, part_sigma_across, min_part_sigma,
                tail_cutoff)
  return _render(keypoints, status, other_keypoints, other_status, sigma, peak,
                 part_sigma_along, part_sigma_across, min_part_sigma,
                 _cut_exponent(tail_cutoff), grid_shape=grid_shape,
                 part_pairs=part_pairs, occlusion_mode=occlusion_mode)


def render_batch(keypoints: jax.Array, status: jax.Array, *,
                 grid_shape: tuple[int, int],
                 part_pairs: Sequence[tuple[int, int]],
                 occlusion_mode: str = 'include',
                 other_keypoints: jax.Array | None = None,
                 other_status: jax.Array | None = None,
                 sigma: float = 1.3, peak: float = 12.0,
                 part_sigma_along: float = 0.15, part_sigma_across: float = 0.08,
                 min_part_sigma: float = 0.5, tail_cutoff: float = 1e-18) -> Targets:
  """`render_targets` vmapped over a leading batch axis B.

  keypoints (B, J, 2), status (B, J), other_keypoints (B, P, J, 2) and
  other_status (B, P, J) with other people padded to a common P (padding rows
  status 0). Returns Targets with a leading B axis: (B, H, W, J) and (B, H, W, K).
  """
  keypoints, status, other_keypoints, other_status = _prepare(
      keypoints, status, other_keypoints, other_status, batch_dims=1)
  grid_shape, part_pairs, occlusion_mode = _check_static(
      grid_shape, part_pairs, occlusion_mode, keypoints.shape[1])
  _check_params(sigma, peak, part_sigma_along, part_sigma_across, min_part_sigma,
                tail_cutoff)
  render = functools.partial(
      _render, sigma=sigma, peak=peak, part_sigma_along=part_sigma_along,
      part_sigma_across=part_sigma_across, min_part_sigma=min_part_sigma,
      cut=_cut_exponent(tail_cutoff), grid_shape=grid_shape, part_pairs=part_pairs,
      occlusion_mode=occlusion_mode)
  return jax.vmap(render)(keypoints, status, other_keypoints, other_status)
