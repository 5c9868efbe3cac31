"""The training loss: weighted squared error of every stage against the targets.

Every output of the network is supervised (the feed-forward head and each
recurrent pass: auxiliary losses), keypoint and body-part maps weighted
equally, all against the same targets (`rhpe_jax.codec.targets.Targets`).

Normalisation: per stage, the weighted squared error is SUMMED over pixels and
maps and AVERAGED over the batch. The authors' release uses an un-normalised
sum over pixels, maps and images; keeping the per-image sum means its
per-image learning rate carries over, and averaging over the batch makes the
loss independent of batch size: lr_ours = lr_release * batch_size (1e-5 with
batch 20 in the release -> 2e-4 here).

Pixels with weight 0 (missing joints, ignored occlusions, other people) give
an exactly zero gradient, since d/dp [w (p - t)^2] = 2 w (p - t).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rhpe_jax.codec.targets import Targets


def weighted_squared_error(pred: jax.Array, target: jax.Array,
                           weight: jax.Array) -> jax.Array:
  """sum over (H, W, C) and mean over B of weight * (pred - target)^2, in float32.

  pred (..., B, H, W, C); target and weight (B, H, W, C), broadcast against
  pred's leading axes. Returns (...,): one value per leading index (per stage).
  """
  pred = jnp.asarray(pred)
  target = jnp.asarray(target)
  weight = jnp.asarray(weight)
  if pred.ndim < 4:
    raise ValueError(f'pred must have shape (..., B, H, W, C), got {pred.shape}')
  if target.shape != pred.shape[-4:] or weight.shape != pred.shape[-4:]:
    raise ValueError(f'target {target.shape} and weight {weight.shape} must match the '
                     f'trailing (B, H, W, C) axes of pred {pred.shape}')
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  per_image = jnp.sum(weight.astype(jnp.float32) * diff * diff, axis=(-3, -2, -1))
  return jnp.mean(per_image, axis=-1)


@jax.jit
def pose_loss(keypoint_maps: jax.Array, part_maps: jax.Array,
              targets: Targets) -> tuple[jax.Array, jax.Array]:
  """Total and per-stage loss of the network's outputs.

  Args:
    keypoint_maps: (S, B, H, W, J) predictions of the S stages.
    part_maps: (S, B, H, W, K) predictions (K may be 0).
    targets: Targets with a leading batch axis, (B, H, W, J) and (B, H, W, K).

  Returns:
    (total, per_stage): float32 scalar (the sum over stages) and (S,) float32.
  """
  if keypoint_maps.ndim != 5 or part_maps.ndim != 5:
    raise ValueError(f'keypoint_maps {keypoint_maps.shape} and part_maps '
                     f'{part_maps.shape} must both be (S, B, H, W, C)')
  if keypoint_maps.shape[:4] != part_maps.shape[:4]:
    raise ValueError(f'keypoint_maps {keypoint_maps.shape} and part_maps '
                     f'{part_maps.shape} disagree on (S, B, H, W)')
  per_stage = (
      weighted_squared_error(keypoint_maps, targets.keypoint_maps,
                             targets.keypoint_weights)
      + weighted_squared_error(part_maps, targets.part_maps, targets.part_weights))
  return jnp.sum(per_stage), per_stage
