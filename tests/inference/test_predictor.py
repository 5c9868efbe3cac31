"""The one inference path: `predict` against the network run by hand (last
stage, decoding, flip averaging) and the compile cache's key."""
from __future__ import annotations

import numpy as np
import pytest

from rhpe_jax.inference import predictor
from tests.conftest import tiny_config


def test_predict_is_the_network_decoded_with_flip_averaging():
  """Keypoints and confidences from NumPy's arg-max of the last stage; with
  flip, the maps are the mean of the image's and the mirrored image's maps
  mirrored back, left and right swapped (the skeleton's permutation)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax import model  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import keypoint_sets  # pylint: disable=g-import-not-at-top
  config = tiny_config('unused')  # the network only
  net = model.create_model(config)
  variables = model.init_variables(net, jax.random.key(3), (1, 64, 64, 3))
  images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
  apply = jax.jit(lambda x: net.apply(variables, (x.astype(np.float32) - 128) / 256,
                                      train=False))  # one compile for both inputs
  stages, parts = apply(images)
  mirrored, _ = apply(images[:, :, ::-1].copy())
  stages, parts, mirrored = (np.asarray(a, np.float32) for a in (stages, parts, mirrored))

  out = jax.device_get(predictor.predict_fn(config, outputs=predictor.OUTPUTS)(variables, images))
  np.testing.assert_allclose(out['stages'], stages, atol=1e-5)
  np.testing.assert_allclose(out['heatmaps'], stages[-1], atol=1e-5)
  np.testing.assert_allclose(out['part_maps'], parts[-1], atol=1e-5)
  maps = stages[-1]
  np.testing.assert_allclose(out['confidence'], maps.max(axis=(1, 2)), atol=1e-5)
  width = maps.shape[2]
  peaks = maps.reshape(2, -1, 16).argmax(1)
  peak_x, peak_y = 4 * (peaks % width) + 1.5, 4 * (peaks // width) + 1.5  # input pixels
  # Sub-pixel refinement moves a keypoint by less than half a grid pixel.
  assert np.all(np.abs(out['keypoints'][..., 0] - peak_x) < 2)
  assert np.all(np.abs(out['keypoints'][..., 1] - peak_y) < 2)

  permutation = list(keypoint_sets.built_in(config.keypoint_set).flip_permutation)
  flipped = jax.device_get(predictor.predict_fn(config, flip=True, outputs=('heatmaps',))(
      variables, images))
  expected = 0.5 * (maps + mirrored[-1][:, :, ::-1][..., permutation])
  np.testing.assert_allclose(flipped['heatmaps'], expected, atol=1e-5)
  with pytest.raises(ValueError, match='unknown outputs'):
    predictor.predict(net, variables, images, outputs=('keypoints', 'pose'))


def test_one_compiled_function_per_network():
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({'width': 0.5, 'dataset': 'a', 'data_dir': '/x',
                                      'eval_split': 'validation', 'num_eval_examples': 3})
  other_data = ml_collections.ConfigDict(dict(config.to_dict(), dataset='b', data_dir='/y',
                                              num_eval_examples=-1))
  other_network = ml_collections.ConfigDict(dict(config.to_dict(), width=0.25))
  assert predictor.network_key(config) == predictor.network_key(other_data)
  assert predictor.network_key(config) != predictor.network_key(other_network)
