"""The training loop: `train_and_evaluate(config, workdir)`.

Runs the pmapped step over the local devices of every process, checkpoints
with orbax (periodic, asynchronous, keep-N plus the best by validation
accuracy), resumes from `workdir` automatically and exactly (model,
optimiser, step and the position in the data stream: batch k is a pure
function of the seed and k), saves and exits cleanly on SIGTERM, and stops
with a clear message on a non-finite loss, keeping the last good checkpoint
(no state is saved before the metrics of every step up to it were checked).
An unreadable newest checkpoint costs that checkpoint, not the run: training
resumes from the newest readable one (`checkpoints.restore_first_readable`);
a save that fails stops training (`checkpoints.CheckpointSaveError`).
"""
from __future__ import annotations

import math
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax.metrics import tensorboard
from jax.experimental import multihost_utils

from rhpe_jax import checkpoints
from rhpe_jax.core import config_checks
from rhpe_jax.core import runtime
from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import datasets as data
from rhpe_jax.evaluation import evaluator as evaluation
from rhpe_jax.model import transfer
from rhpe_jax.training import steps as step_lib


class NonFiniteLossError(RuntimeError):
  """Training diverged; the message names the step and the last good checkpoint."""


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: no handlers
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def steps_per_epoch(config: ml_collections.ConfigDict, num_examples: int) -> int:
  return max(1, num_examples // config.batch_size)


def total_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return int(math.ceil(config.num_epochs * steps_per_epoch(config, num_examples)))


def check_batch_size(config: ml_collections.ConfigDict) -> int:
  """Per-device batch; the global batch must split evenly over all devices."""
  devices = jax.device_count()
  if config.batch_size % devices:
    raise ValueError(
        f'config.batch_size = {config.batch_size}: must be a multiple of the {devices} '
        f'devices, e.g. config.batch_size = {devices * max(1, round(config.batch_size / devices))}')
  return config.batch_size // devices


def _any_process(flag: bool) -> bool:
  """True on every process when `flag` is true on any (a SIGTERM may reach
  one host first; all must stop at the same step or the collectives hang)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))


def _every(step: int, period: int) -> bool:
  """Whether `step` is a multiple of `period` (never when period <= 0)."""
  return period > 0 and step % period == 0


def _to_host(device_metrics: list[dict]) -> list[dict[str, float]]:
  """Per-step metrics (already averaged over devices) as host floats."""
  fetched = jax.device_get([step_lib.unreplicate(m) for m in device_metrics])
  return [{k: float(v) for k, v in m.items()} for m in fetched]


def _check_finite(host_metrics: list[dict[str, float]], first_step: int, workdir: str,
                  manager: checkpoints.CheckpointManager) -> None:
  for offset, metrics in enumerate(host_metrics):
    if not all(math.isfinite(v) for v in metrics.values()):
      manager.wait()
      bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
      raise NonFiniteLossError(
          f'non-finite training metrics at step {first_step + offset} {bad}; stopped. '
          f'The last good checkpoint (step {manager.latest_step()}) is kept in {workdir}; '
          'lower the learning rate or set grad_clip_norm.')


def heatmap_pictures(images: np.ndarray, heatmaps: np.ndarray, peak: float) -> np.ndarray:
  """Inputs (N, S, S, 3) uint8 beside themselves overlaid in red with the
  maximum over joints of their heat maps (N, S/4, S/4, J): (N, S, 2S, 3)."""
  scale = images.shape[1] // heatmaps.shape[1]
  strength = np.clip(heatmaps.max(-1) / peak, 0.0, 1.0)
  strength = strength.repeat(scale, 1).repeat(scale, 2)[..., None]
  red = np.array([255.0, 0.0, 0.0])
  overlay = images * (1.0 - strength) + red * strength
  return np.concatenate([images, overlay.round().astype(np.uint8)], axis=2)


def _write_heatmap_summaries(writer, config, state, evaluation_result, step: int) -> None:
  images = evaluation_result['predictions'].get('images')
  if images is None or not len(images):
    return
  predict = jax.jit(lambda s, b: step_lib.predict_step(s, b, config=config))
  heatmaps = np.asarray(predict(state, {'image': images})['heatmaps'])
  writer.image('eval/heatmaps', heatmap_pictures(images, heatmaps, config.peak), step,
               max_outputs=len(images))


def source_keypoint_set(config: ml_collections.ConfigDict) -> keypoint_sets.KeypointSet:
  """The keypoint set of the network `config.init_from` holds."""
  if config.init_from_keypoint_set:
    return keypoint_sets.built_in(config.init_from_keypoint_set)
  found = keypoint_sets.read_from_workdir(config.init_from)
  if found is None:
    raise ValueError(f'config.init_from = {config.init_from!r} has no '
                     f'{keypoint_sets.WORKDIR_FILE}: '
                     "name its keypoint set, e.g. config.init_from_keypoint_set = 'mpii'")
  return found


def start_from_checkpoint(config: ml_collections.ConfigDict, state):
  """The fresh `state` with the network of `config.init_from` carried over
  (trunk and fusion copied, heads by keypoint name; the optimiser starts
  fresh). Prints one line saying what was restored and what starts fresh."""
  source_set = source_keypoint_set(config)
  source, step = checkpoints.read_variables(config.init_from,
                                            str(config.init_from_checkpoint))
  fresh = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  variables, moved = transfer.transfer_variables(source, source_set, fresh,
                                                 keypoint_sets.of_config(config))
  if jax.process_index() == 0:
    print(f'started from {config.init_from} (step {step}, {source_set.name}): '
          f'{moved.summary()}', flush=True)
  return state.replace(params=jax.tree_util.tree_map(jnp.asarray, variables['params']),
                       batch_stats=jax.tree_util.tree_map(jnp.asarray,
                                                          variables['batch_stats']))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last evaluation's metrics
  ({} when no evaluation ran, e.g. when `workdir` holds a finished run).

  Sets the process up first (rhpe_jax.core.runtime.setup), where the command
  line has not: the project's XLA flags, TensorFlow off the GPUs.
  """
  runtime.setup()
  config_checks.check_config(config)
  check_batch_size(config)
  is_main = jax.process_index() == 0
  data.resolve_keypoint_set(config, workdir)  # a dataset's own keypoint set, if it has one

  train_data = data.TrainData(config)
  per_epoch = steps_per_epoch(config, train_data.num_examples)
  num_steps = total_steps(config, train_data.num_examples)

  state = step_lib.create_train_state(config, jax.random.key(config.seed), per_epoch,
                                      num_steps)
  manager = checkpoints.CheckpointManager(workdir, config)
  state = manager.restore_latest(state)
  start_step = int(state.step)
  if start_step == 0 and config.init_from:
    state = start_from_checkpoint(config, state)
  if is_main:
    keypoint_sets.save_to_workdir(keypoint_sets.of_config(config), workdir)  # for prediction
  if start_step:
    logging.info('Resumed from %s at step %d.', workdir, start_step)
    if is_main:
      print(f'resumed from step {start_step}', flush=True)
  writer = tensorboard.SummaryWriter(workdir) if is_main else None
  if writer and start_step == 0:
    writer.hparams({k: str(v) for k, v in config.to_dict().items()})

  p_train_step = step_lib.pmapped_train_step(config)
  state = step_lib.replicate(state)
  batches = train_data.iterator(start_step)
  evaluator = evaluation.Evaluator(config, step_lib.pmapped_eval_step(config))
  schedule = step_lib.learning_rate_schedule(config, per_epoch, num_steps)
  last_eval: dict[str, Any] = {}
  pending: list[dict] = []  # device metrics not yet checked
  checked: list[dict[str, float]] = []  # host metrics since the last log line
  timer_start, timer_step = time.time(), start_step

  try:
    with _StopRequest() as stop:
      step = start_step
      while step < num_steps:
        state, metrics = p_train_step(state, next(batches))
        pending.append(metrics)
        step += 1
        stopping = _any_process(stop.signal is not None)
        last_step = step == num_steps
        log_now = _every(step, config.log_every_steps) or last_step or stopping
        eval_now = config.eval_every_steps > 0 and (
            _every(step, config.eval_every_steps) or last_step)
        save_now = (eval_now or _every(step, config.checkpoint_every_steps) or last_step
                    or stopping)

        if log_now or save_now:  # nothing is logged or saved before it is checked
          fresh = _to_host(pending)
          _check_finite(fresh, step - len(pending) + 1, workdir, manager)
          pending = []
          checked.extend(fresh)

        if log_now:
          summary = {k: float(np.mean([m[k] for m in checked])) for k in checked[0]}
          checked = []
          elapsed = max(time.time() - timer_start, 1e-9)
          rate = (step - timer_step) * config.batch_size / elapsed
          eta = time.strftime('%H:%M:%S', time.gmtime((num_steps - step) * elapsed
                                                      / max(step - timer_step, 1)))
          summary['learning_rate'] = float(schedule(step - 1))
          summary['images_per_s'] = rate
          if is_main:
            print(f'step {step}/{num_steps}  loss {summary["loss"]:.4f}  '
                  f'{rate:.1f} img/s  ETA {eta}', flush=True)
            for key, value in summary.items():
              writer.scalar(f'train/{key}', value, step)
            writer.flush()
          timer_start, timer_step = time.time(), step

        if eval_now:
          last_eval = evaluator.evaluate(state)
          if is_main:
            print(evaluation.format_summary(config, last_eval, step), flush=True)
            for key, value in last_eval['scalars'].items():
              writer.scalar(f'eval/{key}', value, step)
            evaluation.write_image_summaries(writer, config, last_eval, step)
            _write_heatmap_summaries(writer, config, step_lib.unreplicate(state),
                                     last_eval, step)
            writer.flush()
        if save_now:
          manager.save(step, step_lib.unreplicate(state),
                       metric=last_eval['score'] if eval_now else None,
                       force=stopping or eval_now)
        if eval_now or save_now:
          timer_start, timer_step = time.time(), step  # rates count training only

        if stopping:
          manager.wait()
          logging.warning('Stop requested: saved step %d in %s and stopped.', step, workdir)
          if is_main:
            print(f'stopped by signal: checkpoint saved at step {step}', flush=True)
          break
      else:
        if start_step >= num_steps and is_main:
          print(f'{workdir} already holds step {start_step} of {num_steps}; nothing to do',
                flush=True)
  finally:
    try:
      manager.close()  # raises CheckpointSaveError if the last save failed
    finally:
      if writer:
        writer.close()
  return last_eval
