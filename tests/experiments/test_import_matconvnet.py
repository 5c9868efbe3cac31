"""The MatConvNet import end to end: a file written as the authors' code
writes it, imported into a run directory (rhpe_jax.interop.matconvnet
.import_to_workdir, what experiments/import_matconvnet.py calls), then
`predict` on a real LSPET image and the TFLite `export` of the imported
checkpoint, both against the NumPy interpreter of the file; the command
line's output and its one-line errors."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from rhpe_jax.core import runtime
from tests import matconvnet_reference as ref
from tests.conftest import REPO, SHARED_DATA

runtime.setup()  # the project's XLA flags and JAX settings, as the command lines have them

WIDTH = 0.125
IMAGE = SHARED_DATA / 'lspet_sample' / 'images' / 'im00002.jpg'


def _load_config(path):
  spec = importlib.util.spec_from_file_location('imported_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_import_predict_and_tflite_agree_with_the_file(tmp_path):
  if not IMAGE.is_file():
    pytest.skip(f'the real LSPET sample is not at {IMAGE.parent}')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from rhpe_jax.data import augment, image_io
  from rhpe_jax.deploy import export
  from rhpe_jax.inference import crop as crop_lib, single
  from rhpe_jax.codec import decode
  from rhpe_jax.interop import matconvnet
  from rhpe_jax.training import steps

  network = ref.build_network(width=WIDTH, seed=7)
  mat = ref.write_v5(tmp_path / 'keypoint-v3.mat', network)
  workdir = tmp_path / 'authors_v3'
  written = matconvnet.import_to_workdir(str(mat), str(workdir), steps.train_state_from_variables)
  printed = '\n'.join(written.summary)
  assert 'the prediction is prediction10' in printed and '3 fusion passes' in printed
  assert 'mapped 82 layers' in printed and 'ignored 16 training-only loss layers' in printed
  assert written.checkpoint_path == str(workdir / 'checkpoints' / 'latest' / '0')
  source = (workdir / 'config.py').read_text()  # the library's config, not experiments'
  assert 'from rhpe_jax.core import config' in source and 'experiments' not in source.split('"""')[2]
  config = _load_config(written.config_path)
  assert (config.batch_norm_per_pass, config.num_iterations, config.width) == (True, 2, WIDTH)
  assert config.input_size == 248

  # predict: the whole image padded to a square, as the authors' demo does.
  record = single.predict_image(config, str(workdir), str(tmp_path / 'pred'), image_path=str(IMAGE))
  assert record['checkpoint_step'] == 0
  predicted = np.asarray(record['keypoints'])
  # The imported run describes itself: the API needs its folder only.
  from rhpe_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  poses = PoseEstimator.from_workdir(workdir).predict(str(IMAGE))
  np.testing.assert_allclose(poses.keypoints[0], predicted, atol=2e-3)

  export.export_checkpoint(config, str(workdir), str(tmp_path / 'export'), formats='tflite')
  image = image_io.read_image(str(IMAGE))
  centre, side = crop_lib.window(image.shape, None, None, config.box_scale)
  size = config.input_size
  matrix = augment.input_to_stored_matrix(tf.constant(centre, tf.float64), side, size,
                                          augment.identity_params())
  crop = augment.warp_image(tf.constant(image), matrix, size).numpy()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # tf.lite.Interpreter's deprecation notice
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / 'export' / 'model.tflite'))
  out = interpreter.get_signature_runner('serving_default')(images=crop[None])

  # The file itself, run by the NumPy interpreter on the same input.
  maps = ref.run_network(network, (crop.astype(np.float64) - 128.0) / 256.0)['prediction10']
  assert maps.shape == (62, 62, 16) and maps.max() > 1
  np.testing.assert_allclose(out['heatmaps'][0], maps, atol=1e-4 * np.abs(maps).max(), rtol=0)
  authors = ref.authors_decode(maps, (size, size))
  grid = np.asarray(decode.input_to_grid(out['keypoints'][0], 4))
  assert np.all(np.abs(grid - (authors / 4.0 - 1.0)) <= 0.5 + 1e-4)

  # predict's keypoints (original image pixels) are the TFLite ones mapped back.
  tflite_in_image = np.asarray(decode.transform_points(out['keypoints'][0],
                                                       matrix.numpy()[:2]))
  np.testing.assert_allclose(predicted, tflite_in_image, atol=0.05 * side / size)


def _run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'experiments.import_matconvnet', *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_command_line_writes_the_run_and_says_what_it_read(tmp_path):
  mat = ref.write_v5(tmp_path / 'keypoint-v3.mat', ref.build_network(width=WIDTH, seed=9))
  out = tmp_path / 'out'
  result = _run_cli(f'--mat={mat}', f'--output={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stderr == ''
  lines = result.stdout.splitlines()
  assert lines[0].startswith('keypoint-v3.mat: MAT v5, struct `net`; 98 layers')
  assert 'the prediction is prediction10' in lines[1]
  assert lines[-2] == f'wrote {out / "config.py"}, {out / "checkpoints" / "latest" / "0"}'
  assert lines[-1].startswith(f'next: python -m experiments.predict --config={out / "config.py"}')
  assert _load_config(out / 'config.py').batch_norm_per_pass
  assert (out / 'checkpoints' / 'latest' / '0').is_dir()


def test_errors_are_one_line_and_write_nothing(tmp_path):
  from rhpe_jax.interop import matconvnet  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import steps  # pylint: disable=g-import-not-at-top
  run = lambda mat, out, **kw: matconvnet.import_to_workdir(
      str(mat), str(out), steps.train_state_from_variables, **kw)
  network = ref.build_network(width=WIDTH, seed=8)
  good = ref.write_v5(tmp_path / 'good.mat', network)
  ref.set_param(network, 'fu_2_3_bn_x', np.zeros((16, 2), np.float32))
  mat = ref.write_v5(tmp_path / 'untrained.mat', network)
  out = tmp_path / 'out'
  with pytest.raises(matconvnet.MatConvNetError) as error:
    run(mat, out)
  assert 'fu_2_3_bn_x (16 of 16)' in str(error.value) and '\n' not in str(error.value)
  assert not out.exists()
  with pytest.raises(FileNotFoundError, match='missing.mat does not exist'):
    run(tmp_path / 'missing.mat', out)
  (tmp_path / 'file').write_text('x')
  with pytest.raises(FileExistsError, match='^output .*file is a file'):
    run(good, tmp_path / 'file')

  # An earlier import is kept, unless overwrite replaces it.
  run(good, out)
  with pytest.raises(FileExistsError, match='already holds checkpoints; use another output, '
                                            'or overwrite'):
    run(good, out)
  assert run(good, out, overwrite=True).checkpoint_path == str(
      out / 'checkpoints' / 'latest' / '0')
