"""conv_same and Conv against a direct NumPy convolution and its gradients."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.model import conv


def _pad_same(x, kh, kw):
  top, left = (kh - 1) // 2, (kw - 1) // 2
  return np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))


def _numpy_conv(x, kernel):
  kh, kw = kernel.shape[:2]
  padded = _pad_same(x, kh, kw)
  b, h, w, _ = x.shape
  out = np.zeros((b, h, w, kernel.shape[3]))
  for dy in range(kh):
    for dx in range(kw):
      out += padded[:, dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
  return out


def _numpy_gradients(x, kernel, grad):
  """d/dx and d/dkernel of sum(conv(x, kernel) * grad), tap by tap."""
  kh, kw = kernel.shape[:2]
  padded = _pad_same(x, kh, kw)
  padded_grad = np.zeros_like(padded)
  b, h, w, _ = x.shape
  kernel_grad = np.zeros_like(kernel)
  for dy in range(kh):
    for dx in range(kw):
      window = padded[:, dy:dy + h, dx:dx + w, :]
      kernel_grad[dy, dx] = np.einsum('bhwc,bhwo->co', window, grad)
      padded_grad[:, dy:dy + h, dx:dx + w, :] += grad @ kernel[dy, dx].T
  top, left = (kh - 1) // 2, (kw - 1) // 2
  return padded_grad[:, top:top + h, left:left + w], kernel_grad


# odd and even kernels (XLA puts the extra padding row last), 1x1, odd sizes
@pytest.mark.parametrize('shape,kernel_shape', [
    ((2, 9, 7, 3), (3, 3, 3, 4)),
    ((1, 8, 8, 2), (4, 4, 2, 3)),
    ((2, 6, 5, 4), (1, 1, 4, 2)),
    ((1, 11, 10, 2), (7, 5, 2, 3)),
])
def test_conv_same_and_its_gradients_match_numpy(shape, kernel_shape):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape)
  kernel = rng.standard_normal(kernel_shape)
  grad = rng.standard_normal(shape[:3] + kernel_shape[3:])
  out, vjp = jax.vjp(conv.conv_same, jnp.float32(x), jnp.float32(kernel))
  x_grad, kernel_grad = vjp(jnp.float32(grad))
  expected_x_grad, expected_kernel_grad = _numpy_gradients(x, kernel, grad)
  np.testing.assert_allclose(out, _numpy_conv(x, kernel), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(x_grad, expected_x_grad, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(kernel_grad, expected_kernel_grad, rtol=1e-5, atol=1e-4)


def test_prepadded_kernel_gradient_is_what_cpu_runs_and_matches_numpy():
  rng = np.random.default_rng(1)
  x, kernel = rng.standard_normal((2, 10, 9, 3)), rng.standard_normal((5, 5, 3, 4))
  grad = rng.standard_normal((2, 10, 9, 4))
  direct = conv.kernel_gradient_prepadded(jnp.float32(x), kernel.shape, jnp.float32(grad))
  np.testing.assert_allclose(direct, _numpy_gradients(x, kernel, grad)[1], rtol=1e-5, atol=1e-4)
  # On CPU the custom gradient is this padded-input form: its convolution has
  # no padded window, while XLA's own gradient of the same convolution has one.
  def kernel_gradient_convolutions(function):
    vjp = lambda k, g: jax.vjp(lambda k: function(jnp.float32(x), k), k)[1](g)
    text = jax.jit(vjp).lower(jnp.float32(kernel), jnp.float32(grad)).compile().as_text()
    return [line for line in text.splitlines() if ' convolution(' in line]
  if jax.default_backend() == 'cpu':
    assert all('pad=' in line for line in kernel_gradient_convolutions(conv._convolve))
    ours = kernel_gradient_convolutions(conv.conv_same)
    assert ours and all('pad=' not in line for line in ours)


def test_conv_module_has_nn_conv_parameters_and_outputs():
  rng = jax.random.key(0)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  ours = conv.Conv(5, (3, 3))
  theirs = nn.Conv(5, (3, 3), padding='SAME')
  variables = ours.init(rng, x)
  assert jax.tree_util.tree_map(jnp.shape, variables) == jax.tree_util.tree_map(
      jnp.shape, theirs.init(rng, x))
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x),
                             rtol=1e-5, atol=1e-5)
  half = conv.Conv(5, (3, 3), dtype=jnp.bfloat16)
  assert half.apply(variables, x).dtype == jnp.bfloat16
  assert variables['params']['kernel'].dtype == jnp.float32


def _hlo_ops(function, *args):
  # a new function each time: jit caches traces, and the table is read when tracing
  text = jax.jit(lambda *a: function(*a)).lower(*args).compile().as_text()
  return {op: sum(f' {op}(' in line for line in text.splitlines())
          for op in ('convolution', 'dot')}


def _use_table(monkeypatch, tmp_path, table):
  """The model's table replaced by `table`, written to a file and read back as the
  package's file is."""
  path = tmp_path / 'conv_table.json'
  conv.write_table(table, path)
  monkeypatch.setattr(conv, 'conv_table', lambda: conv.read_table(path))


def test_the_shipped_table_is_empty_and_read_once(monkeypatch):
  # No device has measured a winner yet: every platform runs XLA's convolution
  # (and the CPU's Winograd rule). The file as JSON has it, then as the model reads it.
  assert json.loads(conv.TABLE_FILE.read_text())['entries'] == []
  conv.conv_table.cache_clear()
  assert conv.conv_table() == {}
  monkeypatch.setattr(conv, 'read_table', lambda path: pytest.fail('read twice'))
  assert conv.conv_table() == {}


def test_a_malformed_table_is_one_line_naming_the_file(tmp_path):
  path = tmp_path / 'conv_table.json'
  path.write_text(json.dumps({'entries': [{'platform': 'cuda', 'height': 8, 'width': 8,
                                           'kernel_height': 3, 'kernel_width': 3,
                                           'in_features': 4, 'out_features': 4,
                                           'dtype': 'float32', 'form': 'fft'}]}))
  with pytest.raises(ValueError, match=f"{path}: entry .* got 'cuda' and 'fft'"):
    conv.read_table(path)
  path.write_text('{"entries": [{"platform": "cuda"}]}')
  with pytest.raises(ValueError, match=f"{path}: not a convolution table .*KeyError"):
    conv.read_table(path)


def test_platform_forms_reads_the_table_and_the_cpu_winograd_rule(monkeypatch, tmp_path):
  wide_9x9 = ((2, 62, 62, 128), (9, 9, 128, 256))
  assert conv.platform_forms(*wide_9x9, jnp.float32) == {'cpu': 'winograd'}
  assert conv.platform_forms(*wide_9x9, jnp.bfloat16) == {}
  _use_table(monkeypatch, tmp_path, {
      ('cuda', 62, 62, 9, 9, 128, 256, 'bfloat16'): 'im2col',
      ('cpu', 62, 62, 9, 9, 128, 256, 'float32'): 'xla',
      ('tpu', 62, 62, 9, 9, 128, 256, 'float32'): 'taps'})
  assert conv.platform_forms(*wide_9x9, jnp.bfloat16) == {'cuda': 'im2col'}
  # 'xla' overrides the Winograd rule; the batch is not part of the key
  assert conv.platform_forms((5, 62, 62, 128), (9, 9, 128, 256), jnp.float32) == {'tpu': 'taps'}
  assert conv.platform_forms((2, 60, 62, 128), (9, 9, 128, 256), jnp.bfloat16) == {}


def test_conv_same_runs_the_form_the_table_names_for_this_platform(monkeypatch, tmp_path):
  platform = 'cuda' if jax.default_backend() == 'gpu' else jax.default_backend()
  rng = np.random.default_rng(2)
  x, kernel = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((3, 3, 3, 4))
  grad = rng.standard_normal((2, 9, 8, 4))
  args = (jnp.float32(x), jnp.float32(kernel))
  assert _hlo_ops(conv.conv_same, *args)['convolution'] == 1
  _use_table(monkeypatch, tmp_path, {(platform, 9, 8, 3, 3, 3, 4, 'float32'): 'im2col'})
  assert _hlo_ops(conv.conv_same, *args) == {'convolution': 0, 'dot': 1}
  assert _hlo_ops(lambda x, k: conv.conv_same(x, k, tuned=False), *args)['convolution'] == 1
  out, vjp = jax.vjp(conv.conv_same, *args)
  x_grad, kernel_grad = vjp(jnp.float32(grad))
  expected_x_grad, expected_kernel_grad = _numpy_gradients(x, kernel, grad)
  np.testing.assert_allclose(out, _numpy_conv(x, kernel), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(x_grad, expected_x_grad, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(kernel_grad, expected_kernel_grad, rtol=1e-5, atol=1e-4)


def test_model_takes_its_layers_forms_from_the_table(monkeypatch, tmp_path):
  from rhpe_jax.model import network as model_lib  # pylint: disable=g-import-not-at-top
  platform = 'cuda' if jax.default_backend() == 'gpu' else jax.default_backend()
  net = model_lib.RecurrentPoseNet(width=0.125, num_iterations=0)
  images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(lambda: model_lib.init_variables(net, jax.random.key(1), images.shape))

  def convolutions(network):  # in the program lowered for this platform (not compiled)
    text = jax.jit(lambda v, x: network.apply(v, x)).lower(variables, images).as_text()
    return text.count('stablehlo.convolution')

  before = convolutions(net)
  # the fusion module's 13x13 64>64 layer at width 1/8 (8 channels), 8x8
  _use_table(monkeypatch, tmp_path, {(platform, 8, 8, 13, 13, 8, 8, 'float32'): 'taps'})
  assert convolutions(net) == before - 1
  assert convolutions(net.clone(tuned_convolutions=False)) == before
