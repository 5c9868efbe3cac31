"""Train state, optimiser and the pure train/eval steps.

The steps are written for `jax.pmap` over local devices with a named axis:
gradients, metrics and batch-norm statistics are averaged over that axis, so
a step on a global batch gives the same result however the batch is split
across devices and hosts. Heat-map targets are rendered on the device from
keypoints inside the step, so the host ships keypoints rather than maps.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from rhpe_jax import model as model_lib
from rhpe_jax.codec import decode
from rhpe_jax.codec import targets
from rhpe_jax.core import config as config_lib
from rhpe_jax.core import keypoint_sets
from rhpe_jax.inference import predictor
from rhpe_jax.training import losses

AXIS = 'batch'  # the pmap axis name


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def _check_name(key: str, value: str, names: Sequence[str]) -> None:
  """ValueError unless `value` is one of the names config.`key` allows."""
  if value not in names:
    raise ValueError(f'{key} must be {" or ".join(repr(n) for n in names)}, got {value!r}')


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
                           total_steps: int | None = None) -> optax.Schedule:
  """The rate per step, after `warmup_steps` of linear warm-up from 0.

  'step' (the release): `learning_rate`, times each factor at its epoch.
  'cosine': cosine decay from `learning_rate` to 0 at `total_steps` (short
  runs, where a few step boundaries are a poor fit).
  """
  warmup = config.get('warmup_steps', 0)
  kind = config.get('lr_schedule', 'step')
  _check_name('lr_schedule', kind, config_lib.LR_SCHEDULES)
  if kind == 'step':
    boundaries = {int(round(epoch * steps_per_epoch)) + warmup: factor
                  for epoch, factor in zip(config.lr_boundaries_epochs, config.lr_factors)}
    main = optax.piecewise_constant_schedule(config.learning_rate, boundaries)
  else:  # 'cosine'
    if not total_steps:
      raise ValueError("lr_schedule 'cosine' needs the run's total number of steps")
    main = optax.cosine_decay_schedule(config.learning_rate, max(1, total_steps - warmup))
  if not warmup:
    return main
  ramp = optax.linear_schedule(0.0, config.learning_rate, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def create_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int,
                     total_steps: int | None = None) -> optax.GradientTransformation:
  """SGD with momentum (the paper) or Adam, with optional clipping and decay."""
  _check_name('optimizer', config.optimizer, config_lib.OPTIMIZERS)
  schedule = learning_rate_schedule(config, steps_per_epoch, total_steps)
  if config.optimizer == 'sgd':
    opt = optax.sgd(schedule, momentum=config.momentum)
  else:  # 'adam'
    opt = optax.adam(schedule)
  chain = []
  if config.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.weight_decay > 0:
    chain.append(optax.add_decayed_weights(config.weight_decay))
  return optax.chain(*chain, opt)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array,
                       steps_per_epoch: int, total_steps: int | None = None) -> TrainState:
  """Initial state for a single device (replicate it for pmap)."""
  net = model_lib.create_model(config)
  variables = model_lib.init_variables(
      net, rng, (1, config.input_size, config.input_size, 3))
  return train_state_from_variables(config, variables, steps_per_epoch, total_steps)


def train_state_from_variables(config: ml_collections.ConfigDict, variables: dict,
                               steps_per_epoch: int = 1, total_steps: int | None = 1
                               ) -> TrainState:
  """The state training starts from with the network's `variables`
  ({'params', 'batch_stats'}, e.g. imported weights): step 0, a fresh
  optimiser state. The schedule's lengths shape no part of the state."""
  net = model_lib.create_model(config)
  return TrainState.create(
      apply_fn=net.apply, params=variables['params'],
      batch_stats=variables['batch_stats'],
      tx=create_optimizer(config, steps_per_epoch, total_steps))


def render_targets_for_batch(batch: dict, config: ml_collections.ConfigDict,
                             grid_shape: tuple[int, int]) -> targets.Targets:
  """Targets on the output grid from a batch's keypoints in input pixels."""
  keypoint_set = keypoint_sets.of_config(config)
  return targets.render_batch(
      decode.input_to_grid(batch['keypoints'], model_lib.STRIDE), batch['keypoint_status'],
      grid_shape=grid_shape,
      part_pairs=keypoint_set.part_pairs if config.use_parts else (),
      occlusion_mode=config.occlusion_mode,
      other_keypoints=decode.input_to_grid(batch['other_keypoints'], model_lib.STRIDE),
      other_status=batch['other_keypoint_status'],
      sigma=config.sigma, peak=config.peak,
      part_sigma_along=config.part_sigma_along,
      part_sigma_across=config.part_sigma_across)


def train_step(state: TrainState, batch: dict, *,
               config: ml_collections.ConfigDict, axis_name: str | None = AXIS
               ) -> tuple[TrainState, dict]:
  """One optimisation step on this device's share of the global batch.

  Returns the new state and metrics averaged over `axis_name` (when given).
  """
  net = model_lib.create_model(config, axis_name)
  images = model_lib.normalize_images(batch['image'])
  grid = (images.shape[1] // model_lib.STRIDE, images.shape[2] // model_lib.STRIDE)
  target = render_targets_for_batch(batch, config, grid)

  def loss_fn(params):
    (keypoint_maps, part_maps), updates = net.apply(
        {'params': params, 'batch_stats': state.batch_stats}, images,
        train=True, mutable=['batch_stats'])
    total, per_stage = losses.pose_loss(keypoint_maps, part_maps, target)
    return total, (per_stage, updates['batch_stats'])

  (loss, (per_stage, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads)}
  for stage in range(per_stage.shape[0]):
    metrics[f'loss_stage_{stage}'] = per_stage[stage]
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  return new_state, metrics


def predict_step(state: TrainState, batch: dict, *,
                 config: ml_collections.ConfigDict) -> dict:
  """The inference path (rhpe_jax.inference.predictor.predict) on a train state.

  Returns `keypoints` (B, J, 2) in input pixels, `confidence` (B, J) (the
  maps' maxima, the paper's visibility score) and the last stage's maps.
  """
  return predictor.predict(
      model_lib.create_model(config), {'params': state.params, 'batch_stats': state.batch_stats},
      batch['image'], outputs=('keypoints', 'confidence', 'heatmaps', 'part_maps'))


def eval_step(state: TrainState, batch: dict, *,
              config: ml_collections.ConfigDict, axis_name: str | None = AXIS
              ) -> dict:
  """Validation loss (every stage) and predictions for one batch."""
  net = model_lib.create_model(config)
  images = model_lib.normalize_images(batch['image'])
  grid = (images.shape[1] // model_lib.STRIDE, images.shape[2] // model_lib.STRIDE)
  target = render_targets_for_batch(batch, config, grid)
  keypoint_maps, part_maps = net.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, images,
      train=False)
  total, _ = losses.pose_loss(keypoint_maps, part_maps, target)
  if axis_name is not None:
    total = jax.lax.pmean(total, axis_name)
  keypoints, confidence = decode.heatmaps_to_input(
      predictor.last_stage(keypoint_maps).astype(jnp.float32), model_lib.STRIDE)
  return {'loss': total, 'keypoints': keypoints, 'confidence': confidence}


def pmapped_train_step(config: ml_collections.ConfigDict, devices: Sequence | None = None):
  """`train_step` pmapped over `devices` (default: the local ones), the state
  buffers donated."""
  return jax.pmap(functools.partial(train_step, config=config, axis_name=AXIS),
                  axis_name=AXIS, donate_argnums=(0,), devices=devices)


def pmapped_eval_step(config: ml_collections.ConfigDict, devices: Sequence | None = None):
  return jax.pmap(functools.partial(eval_step, config=config, axis_name=AXIS),
                  axis_name=AXIS, devices=devices)


def replicate(tree: Any) -> Any:
  """`tree` (a train state) on every local device, laid out as the steps'
  outputs are (`predictor.replicate` over AXIS)."""
  return predictor.replicate(tree, AXIS)


def unreplicate(tree: Any) -> Any:
  return flax.jax_utils.unreplicate(tree)
