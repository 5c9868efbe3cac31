"""The training loop: `train_and_evaluate(config, workdir)`.

Runs the pmapped step over the local devices of every process, checkpoints
with orbax (periodic, asynchronous, keep-N plus the best by validation
accuracy), resumes from `workdir` automatically and exactly (model,
optimiser, step and the position in the data stream: batch k is a pure
function of the seed and k), saves and exits cleanly on SIGTERM, and stops
with a clear message on a non-finite loss, keeping the last good checkpoint.
"""
from __future__ import annotations

import math
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import jax_utils
from flax.metrics import tensorboard

from rhpe_jax import checkpoints, data, evaluation
from rhpe_jax import train_step as step_lib


class NonFiniteLossError(RuntimeError):
  pass


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
        f'batch_size {config.batch_size} does not split over {devices} devices; '
        f'use a multiple of {devices} (e.g. --config.batch_size={devices * max(1, config.batch_size // devices)})')
  return config.batch_size // devices


def _fetch_metrics(device_metrics: list[dict]) -> dict[str, float]:
  """Mean of per-step metrics (already averaged over devices)."""
  stacked = jax.device_get([jax_utils.unreplicate(m) for m in device_metrics])
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last evaluation's metrics."""
  per_device_batch = check_batch_size(config)
  is_main = jax.process_index() == 0
  writer = tensorboard.SummaryWriter(workdir) if is_main else None

  train_data = data.TrainData(config, per_device_batch)
  per_epoch = steps_per_epoch(config, train_data.num_examples)
  num_steps = total_steps(config, train_data.num_examples)

  state = step_lib.create_train_state(config, jax.random.key(config.seed), per_epoch)
  manager = checkpoints.CheckpointManager(workdir, config)
  state = manager.restore_latest(state)
  start_step = int(state.step)
  if start_step:
    logging.info('Resumed from %s at step %d.', workdir, start_step)
  if writer and start_step == 0:
    writer.hparams({k: str(v) for k, v in config.to_dict().items()})

  p_train_step = step_lib.pmapped_train_step(config)
  state = jax_utils.replicate(state)
  batches = train_data.iterator(start_step)
  evaluator = evaluation.Evaluator(config)
  last_eval: dict[str, Any] = {}
  pending: list[dict] = []
  timer_start, timer_step = time.time(), start_step
  schedule = step_lib.learning_rate_schedule(config, per_epoch)

  with _StopRequest() as stop:
    step = start_step
    while step < num_steps:
      batch = next(batches)
      state, metrics = p_train_step(state, batch)
      pending.append(metrics)
      step += 1

      last_step = step == num_steps
      if step % config.log_every_steps == 0 or last_step or stop.signal:
        summary = _fetch_metrics(pending)
        pending = []
        if not all(math.isfinite(v) for v in summary.values()):
          manager.wait()
          raise NonFiniteLossError(
              f'non-finite loss at step {step} ({summary}); stopping. The last good '
              f'checkpoint in {workdir} is kept (step {manager.latest_step()}).')
        elapsed = time.time() - timer_start
        rate = (step - timer_step) * config.batch_size / max(elapsed, 1e-9)
        eta = (num_steps - step) * config.batch_size / max(rate, 1e-9)
        summary['learning_rate'] = float(schedule(step - 1))
        summary['images_per_s'] = rate
        if is_main:
          logging.info('step %d/%d loss %.4f  %.1f img/s  ETA %s', step, num_steps,
                       summary['loss'], rate, time.strftime('%H:%M:%S', time.gmtime(eta)))
          print(f'step {step}/{num_steps}  loss {summary["loss"]:.4f}  '
                f'{rate:.1f} img/s  ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}',
                flush=True)
          for key, value in summary.items():
            writer.scalar(f'train/{key}', value, step)
          writer.flush()
        timer_start, timer_step = time.time(), step

      if step % config.eval_every_steps == 0 or last_step:
        last_eval = evaluator.evaluate(state)
        if is_main:
          print(evaluation.format_summary(config, last_eval, step), flush=True)
          for key, value in last_eval['scalars'].items():
            writer.scalar(f'eval/{key}', value, step)
          evaluation.write_image_summaries(writer, config, last_eval, step)
          writer.flush()
        manager.save(step, jax_utils.unreplicate(state), metric=last_eval['score'],
                     force=True)
      elif step % config.checkpoint_every_steps == 0 or stop.signal:
        manager.save(step, jax_utils.unreplicate(state), force=bool(stop.signal))

      if stop.signal:
        manager.wait()
        logging.warning('Received signal %d: saved step %d in %s and stopped.',
                        stop.signal, step, workdir)
        print(f'stopped by signal {stop.signal}: checkpoint saved at step {step}', flush=True)
        break

  manager.wait()
  manager.close()
  if writer:
    writer.close()
  return last_eval
