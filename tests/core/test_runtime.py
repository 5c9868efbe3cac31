"""runtime.setup(): the project's XLA flags reach XLA, an absent TPU's libtpu
is skipped, TensorFlow is kept off the GPUs right after its import, and the
compilation cache fills and is reused."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from rhpe_jax.core import runtime
from tests.conftest import SESSION_CACHE_ENV

REPO = pathlib.Path(__file__).resolve().parents[2]

# Compiles a convolution in a fresh interpreter after the project's set-up
# and reports what XLA made of it.
PROBE = '''
import json, os
import rhpe_jax.model.network  # importing sets nothing up ...
from rhpe_jax.core import runtime
runtime.setup()  # ... this does, before JAX starts a backend
import jax, jax.numpy as jnp
conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
text = jax.jit(conv).lower(jnp.zeros((2, 32, 32, 64)), jnp.zeros((3, 3, 64, 64))).compile().as_text()
print(json.dumps({'xla_flags': os.environ.get('XLA_FLAGS', ''), 'ynn': '__ynn_fusion' in text,
                  'backend': jax.default_backend()}))
'''


def run_python(code: str, **env) -> subprocess.CompletedProcess:
  environ = {k: v for k, v in os.environ.items()  # without the suite's settings
             if k not in ('XLA_FLAGS', 'JAX_PLATFORMS', *SESSION_CACHE_ENV)}
  environ.update(PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2', **env)
  return subprocess.run([sys.executable, '-c', code], cwd=REPO, env=environ, text=True,
                        capture_output=True, timeout=120, check=True)


def test_merge_keeps_the_users_flags_and_their_values():
  merged = runtime.merged_xla_flags(
      '--xla_dump_to=/tmp/d --xla_gpu_force_conv_nhwc=false',
      ['--xla_gpu_force_conv_nhwc=true', '--xla_cpu_use_onednn=true'])
  assert merged.split() == ['--xla_dump_to=/tmp/d', '--xla_gpu_force_conv_nhwc=false',
                            '--xla_cpu_use_onednn=true']


def test_flags_unknown_to_an_old_jaxlib_are_left_out():
  assert runtime.project_xla_flags((0, 4, 0)) == []
  newest = runtime.project_xla_flags((99, 0, 0))
  assert newest == [flag for flag, _ in runtime.PROJECT_FLAGS]


def test_flags_are_set_before_jax_starts_and_reach_xla():
  result = json.loads(run_python(PROBE, XLA_FLAGS='--xla_cpu_enable_fast_math=false').stdout)
  flags = result['xla_flags'].split()
  assert flags[0] == '--xla_cpu_enable_fast_math=false'  # the user's flag kept, first
  assert set(runtime.project_xla_flags()) <= set(flags)
  if '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution' in flags:
    assert result['backend'] == 'cpu' and not result['ynn']  # XLA saw the flag


def test_users_choice_of_a_project_flag_wins():
  users = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'
  result = json.loads(run_python(PROBE, XLA_FLAGS=users).stdout)
  assert result['xla_flags'].split().count(users) == 1
  assert '-individual_convolution' not in result['xla_flags']
  if any(flag.startswith('--xla_cpu_experimental_ynn') for flag in runtime.project_xla_flags()):
    assert result['ynn']  # the user's flag, not the project's, reached XLA


def test_setup_after_jax_started_warns_and_changes_nothing():
  code = ('import os, jax; jax.devices(); from rhpe_jax.core import runtime; runtime.setup(); '
          'print(repr(os.environ.get("XLA_FLAGS")))')
  result = run_python(code)
  assert result.stdout.strip() == 'None'
  assert 'JAX has started already' in result.stderr
  assert 'runtime.setup()' in result.stderr  # says what to do


def test_setup_is_idempotent_and_keeps_its_flags_once():
  code = ('import os; from rhpe_jax.core import runtime; runtime.setup(); runtime.setup(); '
          'print(os.environ["XLA_FLAGS"])')
  flags = run_python(code).stdout.split()
  assert flags == runtime.project_xla_flags()


CACHED_RUN = '''
from rhpe_jax.core import runtime
runtime.setup(compilation_cache=True)  # as the command lines do
import jax, jax.numpy as jnp
print(jax.config.jax_compilation_cache_dir)
jax.jit(lambda x: jnp.sin(x) * 2).lower(jnp.ones(3)).compile()
'''


def test_compilation_cache_defaults_under_xdg_cache_home(tmp_path):
  result = run_python(CACHED_RUN, XDG_CACHE_HOME=str(tmp_path),
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  cache = tmp_path / 'rhpe_jax' / 'jax_cache'
  assert result.stdout.strip() == str(cache)
  assert any(cache.iterdir())


def test_compilation_cache_can_be_moved_or_turned_off(tmp_path):
  moved = tmp_path / 'moved'
  result = run_python(CACHED_RUN, RHPE_JAX_CACHE_DIR=str(moved), XDG_CACHE_HOME=str(tmp_path),
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  assert result.stdout.strip() == str(moved) and any(moved.iterdir())
  assert not (tmp_path / 'rhpe_jax').exists()
  off = tmp_path / 'off'
  result = run_python(CACHED_RUN, RHPE_JAX_CACHE_DIR='', XDG_CACHE_HOME=str(off),
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  assert result.stdout.strip() == 'None' and not off.exists()


def test_tpu_chips_are_found_by_googles_pci_vendor_id(tmp_path):
  for name, vendor in (('0000:00:04.0', '0x1af4'), ('0000:00:05.0', '0x8086')):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'vendor').write_text(vendor + '\n')
  assert not runtime.has_tpu_chips(str(tmp_path))
  (tmp_path / '0000:00:06.0').mkdir()
  (tmp_path / '0000:00:06.0' / 'vendor').write_text('0x1ae0\n')
  assert runtime.has_tpu_chips(str(tmp_path))
  assert not runtime.has_tpu_chips(str(tmp_path / 'absent'))


def test_an_installed_libtpu_is_skipped_without_tpus_unless_the_user_chose():
  if not runtime._installed('libtpu'):  # pylint: disable=protected-access
    import pytest  # pylint: disable=g-import-not-at-top
    pytest.skip('libtpu is not installed (the tpu or test extras bring it)')
  code = ('import os, rhpe_jax; from rhpe_jax.core import runtime; runtime.setup(); '
          'print(os.environ.get("JAX_PLATFORMS"), flush=True); '
          'import jax; print(jax.default_backend())')
  environ = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  environ.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=environ, text=True,
                          capture_output=True, timeout=120, check=True)
  assert result.stdout.split() == ['cpu', 'cpu']
  assert 'TPU' not in result.stderr  # libtpu was not loaded: none of its start-up lines
  # JAX imported (it reads JAX_PLATFORMS then) but not started: set in its config too.
  late = code.replace('import os, rhpe_jax;', 'import os, jax;')
  result = subprocess.run([sys.executable, '-c', late], cwd=REPO, env=environ, text=True,
                          capture_output=True, timeout=120, check=True)
  assert result.stdout.split() == ['cpu', 'cpu']
  assert 'TPU' not in result.stderr
  environ['JAX_PLATFORMS'] = 'cpu,tpu'  # the user's setting is kept
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=environ, text=True,
                          capture_output=True, timeout=120)
  assert result.stdout.split()[:1] == ['cpu,tpu']  # (jax may then fail: no TPU here)


# Records what runtime.setup() does to TensorFlow, without a GPU to hide: the
# hiding itself (`_hide_gpus`) is replaced by a recorder.
HIDING = '''
import json, sys
{before}
from rhpe_jax.core import runtime
calls = []
runtime._hide_gpus = lambda tf: calls.append((tf.__name__, hasattr(tf, 'config')))
runtime.setup()
runtime.setup()
at_setup = list(calls)
import tensorflow as tf
import tensorflow_datasets
hooks = [type(f).__name__ for f in sys.meta_path if type(f).__module__ == runtime.__name__]
print(json.dumps({{'at_setup': at_setup, 'after_import': calls, 'hooks': hooks}}))
'''


def test_tensorflow_is_kept_off_the_gpus_once_right_after_its_import():
  result = json.loads(run_python(HIDING.format(before='')).stdout)
  assert result == {'at_setup': [], 'after_import': [['tensorflow', True]], 'hooks': []}
  result = json.loads(run_python(HIDING.format(before='import tensorflow')).stdout)
  assert result == {'at_setup': [['tensorflow', True]], 'after_import': [['tensorflow', True]],
                    'hooks': []}


def test_tensorflow_works_after_setup_with_its_gpus_hidden():
  code = ('from rhpe_jax.core import runtime; runtime.setup()\n'
          'import tensorflow as tf\n'
          'print(tf.config.get_visible_devices("GPU"), float(tf.reduce_sum(tf.ones(3))))')
  assert run_python(code).stdout.split() == ['[]', '3.0']
