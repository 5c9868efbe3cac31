"""Orbax checkpoints: the last N steps (asynchronous) plus the best by accuracy.

`workdir/checkpoints/latest/<step>` holds the most recent `keep_checkpoints`
saves; `workdir/checkpoints/best/<step>` the one with the highest validation
score. Every process calls `save` and `restore_*` (orbax synchronises the
hosts); the state is handed to orbax as host NumPy arrays, identical on every
process after a pmean-ed step, which the primary process writes and every
process reads back.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


def _payload(state) -> dict[str, Any]:
  """What a checkpoint holds: everything of the train state that changes.

  The RNG needs no entry: the network has no dropout and the augmentation
  draws are a pure function of (seed, position in the data stream), and the
  position is `step` times the global batch.
  """
  return {'step': state.step, 'params': state.params,
          'batch_stats': state.batch_stats, 'opt_state': state.opt_state}


def _host_payload(state) -> dict[str, Any]:
  """The payload copied to host memory, so that the next (donating) train step
  cannot touch what an asynchronous save is still writing, and so that every
  process hands orbax the same process-local values."""
  copy = lambda x: x if isinstance(x, (int, float)) else np.array(x)  # always a copy
  return jax.tree_util.tree_map(copy, _payload(state))


def _barriers(prefix: str) -> ocp.options.MultiprocessingOptions:
  """Host barriers named per manager: both managers save the same step at an
  evaluation, and barriers of the same name would collide across hosts."""
  return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=prefix)


class CheckpointManager:
  """The two orbax managers of a workdir behind one small interface."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    root = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._latest = ocp.CheckpointManager(
        os.path.join(root, 'latest'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True,
            create=True, multiprocessing_options=_barriers('latest')))
    self._best = ocp.CheckpointManager(
        os.path.join(root, 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda metrics: metrics['score'], best_mode='max',
            enable_async_checkpointing=True, create=True,
            multiprocessing_options=_barriers('best')))

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def restore_latest(self, state):
    """`state` with the newest saved values, or unchanged if there is none."""
    return self._restore(self._latest, self._latest.latest_step(), state)

  def restore_best(self, state):
    """`state` with the best saved values; falls back to the newest."""
    step = self._best.best_step()
    if step is None:
      return self.restore_latest(state)
    return self._restore(self._best, step, state)

  @staticmethod
  def _restore(manager: ocp.CheckpointManager, step: int | None, state):
    if step is None:
      return state
    restored = manager.restore(step, args=ocp.args.StandardRestore(_payload(state)))
    return state.replace(**restored)

  def save(self, step: int, state, metric: float | None = None, force: bool = False) -> None:
    """Saves `state` (unreplicated) at `step`; also as best when `metric` beats it.

    Asynchronous: returns once the values are on the host; `wait()` blocks
    until they are on disk.
    """
    payload = None
    if self._latest.latest_step() != step:
      payload = _host_payload(state)
      self._latest.save(step, args=ocp.args.StandardSave(payload), force=force)
    if metric is not None:
      payload = payload if payload is not None else _host_payload(state)
      self._best.save(step, args=ocp.args.StandardSave(payload),
                      metrics={'score': float(metric)}, force=True)

  def wait(self) -> None:
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._latest.close()
    self._best.close()
