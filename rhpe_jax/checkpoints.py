"""Orbax checkpoints: the last N steps (asynchronous) plus the best by accuracy.

`workdir/checkpoints/latest/<step>` holds the most recent `keep_checkpoints`
saves; `workdir/checkpoints/best/<step>` the one with the highest validation
score. Every process calls `save` and `restore_*` (orbax synchronises the
hosts); the state is handed to orbax as host NumPy arrays, identical on every
process after a pmean-ed step, which the primary process writes and every
process reads back.

A checkpoint can break after orbax committed it (a full disk, a copy or sync
stopped half-way, a flaky network filesystem). Restoring the newest one then
falls back to the newest that can be read (`restore_first_readable`): each
unreadable one gets one `warning:` line (step, file, reason) and is moved to
`workdir/checkpoints/unreadable/<kind>_<step>`, outside the directories orbax
manages, so that it is never picked, counted against `keep_checkpoints` or
deleted. A save that fails stops training with `CheckpointSaveError`, which
names the step and the reason; the checkpoints saved before it stay as they
were (orbax writes into a temporary directory and deletes old steps only
after a save has committed).

A workdir describes itself: the first save writes the run's config beside
the checkpoints (CONFIG_FILE, `save_config`), with the keypoint set filled
in, so that `config_of_workdir` (PoseEstimator.from_workdir, the command
lines) needs nothing else; a run made before takes its config file.

The tools that only run a trained network (evaluate, predict, export) read
its variables alone (`restore_variables`): parameters and batch statistics,
the target built from the network, no optimiser; training restores its whole
state through `CheckpointManager`.
"""
from __future__ import annotations

import os
import pathlib
import re
import sys
from typing import Any, Callable, Sequence, TypeVar

import json

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_manager as ocp_manager

from rhpe_jax import model as model_lib
from rhpe_jax.core import config as config_lib
from rhpe_jax.core import config_checks
from rhpe_jax.core import keypoint_sets

T = TypeVar('T')

UNREADABLE = 'unreadable'  # checkpoints/unreadable/<kind>_<step>: set aside, never deleted
CONFIG_FILE = 'config.json'  # the run's config, beside checkpoints/

# What writing a checkpoint raises when the disk is at fault: tensorstore's
# errors are ValueErrors, a full disk or a permission an OSError.
_WRITE_ERRORS = (OSError, ValueError)
# What reading one raises when its files (or its fit to the target) are at
# fault: a bad metadata file adds a JSONDecodeError (a ValueError) or a
# FileNotFoundError, a target of another structure a KeyError or TypeError.
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError)


class UnreadableCheckpointError(ValueError):
  """No checkpoint that was asked for can be read (one-line message)."""


class CheckpointMismatchError(ValueError):
  """The checkpoint reads fine but does not fit the state of this config."""


class CheckpointSaveError(RuntimeError):
  """A save failed (no space, permission, I/O error); names the step and why."""


def describe_error(error: BaseException) -> str:
  """One line naming the file (where the error says) and the reason.

  tensorstore's messages chain every layer ('Error opening "zarr" driver:
  Error reading ... in OCDBT database at local file ...: ...') and end with
  the whole spec as JSON; this keeps the innermost file and reason.
  """
  if isinstance(error, OSError) and error.strerror:
    where = f': {error.filename}' if error.filename else ''
    return f'{error.strerror} [Errno {error.errno}]{where}'
  message = ' '.join(str(error).split())
  message = re.split(r' \[(?:tensorstore_spec|source locations)=', message)[0]
  status = re.match(r'([A-Z][A-Z_]+): ', message)
  if not status:
    return f'{type(error).__name__}: {message[:300]}'
  os_error = re.search(r"\[os_error_code='(\d+)'\]", message)
  message = re.sub(r" \[\w+='[^']*'\]", '', message)
  files = list(re.finditer(r'(?:local file|Failed writing:) "([^"]+)"', message))
  detail = message[files[-1].end():] if files else message[status.end():]
  detail = detail.lstrip(': ').rsplit(': ', 1)[-1] if detail.strip(': ') else ''
  if os_error:
    detail = f'{os.strerror(int(os_error.group(1)))} [Errno {os_error.group(1)}]'
  reason = f'{detail} ({status.group(1)})' if detail else status.group(1)
  return f'{files[-1].group(1)}: {reason}' if files else reason


def read_problem(directory: str, step: int) -> str | None:
  """Why checkpoint `step` of the orbax directory `directory` cannot be read,
  or None when every array in it reads. Needs no target, so that a
  checkpoint of another config counts as readable."""
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  try:
    manager.restore(step, args=ocp.args.StandardRestore())
    return None
  except Exception as error:  # pylint: disable=broad-except  # anything: it does not read
    return describe_error(error)
  finally:
    manager.close()


def set_aside(directory: str, step: int) -> str:
  """Moves `directory/step` to `checkpoints/unreadable/<kind>_<step>` (a new
  name if that exists); returns the new path."""
  source = os.path.join(directory, str(step))
  root = os.path.join(os.path.dirname(os.path.abspath(directory)), UNREADABLE)
  os.makedirs(root, exist_ok=True)
  target = os.path.join(root, f'{os.path.basename(os.path.normpath(directory))}_{step}')
  base, copy = target, 1
  while os.path.exists(target):
    copy += 1
    target = f'{base}_{copy}'
  os.rename(source, target)
  return target


def _worst_on_any_process(code: int) -> int:
  """The largest `code` over all processes (every process must take the same
  branch, or the next collective hangs)."""
  if jax.process_count() == 1:
    return code
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.max(multihost_utils.process_allgather(np.int32(code))))


def _warn(message: str) -> None:
  if jax.process_index() == 0:
    print(f'warning: {message}', file=sys.stderr, flush=True)


_READ, _UNREADABLE, _MISFIT = 0, 1, 2


def restore_first_readable(candidates: Sequence[tuple[str, int]],
                           restore: Callable[[str, int], T], *,
                           move_required: bool = True) -> tuple[T, str, int]:
  """`restore(directory, step)` of the first candidate (orbax directory, step)
  that can be read; returns (its result, directory, step).

  A candidate whose files cannot be read is skipped with one `warning:` line
  and set aside (`set_aside`) once a readable one is found; when none can be
  read, nothing is moved and UnreadableCheckpointError says why (one line).
  A candidate that reads but does not fit `restore`'s target raises
  CheckpointMismatchError: an older checkpoint would not fit either. When
  moving fails, `move_required` raises the OSError (training would otherwise
  meet the step again); otherwise the line says so and the fallback goes on.
  """
  if not candidates:
    raise ValueError('no checkpoint to restore')
  unreadable: list[tuple[str, int, str]] = []
  for directory, step in candidates:
    error = None
    try:
      result = restore(directory, step)
      code = _READ
    except _READ_ERRORS as e:  # anything else is a bug: it propagates
      error = e
      problem = read_problem(directory, step)
      code = _MISFIT if problem is None else _UNREADABLE
    code = _worst_on_any_process(code)
    if code == _MISFIT:
      path = os.path.join(directory, str(step))
      detail = describe_error(error) if error is not None else 'see process 0'
      raise CheckpointMismatchError(
          f'checkpoint {path} does not fit this config (width, iterations, parts, keypoint set, '
          f'optimizer?): {detail}')
    if code == _READ:
      break
    unreadable.append((directory, step, problem if error is not None else 'on another process'))
  else:
    directory, step, problem = unreadable[0]
    if len(unreadable) == 1:
      raise UnreadableCheckpointError(
          f'checkpoint step {step} in {directory} cannot be read: {problem}')
    steps = ', '.join(str(step) for _, step, _ in unreadable)
    raise UnreadableCheckpointError(
        f'no checkpoint in {os.path.dirname(os.path.abspath(directory))} can be read '
        f'(steps {steps}); step {step}: {problem}')
  for bad_directory, bad_step, problem in unreadable:
    where = _set_aside_once(bad_directory, bad_step, move_required)
    _warn(f'checkpoint step {bad_step} cannot be read: {problem}; {where}; '
          f'using step {step}')
  return result, directory, step


def _set_aside_once(directory: str, step: int, move_required: bool) -> str:
  """Process 0 moves the checkpoint; every process waits for it and learns
  whether it moved."""
  where, failed = '', False
  if jax.process_index() == 0:
    try:
      where = f'moved to {set_aside(directory, step)}'
    except OSError as error:
      where = f'left in place (moving it failed: {describe_error(error)})'
      failed = True
  if _worst_on_any_process(int(failed)) and move_required:  # also the hosts' barrier
    raise OSError(f'cannot move the unreadable checkpoint {os.path.join(directory, str(step))} '
                  f'aside: {where or "see process 0"}')
  return where


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
    self._saving: int | None = None  # the step whose asynchronous save is under way
    self._workdir, self._config = workdir, config  # config.json: written by the first save

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def restore_latest(self, state):
    """`state` with the newest readable saved values, or unchanged if there
    is none; unreadable newer ones are set aside (`restore_first_readable`)."""
    steps = sorted(self._latest.all_steps(), reverse=True)
    return self._restore([(self._latest, step) for step in steps], state)

  def restore_best(self, state):
    """`state` with the best saved values; falls back to the newest."""
    step = self._best.best_step()
    if step is None:
      return self.restore_latest(state)
    steps = sorted(self._latest.all_steps(), reverse=True)
    return self._restore([(self._best, step)] + [(self._latest, s) for s in steps], state)

  def _restore(self, candidates: list[tuple[ocp.CheckpointManager, int]], state):
    if not candidates:
      return state
    managers = {str(manager.directory): manager for manager, _ in candidates}
    target = _payload(state)
    restored, _, _ = restore_first_readable(
        [(str(manager.directory), step) for manager, step in candidates],
        lambda directory, step: managers[directory].restore(
            step, args=ocp.args.StandardRestore(target)))
    for manager in managers.values():
      manager.reload()  # forget the steps set aside
    return state.replace(**restored)

  def save(self, step: int, state, metric: float | None = None, force: bool = False) -> None:
    """Saves `state` (unreplicated) at `step`; also as best when `metric` beats it.

    Asynchronous: returns once the values are on the host; `wait()` blocks
    until they are on disk. A failed save raises CheckpointSaveError, here or
    from the next `save`, `wait` or `close`.
    """
    self.wait()
    if self._config is not None and jax.process_index() == 0:
      save_config(self._config, self._workdir)
      self._config = None
    try:
      payload = None
      if self._latest.latest_step() != step:
        payload = _host_payload(state)
        self._saving = step
        self._latest.save(step, args=ocp.args.StandardSave(payload), force=force)
      # A step already among the best was saved before a fallback to an older
      # checkpoint; the resumed run recomputes it bit for bit.
      if metric is not None and step not in self._best.all_steps():
        payload = payload if payload is not None else _host_payload(state)
        self._saving = step
        self._best.save(step, args=ocp.args.StandardSave(payload),
                        metrics={'score': float(metric)}, force=True)
    except ocp_manager.StepAlreadyExistsError:
      raise
    except _WRITE_ERRORS as error:
      raise self._save_error(step, error) from error

  def wait(self) -> None:
    """Blocks until the saves under way are on disk (CheckpointSaveError if
    one failed)."""
    try:
      self._latest.wait_until_finished()
      self._best.wait_until_finished()
    except _WRITE_ERRORS as error:
      raise self._save_error(self._saving, error) from error
    self._saving = None

  def _save_error(self, step: int | None, error: BaseException) -> CheckpointSaveError:
    self._saving = None
    self._latest.reload()  # what is on disk now
    kept = self._latest.latest_step()
    kept = (f'the checkpoints saved before it are untouched (newest: step {kept} in '
            f'{self._latest.directory})' if kept is not None else 'no earlier checkpoint')
    return CheckpointSaveError(
        f'saving the checkpoint of step {step} failed: {describe_error(error)}; '
        f'training stopped; {kept}')

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._latest.close()
      self._best.close()


# --------------------------------------------------------------------------
# The network's variables alone, for the tools that run a trained network.

def _saved_steps(directory) -> list[int]:
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir()
                if p.is_dir() and p.name.isdigit() and (p / 'default').is_dir())


def checkpoint_candidates(workdir: str, checkpoint: str = 'best') -> list[tuple[str, int]]:
  """The checkpoints (`checkpoints/<kind>` directory, step) that `checkpoint`
  may restore, in order: the one asked for first, then those to fall back to
  when it cannot be read.

  `checkpoint` is 'best' (the best by score, then the newest; only the newest
  when no best was saved, as training's resume), 'latest' (newest first; the
  best when no other was saved), or a step number (looked up in both; no
  fallback). Raises FileNotFoundError / ValueError with a one-line reason.
  """
  root = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir} does not exist')
  best = _saved_steps(os.path.join(root, 'best'))
  latest = _saved_steps(os.path.join(root, 'latest'))
  if not best and not latest:
    raise FileNotFoundError(f'no checkpoint in {root} (train first with experiments.train)')
  newest_first = [(os.path.join(root, 'latest'), step) for step in reversed(latest)]
  if checkpoint == 'best':
    return [(os.path.join(root, 'best'), step) for step in best[-1:]] + newest_first
  if checkpoint == 'latest':
    return newest_first or [(os.path.join(root, 'best'), best[-1])]
  if not str(checkpoint).isdigit():
    raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got {checkpoint!r}")
  step = int(checkpoint)
  for kind, steps in (('latest', latest), ('best', best)):
    if step in steps:
      return [(os.path.join(root, kind), step)]
  raise FileNotFoundError(
      f'no checkpoint of step {step} in {root}; saved steps: {sorted(set(best + latest))}')


def find_checkpoint(workdir: str, checkpoint: str = 'best') -> tuple[str, int]:
  """(`checkpoints/<kind>/<step>` directory, step): the checkpoint that
  `checkpoint` asks for (see `checkpoint_candidates`)."""
  directory, step = checkpoint_candidates(workdir, checkpoint)[0]
  return os.path.join(directory, str(step)), step


def variables_target(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """{'params', 'batch_stats'} of the config's network as host zeros of the
  right shapes and dtypes: the network's abstract initialisation, nothing
  computed or compiled."""
  net = model_lib.create_model(config)
  image = jax.ShapeDtypeStruct((1, config.input_size, config.input_size, 3), np.float32)
  shapes = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False), image)
  zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes))
  return {'params': zeros['params'], 'batch_stats': zeros.get('batch_stats', {})}


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `config` (its keypoint set filled in) to workdir/CONFIG_FILE,
  whole or not at all."""
  values = json.loads(config.to_json_best_effort())
  if (values.get('keypoint_set') == keypoint_sets.DATASET
      and not values.get('dataset_keypoint_set')):
    try:
      values['dataset_keypoint_set'] = keypoint_sets.of_config(config).to_dict()
    except ValueError:
      pass  # not read yet: keypoint_set.json beside it holds it (keypoint_set_of_workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + '.partial', 'w') as f:
    json.dump(values, f, indent=1)
  os.replace(path + '.partial', path)


def config_of_workdir(workdir: str, config: Any = None) -> ml_collections.ConfigDict:
  """The config of a run: `config` (a ConfigDict, or a config file: .py with
  get_config() or .json) where given, else the one the run wrote
  (CONFIG_FILE); checked (config_checks) and its keypoint set filled in."""
  if config is None:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isdir(workdir):
      raise FileNotFoundError(f'workdir {workdir} does not exist')
    if not os.path.exists(path):
      raise FileNotFoundError(f'{workdir} has no {CONFIG_FILE} (a run made before runs wrote '
                              'their config): pass its config file as config')
    config = path
  if isinstance(config, (str, os.PathLike)):
    config = read_config(str(config))
  elif not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f'config must be a ConfigDict or a config file, got {type(config).__name__}')
  config = ml_collections.ConfigDict(config.to_dict())
  config_checks.check_config(config)
  keypoint_set_of_workdir(config, workdir)
  return config


def read_config(path: str) -> ml_collections.ConfigDict:
  """A config file: a .py file's get_config(), or a JSON file of config
  values (CONFIG_FILE) over the default config."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config file {path} does not exist')
  if path.endswith('.py'):
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.spec_from_file_location('_rhpe_jax_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
      raise ValueError(f'config file {path} has no get_config()')
    return module.get_config()
  try:
    with open(path) as f:
      values = json.load(f)
  except ValueError as error:
    raise ValueError(f'config file {path} is not JSON ({error})') from None
  if not isinstance(values, dict):
    raise ValueError(f'config file {path} is not a JSON object of config values')
  config_checks.upgrade_old_keys(values)  # a run's file from before a key was renamed
  config = config_lib.default_config()
  with config.unlocked():
    for key, value in values.items():
      default = config.get(key)
      config[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) \
          else value
  return config


def keypoint_set_of_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Fills in `config.dataset_keypoint_set` (keypoint set 'dataset', not yet read) from
  the set the run left in `workdir`: the checkpoint's heads are that set's."""
  if config.keypoint_set == keypoint_sets.DATASET and not config.dataset_keypoint_set:
    found = keypoint_sets.read_from_workdir(workdir)
    if found is not None:
      with config.unlocked():
        config.dataset_keypoint_set = found.to_dict()


def restore_variables(config: ml_collections.ConfigDict, workdir: str,
                      checkpoint: str = 'best') -> tuple[dict[str, Any], int]:
  """({'params', 'batch_stats'} as host arrays, step) of a workdir's checkpoint.

  Reads only the network's variables (orbax partial restore): the optimiser
  state is left on disk, so that a checkpoint runs whatever optimiser settings
  the config has now. 'best' and 'latest' fall back to the newest readable
  checkpoint when the one asked for cannot be read (one `warning:` line each;
  the unreadable one is set aside, `restore_first_readable`); a step number
  does not.
  """
  candidates = checkpoint_candidates(workdir, checkpoint)
  keypoint_set_of_workdir(config, workdir)
  target = variables_target(config)

  def restore(directory: str, step: int):
    manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(create=False, read_only=True))
    try:
      restored = manager.restore(step, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True))
    finally:
      manager.close()
    restored = {'params': restored['params'], 'batch_stats': restored['batch_stats']}
    jax.tree_util.tree_map_with_path(_check_shape, target, restored)  # host arrays take any
    return restored

  variables, _, step = restore_first_readable(candidates, restore, move_required=False)
  return variables, step


def read_variables(workdir: str, checkpoint: str = 'latest') -> tuple[dict[str, Any], int]:
  """({'params', 'batch_stats'} as saved, step) of a workdir's checkpoint,
  read without a config: the shapes are the checkpoint's own, for carrying
  weights to another network (rhpe_jax.model.transfer). Falls back past
  unreadable checkpoints as `restore_variables` does."""

  def restore(directory: str, step: int):
    path = os.path.join(directory, str(step), 'default')
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(path)
    tree = getattr(getattr(metadata, 'item_metadata', metadata), 'tree', metadata)
    as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                      dict(tree))
    restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    return {'params': restored['params'], 'batch_stats': restored.get('batch_stats', {})}

  variables, _, step = restore_first_readable(checkpoint_candidates(workdir, checkpoint),
                                              restore, move_required=False)
  return variables, step


def _check_shape(path, want: np.ndarray, got: np.ndarray) -> None:
  """A ValueError (the checkpoint does not fit) unless `got` has `want`'s shape."""
  if np.shape(got) != want.shape:
    raise ValueError(f'{jax.tree_util.keystr(path)} has shape {np.shape(got)} in the '
                     f'checkpoint, {want.shape} in the network of this config')
