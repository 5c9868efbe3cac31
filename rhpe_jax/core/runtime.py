"""What the project sets up in JAX for itself: XLA flags and a compilation cache.

XLA reads `XLA_FLAGS` once, when JAX starts its first backend, so
`configure_xla_flags` runs when `rhpe_jax` is imported (the package's
`__init__`), before any of its modules imports JAX. The flags of every
backend go in together, since the backend is not known yet; each backend
reads only its own. Flags the user already put in `XLA_FLAGS` win over the
project's, and a flag the installed jaxlib does not know is left out (XLA
aborts on unknown flags). docs/performance.md has the measurements behind
each flag.
"""
from __future__ import annotations

import importlib.metadata
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


def configure_xla_flags(environ=os.environ) -> str:
  """Adds the project's flags to `environ['XLA_FLAGS']` and returns them all.

  Too late once JAX has started a backend: then it warns and changes nothing.
  """
  jax = sys.modules.get('jax')
  if jax is not None:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized():
      logging.warning('rhpe_jax: JAX has started already; its XLA flags stay as they are '
                      '(import rhpe_jax before using JAX to get the project\'s flags)')
      return environ.get('XLA_FLAGS', '')
  flags = merged_xla_flags(environ.get('XLA_FLAGS', ''), project_xla_flags())
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
  """
  if environ.get('JAX_PLATFORMS') or 'jax' in sys.modules or not _installed('libtpu'):
    return False
  others = [dist.metadata['Name'] for dist in importlib.metadata.distributions()
            if (dist.metadata['Name'] or '').lower().startswith(('jax-cuda', 'jax_cuda',
                                                                   'jax-rocm', 'jax_rocm'))]
  if others or (has_tpu_chips() if tpu_chips is None else tpu_chips):
    return False
  environ['JAX_PLATFORMS'] = 'cpu'
  return True


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
