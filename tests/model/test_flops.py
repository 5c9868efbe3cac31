"""The project's FLOP count against XLA's CPU cost analysis (lowered or compiled, never run)."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.perf import benchmark
from experiments.configs import mpii
from rhpe_jax.model import conv
from rhpe_jax.model import flops
from rhpe_jax.model import network as model_lib
from rhpe_jax.training import steps as step_lib


class PlainConv(nn.Module):
  """A layer of the paper's network as one `nn.Conv` of its concatenated inputs."""
  features: int
  kernel_size: tuple[int, int]
  dtype: Any = None
  kernel_init: Any = nn.linear.default_kernel_init
  tuned_convolutions: bool = True  # unused

  @nn.compact
  def __call__(self, *inputs):
    return nn.Conv(self.features, self.kernel_size, padding='SAME', dtype=self.dtype,
                   kernel_init=self.kernel_init)(jnp.concatenate(inputs, axis=-1))


def xla_flops(config, what: str, batch: int, compiled: bool) -> float:
  """XLA's CPU cost analysis of the train or predict step: of the program as
  lowered (XLA's HLO cost analysis, no compilation), or as compiled."""
  state = jax.eval_shape(
      lambda: step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=10))
  images = benchmark.fake_batch(config, batch, config.input_size, np.random.default_rng(0))
  step = step_lib.train_step if what == 'train' else step_lib.predict_step
  kwargs = {'axis_name': None} if what == 'train' else {}
  lowered = jax.jit(functools.partial(step, config=config, **kwargs)).lower(state, images)
  cost = (lowered.compile() if compiled else lowered).cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)['flops'])


@pytest.mark.parametrize('kernel', [1, 3, 7, 9, 13])
@pytest.mark.parametrize('length', [13, 16, 62])
def test_taps_counts_products_on_real_input(length, kernel):
  # 'same' correlation of an all-ones axis with an all-ones kernel: each output
  # sums the taps that land on real input.
  expected = np.convolve(np.ones(length), np.ones(kernel), mode='same').sum()
  assert flops.taps(length, kernel) == expected


@pytest.mark.parametrize('width', [0.125, 1.0])
def test_parameter_count_matches_the_model(width):
  config = mpii.get_config()
  config.width = width
  net = model_lib.create_model(config)
  variables = jax.eval_shape(lambda: model_lib.init_variables(net, jax.random.key(0), (1, 64, 64, 3)))
  assert flops.network_layers(net, 64, 64).parameters == model_lib.count_parameters(
      variables['params'])


@pytest.mark.parametrize('size,width,what,compiled', [
    (64, 0.125, 'train', True),  # the optimised program counts the same (~15 s to compile)
    (64, 0.125, 'train', False), (64, 0.125, 'forward', False),
    (96, 0.25, 'train', False), (96, 0.25, 'forward', False)])
def test_count_matches_xla_cpu_cost_analysis(size, width, what, compiled, monkeypatch):
  # XLA counts the network as the paper describes it, on XLA's own
  # convolutions and their gradients: rhpe_jax.model.conv pads weight gradients'
  # inputs (XLA counts that as products with zeros), uses Winograd's algorithm
  # and convolves the fusion module's skip feature once for all passes.
  monkeypatch.setattr(conv, 'Conv', PlainConv)
  config = mpii.get_config()
  config.input_size = size
  config.width = width
  batch = 2
  net = model_lib.create_model(config)
  count = flops.train_step_flops if what == 'train' else flops.forward_flops
  ours = count(net, size, size, batch)
  assert ours == pytest.approx(xla_flops(config, what, batch, compiled), rel=0.02)


def test_full_network_at_248_px():
  # XLA's CPU cost analysis of the reference network (531.48 and 176.88
  # GFLOP/image, batch 1) as printed by the benchmark; too slow to compile here.
  net = model_lib.create_model(mpii.get_config())
  assert flops.train_step_flops(net, 248, 248) / 1e9 == pytest.approx(531.48, rel=0.005)
  assert flops.forward_flops(net, 248, 248) / 1e9 == pytest.approx(176.88, rel=0.005)
