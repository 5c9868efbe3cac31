"""Shared fixtures: a tiny synthetic_pose build and a checkpoint of the demo
network in the layout training writes, for the evaluation/prediction tests."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / '..' / 'shared' / 'data'


def pytest_configure(config):
  """The project's runtime set-up (XLA flags, no absent TPU, TensorFlow off the
  GPUs), as a command line or train_and_evaluate would do it, before any test
  starts JAX: importing rhpe_jax sets nothing. Before it, the session's
  compilation cache."""
  _share_one_compilation_cache(config)
  if not hasattr(config, 'workerinput'):  # the controller, or a run without xdist
    config.pluginmanager.register(SlowTestHint(), 'slow_test_hint')
  from rhpe_jax.core import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup()


# JAX's settings of its persistent compilation cache, read from the
# environment when JAX is imported: the directory, and caching every program.
SESSION_CACHE_ENV = ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
                     'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES')


def _share_one_compilation_cache(config) -> None:
  """One persistent XLA compilation cache for the whole session, empty at its
  start: the xdist workers and the command lines the tests start (they inherit
  the environment) compile a program once, the first time any of them needs
  it, instead of once per test and process (measured on the inference,
  evaluation, experiments, deploy and model tests: 319 s without, 246 s with).
  Never the user's cache, so every run starts from the same state and no test
  writes under ~/.cache. The controller (or a run without xdist) makes it;
  workers inherit it."""
  if hasattr(config, 'workerinput'):  # an xdist worker: the controller set it up
    return
  directory = tempfile.mkdtemp(prefix='rhpe_jax_tests_xla_cache_')
  config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
  os.environ.update(zip(SESSION_CACHE_ENV, (directory, '0', '0')))


def pytest_collection_modifyitems(items) -> None:
  """The tests marked slow first (each takes 30 s to minutes), so that xdist's
  workers start them early and finish together instead of one waiting on the
  other's last long test."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


class SlowTestHint:
  """At the end of a run, one line naming the tests not marked slow that took
  longer than the fast tier's budget per test (a hint, not a failure): each
  belongs in the slow tier, or needs a cheaper version in the fast one."""

  def __init__(self, seconds: float = 30.0):
    self.seconds = seconds
    self.unmarked: dict[str, float] = {}

  def pytest_runtest_logreport(self, report) -> None:
    """Set-up, call and tear-down added up (on xdist's controller too: the
    workers send it their reports)."""
    if 'slow' not in report.keywords:
      self.unmarked[report.nodeid] = self.unmarked.get(report.nodeid, 0.0) + report.duration

  def pytest_terminal_summary(self, terminalreporter) -> None:
    over = sorted(((seconds, nodeid) for nodeid, seconds in self.unmarked.items()
                   if seconds > self.seconds), reverse=True)
    if over:
      terminalreporter.write_line(
          f'unmarked tests over {self.seconds:g} s (mark them slow, or make them cheaper): '
          + ', '.join(f'{nodeid} ({seconds:.0f} s)' for seconds, nodeid in over))


TINY_NAME = 'tiny_eval'
TINY_RESOLUTION = 64


def tiny_config(data_dir: str):
  """The demo config shrunk for tests: 1/16 width, 64 px input, batch 4."""
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  config.dataset = f'synthetic_pose/{TINY_NAME}'
  config.data_dir = str(data_dir)
  config.width = 0.0625
  config.input_size = 64
  config.batch_size = 4
  config.num_train_steps = 1
  return config


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory) -> pathlib.Path:
  """synthetic_pose with 8 training and 6 validation examples at 64 px (~5 s)."""
  # pylint: disable-next=g-import-not-at-top
  from tfds_builders.synthetic_pose import synthetic_pose_dataset_builder as builder_lib
  data_dir = tmp_path_factory.mktemp('tiny_synthetic')
  config = builder_lib.SyntheticPoseConfig(
      name=TINY_NAME, resolution=TINY_RESOLUTION, num_train=8, num_validation=6, seed=3)
  builder_lib.Builder(data_dir=str(data_dir), config=config).download_and_prepare()
  return data_dir


@pytest.fixture(scope='session')
def tiny_workdir(tiny_data_dir, tmp_path_factory) -> pathlib.Path:
  """A workdir whose checkpoints/{latest,best}/1 hold a demo-network state.

  Saved by the project's CheckpointManager, as training saves it; the weights
  are the initial ones plus one SGD step would add nothing these tests check,
  and compiling a train step would cost most of the suite's time budget.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import steps as train_step
  workdir = tmp_path_factory.mktemp('tiny_run')
  config = tiny_config(tiny_data_dir)
  state = train_step.create_train_state(config, jax.random.key(0), steps_per_epoch=2)
  state = state.replace(step=1)
  manager = checkpoints.CheckpointManager(str(workdir), config)
  manager.save(1, state, metric=0.0, force=True)
  manager.wait()
  manager.close()
  return workdir


@pytest.fixture(scope='session')
def broken_newest_template(tiny_workdir, tmp_path_factory) -> pathlib.Path:
  """A workdir whose checkpoints/latest holds step 1 (that of `tiny_workdir`)
  and a step 2 whose array data is cut in half, as a copy that stopped
  half-way leaves it; no best. Tests take a copy (`broken_newest_workdir`):
  restoring sets step 2 aside."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('broken_newest')
  latest = workdir / 'checkpoints' / 'latest'
  for step in (1, 2):
    shutil.copytree(tiny_workdir / 'checkpoints' / 'latest' / '1', latest / str(step))
  for path in (latest / '2' / 'default' / 'd').iterdir():
    with open(path, 'r+b') as f:
      f.truncate(path.stat().st_size // 2)
  return workdir


@pytest.fixture
def broken_newest_workdir(broken_newest_template, tmp_path) -> pathlib.Path:
  """A fresh copy of `broken_newest_template`."""
  import shutil  # pylint: disable=g-import-not-at-top
  return pathlib.Path(shutil.copytree(broken_newest_template, tmp_path / 'broken_run'))


# A logging record's first line: absl/glog (Python and C++), TSL's C++ format,
# Python logging's and TFDS's formats, absl's C++ start-up notice.
_LOG_RECORD = re.compile(r'[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]'
                         r'|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] '
                         r'|(DEBUG|INFO|WARNING|ERROR|CRITICAL)[:\[]'
                         r'|WARNING: All log messages before absl')


def library_lines(stdout: str, stderr: str) -> list[str]:
  """The lines of a successful command that are not the project's: all of
  stderr (the project writes only `error:` and `warning:` lines there) and the stdout lines
  that look like logging."""
  return ([line for line in stderr.splitlines() if line.strip()]
          + [line for line in stdout.splitlines() if _LOG_RECORD.match(line)])


# The real COCO-format samples, each built as a `custom` coco_keypoints
# dataset (its one file as split `validation`) at a small resolution, for
# the builder's, the evaluation's and fine-tuning's tests.
COCO_FORMAT_RESOLUTION = 96
COCO_FORMAT_CONFIG = 'small'  # a config of its own: TFDS refuses one named as a built-in
COCO_FORMAT_SAMPLES = {
    'coco': (SHARED_DATA / 'coco_sample' / 'person_keypoints.json',
             SHARED_DATA / 'coco_sample' / 'images'),
    'crowdpose': (SHARED_DATA / 'crowdpose_sample' / 'annotations.json',
                  SHARED_DATA / 'crowdpose_sample' / 'images'),
    'lspet': (SHARED_DATA / 'lspet_sample' / 'coco_keypoints.json',
              SHARED_DATA / 'lspet_sample' / 'images'),
}


def coco_format_manual(root: pathlib.Path, annotations: pathlib.Path, images: pathlib.Path,
                       split: str = 'validation') -> pathlib.Path:
  """A manual dir of symlinks: annotations/<split>.json and images/."""
  (root / 'annotations').mkdir(parents=True)
  (root / 'annotations' / f'{split}.json').symlink_to(annotations.resolve())
  (root / 'images').symlink_to(images.resolve())
  return root


def coco_format_builder(data_dir: pathlib.Path, **config):
  # pylint: disable-next=g-import-not-at-top
  from tfds_builders.coco_keypoints import coco_keypoints_dataset_builder as cb
  cfg = cb.CocoKeypointsConfig(name=COCO_FORMAT_CONFIG, source=config.pop('source', 'custom'),
                               resolution=config.pop('resolution', COCO_FORMAT_RESOLUTION),
                               **config)
  return cb.Builder(data_dir=str(data_dir), config=cfg)


def coco_format_build(manual: pathlib.Path, data_dir: pathlib.Path, **config):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = coco_format_builder(data_dir, **config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


def coco_format_examples(builder, split: str = 'validation') -> list[dict]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


@pytest.fixture(scope='session')
def coco_format_builds(tmp_path_factory) -> dict:
  """sample name -> (its JSON, its examples, the build's data_dir)."""
  import json  # pylint: disable=g-import-not-at-top
  out = {}
  for name, (annotations, images) in COCO_FORMAT_SAMPLES.items():
    if not annotations.exists():
      pytest.skip(f'real data not found at {annotations} (../shared/data is absent)')
    tmp = tmp_path_factory.mktemp(f'coco_format_{name}')
    manual = coco_format_manual(tmp / 'manual', annotations, images)
    builder = coco_format_build(manual, tmp / 'data')
    out[name] = (json.loads(annotations.read_text()), coco_format_examples(builder),
                 tmp / 'data')
  return out


@pytest.fixture(scope='session')
def wholebody_build(tmp_path_factory) -> tuple:
  """The COCO sample as COCO-WholeBody (tests/keypoint_formats.py), built by
  the `wholebody` source from the released layout
  (annotations/coco_wholebody_val_v1.0.json, val2017/) at 32 px:
  (its JSON, its examples, the build's data_dir)."""
  import json  # pylint: disable=g-import-not-at-top
  from tests import keypoint_formats  # pylint: disable=g-import-not-at-top
  annotations, images = COCO_FORMAT_SAMPLES['coco']
  if not annotations.exists():
    pytest.skip(f'real data not found at {annotations} (../shared/data is absent)')
  tmp = tmp_path_factory.mktemp('wholebody')
  data = keypoint_formats.wholebody(json.loads(annotations.read_text()))
  (tmp / 'manual' / 'annotations').mkdir(parents=True)
  (tmp / 'manual' / 'annotations' / 'coco_wholebody_val_v1.0.json').write_text(json.dumps(data))
  (tmp / 'manual' / 'val2017').symlink_to(images.resolve())
  builder = coco_format_build(tmp / 'manual', tmp / 'data', source='wholebody',
                              keypoint_set='coco_wholebody', resolution=32)
  return data, coco_format_examples(builder), tmp / 'data'
