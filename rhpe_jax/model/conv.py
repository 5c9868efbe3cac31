"""Stride-1 'SAME' 2-D convolutions in the form that runs fastest on each
platform, per layer shape, and the Flax layer over them.

`conv_same` looks each convolution up in `conv_table()` ((platform, layer
shape) -> form, the package's conv_table.json), and picks the platform's
entry at lowering time with `lax.platform_dependent`; shapes and platforms without an entry run
`direct_conv_same`, XLA's own convolution. On CPU the float32 layers that
`winograd.supports` (the full-width network's 9x9 layers) run by Winograd's
algorithm without an entry. The forms (`FORMS`) compute the same function;
they differ in summation order only. `rhpe_jax.perf.gpu_conv_matrix` times
every form on every layer of the network and writes the table's entries
(docs/performance.md, GPU).

`direct_conv_same` has a VJP of its own for XLA's CPU backend: JAX
differentiates a 'SAME' convolution into a weight-gradient convolution that
carries the zero padding in its window, which XLA's CPU kernels (Eigen) run
far below their speed on the same product written as an unpadded convolution
over an input padded beforehand (55-90 GFLOP/s against 150-210 on the fusion
module's 7x7 and 13x13 layers). On CPU it pads first; elsewhere it returns
XLA's own gradient.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from rhpe_jax.model import conv_forms
from rhpe_jax.model import winograd
from rhpe_jax.model.conv_forms import DIMENSIONS, same_padding  # pylint: disable=unused-import

Dtype = Any
Initializer = Callable[..., jax.Array]

# The weight gradient as a convolution: the input's channels act as the batch
# and its batch as the features, the output gradient is the kernel, and the
# result is laid out as the kernel, (kh, kw, in, out).
KERNEL_GRADIENT_DIMENSIONS = ('CHWN', 'IHWO', 'HWNC')

# Platforms as `lax.platform_dependent` names them.
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')

# (platform, height, width, kernel height, kernel width, input channels,
# output channels, dtype) -> a name in FORMS. Measured entries only, kept in
# TABLE_FILE (package data) and read the first time a convolution is traced:
# written by `python -m experiments.gpu_conv_matrix --write_table=MATRIX.json`
# from a device's measurements; everything else runs XLA's convolution.
TableKey = tuple[str, int, int, int, int, int, int, str]
TABLE_FILE = pathlib.Path(__file__).with_name('conv_table.json')
TABLE_FIELDS = ('platform', 'height', 'width', 'kernel_height', 'kernel_width', 'in_features',
                'out_features', 'dtype')
TABLE_ABOUT = ('Convolution forms measured fastest per platform and layer shape '
               '(rhpe_jax.model.conv); written by python -m experiments.gpu_conv_matrix '
               '--write_table=MATRIX.json.')


def read_table(path: str | os.PathLike = TABLE_FILE) -> dict[TableKey, str]:
  """A table file's entries, {key: form}; a malformed one is a ValueError naming it."""
  text = pathlib.Path(path).read_text()
  try:
    entries = json.loads(text)['entries']
    table = {tuple(entry[field] for field in TABLE_FIELDS): entry['form'] for entry in entries}
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f'{path}: not a convolution table ({type(error).__name__}: {error})') from error
  for key, form in table.items():
    if key[0] not in PLATFORMS or form not in FORMS:
      raise ValueError(f'{path}: entry {key}: platform must be one of {PLATFORMS} and form '
                       f'one of {tuple(FORMS)}, got {key[0]!r} and {form!r}')
  return table


def write_table(table: dict[TableKey, str], path: str | os.PathLike = TABLE_FILE) -> None:
  """Writes `table` to `path` (whole or not at all), one entry a line, sorted."""
  body = ',\n'.join(f'  {json.dumps(dict(zip(TABLE_FIELDS, key), form=form))}'
                    for key, form in sorted(table.items()))
  text = (f'{{"about": {json.dumps(TABLE_ABOUT)},\n "entries": ['
          + (f'\n{body}\n ' if body else '') + ']}\n')
  path = pathlib.Path(path)
  temporary = path.with_name(path.name + '.tmp')
  temporary.write_text(text)
  temporary.replace(path)


@functools.cache
def conv_table() -> dict[TableKey, str]:
  """The package's table (TABLE_FILE), read once."""
  return read_table(TABLE_FILE)


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

# The forms a table entry may name; each is (B, H, W, C), (kh, kw, C, O) ->
# (B, H, W, O) with 'SAME' padding.
FORMS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'xla': direct_conv_same,
    'winograd': winograd.conv_same,
    'im2col': conv_forms.im2col,
    'im2col_rows': conv_forms.im2col_rows,
    'taps': conv_forms.taps,
    'channels_padded': conv_forms.channels_padded,
}


def layer_key(input_shape: Sequence[int], kernel_shape: Sequence[int], dtype
              ) -> tuple[int, int, int, int, int, int, str]:
  """A table key without its platform: (height, width, kh, kw, in, out, dtype)."""
  _, h, w, _ = input_shape
  kh, kw, cin, cout = kernel_shape
  return (int(h), int(w), int(kh), int(kw), int(cin), int(cout), jnp.dtype(dtype).name)


def platform_forms(input_shape: Sequence[int], kernel_shape: Sequence[int], dtype
                   ) -> dict[str, str]:
  """{platform: form name} for the platforms where this convolution does not
  run XLA's own ('xla'): the table's entries (`conv_table`), and Winograd on CPU for the
  shapes `winograd.supports` unless the table says otherwise."""
  forms = {}
  if winograd.supports(kernel_shape, dtype):
    forms['cpu'] = 'winograd'
  key = layer_key(input_shape, kernel_shape, dtype)
  for (platform, *shape), name in conv_table().items():
    if tuple(shape) == key:
      forms[platform] = name
  return {platform: name for platform, name in forms.items() if name != 'xla'}


def conv_same(x: jax.Array, kernel: jax.Array, tuned: bool = True) -> jax.Array:
  """(B, H, W, C) * (kh, kw, C, O) -> (B, H, W, O), stride 1, 'SAME' padding.

  With `tuned`, each platform runs the form `platform_forms` names for this
  shape; otherwise, and where it names none, `direct_conv_same`.
  """
  forms = platform_forms(x.shape, kernel.shape, jnp.result_type(x, kernel)) if tuned else {}
  if not forms:
    return direct_conv_same(x, kernel)
  return lax.platform_dependent(x, kernel, default=direct_conv_same,
                                **{platform: FORMS[name] for platform, name in forms.items()})


class Conv(nn.Module):
  """`flax.linen.Conv` for stride-1 'SAME' 2-D convolutions, on `conv_same`.

  Same parameters ('kernel' (kh, kw, in, out), 'bias'), initialisers and
  dtype handling as `nn.Conv`, so checkpoints of either load in the other.
  `tuned_convolutions` is `conv_same`'s `tuned`.

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
  tuned_convolutions: bool = True

  @nn.compact
  def __call__(self, *inputs: jax.Array) -> jax.Array:
    channels = [x.shape[-1] for x in inputs]
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, sum(channels), self.features), self.param_dtype)
    bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype)
    *inputs, kernel, bias = nn.dtypes.promote_dtype(*inputs, kernel, bias, dtype=self.dtype)
    out, start = bias, 0
    for x, size in zip(inputs, channels):
      out = conv_same(x, kernel[:, :, start:start + size], self.tuned_convolutions) + out
      start += size
    return out
