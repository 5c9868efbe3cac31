"""rhpe_jax.interop.matconvnet against files written as the authors' MATLAB code
writes them (tests/matconvnet_reference.py) and an independent NumPy
interpreter of those files: the maps of every stage, the kernel orientation,
the decoded keypoints, and one-line errors for files that differ."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from rhpe_jax.core import runtime
from tests import matconvnet_reference as ref

runtime.setup()  # the project's XLA flags and JAX settings, as the command lines have them

WIDTH = 0.125


@pytest.fixture(scope='module')
def network():
  return ref.build_network(width=WIDTH, seed=1)


HEIGHT, WIDTH_PX = 32, 48  # a non-square input, so that a height/width mix-up cannot pass


@functools.lru_cache(maxsize=None)
def _apply():
  """The per-pass network's apply, compiled once for the module."""
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax.model import network as model_lib  # pylint: disable=g-import-not-at-top
  net = model_lib.RecurrentPoseNet(num_iterations=2, width=WIDTH, batch_norm_per_pass=True)
  return jax.jit(lambda variables, images: net.apply(variables, images))


def _flax_maps(imported, images):
  assert imported.arch.passes == 3
  keypoints, parts = _apply()(
      {'params': imported.params, 'batch_stats': imported.batch_stats}, images)
  return np.asarray(keypoints), np.asarray(parts)


def _image(seed):
  return np.random.default_rng(seed).uniform(-0.5, 0.5, (HEIGHT, WIDTH_PX, 3)).astype(np.float32)


def _import(path):
  from rhpe_jax.interop import matconvnet  # pylint: disable=g-import-not-at-top
  return matconvnet.import_file(path)


@pytest.mark.parametrize('layout', ['net', 'top', 'v7.3'])
def test_every_stage_equals_the_numpy_interpreter(network, tmp_path, layout):
  path = tmp_path / 'keypoint.mat'
  if layout == 'v7.3':
    ref.write_v73(path, network)
  else:
    ref.write_v5(path, network, layout)
  imported = _import(path)
  assert (imported.arch.passes, imported.arch.width) == (3, WIDTH)
  assert imported.storage == {'net': 'MAT v5, struct `net`', 'top': 'MAT v5, top-level fields',
                              'v7.3': 'MAT v7.3, struct `net`'}[layout]
  assert imported.prediction == 'prediction10'
  assert imported.num_weights == sum(
      v.size for n, v in ref.param_values(network).items() if not n.endswith('x'))
  image = _image(2)
  keypoints, parts = _flax_maps(imported, image[None])
  values = ref.run_network(network, image)
  # Stages: the feed-forward heads (prediction1/2), then pass i (3i+1, 3i+2).
  for stage in range(4):
    expected_kp, expected_parts = values[f'prediction{3 * stage + 1}'], values[f'prediction{3 * stage + 2}']
    assert expected_kp.shape == (8, 12, 16) and expected_parts.shape == (8, 12, 15)
    assert expected_kp.max() > 1  # not a dead network
    np.testing.assert_allclose(keypoints[stage, 0], expected_kp, atol=1e-4, rtol=0)
    np.testing.assert_allclose(parts[stage, 0], expected_parts, atol=1e-4, rtol=0)
  # The passes differ (their batch norms do), so each pass's own were used.
  assert np.abs(values['prediction7'] - values['prediction10']).max() > 1e-2


def test_one_tap_kernel_pins_the_orientation(network, tmp_path):
  """F(1,3,1,1) = 1 with pad 1 is y(r, c) = x(r - 1, c + 1) in MATLAB's
  correlation: the tap one row up and one column right of the centre."""
  from rhpe_jax.model import conv  # pylint: disable=g-import-not-at-top
  net = copy.deepcopy(network)
  kernel = np.zeros((3, 3, 3, 8), np.float32)
  kernel[0, 2, 0, 0] = 1.0  # MATLAB F(1,3,1,1)
  ref.set_param(net, 'layer1f', kernel)
  ref.set_param(net, 'layer1b', np.zeros((1, 8), np.float32))
  path = ref.write_v5(tmp_path / 'shift.mat', net)
  imported = _import(path)
  image = _image(3)
  expected = np.zeros((HEIGHT, WIDTH_PX))
  expected[1:, :-1] = image[:-1, 1:, 0]  # y(r, c) = x(r - 1, c + 1), zero outside
  assert np.array_equal(ref.run_network(net, image)['x1'][:, :, 0], expected)

  # The imported kernel under the network's own convolution (ConvBlock_0's).
  layer = imported.params['feed_forward']['ConvBlock_0']['Conv_0']
  first = np.asarray(conv.conv_same(image[None], layer['kernel'], tuned=False))[0]
  np.testing.assert_allclose(first[:, :, 0], expected, atol=1e-7)
  assert np.abs(first[:, :, 1:]).max() == 0.0 and np.abs(layer['bias']).max() == 0.0


def test_decoded_keypoints_are_the_authors(network, tmp_path):
  """The project's keypoints lie in the heat-map pixel that KeyPointDetector.m
  picks (its 1-based pixel index times the stride), refined within it."""
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax.codec import decode  # pylint: disable=g-import-not-at-top
  imported = _import(ref.write_v5(tmp_path / 'k.mat', network))
  image = _image(4)
  keypoints, _ = _flax_maps(imported, image[None])
  authors = ref.authors_decode(ref.run_network(network, image)['prediction10'], (HEIGHT, WIDTH_PX))
  coords, _ = jax.jit(decode.heatmaps_to_keypoints)(keypoints[-1, 0])
  grid = authors / 4.0 - 1.0  # 1-based input pixels -> 0-based heat-map pixels
  assert np.all(np.abs(np.asarray(coords) - grid) <= 0.5 + 1e-6), (coords, grid)
  # In input pixels: the authors' (1-based) k * 4 is the project's 4 k + 1.5 - 2.5
  pixels = 4 * (np.asarray(coords) + 0.5) - 0.5  # decode.grid_to_input
  assert np.all(np.abs(pixels - (authors - 2.5)) <= 2.0 + 1e-5)


def _error(path):
  from rhpe_jax.data import mat_files  # pylint: disable=g-import-not-at-top
  from rhpe_jax.interop import matconvnet
  with pytest.raises((matconvnet.MatConvNetError, mat_files.MatFileError)) as info:
    matconvnet.import_file(path)
  message = str(info.value)
  assert '\n' not in message
  return message


def _without(net, name):
  net['params'] = ref.StructArray(p for p in net['params'] if p['name'] != name)


def test_broken_files_give_one_line_errors(network, tmp_path):
  net = copy.deepcopy(network)
  _without(net, 'fu_1_2_biases')
  message = _error(ref.write_v5(tmp_path / 'missing.mat', net))
  assert 'missing parameters: fu_1_2_biases' in message

  net = copy.deepcopy(network)
  ref.set_param(net, 'layer11f', np.zeros((3, 3, 16, 8), np.float32))  # in and out swapped
  assert 'wrong shapes: layer11f [3, 3, 16, 8] (expected [3, 3, 8, 16])' in _error(
      ref.write_v5(tmp_path / 'shape.mat', net))

  net = copy.deepcopy(network)
  ref.set_param(net, 'bn3x', np.zeros((8, 2), np.float32))  # as MatConvNet initialises it
  message = _error(ref.write_v5(tmp_path / 'untrained.mat', net))
  assert 'sigma <= 0' in message and 'bn3x (8 of 8)' in message

  # Several differences at once: all of them in the one message.
  net = copy.deepcopy(network)
  _without(net, 'conv2_B_biases')
  ref.set_param(net, 'fu_1_1_filters', np.zeros((5, 5, 24, 8), np.float32))
  net['layers'].append({'name': 'fu_res_sum1', 'type': 'dagnn.Sum', 'inputs': ['a', 'b'],
                        'outputs': ['c'], 'params': [], 'block': {}})
  layer8 = next(l for l in net['layers'] if l['name'] == 'layer8')
  layer8['block'] = dict(layer8['block'], stride=np.array([[2.0, 2.0]]))
  relu = next(l for l in net['layers'] if l['name'] == 'relu_fu_2_1')
  relu['inputs'] = ['fu_2_conv1']  # skips its batch norm
  message = _error(ref.write_v5(tmp_path / 'several.mat', net))
  for part in ('missing parameters: conv2_B_biases', 'fu_1_1_filters [5, 5, 24, 8]',
               'unknown layer types: fu_res_sum1 (dagnn.Sum)', 'layer8: stride [2, 2]',
               "relu_fu_2_1 reads ['fu_2_conv1'] (expected ['fu_2_1_bn'])"):
    assert part in message, (part, message)

  (tmp_path / 'noise.mat').write_bytes(np.random.default_rng(0).bytes(4000))
  assert 'not a readable MAT file' in _error(tmp_path / 'noise.mat')

  import scipy.io  # pylint: disable=g-import-not-at-top
  scipy.io.savemat(tmp_path / 'other.mat', {'weights': np.ones((2, 2))})
  assert "no variable 'net'" in _error(tmp_path / 'other.mat')


def test_a_matlab_object_is_decoded_or_explained(network, tmp_path, monkeypatch):
  """deployModel.m saves a dagnn.DagNN object: MATLAB keeps saveobj's struct
  as the object's property 'any'; scipy and h5py see only an opaque object."""
  pytest.importorskip('matio', reason='the mat-io package is not installed')
  from rhpe_jax.data import mat_files  # pylint: disable=g-import-not-at-top
  image = _image(5)
  expected = ref.run_network(network, image)['prediction10']
  for version in ('v7', 'v7.3'):
    path = ref.write_object(tmp_path / f'object_{version}.mat', network, version)
    imported = _import(path)
    assert imported.storage.endswith('dagnn.DagNN object')
    keypoints, _ = _flax_maps(imported, image[None])
    np.testing.assert_allclose(keypoints[-1, 0], expected, atol=1e-4, rtol=0)

    monkeypatch.setattr(mat_files, 'decode_objects', lambda _: None)  # mat-io not installed
    message = _error(path)
    assert 'MATLAB object (dagnn.DagNN)' in message and 'net = net.saveobj()' in message
    monkeypatch.undo()
