"""2-D convolutions whose weight gradient XLA's CPU backend runs fast.

JAX differentiates a 'SAME' convolution into a weight-gradient convolution
that carries the zero padding in its window. XLA's CPU convolution kernels
(Eigen) run that form far below their speed on the same product written as an
unpadded convolution over an input padded beforehand: 55-90 GFLOP/s against
150-210 on the fusion module's 7x7 and 13x13 layers (docs/performance.md).
`direct_conv_same` is an ordinary convolution with a VJP of its own that, on
CPU, pads first; elsewhere (cuDNN, TPU) it returns XLA's own gradient. The
arithmetic is the same either way; only the summation order may differ.
`conv_same` also hands the wide 9x9 layers to `rhpe_jax.winograd` on CPU,
and `Conv` is the Flax layer over it.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from rhpe_jax import winograd

Dtype = Any
Initializer = Callable[..., jax.Array]

# (input, kernel, output) layouts of the forward convolution.
DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
# The weight gradient as a convolution: the input's channels act as the batch
# and its batch as the features, the output gradient is the kernel, and the
# result is laid out as the kernel, (kh, kw, in, out).
KERNEL_GRADIENT_DIMENSIONS = ('CHWN', 'IHWO', 'HWNC')


def same_padding(size: int) -> tuple[int, int]:
  """XLA's 'SAME' padding of a stride-1 window: the extra row goes last."""
  before = (size - 1) // 2
  return before, size - 1 - before


def _convolve(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=DIMENSIONS)


def kernel_gradient_prepadded(x: jax.Array, kernel_shape: tuple[int, ...],
                              grad: jax.Array) -> jax.Array:
  """d(loss)/d(kernel) of `_convolve(x, kernel)` given d(loss)/d(output):
  the input padded explicitly, then an unpadded convolution."""
  kh, kw = kernel_shape[:2]
  padded = jnp.pad(x, ((0, 0), same_padding(kh), same_padding(kw), (0, 0)))
  return lax.conv_general_dilated(padded, grad, (1, 1), 'VALID',
                                  dimension_numbers=KERNEL_GRADIENT_DIMENSIONS)


def conv_same(x: jax.Array, kernel: jax.Array, cpu_winograd: bool = True) -> jax.Array:
  """(B, H, W, C) * (kh, kw, C, O) -> (B, H, W, O), stride 1, 'SAME' padding.

  On CPU, with `cpu_winograd`, the float32 kernels that `winograd.supports`
  (the full-width network's 9x9 layers) run by Winograd's algorithm;
  everything else is `direct_conv_same`.
  """
  if cpu_winograd and winograd.supports(kernel.shape, jnp.result_type(x, kernel)):
    return lax.platform_dependent(x, kernel, cpu=winograd.conv_same, default=direct_conv_same)
  return direct_conv_same(x, kernel)


@jax.custom_vjp
def direct_conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A direct convolution, with the weight gradient on a pre-padded input on CPU."""
  return _convolve(x, kernel)


def _conv_same_forward(x, kernel):
  return _convolve(x, kernel), (x, kernel)


def _conv_same_backward(residuals, grad):
  x, kernel = residuals
  x_grad = jax.vjp(lambda x: _convolve(x, kernel), x)[1](grad)[0]
  kernel_grad = lax.platform_dependent(
      x, kernel, grad,
      cpu=lambda x, kernel, grad: kernel_gradient_prepadded(x, kernel.shape, grad),
      default=lambda x, kernel, grad: jax.vjp(lambda k: _convolve(x, k), kernel)[1](grad)[0])
  return x_grad, kernel_grad.astype(kernel.dtype)


direct_conv_same.defvjp(_conv_same_forward, _conv_same_backward)


class Conv(nn.Module):
  """`flax.linen.Conv` for stride-1 'SAME' 2-D convolutions, on `conv_same`.

  Same parameters ('kernel' (kh, kw, in, out), 'bias'), initialisers and
  dtype handling as `nn.Conv`, so checkpoints of either load in the other.
  `cpu_winograd` as in `conv_same`.

  Several inputs are convolved as their concatenation along channels, but as
  a sum of one convolution per input over its slice of the kernel: where one
  input recurs with the same parameters (the fusion module's skip feature,
  in every unrolled pass), XLA computes its convolution once.
  """

  features: int
  kernel_size: tuple[int, int]
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.linear.default_kernel_init
  bias_init: Initializer = nn.initializers.zeros_init()
  cpu_winograd: bool = True

  @nn.compact
  def __call__(self, *inputs: jax.Array) -> jax.Array:
    channels = [x.shape[-1] for x in inputs]
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, sum(channels), self.features), self.param_dtype)
    bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype)
    *inputs, kernel, bias = nn.dtypes.promote_dtype(*inputs, kernel, bias, dtype=self.dtype)
    out, start = bias, 0
    for x, size in zip(inputs, channels):
      out = conv_same(x, kernel[:, :, start:start + size], self.cpu_winograd) + out
      start += size
    return out
