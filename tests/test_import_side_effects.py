"""Importing rhpe_jax changes nothing in the process: every module of the
package, imported in a fresh interpreter, changes os.environ and the import
machinery only as the libraries it imports do on their own (an interpreter
that imports just those libraries is the reference), leaves JAX's settings
and TensorFlow's visible devices as they are there, and starts no JAX
backend. (rhpe_jax.core.runtime.setup, which the command lines and the
training loop call, is where the settings happen: tests/core/test_runtime.py.)"""
import ast
import json
import os
import pathlib
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / 'rhpe_jax'

# The variables the project's set-up writes: absent at the start, so that
# writing them shows (jax sets TF_CPP_MIN_LOG_LEVEL too, in both processes).
_SET_UP_BY_THE_PROJECT = ('XLA_FLAGS', 'JAX_PLATFORMS', 'TF_CPP_MIN_LOG_LEVEL',
                          'JAX_COMPILATION_CACHE_DIR', 'RHPE_JAX_CACHE_DIR')

# `imports` (a list of module names) is imported, then the report: what
# changed in os.environ (name -> new value, None when removed), the finders
# added to sys.meta_path (by type), JAX's settings that the set-up changes,
# whether a JAX backend has started, TensorFlow's visible devices (asked last:
# asking starts TensorFlow's runtime).
_IMPORT_AND_REPORT = '''
import importlib, json, os, sys
environ, meta_path = dict(os.environ), list(sys.meta_path)
for name in imports:
  try:
    importlib.import_module(name)
  except ImportError:
    if strict:
      raise
report = {'environ': {k: os.environ.get(k) for k in set(environ) | set(os.environ)
                      if environ.get(k) != os.environ.get(k)},
          'finders': sorted(type(f).__qualname__ for f in sys.meta_path if f not in meta_path)}
import jax, tensorflow as tf
from jax._src import xla_bridge
report['jax'] = {'platforms': jax.config.jax_platforms,
                 'cache_dir': jax.config.jax_compilation_cache_dir,
                 'backend_started': xla_bridge.backends_are_initialized()}
report['tf_visible_devices'] = sorted(d.device_type for d in tf.config.get_visible_devices())
print('REPORT ' + json.dumps(report))
'''


def _package_modules() -> list[str]:
  """Every module of rhpe_jax, from its files."""
  names = []
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(REPO).with_suffix('').parts
    names.append('.'.join(parts[:-1] if parts[-1] == '__init__' else parts))
  return names


def _libraries_imported() -> list[str]:
  """Every module outside the package and the standard library that
  rhpe_jax's code imports anywhere (at the top or in a function), read from
  its source."""
  names = set()
  for path in PACKAGE.rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names.add(node.module)
        names.update(f'{node.module}.{alias.name}' for alias in node.names)  # maybe modules
  return sorted(n for n in names if n.split('.')[0] not in sys.stdlib_module_names
                and n.split('.')[0] != 'rhpe_jax')


def _start(imports: list[str], strict: bool) -> subprocess.Popen:
  env = {k: v for k, v in os.environ.items() if k not in _SET_UP_BY_THE_PROJECT}
  env['PYTHONPATH'] = str(REPO)
  code = f'imports, strict = {imports!r}, {strict!r}\n' + _IMPORT_AND_REPORT
  return subprocess.Popen([sys.executable, '-c', code], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _report(process: subprocess.Popen) -> dict:
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-3000:]
  line, = (line for line in out.splitlines() if line.startswith('REPORT '))
  return json.loads(line[len('REPORT '):])


def test_importing_every_module_changes_nothing():
  modules = _package_modules()
  assert {'rhpe_jax.cli', 'rhpe_jax.core.runtime', 'rhpe_jax.data.augment',
          'rhpe_jax.training.loop', 'rhpe_jax.interop.matconvnet'} <= set(modules)
  libraries = _libraries_imported()
  assert {'jax', 'tensorflow', 'tensorflow_datasets', 'orbax.checkpoint'} <= set(libraries)
  package, alone = _start(modules, strict=True), _start(libraries, strict=False)
  package, alone = _report(package), _report(alone)
  for name, value in package['environ'].items():  # e.g. jax's TF_CPP_MIN_LOG_LEVEL
    assert name in alone['environ'] and alone['environ'][name] == value, (name, value)
  assert set(package['finders']) <= set(alone['finders'])
  assert package['jax'] == alone['jax'] == {'platforms': None, 'cache_dir': None,
                                            'backend_started': False}
  assert package['tf_visible_devices'] == alone['tf_visible_devices']
