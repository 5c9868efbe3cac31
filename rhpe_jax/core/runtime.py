"""What the project sets up in a process for JAX and TensorFlow: `setup()`.

Its XLA flags, JAX kept off an installed libtpu on a machine without TPUs,
TensorFlow kept off the GPUs, and (for the command lines) JAX's persistent
compilation cache. Nothing is set on import: the command lines call
`setup()` before their main runs (rhpe_jax.cli.run), `train_and_evaluate`
when it starts, and other library users may call it first thing.

XLA reads `XLA_FLAGS` once, when JAX starts its first backend, so `setup()`
must come before that. The flags of every backend go in together, since the
backend is not known yet; each backend reads only its own. Flags the user
already put in `XLA_FLAGS` win over the project's, and a flag the installed
jaxlib does not know is left out (XLA aborts on unknown flags).
docs/performance.md has the measurements behind each flag.
"""
from __future__ import annotations

import importlib.abc
import importlib.metadata
import importlib.util
import logging
import os
import pathlib
import sys

# (flag, the oldest jaxlib known to have it)
CPU_FLAGS = (
    # Convolutions on XLA's own (Eigen) kernels instead of YNNPACK, which
    # jaxlib 0.10 picks by default: the training step of the full network is
    # faster on x86 CPUs (docs/performance.md).
    ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution', (0, 10, 0)),
)
GPU_FLAGS = (
    # cuDNN convolutions in NHWC, the layout of its tensor-core kernels (and of
    # torch's channels_last), so that autotuning does not settle on the legacy
    # NCHW `implicit_convolve_sgemm` kernels. Not yet measured on a GPU.
    ('--xla_gpu_force_conv_nhwc=true', (0, 4, 30)),
)
PROJECT_FLAGS = CPU_FLAGS + GPU_FLAGS

CACHE_ENV = 'RHPE_JAX_CACHE_DIR'  # a directory, or '' to turn the cache off


def jaxlib_version() -> tuple[int, ...]:
  """The installed jaxlib's version as integers, without importing it."""
  try:
    text = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return ()
  parts = []
  for part in text.split('.')[:3]:
    digits = ''.join(c for c in part if c.isdigit())
    parts.append(int(digits or 0))
  return tuple(parts)


def flag_name(flag: str) -> str:
  return flag.split('=', 1)[0]


def merged_xla_flags(user_flags: str, project_flags: list[str]) -> str:
  """`user_flags` followed by each project flag the user has not set."""
  user = user_flags.split()
  taken = {flag_name(flag) for flag in user}
  return ' '.join(user + [flag for flag in project_flags if flag_name(flag) not in taken])


def project_xla_flags(version: tuple[int, ...] | None = None) -> list[str]:
  """The project's flags that the installed (or given) jaxlib knows."""
  version = jaxlib_version() if version is None else version
  return [flag for flag, oldest in PROJECT_FLAGS if version >= oldest]


def _jax_started() -> bool:
  """Whether JAX has started a backend in this process (without importing JAX)."""
  if 'jax' not in sys.modules:
    return False
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return xla_bridge.backends_are_initialized()


def configure_xla_flags(environ=os.environ) -> str:
  """Adds the project's flags to `environ['XLA_FLAGS']` and returns them all.

  Too late once JAX has started a backend: then it changes nothing, with a
  warning if any project flag is missing.
  """
  current = environ.get('XLA_FLAGS', '')
  flags = merged_xla_flags(current, project_xla_flags())
  if flags != current and _jax_started():
    logging.warning('rhpe_jax: JAX has started already; its XLA flags stay as they are '
                    '(call rhpe_jax.core.runtime.setup() before using JAX to get the '
                    'project\'s flags)')
    return current
  environ['XLA_FLAGS'] = flags
  return flags


def _installed(distribution: str) -> bool:
  try:
    importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return False
  return True


def has_tpu_chips(pci_root: str = '/sys/bus/pci/devices') -> bool:
  """Whether this machine has TPU chips: PCI devices of Google's vendor id,
  JAX's own test (jax._src.hardware_utils)."""
  root = pathlib.Path(pci_root)
  if not root.is_dir():
    return False
  for vendor in root.glob('*/vendor'):
    try:
      if vendor.read_text().strip() == '0x1ae0':
        return True
    except OSError:
      continue
  return False


def skip_absent_tpu(environ=os.environ, tpu_chips: bool | None = None) -> bool:
  """JAX_PLATFORMS=cpu where libtpu is installed (the `tpu` or `test`
  extras, for compiling for abstract TPUs) on a machine without TPUs and
  without any other accelerator plugin: JAX would otherwise load libtpu in
  every process, print its start-up complaints and take its one-process
  lock, only to fall back to the CPU. Returns whether it set the variable.
  JAX reads the variable when it is imported: where it is imported already
  (but has started no backend), its setting is changed too.
  """
  if environ.get('JAX_PLATFORMS') or not _installed('libtpu') or _jax_started():
    return False
  others = [dist.metadata['Name'] for dist in importlib.metadata.distributions()
            if (dist.metadata['Name'] or '').lower().startswith(('jax-cuda', 'jax_cuda',
                                                                   'jax-rocm', 'jax_rocm'))]
  if others or (has_tpu_chips() if tpu_chips is None else tpu_chips):
    return False
  environ['JAX_PLATFORMS'] = 'cpu'
  if 'jax' in sys.modules and environ is os.environ:
    sys.modules['jax'].config.update('jax_platforms', 'cpu')
  return True


def _hide_gpus(tf) -> None:
  try:
    tf.config.set_visible_devices([], 'GPU')
  except (RuntimeError, ValueError):
    pass  # TF has started its runtime already; the data pipeline places only CPU ops.


class _AfterImport(importlib.abc.MetaPathFinder):
  """Runs `callback(module)` right after the top-level module `name` is
  imported, once: a finder ahead of the others that hands on their spec with
  a loader that calls back when the module's code has run."""

  def __init__(self, name: str, callback):
    self.name, self.callback = name, callback

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    if fullname != self.name:
      return None
    sys.meta_path.remove(self)  # once; and the other finders find the module
    spec = importlib.util.find_spec(fullname)
    if spec is not None and spec.loader is not None and hasattr(spec.loader, 'exec_module'):
      exec_module, callback = spec.loader.exec_module, self.callback

      def exec_then_call(module):
        exec_module(module)
        callback(module)
      spec.loader.exec_module = exec_then_call  # this spec's own loader object
    return spec


def hide_gpus_from_tensorflow() -> None:
  """Keeps TensorFlow off the GPUs, so that it takes none of the memory JAX
  computes in (the data pipeline runs TensorFlow in the same process). At
  once where TensorFlow is imported already, else right after its import:
  processes that never use TensorFlow do not pay for importing it."""
  if 'tensorflow' in sys.modules:
    _hide_gpus(sys.modules['tensorflow'])
  elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterImport('tensorflow', _hide_gpus))


_set_up = False


def setup(*, compilation_cache: bool = False) -> None:
  """The project's settings for this process, before JAX and TensorFlow
  start: XLA flags (`configure_xla_flags`), JAX off an absent TPU
  (`skip_absent_tpu`), TensorFlow off the GPUs (`hide_gpus_from_tensorflow`)
  and, with `compilation_cache` (the command lines), JAX's persistent
  compilation cache (`enable_compilation_cache`). Idempotent: a second call
  changes nothing but can turn the cache on.
  """
  global _set_up
  if not _set_up:
    _set_up = True
    configure_xla_flags()
    skip_absent_tpu()
    hide_gpus_from_tensorflow()
  if compilation_cache:
    enable_compilation_cache()


def default_cache_dir(environ=os.environ) -> pathlib.Path:
  """$XDG_CACHE_HOME/rhpe_jax/jax_cache (~/.cache when XDG_CACHE_HOME is unset)."""
  base = environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'rhpe_jax' / 'jax_cache'


def enable_compilation_cache(environ=os.environ) -> str | None:
  """Turns on JAX's persistent compilation cache for the command-line tools,
  so that a second run skips compiling the steps; returns its directory.

  $JAX_COMPILATION_CACHE_DIR (JAX's own setting) wins; otherwise
  $RHPE_JAX_CACHE_DIR, where an empty value turns the cache off; otherwise
  `default_cache_dir()`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if environ.get('JAX_COMPILATION_CACHE_DIR'):
    return environ['JAX_COMPILATION_CACHE_DIR']
  directory = environ.get(CACHE_ENV)
  if directory is None:
    directory = str(default_cache_dir(environ))
  if not directory:
    return None
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory
