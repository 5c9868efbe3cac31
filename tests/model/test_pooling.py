"""max_pool_2x2 against NumPy: maxima, and gradients to the first maximum."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.model import pooling


def _numpy_pool_and_gradient(x, grad):
  b, h, w, c = x.shape
  out = np.zeros((b, h // 2, w // 2, c))
  x_grad = np.zeros_like(x)
  for n in range(b):
    for i in range(h // 2):
      for j in range(w // 2):
        for k in range(c):
          window = x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, k].reshape(-1)
          first = int(np.argmax(window))  # argmax takes the first of equal maxima
          out[n, i, j, k] = window[first]
          x_grad[n, 2 * i + first // 2, 2 * j + first % 2, k] += grad[n, i, j, k]
  return out, x_grad


@pytest.mark.parametrize('shape', [(2, 6, 8, 3), (1, 7, 9, 2)])  # odd sizes drop the last row/column
def test_pool_and_gradient_match_numpy_with_ties(shape):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, shape).astype(np.float32)  # many tied maxima
  grad = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
  out, vjp = jax.vjp(pooling.max_pool_2x2, jnp.asarray(x))
  expected_out, expected_grad = _numpy_pool_and_gradient(x, grad)
  np.testing.assert_array_equal(out, expected_out)
  np.testing.assert_array_equal(vjp(jnp.asarray(grad))[0], expected_grad)
