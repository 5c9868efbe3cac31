"""Stride-1 'SAME' 2-D convolutions written as other programs than XLA's
convolution, for platforms where XLA's own choice of kernel is slow.

On an H200, XLA's autotuner gave 11 of the network's 24 bfloat16
convolutions to cuDNN's legacy kernels, which do not use tensor cores
(../shared/bench/gpu/README.md). Every form here computes the same function
as `lax.conv_general_dilated(x, kernel, (1, 1), 'SAME')` with (B, H, W, C)
inputs and (kh, kw, C, O) kernels, with gradients in the same form:

- `im2col`: one matrix product of the (B*H*W, kh*kw*C) patch matrix with the
  kernel as a (kh*kw*C, O) matrix, the form tensor-core GEMMs run best, at
  the cost of writing the patches (kh*kw times the input) to memory.
- `im2col_rows`: one such product per kernel row, over kw taps at a time,
  summed: kh times less patch memory than `im2col`, kh products.
- `taps`: one (B*H*W, C) x (C, O) product per kernel tap (a 1x1
  convolution of the shifted input), summed: no patch matrix at all.
- `channels_padded`: XLA's convolution with input and output channels padded
  with zeros to a multiple of 8, the alignment tensor-core kernels want (the
  first layer's 3 input channels, the 15 body-part maps).

The three matrix-product forms carry their own gradients (`_matrix_form`), in
which, as in their forward pass, sums over taps or rows accumulate in float32
and round once at the end, as cuDNN and GEMM libraries do for bfloat16.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

# (input, kernel, output) layouts of the forward convolution.
DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
CHANNEL_ALIGNMENT = 8  # tensor-core kernels want channel counts in multiples of 8


def same_padding(size: int) -> tuple[int, int]:
  """XLA's 'SAME' padding of a stride-1 window: the extra row goes last."""
  before = (size - 1) // 2
  return before, size - 1 - before


Padding = tuple[tuple[int, int], tuple[int, int]]
Taps = list[tuple[int, int]]


def _same(kernel_shape: Sequence[int]) -> Padding:
  return same_padding(kernel_shape[0]), same_padding(kernel_shape[1])


def _shifted(padded: jax.Array, dy: int, dx: int, h: int, w: int) -> jax.Array:
  return lax.slice(padded, (0, dy, dx, 0), (padded.shape[0], dy + h, dx + w, padded.shape[3]))


def _patches(padded: jax.Array, group: Taps, h: int, w: int) -> jax.Array:
  """(B, H, W, len(group) * C): the input under each tap of the group."""
  parts = [_shifted(padded, dy, dx, h, w) for dy, dx in group]
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _grouped_conv(x: jax.Array, kernel: jax.Array, padding: Padding,
                  groups: list[Taps]) -> jax.Array:
  """The correlation of x (padded by `padding`) with `kernel`, as one
  product per group of taps of the patch matrix with those taps' weights,
  summed in float32."""
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  out = None
  for group in groups:
    weights = jnp.concatenate([kernel[dy, dx] for dy, dx in group], axis=0)
    part = jnp.einsum('bhwk,ko->bhwo', _patches(padded, group, h, w), weights,
                      preferred_element_type=jnp.float32)
    out = part if out is None else out + part
  return out.astype(x.dtype)


def _grouped_kernel_gradient(x: jax.Array, grad: jax.Array, kernel_shape: Sequence[int],
                             groups: list[Taps]) -> jax.Array:
  """d(loss)/d(kernel): per group, the patch matrix's transpose times the
  output gradient (float32 accumulation)."""
  kh, kw, cin, _ = kernel_shape
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), *_same(kernel_shape), (0, 0)))
  taps = {}
  for group in groups:
    product = jnp.einsum('bhwk,bhwo->ko', _patches(padded, group, h, w), grad,
                         preferred_element_type=jnp.float32)
    for i, tap in enumerate(group):
      taps[tap] = product[i * cin:(i + 1) * cin]
  return jnp.stack([jnp.stack([taps[(dy, dx)] for dx in range(kw)]) for dy in range(kh)])


def _matrix_form(groups_of):
  """A 'SAME' convolution over the tap groups `groups_of(kh, kw)`, with its
  gradients in the same form: the input gradient is the output gradient
  correlated with the kernel flipped in space and transposed in channels
  (padding mirrored), the weight gradient one product per group. So every
  sum accumulates in float32 and rounds once, as in cuDNN, where JAX's own
  derivative would add up bfloat16 partial gradients tap by tap."""

  @jax.custom_vjp
  def form(x, kernel):
    return _grouped_conv(x, kernel, _same(kernel.shape), groups_of(*kernel.shape[:2]))

  def forward(x, kernel):
    return form(x, kernel), (x, kernel)

  def backward(residuals, grad):
    x, kernel = residuals
    groups = groups_of(*kernel.shape[:2])
    (top, bottom), (left, right) = _same(kernel.shape)
    flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    x_grad = _grouped_conv(grad, flipped, ((bottom, top), (right, left)), groups)
    kernel_grad = _grouped_kernel_gradient(x, grad, kernel.shape, groups)
    return x_grad, kernel_grad.astype(kernel.dtype)

  form.defvjp(forward, backward)
  return form


_im2col = _matrix_form(lambda kh, kw: [[(dy, dx) for dy in range(kh) for dx in range(kw)]])
_im2col_rows = _matrix_form(lambda kh, kw: [[(dy, dx) for dx in range(kw)] for dy in range(kh)])
_taps = _matrix_form(lambda kh, kw: [[(dy, dx)] for dy in range(kh) for dx in range(kw)])


def im2col(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The convolution as one product of the patch matrix with the kernel."""
  return _im2col(x, kernel)


def im2col_rows(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """One patch-matrix product per kernel row, summed."""
  return _im2col_rows(x, kernel)


def taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """One 1x1 convolution (a matrix product) per kernel tap, summed."""
  return _taps(x, kernel)


def aligned(count: int, alignment: int = CHANNEL_ALIGNMENT) -> int:
  return -(-count // alignment) * alignment


def channels_padded(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's convolution on channels zero-padded to multiples of 8."""
  kh, kw, cin, cout = kernel.shape
  cin_padded, cout_padded = aligned(cin), aligned(cout)
  x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, cin_padded - cin)))
  kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, cin_padded - cin), (0, cout_padded - cout)))
  out = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=DIMENSIONS)
  return out[..., :cout]


def applies(name: str, kernel_shape: Sequence[int]) -> bool:
  """Whether form `name` differs from the others on kernels of this shape
  (every form computes every shape; these are the ones worth timing)."""
  kh, kw, cin, cout = kernel_shape
  if name in ('im2col_rows', 'taps'):
    return kh * kw > 1  # a 1x1 kernel is one product in every form
  if name == 'channels_padded':
    return cin % CHANNEL_ALIGNMENT != 0 or cout % CHANNEL_ALIGNMENT != 0
  if name == 'winograd':  # F(3x3, 3x3) on sub-kernels of 3x3
    return kh == kw and kh % 3 == 0
  return True
