"""CheckpointManager: exact round trips, keep-N, best by score, fallbacks."""
import ml_collections
import numpy as np
import optax
import pytest
from flax.training import train_state

from rhpe_jax import checkpoints


class _State(train_state.TrainState):
  batch_stats: dict = None


def _state(seed: int, step: int) -> _State:
  """A small train state with SGD-momentum state, all values from `seed`."""
  rng = np.random.default_rng(seed)
  params = {'conv': {'kernel': rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
                     'bias': rng.normal(size=(4,)).astype(np.float32)}}
  state = _State.create(apply_fn=None, params=params, tx=optax.sgd(0.1, momentum=0.9),
                        batch_stats={'bn': {'mean': rng.normal(size=(2, 4)).astype(np.float32)}})
  momentum = {'conv': {'kernel': rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
                       'bias': rng.normal(size=(4,)).astype(np.float32)}}
  opt_state = (optax.TraceState(trace=momentum),) + tuple(state.opt_state[1:])
  return state.replace(step=step, opt_state=opt_state)


def _leaves(state) -> list[np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(
      (state.step, state.params, state.batch_stats, state.opt_state))]


def _assert_same(a, b):
  left, right = _leaves(a), _leaves(b)
  assert len(left) == len(right)
  for x, y in zip(left, right):
    np.testing.assert_array_equal(x, y)  # bit for bit


@pytest.fixture
def config():
  return ml_collections.ConfigDict({'keep_checkpoints': 2})


def test_round_trip_keep_n_and_best(tmp_path, config):
  manager = checkpoints.CheckpointManager(str(tmp_path), config)
  template = _state(seed=100, step=0)
  assert manager.latest_step() is None
  _assert_same(manager.restore_latest(template), template)  # nothing saved: unchanged
  _assert_same(manager.restore_best(template), template)

  scores = {1: None, 2: 0.5, 3: 0.9, 4: 0.7}
  for step, score in scores.items():
    manager.save(step, _state(seed=step, step=step), metric=score)
  manager.wait()
  assert manager.latest_step() == 4
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints' / 'latest').iterdir()
                if p.name.isdigit()) == [3, 4]  # keep 2
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints' / 'best').iterdir()
                if p.name.isdigit()) == [3]  # the highest score
  manager.close()

  reopened = checkpoints.CheckpointManager(str(tmp_path), config)
  latest = reopened.restore_latest(template)
  assert int(latest.step) == 4
  _assert_same(latest, _state(seed=4, step=4))
  best = reopened.restore_best(template)
  assert int(best.step) == 3
  _assert_same(best, _state(seed=3, step=3))
  reopened.close()


def test_restore_best_falls_back_to_latest(tmp_path, config):
  manager = checkpoints.CheckpointManager(str(tmp_path), config)
  manager.save(7, _state(seed=7, step=7))
  manager.close()
  reopened = checkpoints.CheckpointManager(str(tmp_path), config)
  _assert_same(reopened.restore_best(_state(seed=0, step=0)), _state(seed=7, step=7))
  reopened.close()


def test_saved_values_do_not_follow_later_changes(tmp_path, config):
  """An asynchronous save must write the values of the step it was asked for,
  even when the caller reuses or overwrites its buffers right after."""
  manager = checkpoints.CheckpointManager(str(tmp_path), config)
  state = _state(seed=5, step=5)
  expected = [x.copy() for x in _leaves(state)]
  manager.save(5, state)
  state.params['conv']['kernel'][...] = np.nan  # the caller's buffer changes
  manager.close()
  restored = checkpoints.CheckpointManager(str(tmp_path), config).restore_latest(
      _state(seed=0, step=0))
  for x, y in zip(_leaves(restored), expected):
    np.testing.assert_array_equal(x, y)
