"""What every command line of the project shares: `cli.run(main)`.

One error convention:
- Usage errors, exit status 2, one `error:` line, before anything heavy is
  imported or built: bad or missing flags (found as the command line is
  parsed, required flags included), and everything wrong with --config: a
  config file that does not load, an unknown config key, a bad config value
  (rhpe_jax.core.config_checks); each is bad input to a flag. `main` raising
  `absl.app.UsageError` (e.g. for unexpected arguments or flags that do not
  go together) ends the same way.
- Expected failures, exit status 1, one `error:` line: `main` raising
  ValueError, OSError (bad input, missing or unreadable files, a full disk)
  or one of the project's own error classes (any exception class defined in
  rhpe_jax, e.g. a diverged training or a failed checkpoint save). With
  `--verbosity=0` the traceback comes first.
- Real bugs (any other exception) keep their traceback.

`run` also sets the process up before `main` (rhpe_jax.core.runtime.setup:
XLA flags, TensorFlow off the GPUs, and the compilation cache where asked).

- Library logging is hidden by default, so that the project's own lines
  (progress, tables, files written, errors) stand out: Python logging below
  WARNING (absl, orbax, TFDS, JAX) and the INFO lines that TensorFlow's and
  XLA's C++ code writes to stderr at start-up (which TF_CPP_MIN_LOG_LEVEL no
  longer silences). Warnings and errors still show. absl's `--verbosity=0`
  (or `-v 0`) brings everything back.
- Hidden as well at the default verbosity: what orbax and tensorstore write
  about a failed checkpoint read or write (orbax's logged tracebacks, and
  tensorstore's late callbacks of abandoned reads that find asyncio's loop
  closed); the failure itself reaches the tool as an exception, which it
  reports in its one line.

Nothing here imports TensorFlow or JAX: the settings must be in place before
they start.
"""
from __future__ import annotations

import ast
import atexit
import functools
import logging
import os
import re
import subprocess
import sys
import traceback
import warnings
from typing import Any, Callable, Mapping, NoReturn, Sequence

from absl import app, flags
from absl import logging as absl_logging

from rhpe_jax.core import config as config_lib
from rhpe_jax.core import config_checks
from rhpe_jax.core import runtime

FLAGS = flags.FLAGS
QUIET = -1  # absl's WARNING: the default verbosity of the project's command lines
FAILURE = 1  # the exit status of an expected failure
USAGE = 2  # the exit status of a usage error

# C++ log lines that only say how a library started (absl/glog and TSL
# formats, severity I), with the line absl prints before its first record
# and the second line of TensorFlow's CPU-feature notice; and libtpu's
# start-up complaints on a host without TPUs (no TPU host settings found),
# where it only serves to compile for abstract TPUs (experiments.aot).
NATIVE_INFO = re.compile(
    rb'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
    rb'|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] '
    rb'|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I \S+:\d+\] '
    rb'|To enable the following instructions: .* rebuild TensorFlow with the appropriate'
    rb'|Failed to find host bounds for accelerator type: WARNING: could not determine TPU'
    rb'|WARNING: Logging before InitGoogle\(\) is written to STDERR'
    rb'|E0000 [\d:.]+ +\d+ common_lib\.cc:\d+\] INVALID_ARGUMENT: Error: unexpected worker '
    rb"hostname 'WARNING: could not determine TPU worker hostnames"
    rb'|=== Source Location Trace: ==='
    rb'|learning/\w+/tfrc/runtime/libtpu_init_utils\.cc:\d+')

# Library warnings about something the project does on purpose (orbax warns
# whenever a checkpoint is opened read-only, as evaluation does).
EXPECTED_WARNINGS = (
    'CheckpointManagerOptions.read_only=True, setting save_interval_steps=0',
    'Given directory is read only',
)

# Runs in a child process between this process's stderr and the real one,
# so that nothing is lost when this process crashes or is killed. It ignores
# Ctrl-C (sent to the whole process group) and ends when every writer has
# closed the pipe. Progress bars (lines ending in \r) pass through at once.
_FILTER_PROGRAM = r'''
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
drop = re.compile(sys.argv[1].encode('latin-1'))
pending = b''
def write(data):
  while data:
    data = data[os.write(1, data):]
while True:
  chunk = os.read(0, 65536)
  if not chunk:
    break
  *lines, pending = (pending + chunk).split(b'\n')
  write(b''.join(line + b'\n' for line in lines if not drop.match(line)))
  if b'\r' in pending:
    cut = pending.rindex(b'\r') + 1
    write(pending[:cut])
    pending = pending[cut:]
if pending and not drop.match(pending):
  write(pending)
'''


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, *,
        compilation_cache: bool = False, renamed: Mapping[str, str] | None = None) -> NoReturn:
  """absl's app.run with the project's flag parsing, output settings, process
  set-up (with JAX's persistent compilation cache if `compilation_cache`) and
  error convention (the module's docstring); `renamed`: as in `as_flags`."""
  app.run(functools.partial(_run_main, main, compilation_cache, renamed or {}), argv=argv,
          flags_parser=parse_flags)


def _run_main(main: Callable[[list[str]], Any], compilation_cache: bool,
              renamed: Mapping[str, str], argv: list[str]) -> Any:
  runtime.setup(compilation_cache=compilation_cache)
  try:
    return main(argv)
  except app.UsageError as error:
    _exit_with(USAGE, str(error))
  except Exception as error:  # pylint: disable=broad-except
    if not is_expected_failure(error):
      raise
    if _verbose():
      traceback.print_exception(error)
    _exit_with(FAILURE,
               as_flags(str(error) or type(error).__name__, _flag_names(), renamed))


def as_flags(message: str, flag_names: Sequence[str],
             renamed: Mapping[str, str] | None = None) -> str:
  """A library error in the command line's words: the library names its
  arguments ('batch_size must be >= 1'); where a message starts with the
  name of one of the program's flags, it becomes that flag ('--batch_size
  must be >= 1'), and where it starts with an argument of `renamed`
  (argument: flag, for arguments named otherwise than their flags, dotted
  names such as 'torch.python' included), with its flag. An argument passed
  as Python passes it, anywhere in the message, becomes the flag that passes
  the same value ('pass overwrite=True' -> 'pass --overwrite',
  "formats=['onnx']" -> '--formats=onnx')."""
  renamed = dict(renamed or {})
  message = _KEYWORD_ARGUMENT.sub(
      lambda m: _as_flag(m, flag_names, renamed) or m.group(0), message)
  for argument, flag in renamed.items():
    if re.match(rf'{re.escape(argument)}\b(?![./=])', message):
      return f'--{flag}{message[len(argument):]}'
  first = re.match(r'(\w+)\b(?![./=])', message)
  if first and first.group(1) in flag_names:
    return '--' + message
  return message


# `name=value` in a library's message, as Python code passes it
# (`overwrite=True`, `formats=['onnx']`, `output='x.json'`).
_KEYWORD_ARGUMENT = re.compile(
    r"(?<![\w.\-])([A-Za-z_]\w*)=(\[[^\]]*\]|\([^)]*\)|'[^']*'|\"[^\"]*\"|[^\s,;)]+)")


def _as_flag(match: re.Match, flag_names: Sequence[str],
             renamed: Mapping[str, str]) -> str | None:
  """`overwrite=True` as `--overwrite`, `formats=['onnx']` as `--formats=onnx`:
  the flag that passes the same value (None: not an argument of a flag)."""
  argument, text = match.groups()
  flag = renamed.get(argument, argument if argument in flag_names else None)
  if flag is None:
    return None
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if value is True or value is False:
    return f'--{"" if value else "no"}{flag}'
  if isinstance(value, (list, tuple)):
    value = ','.join(str(v) for v in value)
  return f'--{flag}={value}'


def _flag_names() -> list[str]:
  """The flags the program defined itself (not absl's own)."""
  return [flag.name for module, defined in FLAGS.flags_by_module_dict().items()
          if not module.startswith('absl') for flag in defined]


def is_expected_failure(error: BaseException) -> bool:
  """Whether `error` reports bad input or a failed operation rather than a
  bug: a ValueError, an OSError, or an exception class of the project's own."""
  return isinstance(error, (ValueError, OSError)) or any(
      cls.__module__.split('.')[0] == 'rhpe_jax' for cls in type(error).__mro__)


def _print_error(message: str) -> None:
  """`message` as one `error:` line on stderr."""
  print(f'error: {" ".join(message.split())}', file=sys.stderr, flush=True)


def _exit_with(status: int, message: str) -> NoReturn:
  _print_error(message)
  sys.exit(status)


def define_checkpoint_flags() -> None:
  """--config, --workdir and --checkpoint, for the tools that load a trained run."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, "Training config file (default: the run's "
                                  'config.json in --workdir).', lock_config=False)
  flags.DEFINE_string('workdir', None, 'Training directory holding checkpoints/.')
  flags.DEFINE_string('checkpoint', 'best', "'best', 'latest' or a step number.")


def check_usage(argv: Sequence[str], required: Sequence[str] = ()) -> None:
  """The usage checks every main starts with: no positional arguments, and
  each flag of `required` given (app.UsageError: exit status 2)."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  for name in required:
    value = FLAGS[name].value
    if value is None or (isinstance(value, str) and not value):
      raise app.UsageError(f'--{name} is required')


def _verbose() -> bool:
  """Whether the command line asked for the libraries' output (--verbosity >= 0)."""
  try:
    return FLAGS.is_parsed() and FLAGS.verbosity > QUIET
  except (AttributeError, flags.Error):
    return False


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses the command line, checks the config, sets up the output."""
  argv = [_renamed_config_key(arg) for arg in argv]
  # ml_collections reads the --config. overrides from sys.argv itself.
  sys.argv[:] = [_renamed_config_key(arg, say=False) for arg in sys.argv]
  try:
    rest = FLAGS(argv)
    config = FLAGS.config if 'config' in FLAGS else None
    if config is not None:
      config_checks.check_config(config)  # also loads a config file found missing
  except flags.Error as error:
    _usage_error(_flag_error(str(error)))
  except (AttributeError, KeyError) as error:  # ml_collections: no such config key
    _usage_error(_unknown_key(str(error), argv))
  except OSError as error:  # ml_collections: the config file did not load
    _usage_error(f'{_config_argument(argv)}: {_last_line(str(error))}')
  except ValueError as error:  # config_checks
    _usage_error(str(error))
  if FLAGS['verbosity'].using_default_value:
    FLAGS.verbosity = QUIET  # app.run would raise it to INFO
  if FLAGS.verbosity < 0:
    hide_library_logs()
  return rest


def _renamed_config_key(arg: str, say: bool = True) -> str:
  """`--config.skeleton=lsp` as `--config.keypoint_set=lsp` (with one
  `warning:` line if `say`): an override of a key renamed since
  (config.RENAMED_KEYS)."""
  found = re.match(r'(--?config\.)(\w+)(?=$|=)', arg)
  if not found or found.group(2) not in config_lib.RENAMED_KEYS:
    return arg
  new = config_lib.RENAMED_KEYS[found.group(2)]
  if say:
    print(f'warning: --config.{found.group(2)} is now --config.{new}; the old name works for '
          'now', file=sys.stderr, flush=True)
  return found.group(1) + new + arg[found.end():]


def _usage_error(message: str) -> NoReturn:
  """A usage error found while parsing: its `error:` line (after the
  traceback with --verbosity=0, which parsing has read by then), exit 2."""
  if _verbose() and sys.exc_info()[1] is not None:
    traceback.print_exc()
  _exit_with(USAGE, message)


# asyncio's notes on the reads an orbax restore leaves behind when one fails.
_ABANDONED_READS = ('exception was never retrieved',)


class _ExpectedWarnings(logging.Filter):
  """Drops the records whose message starts with one of EXPECTED_WARNINGS,
  and orbax's records that carry a traceback and asyncio's notes on abandoned
  reads: the failed checkpoint read or write they are about is raised to the
  caller as well."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and f'{os.sep}orbax{os.sep}' in (record.pathname or ''):
      return False
    if record.name == 'asyncio' and str(record.msg).split('\n', 1)[0].endswith(_ABANDONED_READS):
      return False
    return not str(record.msg).startswith(EXPECTED_WARNINGS)


def _drop_closed_loop_callbacks(unraisable) -> None:
  """sys.unraisablehook without tensorstore's callbacks that complete after a
  failed orbax read or write has closed its asyncio loop (harmless: the
  operation they belonged to has already raised)."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
    return
  sys.__unraisablehook__(unraisable)


def hide_library_logs() -> None:
  """TensorFlow's and XLA's C++ INFO lines off stderr, and the expected
  warnings off the log (Python logging follows --verbosity). Call before
  TensorFlow or JAX is imported."""
  absl_logging.get_absl_handler().addFilter(_ExpectedWarnings())
  sys.unraisablehook = _drop_closed_loop_callbacks
  warnings.filterwarnings('ignore', r'coroutine .* was never awaited', RuntimeWarning)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # where TF/XLA still read it
  if os.environ.get('TF_CPP_MIN_LOG_LEVEL') == '0':
    return  # asked for explicitly
  _filter_stderr(NATIVE_INFO)


def _filter_stderr(drop: re.Pattern) -> None:
  """Sends this process's stderr (file descriptor 2, which C++ code writes
  to as well) through a child process that drops the lines matching `drop`."""
  sys.stderr.flush()
  read_end, write_end = os.pipe()
  try:
    child = subprocess.Popen(
        [sys.executable, '-I', '-S', '-c', _FILTER_PROGRAM, drop.pattern.decode('latin-1')],
        stdin=read_end, stdout=sys.stderr.fileno())
  except OSError:  # no filter: the lines show, nothing else changes
    os.close(write_end)
    return
  finally:
    os.close(read_end)
  real_stderr = os.dup(2)
  os.dup2(write_end, 2)
  os.close(write_end)

  def restore():
    sys.stderr.flush()
    os.dup2(real_stderr, 2)  # closes this process's end of the pipe
    os.close(real_stderr)
    try:
      child.wait(timeout=2)  # the last lines are written before the shell prompt
    except subprocess.TimeoutExpired:  # a subprocess still holds the pipe
      pass
  atexit.register(restore)


def _last_line(message: str) -> str:
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[-1] if lines else message


def _config_argument(argv: Sequence[str]) -> str:
  """`--config=FILE` as given (the last one, as absl takes it)."""
  for arg in reversed(argv[1:]):
    if arg.lstrip('-').startswith('config='):
      return arg
  return '--config'


def _config_override(argv: Sequence[str], name: str) -> str | None:
  """The dotted key of the `--config.` argument that mentions `name`."""
  for arg in argv[1:]:
    path = arg.split('=', 1)[0].lstrip('-')
    if path.startswith('config.') and name in path[len('config.'):].split('.'):
      return path[len('config.'):]
  return None


def _unknown_key(message: str, argv: Sequence[str]) -> str:
  """`unknown config key 'lerning_rate' (did you mean 'learning_rate'?)`."""
  lookup = re.search(r'Attempting to lookup: ([\w.]+)', message)
  names = [lookup.group(1).split('.')[-1]] if lookup else re.findall(r"'(\w+)", message)
  for name in names:
    key = _config_override(argv, name)
    if key is not None:
      break
  else:  # not an override: e.g. a config file without get_config()
    return f'{_config_argument(argv)}: {_last_line(message)}'
  suggestion = re.search(r'Did you mean "([\w.]+)"', message)
  hint = f" (did you mean '{suggestion.group(1)}'?)" if suggestion else ''
  return f'unknown config key {key!r}{hint}'


_TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number',
               str: 'a string', tuple: 'a tuple such as (1, 2)', list: 'a list'}


def _flag_error(message: str) -> str:
  """absl's message for a bad flag value, as one line."""
  required = re.match(r'flag --(\w+)=None: Flag --\1 must have a value other than None', message)
  if required:
    return f'--{required.group(1)} is required'
  override = re.match(r'flag --config\.([\w.]+)=(.*?): ', message, re.DOTALL)
  if override:
    key, value = override.groups()
    expected = _TYPE_NAMES.get(type(_config_value(key)))
    return (f'invalid value {value!r} for config key {key!r}'
            + (f' (expected {expected})' if expected else f': {_last_line(message)}'))
  if message.startswith('flag --config=') and 'Traceback' in message:
    return f'{message.split(": ", 1)[0][5:]}: {_last_line(message)}'  # get_config() raised
  return _last_line(message) if 'Traceback' in message else message


def _config_value(key: str) -> Any:
  """The config's value at dotted `key` (None when unknown)."""
  value = FLAGS['config'].value
  for part in key.split('.'):
    try:
      value = value[part]
    except (KeyError, TypeError, AttributeError):
      return None
  return value

