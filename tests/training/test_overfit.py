"""A width-reduced network fits a handful of synthetic images: the loss falls
by more than 90 % (model, targets and loss work together)."""
import functools

import jax
import numpy as np
import pytest

from experiments.configs import demo
from rhpe_jax.core import runtime
from rhpe_jax.data import synthetic
from rhpe_jax.training import steps as step_lib

runtime.setup()  # the project's XLA flags and JAX settings, as the command lines have them


def _batch(size: int, count: int) -> dict:
  """`count` synthetic examples resized to `size` px, keypoints scaled along."""
  examples = [synthetic.generate_example(seed, size) for seed in range(count)]
  return {
      'image': np.stack([e['image'] for e in examples]),
      'keypoints': np.stack([e['keypoints'] for e in examples]).astype(np.float32),
      'keypoint_status': np.stack([e['keypoint_status'] for e in examples]).astype(np.int32),
      'other_keypoints': np.zeros((count, 1, 16, 2), np.float32),
      'other_keypoint_status': np.zeros((count, 1, 16), np.int32),
  }


# No cheaper version in the fast tier: compiling the step took about 30 of the
# 37 s that a 100-step run of this test took (measured), so fewer steps save little.
@pytest.mark.slow
def test_small_network_overfits_a_few_images():
  config = demo.get_config()
  config.width = 0.125
  config.input_size = 64
  config.learning_rate = 1e-3
  config.grad_clip_norm = 0.0
  config.relu_output = False  # see model.Heads: dead ReLU outputs stall small nets
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=1000)
  step = jax.jit(functools.partial(step_lib.train_step, config=config, axis_name=None))
  batch = _batch(64, 4)
  losses = []
  for _ in range(220):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  assert np.all(np.isfinite(losses))
  first, last = losses[0], np.mean(losses[-5:])
  assert last < 0.1 * first, (first, last)
