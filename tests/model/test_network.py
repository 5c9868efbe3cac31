"""Tests of the recurrent pose network against reference.md's facts."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.model import network as model_lib

# The reference network, counted by hand from reference.md's layer tables:
# conv (k*k*cin + 1)*cout, batch norm 2*cout (scale, offset).
def _reference_parameter_count(per_pass_bn_passes: int = 1) -> int:
  def conv(k, cin, cout):
    return (k * k * cin + 1) * cout
  feed_forward = (conv(3, 3, 64) + conv(3, 64, 64) + conv(3, 64, 64) + conv(3, 64, 128)
                  + conv(3, 128, 128) + conv(3, 128, 128) + conv(9, 128, 256)
                  + conv(9, 256, 512) + conv(1, 512, 256) + conv(1, 256, 256))
  feed_forward_bn = 2 * (64 + 64 + 64 + 128 + 128 + 128 + 256 + 512)
  heads = 2 * (conv(1, 256, 16) + conv(1, 256, 15))
  fusion = conv(7, 384, 64) + conv(13, 64, 64) + conv(13, 64, 128) + conv(1, 128, 256)
  fusion_bn = 2 * (64 + 64 + 128) * per_pass_bn_passes
  return feed_forward + feed_forward_bn + heads + fusion + fusion_bn


def _shapes(net, image_shape):
  return jax.eval_shape(
      lambda: net.init(jax.random.key(0), jnp.zeros(image_shape), train=False))


def test_hand_count_matches_reference_md():
  # reference.md: 17,246,910 shared, 17,247,934 with per-pass scale/offset (3 passes).
  assert _reference_parameter_count() == 17_246_910
  assert _reference_parameter_count(per_pass_bn_passes=3) == 17_247_934


@pytest.mark.parametrize('num_iterations', [0, 1, 2, 4])
def test_parameter_count_is_the_reference_and_independent_of_iterations(num_iterations):
  net = model_lib.RecurrentPoseNet(num_iterations=num_iterations)
  variables = _shapes(net, (1, 248, 248, 3))
  assert model_lib.count_parameters(variables['params']) == 17_246_910
  # Batch statistics are per pass: stacked along a leading axis of length passes.
  stats = variables['batch_stats']['fusion']
  for leaf in jax.tree_util.tree_leaves(stats):
    assert leaf.shape[0] == num_iterations + 1
  # The fusion weights are stored once (no pass axis).
  kernel = variables['params']['fusion']['ConvBlock_1']['Conv_0']['kernel']
  assert kernel.shape == (13, 13, 64, 64)


def test_output_contract_full_size():
  net = model_lib.RecurrentPoseNet()
  variables = _shapes(net, (1, 248, 248, 3))
  out = jax.eval_shape(functools.partial(net.apply, train=False), variables,
                       jnp.zeros((3, 248, 248, 3)))
  assert out[0].shape == (4, 3, 62, 62, 16)
  assert out[1].shape == (4, 3, 62, 62, 15)


def test_no_parts_and_small_width():
  net = model_lib.RecurrentPoseNet(num_parts=0, num_iterations=1, width=0.125)
  variables = net.init(jax.random.key(0), jnp.zeros((1, 32, 48, 3)))
  assert 'parts' not in variables['params']['heads_0']
  kp, parts = net.apply(variables, jnp.ones((2, 32, 48, 3)), train=False)
  assert kp.shape == (3, 2, 8, 12, 16)
  assert parts.shape == (3, 2, 8, 12, 0)
  assert bool(jnp.all(kp >= 0))  # ReLU heads


def test_bad_input_shape_is_a_clear_error():
  net = model_lib.RecurrentPoseNet(width=0.125)
  with pytest.raises(ValueError, match='multiples of 4'):
    net.init(jax.random.key(0), jnp.zeros((1, 30, 32, 3)))


def test_shared_weights_are_really_used_by_every_pass():
  """Changing the one shared fusion kernel changes every pass's output."""
  net = model_lib.RecurrentPoseNet(num_iterations=2, width=0.125)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = net.init(jax.random.key(0), x)
  kp, _ = net.apply(variables, x, train=False)
  params = flax.core.unfreeze(variables['params'])
  params['fusion']['ConvBlock_3']['Conv_0']['bias'] += 1.0
  kp2, _ = net.apply({**variables, 'params': params}, x, train=False)
  assert np.allclose(kp[0], kp2[0])  # feed-forward head untouched
  for stage in (1, 2, 3):
    assert not np.allclose(kp[stage], kp2[stage])


def test_unrolled_scan_equals_rolled_scan():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  rolled = model_lib.RecurrentPoseNet(num_iterations=2, width=0.125, unroll=1)
  unrolled = model_lib.RecurrentPoseNet(num_iterations=2, width=0.125)
  remat = model_lib.RecurrentPoseNet(num_iterations=2, width=0.125, remat=True)
  variables = rolled.init(jax.random.key(0), x)
  outs = [m.apply(variables, x, train=True, mutable=['batch_stats'])[0][0]
          for m in (rolled, unrolled, remat)]
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(outs[0], outs[2], rtol=1e-5, atol=1e-5)


def test_batch_norm_statistics_are_per_pass():
  net = model_lib.RecurrentPoseNet(num_iterations=2, width=0.125)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  variables = net.init(jax.random.key(0), x)
  _, updates = net.apply(variables, x, train=True, mutable=['batch_stats'])
  means = updates['batch_stats']['fusion']['ConvBlock_0']['BatchNorm_0']['mean']
  assert means.shape[0] == 3
  # Each pass sees a different state h, so its running mean moves differently.
  assert not np.allclose(means[0], means[1])
  assert not np.allclose(means[1], means[2])


def test_bfloat16_compute_keeps_float32_parameters():
  net = model_lib.RecurrentPoseNet(num_iterations=1, width=0.125, dtype=jnp.bfloat16)
  variables = net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables['params']))
  kp, _ = net.apply(variables, jnp.ones((1, 32, 32, 3)), train=False)
  assert kp.dtype == jnp.bfloat16


def test_normalize_images_matches_reference_formula():
  pixels = np.array([[[[0, 128, 255]]]], np.uint8)
  np.testing.assert_allclose(model_lib.normalize_images(pixels),
                             [[[[-0.5, 0.0, 127 / 256]]]])


def _receptive_extent(num_iterations: int) -> int:
  """Columns of the input on which the centre output pixel depends."""
  net = model_lib.RecurrentPoseNet(num_iterations=num_iterations, width=0.0625,
                                   num_parts=0)
  height, width = 16, 1024
  x = jax.random.normal(jax.random.key(3), (1, height, width, 3))
  variables = net.init(jax.random.key(0), x)

  def centre_response(images):
    kp, _ = net.apply(variables, images, train=False)
    return kp[-1, 0, height // 8, width // 8].sum()

  grad = np.asarray(jax.grad(centre_response)(x))
  columns = np.nonzero(np.abs(grad).sum(axis=(0, 1, 3)) > 0)[0]
  return int(columns.max() - columns.min() + 1)


@pytest.mark.slow
def test_effective_receptive_field_grows_with_iterations():
  extents = [_receptive_extent(n) for n in (0, 1, 2)]
  # Each fusion pass adds (6 + 12 + 12) output pixels = 120 input pixels to the
  # theoretical field (a 216, 336, 456 px window); the measured one must grow.
  assert extents[0] < extents[1] < extents[2], extents
  assert extents[2] <= 456


@pytest.mark.parametrize('num_iterations', [0, 2])
def test_default_unroll_leaves_no_loop_for_any_number_of_passes(num_iterations):
  # A rolled loop of convolutions has a gradient ~80x slower on CPU (JAX issue
  # 12868); lax.scan keeps a one-pass scan rolled unless told unroll=0.
  net = model_lib.RecurrentPoseNet(num_iterations=num_iterations, width=0.0625, num_parts=0)
  x = jnp.zeros((1, 32, 32, 3))
  variables = net.init(jax.random.key(0), x)
  loss = lambda params: net.apply({**variables, 'params': params}, x, train=False)[0].sum()
  hlo = jax.jit(jax.grad(loss)).lower(variables['params']).as_text()
  assert 'while' not in hlo


def test_batch_norm_per_pass_keeps_a_scale_and_offset_per_pass():
  """The release's layout (rhpe_jax.interop.matconvnet): 17,247,934 parameters, and
  pass p normalises with row p of its scale and offset (tests/interop/test_matconvnet.py
  checks the arithmetic against a NumPy interpreter of the authors' files)."""
  full = _shapes(model_lib.RecurrentPoseNet(batch_norm_per_pass=True), (1, 248, 248, 3))
  assert model_lib.count_parameters(full['params']) == _reference_parameter_count(3)
  assert full['params']['fusion_batch_norm']['ConvBlock_2']['scale'].shape == (3, 128)
  assert 'BatchNorm_0' not in full['params']['fusion']['ConvBlock_2']  # no shared copy

  net = model_lib.RecurrentPoseNet(num_iterations=1, width=0.125, batch_norm_per_pass=True)
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      return rng.normal(0, 1 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0.5 if name.endswith("['scale']") else 0.0, 0.2, leaf.shape).astype(np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, _shapes(net, (1, 32, 32, 3)))
  images = jnp.asarray(rng.uniform(-0.5, 0.5, (1, 32, 32, 3)), jnp.float32)
  apply = jax.jit(net.apply)
  expected, _ = apply(variables, images)
  norms = variables['params']['fusion_batch_norm']
  for row, first_changed in ((1, 2), (0, 1)):  # stages: feed-forward, pass 0, pass 1
    changed = jax.tree_util.tree_map(lambda x: x, variables)
    scale = jnp.asarray(norms['ConvBlock_1']['scale'])
    changed['params']['fusion_batch_norm']['ConvBlock_1']['scale'] = scale.at[row].multiply(-1.0)
    maps, _ = apply(changed, images)
    np.testing.assert_array_equal(maps[:first_changed], expected[:first_changed])
    assert float(jnp.abs(maps[first_changed] - expected[first_changed]).max()) > 1e-3
