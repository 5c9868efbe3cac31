"""rhpe_jax.cli through real command lines: usage errors (bad or missing
flags, bad config values) are one `error:` line and exit status 2, expected
failures one `error:` line and exit 1, for every command line of
experiments/; library logging is hidden unless --verbosity asks for it."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from rhpe_jax import cli
from tests.conftest import REPO

DEMO = '--config=experiments/configs/demo.py'


def _run(args, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


# (command, arguments, the whole of stderr): errors found before anything is built.
ERRORS = [
    ('experiments.train', ['--config.lerning_rate=1'],
     "error: unknown config key 'lerning_rate' (did you mean 'learning_rate'?)"),
    ('experiments.evaluate', ['--config.lerning_rate=1'],
     "error: unknown config key 'lerning_rate' (did you mean 'learning_rate'?)"),
    ('experiments.predict', ['--config.nope.deeper=1'], "error: unknown config key 'nope.deeper'"),
    ('experiments.train', ['--config.batch_size=abc'],
     "error: invalid value 'abc' for config key 'batch_size' (expected an integer)"),
    ('experiments.train', ['--config.use_parts=maybe'],
     "error: invalid value 'maybe' for config key 'use_parts' (expected true or false)"),
    ('experiments.train', ['--config.batch_size=-3'],
     'error: config.batch_size = -3: must be an integer >= 1'),
    ('experiments.evaluate', ['--config.optimizer=adamw'],
     "error: config.optimizer = 'adamw': must be one of 'sgd', 'adam'"),
    # A key's old name (config.RENAMED_KEYS): one line, then it acts as the new one.
    ('experiments.train', ['--config.skeleton=crowdpose'],
     'warning: --config.skeleton is now --config.keypoint_set; the old name works for now\n'
     "error: config.keypoint_set = 'crowdpose': must be one of 'coco', 'coco_wholebody', "
     "'halpe', 'lsp', 'mpii', 'dataset'"),
    ('experiments.train', ['--config=experiments/configs/none.py'],
     "error: --config=experiments/configs/none.py: [Errno 2] No such file or directory: "
     "'experiments/configs/none.py'"),
    ('experiments.train', ['--config=experiments/configs/ablation.py:iter9'],
     "error: --config=experiments/configs/ablation.py:iter9: ValueError: unknown ablation "
     "'iter9'; expected one of ['exclude', 'ignore', 'include', 'iter1', 'iter1_parts', "
     "'iter2', 'iter2_parts']"),
]


@pytest.mark.parametrize('command,args,expected', ERRORS, ids=[a[0] for _, a, _ in ERRORS])
def test_bad_flag_or_config_is_one_error_line_and_a_usage_error(command, args, expected,
                                                                 tmp_path):
  result = _run(['-m', command, DEMO, f'--workdir={tmp_path}', *args])
  assert result.returncode == cli.USAGE == 2
  assert result.stderr == expected + '\n'
  assert result.stdout == ''
  assert not (tmp_path / 'checkpoints').exists()


# Every command line of experiments/ with a usage error found before it
# imports JAX where it can: (command, arguments, the start of its one line).
# A missing required flag where it has one, else an unexpected argument.
USAGE_ERRORS = [
    ('experiments.train', [DEMO], 'error: --workdir is required'),
    ('experiments.evaluate', [DEMO], 'error: --workdir is required'),
    ('experiments.predict', [DEMO, '--image=x.jpg', '--output=x'], 'error: --workdir is required'),
    ('experiments.export', [DEMO, '--output=x'], 'error: --workdir is required'),
    ('experiments.evaluate_predictions', ['--predictions=x.h5'],
     'error: --annotations is required'),
    ('experiments.aot', [DEMO], 'error: --topology is required'),
    ('experiments.gpu_conv_matrix', ['--tiny'], 'error: --out is required'),
    ('experiments.import_matconvnet', ['--mat=x.mat'], 'error: --output is required'),
    ('experiments.lspet_subset', ['--source=x', '--last=3'], 'error: --output is required'),
    ('experiments.benchmark', [DEMO, 'surplus'], 'error: unexpected arguments'),
    ('experiments.profile_step', [DEMO, 'surplus'], 'error: unexpected arguments'),
]
# Not a command line of the project: the PyTorch timing script runs in
# another interpreter, imports nothing of rhpe_jax and parses with argparse.
NOT_COMMAND_LINES = {'experiments.torch_timing'}


def test_the_table_holds_every_command_line():
  modules = {f'experiments.{p.stem}' for p in (REPO / 'experiments').glob('*.py')
             if p.stem != '__init__'}
  assert {command for command, _, _ in USAGE_ERRORS} == modules - NOT_COMMAND_LINES


@pytest.mark.parametrize('command,args,expected', USAGE_ERRORS,
                         ids=[command for command, _, _ in USAGE_ERRORS])
def test_every_command_line_has_one_line_usage_errors(command, args, expected, tmp_path):
  result = _run(['-m', command, *args])
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith(expected), lines


# A command line whose main writes what libraries write: C++ start-up records
# straight to file descriptor 2, absl INFO and WARNING records; the project's
# own line on stdout; then a crash that leaves no time to flush anything.
_FAKE_COMMAND = textwrap.dedent('''
    import os, sys
    from absl import logging
    from rhpe_jax import cli

    def main(argv):
      os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are '
                  b'written to STDERR\\n')
      os.write(2, b'I0000 00:00:1795673380.520392    7391 port.cc:153] oneDNN custom '
                  b'operations are on.\\n')
      os.write(2, b'2025-01-02 03:04:05.678901: I tensorflow/core/platform/cpu_feature_guard.cc'
                  b':182] This TensorFlow binary is optimized\\n')
      os.write(2, b'W0000 00:00:1795673380.520392    7391 cuda.cc:1] a warning that matters\\n')
      logging.info('library detail')
      logging.warning('Given directory is read only=%s', '/tmp/x')
      logging.warning('a Python warning that matters')
      # What a failed orbax read leaves behind: asyncio's note on a future
      # nobody awaits, a callback that finds the loop closed.
      import logging as python_logging
      python_logging.getLogger('asyncio').error(
          'Future exception was never retrieved\\nfuture: <Future finished>')
      class Callback:
        def __del__(self):
          raise RuntimeError('Event loop is closed')
      Callback()
      os.write(2, b'progress 1/2\\rprogress 2/2\\r')
      print('step 1/1  the project line', flush=True)
      os.write(2, b'last words before a crash\\n')
      os._exit(3)

    cli.run(main)
''')


def test_library_lines_hidden_unless_verbosity_asks(tmp_path):
  script = tmp_path / 'fake_command.py'
  script.write_text(_FAKE_COMMAND)
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  # Bytes, not text: universal newlines would turn the progress bar's \r into \n.
  quiet, verbose = (subprocess.run([sys.executable, str(script), *args], cwd=REPO, env=env,
                                   capture_output=True, timeout=60)
                    for args in ([], ['--verbosity=0']))
  for result in (quiet, verbose):
    assert result.returncode == 3
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    assert result.stdout == 'step 1/1  the project line\n'
    assert 'last words before a crash' in result.stderr  # nothing lost in the crash
    assert 'a warning that matters' in result.stderr
    assert 'a Python warning that matters' in result.stderr
    assert 'progress 1/2\rprogress 2/2\r' in result.stderr
  for hidden in ('absl::InitializeLog', 'oneDNN', 'cpu_feature_guard', 'library detail',
                 'read only', 'exception was never retrieved', 'Event loop is closed'):
    assert hidden not in quiet.stderr, quiet.stderr
    assert hidden in verbose.stderr, verbose.stderr


# A command line whose main fails in the ways the convention sorts.
_FAILING_COMMAND = textwrap.dedent('''
    from absl import app, flags
    from rhpe_jax import cli

    _HOW = flags.DEFINE_string('how', None, 'How main fails.')

    def main(argv):
      if _HOW.value == 'oserror':
        open('/nonexistent/checkpoint')
      if _HOW.value == 'usage':
        raise app.UsageError('--this does not go with --that')
      raise KeyError('a bug')

    cli.run(main)
''')


def _fail(script: pathlib.Path, *args) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, str(script), *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60)


@pytest.fixture(scope='module')
def failing_command(tmp_path_factory) -> pathlib.Path:
  script = tmp_path_factory.mktemp('failing') / 'failing_command.py'
  script.write_text(_FAILING_COMMAND)
  return script


def test_expected_failure_is_one_line_with_its_traceback_on_request(failing_command):
  quiet, verbose = (_fail(failing_command, '--how=oserror', *args)
                    for args in ([], ['--verbosity=0']))
  line = "error: [Errno 2] No such file or directory: '/nonexistent/checkpoint'\n"
  assert quiet.returncode == verbose.returncode == cli.FAILURE == 1
  assert quiet.stderr == line
  assert verbose.stderr.startswith('Traceback (most recent call last):')
  assert verbose.stderr.endswith('FileNotFoundError: [Errno 2] No such file or directory: '
                                 "'/nonexistent/checkpoint'\n" + line)


def test_usage_error_from_main_is_one_line_and_status_2(failing_command):
  result = _fail(failing_command, '--how=usage')
  assert (result.returncode, result.stderr) == (2, 'error: --this does not go with --that\n')


def test_a_bug_keeps_its_traceback(failing_command):
  result = _fail(failing_command, '--how=bug')
  assert result.returncode == 1
  assert result.stderr.startswith('Traceback (most recent call last):')
  assert result.stderr.endswith("KeyError: 'a bug'\n") and 'error:' not in result.stderr


def test_expected_failures_are_bad_input_and_the_projects_own_errors():
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import loop  # pylint: disable=g-import-not-at-top
  for error in (ValueError('x'), FileNotFoundError('x'), PermissionError('x'),
                loop.NonFiniteLossError('x'), checkpoints.CheckpointSaveError('x')):
    assert cli.is_expected_failure(error), error
  for error in (RuntimeError('x'), KeyError('x'), TypeError('x'), AssertionError('x')):
    assert not cli.is_expected_failure(error), error


def test_library_errors_name_their_arguments_and_the_command_line_says_flags():
  names = ['batch_size', 'output', 'scales']
  assert cli.as_flags('batch_size must be >= 1, got 0', names) == '--batch_size must be >= 1, got 0'
  assert cli.as_flags('scales must include 1.0', names) == '--scales must include 1.0'
  assert cli.as_flags('output.json: no such file', names) == 'output.json: no such file'
  assert cli.as_flags('image x does not exist', names) == 'image x does not exist'
  renamed = {'torch.python': 'torch_python', 'torch': 'compare_torch', 'beta': 'smooth_beta'}
  assert (cli.as_flags('torch.python /x cannot import torch', names, renamed)
          == '--torch_python /x cannot import torch')
  assert (cli.as_flags('torch needs 16 keypoints', names, renamed)
          == '--compare_torch needs 16 keypoints')
  assert cli.as_flags('beta must be >= 0', names, renamed) == '--smooth_beta must be >= 0'
  assert cli.as_flags('betas.json: no such file', names, renamed) == 'betas.json: no such file'


def test_as_flags_turns_keyword_arguments_into_the_flags_that_pass_them():
  names = ['overwrite', 'formats', 'output', 'batch_size', 'flip']
  assert (cli.as_flags('out.jsonl exists: pass overwrite=True to replace it', names)
          == 'out.jsonl exists: pass --overwrite to replace it')
  assert cli.as_flags('pass flip=False', names) == 'pass --noflip'
  assert (cli.as_flags("x/model.onnx does not exist: export with formats=['onnx']", names)
          == 'x/model.onnx does not exist: export with --formats=onnx')
  assert (cli.as_flags("formats=('onnx', 'tflite') needs onnx", names)
          == '--formats=onnx,tflite needs onnx')
  assert cli.as_flags("or another output='b.json'", names) == 'or another --output=b.json'
  assert (cli.as_flags('smooth beta=0.5 (beta=0.5)', names, {'beta': 'smooth_beta'})
          == 'smooth --smooth_beta=0.5 (--smooth_beta=0.5)')
  # Not an argument of a flag, or not an argument at all: left as written.
  for message in ('config.batch_size=8 splits evenly', 'width=2 is not a flag here',
                  'x=1 at /a/b-batch_size=3.json', '--overwrite=True'):
    assert cli.as_flags(message, names) == message
