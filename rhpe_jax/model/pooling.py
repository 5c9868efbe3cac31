"""2x2 max-pooling with stride 2, with a gradient written as elementwise code.

JAX differentiates `flax.linen.max_pool` into XLA's select-and-scatter, which
XLA's CPU backend expands into index arithmetic and a scatter: 0.11 s per
training step for the first pooling layer alone at 248x248 (batch 2), against
about 0.03 s for the same gradient as one elementwise loop
(docs/performance.md). The gradient here is that of select-and-scatter: each
window's output gradient goes to the first of its maxima in row-major order.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _windows(x: jax.Array) -> jax.Array:
  """(B, H, W, C) -> (B, H/2, 2, W/2, 2, C); odd trailing rows and columns
  are dropped, as 'VALID' pooling does."""
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
  """Max over non-overlapping 2x2 windows of a (B, H, W, C) array."""
  return jnp.max(_windows(x), axis=(2, 4))


def _forward(x):
  y = max_pool_2x2(x)
  return y, (x, y)


def _backward(residuals, grad):
  x, y = residuals
  windows = _windows(x)
  is_max = windows == y[:, :, None, :, None, :]
  taken = jnp.zeros_like(is_max[:, :, 0, :, 0])
  rows = []
  for i in range(2):
    row = []
    for j in range(2):
      first = is_max[:, :, i, :, j] & ~taken
      taken = taken | first
      row.append(jnp.where(first, grad, jnp.zeros_like(grad)))
    rows.append(jnp.stack(row, axis=3))
  window_grad = jnp.stack(rows, axis=2)  # (B, H/2, 2, W/2, 2, C)
  b, h, w, c = x.shape
  x_grad = window_grad.reshape(b, h - h % 2, w - w % 2, c)
  return (jnp.pad(x_grad, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool_2x2.defvjp(_forward, _backward)
