"""The training and inference steps compile once: fresh batches of the same
shapes must not trigger another XLA compilation."""
import jax
import numpy as np
import pytest

from rhpe_jax.perf.benchmark import fake_batch
from experiments.configs import demo
from rhpe_jax.core import runtime
from rhpe_jax.training import steps as step_lib

runtime.setup()  # the project's XLA flags and JAX settings, as the command lines have them

# An XLA compilation, or its executable read from the persistent compilation
# cache the suite shares (tests/conftest.py) in its place.
COMPILE_EVENTS = ('/jax/core/compile/backend_compile_duration',
                  '/jax/compilation_cache/cache_retrieval_time_sec')


@pytest.fixture
def compile_counter():
  events = []

  def listener(name, duration, **kwargs):
    if name in COMPILE_EVENTS:
      events.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield events
  jax.monitoring.unregister_event_duration_listener(listener)


def _tiny_config():
  config = demo.get_config()
  config.width = 0.0625
  config.input_size = 32
  return config


def _batches(config, count):
  rng = np.random.default_rng(0)
  devices = jax.local_device_count()
  for _ in range(count):
    batch = fake_batch(config, devices * 2, config.input_size, rng)
    yield jax.tree_util.tree_map(lambda x: x.reshape((devices, 2) + x.shape[1:]), batch)


@pytest.mark.slow
def test_pmapped_train_step_compiles_once(compile_counter):
  config = _tiny_config()
  state = step_lib.replicate(
      step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=10))
  p_train_step = step_lib.pmapped_train_step(config)
  batches = _batches(config, 5)
  state, metrics = p_train_step(state, next(batches))
  jax.block_until_ready(metrics)
  compiled_first = len(compile_counter)
  assert compiled_first >= 1  # the counter does see compilations
  for batch in batches:
    state, metrics = p_train_step(state, batch)
  jax.block_until_ready(metrics)
  assert len(compile_counter) == compiled_first


def test_predict_step_compiles_once(compile_counter):
  config = _tiny_config()
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=10)
  predict = jax.jit(lambda s, b: step_lib.predict_step(s, b, config=config))
  rng = np.random.default_rng(1)
  jax.block_until_ready(predict(state, fake_batch(config, 3, config.input_size, rng)))
  compiled_first = len(compile_counter)
  for _ in range(3):
    jax.block_until_ready(predict(state, fake_batch(config, 3, config.input_size, rng)))
  assert len(compile_counter) == compiled_first


def test_folder_prediction_step_compiles_once(compile_counter):
  """`predict --images` runs every batch (the last one padded) through one
  compiled step."""
  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  config = _tiny_config()
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=10)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  step = predictor.predict_fn(config)  # what inference.batch runs every batch through
  rng = np.random.default_rng(1)
  images = lambda: rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  out = jax.block_until_ready(step(variables, images()))
  assert out['keypoints'].shape == (4, 16, 2)
  compiled_first = len(compile_counter)
  assert compiled_first >= 1
  for _ in range(3):
    jax.block_until_ready(step(variables, images()))
  assert len(compile_counter) == compiled_first
