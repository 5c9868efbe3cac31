"""CheckpointManager: exact round trips, keep-N, best by score, fallbacks."""
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
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


# tensorstore's callbacks of abandoned reads of a broken checkpoint (harmless; the
# command lines hide them, `cli.hide_library_logs`).
ABANDONED_READS = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def _data_files(step_dir) -> list:
  """The array data files of a saved step (orbax's OCDBT `d/` blobs)."""
  return sorted((step_dir / 'default' / 'd').iterdir())


def _truncate(path, keep: int = 100) -> None:
  with open(path, 'r+b') as f:
    f.truncate(keep)


def _steps(directory) -> list[int]:
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@ABANDONED_READS
def test_restore_latest_skips_unreadable_checkpoints_and_sets_them_aside(tmp_path, capsys):
  config = ml_collections.ConfigDict({'keep_checkpoints': 3})
  manager = checkpoints.CheckpointManager(str(tmp_path), config)
  for step in (1, 2, 3):
    manager.save(step, _state(seed=step, step=step), metric=float(step))
  manager.close()
  latest = tmp_path / 'checkpoints' / 'latest'
  truncated = _data_files(latest / '3')[0]
  truncated_size = truncated.stat().st_size
  _truncate(truncated)  # a copy that stopped half-way
  lost = _data_files(latest / '2')
  for path in lost:
    path.unlink()  # files lost

  reopened = checkpoints.CheckpointManager(str(tmp_path), config)
  _assert_same(reopened.restore_latest(_state(seed=0, step=0)), _state(seed=1, step=1))
  assert reopened.latest_step() == 1
  lines = capsys.readouterr().err.splitlines()
  aside = tmp_path / 'checkpoints' / 'unreadable'
  assert lines[0] == (
      f'warning: checkpoint step 3 cannot be read: {truncated}: Requested byte range '
      f'[0, {truncated_size}) is not valid for value of size 100 (OUT_OF_RANGE); '
      f'moved to {aside / "latest_3"}; using step 1')
  assert lines[1] in [f'warning: checkpoint step 2 cannot be read: {path}: NOT_FOUND; '
                      f'moved to {aside / "latest_2"}; using step 1' for path in lost]
  assert len(lines) == 2
  assert _steps(latest) == [1]
  # Kept as they were, outside orbax's directory: saving on (keep 3) never
  # counts or deletes them, and the steps can be saved again.
  assert _data_files(aside / 'latest_3')[0].stat().st_size == 100
  assert (aside / 'latest_2' / 'default' / '_METADATA').is_file()
  for step in (2, 3, 4, 5):
    reopened.save(step, _state(seed=step, step=step), metric=0.0)
  reopened.close()
  assert _steps(latest) == [3, 4, 5]
  assert sorted(p.name for p in aside.iterdir()) == ['latest_2', 'latest_3']
  assert _steps(tmp_path / 'checkpoints' / 'best') == [3]  # score 3.0 of the first run


def _saved_steps_1_and_2(tmp_path):
  """A workdir with checkpoints of steps 1 and 2; returns the config and the
  `latest` folder."""
  config = ml_collections.ConfigDict({'keep_checkpoints': 3})
  manager = checkpoints.CheckpointManager(str(tmp_path), config)
  for step in (1, 2):
    manager.save(step, _state(seed=step, step=step))
  manager.close()
  return config, tmp_path / 'checkpoints' / 'latest'


@ABANDONED_READS
def test_no_readable_checkpoint_is_one_error_and_moves_nothing(tmp_path):
  config, latest = _saved_steps_1_and_2(tmp_path)
  for step in (1, 2):
    _truncate(_data_files(latest / str(step))[0], keep=0)
  reopened = checkpoints.CheckpointManager(str(tmp_path), config)
  with pytest.raises(checkpoints.UnreadableCheckpointError) as error:
    reopened.restore_latest(_state(seed=0, step=0))
  reopened.close()
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith(f'no checkpoint in {tmp_path / "checkpoints"} can be read '
                            f'(steps 2, 1); step 2: {latest / "2" / "default" / "d"}')
  assert _steps(latest) == [1, 2] and not (tmp_path / 'checkpoints' / 'unreadable').exists()


@ABANDONED_READS
def test_a_single_candidate_is_not_replaced(tmp_path):
  """What a step asked for by number gets: its own error line, no fallback,
  nothing moved."""
  config, latest = _saved_steps_1_and_2(tmp_path)
  _truncate(_data_files(latest / '2')[0])
  target = checkpoints._payload(_state(seed=0, step=0))  # pylint: disable=protected-access

  def restore(directory, step):
    reader = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        read_only=True))
    try:
      return reader.restore(step, args=ocp.args.StandardRestore(target))
    finally:
      reader.close()

  with pytest.raises(checkpoints.UnreadableCheckpointError) as error:
    checkpoints.restore_first_readable([(str(latest), 2)], restore)
  assert str(error.value).startswith(
      f'checkpoint step 2 in {latest} cannot be read: {_data_files(latest / "2")[0]}: ')
  assert str(error.value).endswith('(OUT_OF_RANGE)')
  assert _steps(latest) == [1, 2] and not (tmp_path / 'checkpoints' / 'unreadable').exists()
  restored, directory, step = checkpoints.restore_first_readable([(str(latest), 1)], restore)
  assert (directory, step, int(restored['step'])) == (str(latest), 1, 1)


@ABANDONED_READS
def test_training_stops_when_an_unreadable_checkpoint_cannot_be_moved(tmp_path, capsys):
  """Training would meet the step again (orbax still lists it): one error.
  The read-only tools go on and say where it stays."""
  config, latest = _saved_steps_1_and_2(tmp_path)
  _truncate(_data_files(latest / '2')[0])
  (tmp_path / 'checkpoints' / 'unreadable').write_text('a file where the folder goes\n')
  reopened = checkpoints.CheckpointManager(str(tmp_path), config)
  with pytest.raises(OSError, match=f'cannot move the unreadable checkpoint {latest / "2"} '
                                    'aside: left in place'):
    reopened.restore_latest(_state(seed=0, step=0))
  reopened.close()
  assert _steps(latest) == [1, 2]
  target = checkpoints._payload(_state(seed=0, step=0))  # pylint: disable=protected-access
  restored, _, step = checkpoints.restore_first_readable(
      [(str(latest), 2), (str(latest), 1)],
      lambda directory, step: ocp.CheckpointManager(directory).restore(
          step, args=ocp.args.StandardRestore(target)),
      move_required=False)
  assert step == 1 and int(restored['step']) == 1
  line = capsys.readouterr().err.strip()
  assert line.startswith('warning: checkpoint step 2 cannot be read: ')
  assert line.endswith('; left in place (moving it failed: File exists [Errno 17]: '
                       f'{tmp_path / "checkpoints" / "unreadable"}); using step 1')


def test_checkpoint_of_another_config_is_reported_not_set_aside(tmp_path):
  config = ml_collections.ConfigDict({'keep_checkpoints': 3})
  manager = checkpoints.CheckpointManager(str(tmp_path), config)
  manager.save(1, _state(seed=1, step=1))
  manager.close()
  state = _state(seed=0, step=0)
  adam = state.replace(opt_state=optax.adam(1e-3).init(state.params))  # optimizer changed
  reopened = checkpoints.CheckpointManager(str(tmp_path), config)
  with pytest.raises(checkpoints.CheckpointMismatchError, match='does not fit this config'):
    reopened.restore_latest(adam)
  reopened.close()
  assert _steps(tmp_path / 'checkpoints' / 'latest') == [1]


# Saves step 1, then lowers the file size limit (RLIMIT_FSIZE): a write past
# it fails with EFBIG, as a full disk fails a write (Python ignores SIGXFSZ).
# Step 2 is saved asynchronously and fails in the background; the error comes
# from the next save. In a process of its own: pytest's captured output goes
# to files, which the limit would cut too.
_SAVE_FAILURE = """
import resource, sys
import ml_collections
from rhpe_jax import checkpoints
from tests.test_checkpoints import _state
manager = checkpoints.CheckpointManager(sys.argv[1], ml_collections.ConfigDict(
    {'keep_checkpoints': 1}))
manager.save(1, _state(seed=1, step=1))
manager.wait()
resource.setrlimit(resource.RLIMIT_FSIZE, (500, resource.RLIM_INFINITY))  # arrays: ~1 kB
manager.save(2, _state(seed=2, step=2))
try:
  manager.save(3, _state(seed=3, step=3))
except checkpoints.CheckpointSaveError as error:
  print(error)
manager.close()
"""


def test_failed_save_names_the_step_and_keeps_earlier_checkpoints(tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import REPO  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, '-c', _SAVE_FAILURE, str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  latest = tmp_path / 'checkpoints' / 'latest'
  message = result.stdout.strip()
  assert message.startswith('saving the checkpoint of step 2 failed: '), result.stdout
  assert 'File too large [Errno 27]' in message
  assert message.endswith('the checkpoints saved before it are untouched (newest: step 1 '
                          f'in {latest})')
  assert _steps(latest) == [1]  # keep 1: step 1 would have gone had step 2 been saved
  restored = checkpoints.CheckpointManager(str(tmp_path), ml_collections.ConfigDict(
      {'keep_checkpoints': 1}))
  _assert_same(restored.restore_latest(_state(seed=0, step=0)), _state(seed=1, step=1))
  restored.close()


@pytest.mark.parametrize('error,expected', [
    (OSError(28, 'No space left on device', '/w/checkpoints/latest/5'),
     'No space left on device [Errno 28]: /w/checkpoints/latest/5'),
    (ValueError('NOT_FOUND: Error opening "zarr" driver: Error reading "step/.zarray" in '
                'OCDBT database at local file "/w/5/default/": Error reading Byte range '
                '[0, 9) of local file "/w/5/default/d/ab" [tensorstore_spec=\'{"a": 1}\']'),
     '/w/5/default/d/ab: NOT_FOUND'),
    (ValueError('PERMISSION_DENIED: Error writing "step/0" in OCDBT database at local file '
                '"/w/5.tmp/": Failed writing: "/w/5.tmp/d/cd": Failed to open: Permission '
                "denied [os_error_code='13'] [tensorstore_spec='{}']"),
     '/w/5.tmp/d/cd: Permission denied [Errno 13] (PERMISSION_DENIED)'),
    (ValueError('Unterminated string starting at: line 1 column 863 (char 862)'),
     'ValueError: Unterminated string starting at: line 1 column 863 (char 862)'),
])
def test_describe_error_keeps_the_file_and_the_reason(error, expected):
  assert checkpoints.describe_error(error) == expected


# --------------------------------------------------------------------------
# The network's variables alone (restore_variables), for evaluate, predict, export.

def test_find_checkpoint_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoints.find_checkpoint(str(tmp_path / 'missing'))
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    checkpoints.find_checkpoint(str(tmp_path))
  for kind, step in (('latest', 3), ('latest', 5), ('best', 3)):
    (tmp_path / 'checkpoints' / kind / str(step) / 'default').mkdir(parents=True)
  assert checkpoints.find_checkpoint(str(tmp_path), 'best')[1] == 3
  assert checkpoints.find_checkpoint(str(tmp_path), 'latest')[1] == 5
  assert checkpoints.find_checkpoint(str(tmp_path), '5')[0].endswith('latest/5')
  with pytest.raises(FileNotFoundError, match='step 4'):
    checkpoints.find_checkpoint(str(tmp_path), '4')
  with pytest.raises(ValueError, match='step number'):
    checkpoints.find_checkpoint(str(tmp_path), 'newest')
  root = tmp_path / 'checkpoints'
  assert checkpoints.checkpoint_candidates(str(tmp_path), 'best') == [
      (str(root / 'best'), 3), (str(root / 'latest'), 5), (str(root / 'latest'), 3)]
  assert checkpoints.checkpoint_candidates(str(tmp_path), 'latest') == [
      (str(root / 'latest'), 5), (str(root / 'latest'), 3)]
  assert checkpoints.checkpoint_candidates(str(tmp_path), '3') == [(str(root / 'latest'), 3)]


@ABANDONED_READS
def test_restore_variables_falls_back_past_an_unreadable_checkpoint(
    tiny_data_dir, broken_newest_workdir, capsys):
  """'latest' (and 'best' without a best) take step 1 when step 2 cannot be
  read, with one line, and set 2 aside; the values are those saved, read
  without an optimiser (a config with another one reads them too). (A step
  asked for by number does not fall back: test_a_single_candidate_...)"""
  import jax  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  latest = broken_newest_workdir / 'checkpoints' / 'latest'
  config = tiny_config(tiny_data_dir)
  config.optimizer = 'adam'  # the checkpoint holds SGD momentum: not read
  variables, step = checkpoints.restore_variables(config, str(broken_newest_workdir), 'latest')
  assert step == 1 and sorted(variables) == ['batch_stats', 'params']
  saved = ocp.StandardCheckpointer().restore(latest / '1' / 'default')  # as saved, untyped
  for kind in ('params', 'batch_stats'):
    got = jax.tree_util.tree_leaves_with_path(variables[kind])
    want = dict(jax.tree_util.tree_leaves_with_path(saved[kind]))
    assert len(got) == len(want) > 4
    for path, value in got:
      np.testing.assert_array_equal(value, want[path])
  lines = capsys.readouterr().err.splitlines()
  aside = broken_newest_workdir / 'checkpoints' / 'unreadable' / 'latest_2'
  assert len(lines) == 1 and lines[0].startswith(
      f'warning: checkpoint step 2 cannot be read: {latest}/2/default/d/')
  assert lines[0].endswith(f'(OUT_OF_RANGE); moved to {aside}; using step 1')
  assert sorted(p.name for p in latest.iterdir()) == ['1'] and aside.is_dir()
  assert checkpoints.find_checkpoint(str(broken_newest_workdir), 'best') == (str(latest / '1'), 1)


def test_restore_variables_of_another_network_is_a_mismatch(tiny_data_dir, tiny_workdir):
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  config.width = 0.125  # twice the channels of the saved network
  with pytest.raises(checkpoints.CheckpointMismatchError, match='does not fit this config'):
    checkpoints.restore_variables(config, str(tiny_workdir))


def test_a_runs_own_keypoint_set_survives_its_config_file(tmp_path):
  """A COCO-format run (keypoint_set 'dataset') writes its keypoint set into
  config.json; reading the file back (export, evaluate and predict without
  --config) gives that set, not a config error (the set becomes a ConfigDict
  inside the config)."""
  from experiments.configs import own_data  # pylint: disable=g-import-not-at-top
  config = own_data.get_config()
  written = {'name': 'person', 'keypoint_names': ['head', 'left_hand', 'right_hand'],
             'flip_pairs': [[1, 2]], 'part_pairs': [[0, 1], [0, 2]], 'sigmas': None,
             'groups': {}}
  config.keypoint_set = 'dataset'
  config.dataset_keypoint_set = written
  checkpoints.save_config(config, str(tmp_path))
  read = checkpoints.config_of_workdir(str(tmp_path))
  assert read.keypoint_set == 'dataset'
  assert read.dataset_keypoint_set.to_dict() == written


def test_a_config_file_written_before_the_keypoint_set_had_one_name_still_reads(
    tmp_path, capsys):
  """A run's config.json from before the rename (skeleton, its set under
  keypoint_set, init_from_skeleton) reads as today's keys, with one warning
  line per old key."""
  import json  # pylint: disable=g-import-not-at-top
  written = {'name': 'person', 'keypoint_names': ['head', 'left_hand', 'right_hand'],
             'flip_pairs': [[1, 2]], 'part_pairs': [[0, 1], [0, 2]], 'sigmas': None,
             'groups': {}}
  old = {'dataset': 'coco_keypoints/custom', 'skeleton': 'dataset', 'keypoint_set': written,
         'init_from': '', 'init_from_skeleton': 'mpii', 'width': 0.25}
  (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(old))
  read = checkpoints.config_of_workdir(str(tmp_path))
  assert read.keypoint_set == 'dataset' and read.init_from_keypoint_set == 'mpii'
  assert read.dataset_keypoint_set.to_dict() == written and read.width == 0.25
  assert 'skeleton' not in read and 'init_from_skeleton' not in read
  assert capsys.readouterr().err.splitlines() == [
      'warning: config.skeleton is now config.keypoint_set; the old name works for now',
      'warning: config.init_from_skeleton is now config.init_from_keypoint_set; the old name '
      'works for now']
  # A run on a built-in set wrote its (empty) dataset set under keypoint_set.
  old = {'skeleton': 'lsp', 'keypoint_set': None, 'init_from_skeleton': ''}
  (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(old))
  read = checkpoints.config_of_workdir(str(tmp_path))
  assert (read.keypoint_set, read.dataset_keypoint_set, read.init_from_keypoint_set) == (
      'lsp', None, '')
