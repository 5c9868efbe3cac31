"""'SAME' convolutions by Winograd's minimal filtering F(3x3, 3x3), for CPUs.

A k x k kernel with k a multiple of 3 is cut into (k/3)^2 sub-kernels of
3x3 at offsets (3a, 3b). The output is computed in 3x3 tiles: each input
tile of 5x5 and each sub-kernel is carried into a 5x5 transform domain, where
a tile's output is an elementwise product summed over input channels, and
sub-kernel (a, b) reads the transformed input tile (a, b) steps away. So every
output tile costs 25 multiplications per channel pair and sub-kernel instead
of 81 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016): 3.2 times fewer for the trunk's 9x9 layers, and the same factor for
their gradients, which JAX derives from these linear steps. The products run
as 25 batched matrix products, which XLA's CPU backend executes near the
machine's peak, while its direct 9x9 convolutions reach the same rate on 3.2
times the work (docs/performance.md).

The transform matrices come from the Toom-Cook construction on the points
0, 1, -1, 2 and infinity. In float32 the result differs from a direct
convolution by about 5e-6 of the output's largest value at 9x9 with 256
input channels (a direct float32 convolution of that size is itself about
1e-6 from the exact sum); tests/test_winograd.py bounds it.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

TILE = 3  # output tile and sub-kernel size: F(3x3, 3x3)
POINTS = (0.0, 1.0, -1.0, 2.0)  # and infinity


@functools.cache
def transforms(points: Sequence[float] = POINTS, m: int = TILE, r: int = TILE
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(A^T, G, B^T) of F(m, r) for the given finite points plus infinity:
  A^T [(G g) * (B^T d)] is the valid correlation of d (m + r - 1 values)
  with g (r values)."""
  n = m + r - 1
  if len(points) != n - 1:
    raise ValueError(f'F({m}, {r}) needs {n - 1} finite points, got {len(points)}')
  at, g = np.zeros((m, n)), np.zeros((n, r))
  for j, p in enumerate(points):
    at[:, j] = [p ** i for i in range(m)]
    g[j] = [p ** k for k in range(r)]
    g[j] /= math.prod(p - other for other in points if other != p)
  at[m - 1, n - 1] = g[n - 1, r - 1] = 1.0  # the point at infinity
  # B^T solves sum_j A^T[i, j] G[j, k] B^T[j, l] = [l == i + k] for all i, k, l.
  system = np.zeros((m * r * n, n * n))
  target = np.zeros(m * r * n)
  for row, (i, k, l) in enumerate(np.ndindex(m, r, n)):
    system[row].reshape(n, n)[:, l] = at[i] * g[:, k]
    target[row] = float(l == i + k)
  solution = np.linalg.lstsq(system, target, rcond=None)[0]
  if not np.allclose(system @ solution, target, atol=1e-9):
    raise ValueError(f'no exact F({m}, {r}) on the points {points}')
  bt = np.where(np.abs(solution) < 1e-12, 0.0, solution).reshape(n, n)
  return at, g, bt


# Where it pays on CPU (forward and backward at batch 2, against the direct
# convolution): 9x9 128->256 at 62x62 0.39 s against 0.64 s, 256->512 1.25 s
# against 2.94 s; but 9x9 64->128 0.17 s against 0.16 s, 3x3 64->64 at
# 248x248 0.26 s against 0.20 s, and narrower layers lose up to 3x. Each
# Winograd layer also adds 3-7 s of compile time.
MIN_KERNEL = 9
MIN_CHANNELS = 128


def supports(kernel_shape: Sequence[int], dtype) -> bool:
  """Square float32 kernels of side 9, 12, 15... (a multiple of 3, at least
  MIN_KERNEL) with at least MIN_CHANNELS input and output channels."""
  kh, kw, cin, cout = kernel_shape
  return (kh == kw and kh % TILE == 0 and kh >= MIN_KERNEL
          and min(cin, cout) >= MIN_CHANNELS and jnp.dtype(dtype) == jnp.float32)


def _combine(matrix: np.ndarray, parts: list[jax.Array]) -> list[jax.Array]:
  """[sum_i matrix[n, i] * parts[i] for each row n], as elementwise code
  (XLA fuses it) with the zero and unit coefficients left out."""
  rows = []
  for coefficients in matrix:
    total = None
    for c, part in zip(coefficients, parts):
      if c == 0:
        continue
      term = part if c == 1 else -part if c == -1 else part * float(c)
      total = term if total is None else total + term
    rows.append(total)
  return rows


def _transform_tiles(bt: np.ndarray, padded: jax.Array, tiles_y: int, tiles_x: int
                     ) -> jax.Array:
  """(B, 3 tiles_y + 2, 3 tiles_x + 2, C) -> (5, 5, B, tiles_y, tiles_x, C):
  B^T d B for each 5x5 input tile d starting at a multiple of 3."""
  n = bt.shape[0]
  rows = [padded[:, i:i + TILE * tiles_y:TILE] for i in range(n)]
  return jnp.stack([
      jnp.stack(_combine(bt, [v[:, :, j:j + TILE * tiles_x:TILE] for j in range(n)]))
      for v in _combine(bt, rows)])


def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """(B, H, W, C) * (k, k, C, O) -> (B, H, W, O): stride 1, 'SAME' padding,
  k a multiple of 3; equal to `lax.conv_general_dilated` up to rounding."""
  at, g, bt = (t.astype(np.float32) for t in transforms())
  n = bt.shape[0]
  k, _, cin, cout = kernel.shape
  q = k // TILE  # sub-kernels per side
  batch, h, w, _ = x.shape
  out_y, out_x = -(-h // TILE), -(-w // TILE)  # output tiles
  in_y, in_x = out_y + q - 1, out_x + q - 1  # input tiles they read
  top, left = (k - 1) // 2, (k - 1) // 2
  padded = jnp.pad(x, ((0, 0), (top, TILE * in_y + 2 - h - top),
                       (left, TILE * in_x + 2 - w - left), (0, 0)))
  v = _transform_tiles(bt, padded, in_y, in_x)  # (5, 5, B, in_y, in_x, C)
  sub = kernel.reshape(q, TILE, q, TILE, cin, cout)  # (a, row, b, column, C, O)
  u = jnp.stack([jnp.stack(_combine(g, [part[:, :, c] for c in range(TILE)]))
                 for part in _combine(g, [sub[:, r] for r in range(TILE)])])  # (5, 5, a, b, C, O)
  products = 0
  for a in range(q):  # sub-kernel rows; the columns b go into one product
    shifted = jnp.concatenate([v[:, :, :, a:a + out_y, b:b + out_x] for b in range(q)], axis=-1)
    products = products + jnp.einsum('nmbyxk,nmko->nmbyxo', shifted,
                                     u[:, :, a].reshape(n, n, q * cin, cout))
  rows = _combine(at, [products[i] for i in range(n)])  # 3 x (5, B, out_y, out_x, O)
  tiles = jnp.stack([jnp.stack(_combine(at, [row[j] for j in range(n)]), axis=3) for row in rows],
                    axis=2)  # (B, out_y, 3, out_x, 3, O)
  return tiles.reshape(batch, TILE * out_y, TILE * out_x, cout)[:, :h, :w]
