"""The train step: pmap over 8 devices equals one device on the same global
batch (cross-device batch norm), and the optimiser's schedule by hand."""
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from rhpe_jax import model as model_lib
from rhpe_jax.core import runtime
from rhpe_jax.training import steps as step_lib
from tests.training import train_worker

runtime.setup()  # the project's XLA flags and JAX settings, as the command lines have them

REPO = pathlib.Path(__file__).resolve().parents[2]


def _env(devices: int) -> dict:
  env = dict(os.environ)
  env['XLA_FLAGS'] = ' '.join([env.get('XLA_FLAGS', ''),
                               f'--xla_force_host_platform_device_count={devices}',
                               *train_worker.comparison_xla_flags()]).strip()
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
  return env


@pytest.mark.slow
def test_pmap_over_8_devices_equals_one_device(tmp_path):
  out = tmp_path / 'pmap.npz'
  result = subprocess.run(
      [sys.executable, str(REPO / 'tests' / 'training' / 'train_worker.py'), 'pmap', str(out)],
      cwd=REPO, env=_env(8), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  z = np.load(out)
  assert int(z['devices']) == 8
  names = sorted(k[len('pmap'):] for k in z.files if k.startswith('pmap'))
  assert any('batch_stats' in n for n in names) and any('params' in n for n in names)
  largest_update = 0.0
  for name in names:
    pmapped, single = z['pmap' + name], z['single' + name]
    # Float tolerance: only the order of the reductions differs. Measured up
    # to 8e-5 (a first-layer batch-norm offset): the CPU weight gradients
    # (rhpe_jax.model.conv) sum over the batch in an order that depends on its size.
    # Statistics per device would differ by ~1e-1, an update by up to ~2e-2.
    np.testing.assert_allclose(pmapped, single, rtol=1e-3, atol=1e-4, err_msg=name)
    if 'init' + name in z.files:
      largest_update = max(largest_update, float(np.abs(single - z['init' + name]).max()))
  # The steps moved the weights far more than the tolerance: a split batch
  # norm (statistics per device) or unaveraged gradients would show.
  assert largest_update > 1e-3


def _config(**kw):
  config = ml_collections.ConfigDict(dict(
      learning_rate=2e-4, lr_boundaries_epochs=(30, 35), lr_factors=(0.5, 0.2),
      optimizer='sgd', momentum=0.95, grad_clip_norm=0.0, weight_decay=0.0))
  config.update(kw)
  return config


def test_learning_rate_schedule_steps_at_epoch_boundaries():
  schedule = step_lib.learning_rate_schedule(_config(), steps_per_epoch=10)
  # Hand values: 2e-4 until step 300 (30 epochs), 1e-4 until 350, then 2e-5.
  expected = {0: 2e-4, 299: 2e-4, 300: 1e-4, 349: 1e-4, 350: 2e-5, 10_000: 2e-5}
  for step, rate in expected.items():
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step


def test_cosine_schedule_with_warmup_hand_values():
  config = _config(lr_schedule='cosine', warmup_steps=10, learning_rate=1e-3)
  schedule = step_lib.learning_rate_schedule(config, steps_per_epoch=7, total_steps=110)
  # Warm-up 0 -> 1e-3 over 10 steps, then 1e-3 * (1 + cos(pi * t / 100)) / 2.
  expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 35: 1e-3 * (1 + np.cos(np.pi / 4)) / 2,
              60: 5e-4, 110: 0.0}
  for step, rate in expected.items():
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-5, abs=1e-9), step
  with pytest.raises(ValueError, match='total number of steps'):
    step_lib.learning_rate_schedule(config, steps_per_epoch=7)
  with pytest.raises(ValueError, match="lr_schedule must be 'step' or 'cosine'"):
    step_lib.learning_rate_schedule(_config(lr_schedule='linear'), steps_per_epoch=7)


def test_sgd_momentum_update_by_hand():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  opt = step_lib.create_optimizer(_config(), steps_per_epoch=10)
  params = {'w': jnp.array([1.0, -2.0])}
  state = opt.init(params)
  grads = [np.array([0.5, 1.0]), np.array([-1.0, 2.0])]
  velocity, expected = np.zeros(2), np.array([1.0, -2.0])
  for g in grads:
    updates, state = opt.update({'w': jnp.asarray(g)}, state, params)
    params = {'w': params['w'] + updates['w']}
    velocity = 0.95 * velocity + g  # heavy ball, as optax (and the release)
    expected = expected - 2e-4 * velocity
  np.testing.assert_allclose(np.asarray(params['w']), expected, rtol=1e-6)


def test_bad_optimizer_and_dtype_are_named():
  with pytest.raises(ValueError, match='rmsprop'):
    step_lib.create_optimizer(_config(optimizer='rmsprop'), steps_per_epoch=1)
  config = train_worker.tiny_config(compute_dtype='float8')
  with pytest.raises(ValueError, match='float8'):
    model_lib.create_model(config)
