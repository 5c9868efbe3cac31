"""Every convolution form against a NumPy convolution and its gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.model import conv
from rhpe_jax.model import conv_forms
from tests.model.test_conv import _numpy_conv, _numpy_gradients

# odd, even and 1x1 kernels, channel counts off the 8-alignment, odd sizes
SHAPES = [((2, 7, 6, 3), (3, 3, 3, 5)), ((1, 6, 7, 4), (4, 4, 4, 3)),
          ((2, 5, 5, 6), (1, 1, 6, 7)), ((1, 9, 8, 2), (5, 5, 2, 9))]
# Winograd's values and gradients against NumPy: tests/model/test_winograd.py.
FORMS = sorted(set(conv.FORMS) - {'winograd'})


def _case(shape, kernel_shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(shape)
  kernel = rng.standard_normal(kernel_shape) / np.sqrt(np.prod(kernel_shape[:3]))
  grad = rng.standard_normal(shape[:3] + kernel_shape[3:])
  return x, kernel, grad


def _outputs_beside_numpy(name, x, kernel, grad, dtype):
  """(ours, NumPy's) for the form's output and both of its gradients, run in `dtype`."""
  out, vjp = jax.vjp(conv.FORMS[name], dtype(x), dtype(kernel))
  x_grad, kernel_grad = vjp(dtype(grad))
  expected_x_grad, expected_kernel_grad = _numpy_gradients(x, kernel, grad)
  return ((out, _numpy_conv(x, kernel)), (x_grad, expected_x_grad),
          (kernel_grad, expected_kernel_grad))


@pytest.mark.parametrize('name', FORMS)
@pytest.mark.parametrize('shape,kernel_shape', SHAPES)
def test_form_and_its_gradients_match_numpy_in_float32(name, shape, kernel_shape):
  x, kernel, grad = _case(shape, kernel_shape)
  for ours, expected in _outputs_beside_numpy(name, x, kernel, grad, jnp.float32):
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize('name', FORMS)
def test_form_in_bfloat16_is_within_bfloat16_rounding(name):
  # Inputs exactly representable in bfloat16; products accumulate in float32,
  # so the error is the output's rounding (bfloat16 keeps 8 bits: 2^-8).
  x, kernel, grad = _case((2, 6, 7, 5), (3, 3, 5, 4), seed=1)
  x, kernel, grad = (np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)
                     for a in (x, kernel, grad))
  for ours, expected in _outputs_beside_numpy(name, x, kernel, grad, jnp.bfloat16):
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ours, np.float64), expected, rtol=0,
                               atol=2 ** -8 * np.abs(expected).max())


@pytest.mark.parametrize('name,kernel_shape,expected', [
    ('taps', (1, 1, 8, 8), False), ('taps', (3, 3, 8, 8), True),
    ('im2col_rows', (1, 1, 8, 8), False), ('im2col', (1, 1, 8, 8), True),
    ('channels_padded', (3, 3, 64, 64), False), ('channels_padded', (3, 3, 3, 64), True),
    ('channels_padded', (1, 1, 256, 15), True), ('winograd', (9, 9, 8, 8), True),
    ('winograd', (7, 7, 8, 8), False), ('xla', (13, 13, 64, 64), True)])
def test_applies(name, kernel_shape, expected):
  assert conv_forms.applies(name, kernel_shape) == expected
