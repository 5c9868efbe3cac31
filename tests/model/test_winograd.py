"""Winograd convolutions against NumPy: the transforms, outputs and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.model import conv
from rhpe_jax.model import winograd
from tests.model.test_conv import _numpy_conv, _numpy_gradients

# Compiled whole: run op by op, its many small operations take seconds each test.
conv_same = jax.jit(winograd.conv_same)


def test_transforms_compute_a_valid_correlation():
  at, g, bt = winograd.transforms()
  rng = np.random.default_rng(0)
  for _ in range(5):
    d, kernel = rng.standard_normal(5), rng.standard_normal(3)
    np.testing.assert_allclose(at @ ((g @ kernel) * (bt @ d)), np.correlate(d, kernel, 'valid'),
                               rtol=1e-12, atol=1e-12)


def test_even_kernel_puts_the_extra_padding_last():
  rng = np.random.default_rng(3)
  x, kernel = rng.standard_normal((1, 14, 16, 2)), rng.standard_normal((12, 12, 2, 4)) / 12
  expected = _numpy_conv(x, kernel)
  np.testing.assert_allclose(conv_same(jnp.float32(x), jnp.float32(kernel)), expected,
                             atol=2e-5 * np.abs(expected).max())


def test_convolution_and_gradients_match_numpy():
  # sizes that are not multiples of the tile
  rng = np.random.default_rng(1)
  shape, kernel_side = (2, 13, 11, 3), 9
  x = rng.standard_normal(shape)
  kernel = rng.standard_normal((kernel_side, kernel_side, shape[3], 4)) / kernel_side
  grad = rng.standard_normal(shape[:3] + (4,))
  out, vjp = jax.vjp(conv_same, jnp.float32(x), jnp.float32(kernel))
  x_grad, kernel_grad = vjp(jnp.float32(grad))
  expected_x_grad, expected_kernel_grad = _numpy_gradients(x, kernel, grad)
  for ours, expected in ((out, _numpy_conv(x, kernel)), (x_grad, expected_x_grad),
                         (kernel_grad, expected_kernel_grad)):
    np.testing.assert_allclose(ours, expected, atol=2e-5 * np.abs(expected).max())


def test_error_at_the_trunk_size_is_within_the_documented_bound():
  # The 9x9 256->512 trunk layer's channels at a small size: about 5e-6 of the
  # largest output (rhpe_jax.model.winograd's docstring), against float64.
  rng = np.random.default_rng(2)
  x = rng.standard_normal((1, 12, 12, 256))
  kernel = rng.standard_normal((9, 9, 256, 8)) * np.sqrt(2 / (81 * 256))
  expected = _numpy_conv(x, kernel)
  ours = np.asarray(conv_same(jnp.float32(x), jnp.float32(kernel)))
  assert np.abs(ours - expected).max() < 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize('shape,dtype,expected', [
    ((9, 9, 128, 256), jnp.float32, True), ((12, 12, 256, 128), jnp.float32, True),
    ((3, 3, 128, 128), jnp.float32, False), ((7, 7, 384, 64), jnp.float32, False),
    ((9, 9, 64, 128), jnp.float32, False), ((9, 9, 128, 256), jnp.bfloat16, False)])
def test_supports(shape, dtype, expected):
  assert winograd.supports(shape, dtype) == expected


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the Winograd path is for CPUs')
def test_cpu_runs_9x9_kernels_by_winograd_and_others_directly():
  def convolutions(side):
    x, kernel = jnp.zeros((1, 12, 12, 128)), jnp.zeros((side, side, 128, 128))
    text = jax.jit(conv.conv_same).lower(x, kernel).compile().as_text()
    return sum(' convolution(' in line for line in text.splitlines())
  assert convolutions(9) == 0
  assert convolutions(3) == 1
