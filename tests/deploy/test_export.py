"""rhpe_jax.deploy.export and experiments/export.py: batch-norm folding against the
unfolded network; the three artefacts written by the command line against
the predictor (rhpe_jax.inference.predictor) on the unfolded network, on real
LSPET images; one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SHARED_DATA, tiny_config

SIZE = 64


def _calibrated_state(config, seed: int = 0):
  """A tiny-network train state whose batch norm is far from the identity:
  scales (some negative) and offsets drawn at random, running statistics
  gathered by 30 train-mode passes over random images, as training gathers
  them (momentum 0.9)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rhpe_jax.model import network as model_lib  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import steps as train_step
  state = train_step.create_train_state(config, jax.random.key(seed), steps_per_epoch=1)
  rng = np.random.default_rng(seed)

  def redraw(path, x):
    name = jax.tree_util.keystr(path)
    if 'BatchNorm_0' in name and name.endswith("['scale']"):
      return jnp.asarray(rng.uniform(0.5, 1.5, x.shape) * rng.choice([-1, 1, 1, 1], x.shape),
                         x.dtype)
    if 'BatchNorm_0' in name and name.endswith("['bias']"):
      return jnp.asarray(rng.normal(0.1, 0.2, x.shape), x.dtype)
    return x

  params = jax.tree_util.tree_map_with_path(redraw, state.params)
  net = model_lib.create_model(config)
  images = model_lib.normalize_images(
      rng.integers(0, 256, (8, config.input_size, config.input_size, 3), dtype=np.uint8))

  @jax.jit
  def update(batch_stats):
    _, updates = net.apply({'params': params, 'batch_stats': batch_stats}, images,
                           train=True, mutable=['batch_stats'])
    return updates['batch_stats']

  batch_stats = state.batch_stats
  for _ in range(30):
    batch_stats = update(batch_stats)
  return state.replace(params=params, batch_stats=batch_stats, step=7)


@pytest.fixture(scope='module')
def calibrated(tiny_data_dir):
  """(config, state): the tiny demo network (two fusion passes), calibrated."""
  config = tiny_config(tiny_data_dir)
  return config, _calibrated_state(config)


def test_batch_norm_folding_matches_the_unfolded_network(calibrated):
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.model import network as model_lib  # pylint: disable=g-import-not-at-top
  config, state = calibrated
  passes = config.num_iterations + 1
  stats = state.batch_stats['fusion']['ConvBlock_1']['BatchNorm_0']['mean']
  assert stats.shape[0] == passes == 2 and float(np.abs(stats[0] - stats[1]).max()) > 1e-3

  images = np.random.default_rng(1).uniform(-0.5, 0.5, (2, SIZE, SIZE, 3)).astype(np.float32)
  reference, _ = model_lib.create_model(config).apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, images, train=False)
  folded = export.inference_params(
      config, {'params': state.params, 'batch_stats': state.batch_stats})
  assert 'BatchNorm_0' not in str(jax.tree_util.tree_structure(folded))
  # The shared fusion convolutions stored once, as trained; each pass's batch
  # norm a scale and offset of its own, by hand: gamma / sqrt(var_p + eps)
  # and beta - mean_p * scale.
  trained = state.params['fusion']['ConvBlock_1']
  np.testing.assert_array_equal(folded['fusion']['ConvBlock_1']['Conv_0']['kernel'],
                                trained['Conv_0']['kernel'])
  bn = state.batch_stats['fusion']['ConvBlock_1']['BatchNorm_0']
  for p in range(passes):
    scale = np.asarray(trained['BatchNorm_0']['scale']) / np.sqrt(np.asarray(bn['var'][p]) + 1e-5)
    offset = np.asarray(trained['BatchNorm_0']['bias']) - np.asarray(bn['mean'][p]) * scale
    np.testing.assert_allclose(folded['fusion_batch_norm']['ConvBlock_1']['scale'][p], scale,
                               rtol=1e-6)
    np.testing.assert_allclose(folded['fusion_batch_norm']['ConvBlock_1']['bias'][p], offset,
                               rtol=1e-5, atol=1e-6)
  maps, _ = export.inference_model(config).apply({'params': folded}, images)
  reference, maps = np.asarray(reference), np.asarray(maps)
  assert maps.shape == reference.shape == (passes + 1, 2, SIZE // 4, SIZE // 4, 16)
  assert reference.std() > 1e-2  # the network is not dead
  np.testing.assert_allclose(maps, reference, atol=1e-5 * np.abs(reference).max(), rtol=1e-4)

  # One convolution folded by hand: the first 3x3 conv, at one output pixel.
  conv = state.params['feed_forward']['ConvBlock_0']
  bn = state.batch_stats['feed_forward']['ConvBlock_0']['BatchNorm_0']
  patch = np.pad(images[0], ((1, 1), (1, 1), (0, 0)))[10:13, 20:23]  # centred on (10, 20)
  pre = np.einsum('hwc,hwcd->d', patch, np.asarray(conv['Conv_0']['kernel'])) + conv['Conv_0'][
      'bias']
  expected = (pre - bn['mean']) / np.sqrt(bn['var'] + 1e-5) * conv['BatchNorm_0']['scale'] + \
      conv['BatchNorm_0']['bias']
  one = folded['feed_forward']['ConvBlock_0']['Conv_0']
  got = np.einsum('hwc,hwcd->d', patch, one['kernel']) + one['bias']
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _lspet_crops(count: int) -> np.ndarray:
  """The first LSPET images, centre-cropped to a square and resized to SIZE."""
  crops = []
  for i in range(1, count + 1):
    with Image.open(SHARED_DATA / 'lspet_sample' / 'images' / f'im{i:05d}.jpg') as image:
      image = image.convert('RGB')
      side = min(image.size)
      left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
      crop = image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE),
                                                                    Image.BILINEAR)
      crops.append(np.asarray(crop))
  return np.stack(crops)


def _config_flags(data_dir):
  return ['--config=experiments/configs/demo.py', '--config.width=0.0625',
          f'--config.input_size={SIZE}', '--config.dataset=synthetic_pose/tiny_eval',
          f'--config.data_dir={data_dir}']


def _start(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, '-m', 'experiments.export', *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def calibrated_workdir(calibrated, tmp_path_factory):
  """A workdir whose checkpoint (step 7) holds the calibrated state, saved as
  training saves it."""
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config, state = calibrated
  workdir = tmp_path_factory.mktemp('calibrated_run')
  manager = checkpoints.CheckpointManager(str(workdir), config)
  manager.save(7, state, metric=0.5, force=True)
  manager.close()
  return workdir


def test_artefacts_agree_with_the_predictor_on_real_images(tiny_data_dir, calibrated_workdir,
                                                          tmp_path):
  if not (SHARED_DATA / 'lspet_sample' / 'images' / 'im00004.jpg').is_file():
    pytest.skip(f'the real LSPET sample is not at {SHARED_DATA / "lspet_sample"}')
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'export'
  process = _start(_config_flags(tiny_data_dir) + [f'--workdir={calibrated_workdir}',
                                                   f'--output={out}'])
  images = _lspet_crops(4)
  config = tiny_config(tiny_data_dir)
  variables, step = checkpoints.restore_variables(config, str(calibrated_workdir))
  assert step == 7
  expected = predictor.predict_fn(config, outputs=export.OUTPUTS)(variables, images)
  assert float(np.std(expected['heatmaps'])) > 1e-2  # the network is not dead
  stdout, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-3000:]
  assert 'wrote' in stdout

  def check(outputs, name, rows=slice(None)):
    for key, tolerance in (('keypoints', 0.5), ('confidence', 1e-3), ('heatmaps', 1e-3)):
      np.testing.assert_allclose(outputs[key], expected[key][rows], atol=tolerance,
                                 err_msg=f'{name} {key}')

  exported = jax.export.deserialize(bytearray((out / 'model.jax_export').read_bytes()))
  assert exported.in_avals[0].dtype == np.uint8
  check(exported.call(images), 'jax_export')
  check(exported.call(images[1:2]), 'jax_export, batch 1', slice(1, 2))

  serve = tf.saved_model.load(str(out / 'saved_model')).signatures['serving_default']
  assert serve.structured_input_signature[1]['images'].shape.as_list() == [None, SIZE, SIZE, 3]
  check({k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}, 'saved_model')

  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # tf.lite.Interpreter's deprecation notice
    interpreter = tf.lite.Interpreter(model_path=str(out / 'model.tflite'))
  names = [d['name'] for d in interpreter.get_output_details()]
  assert sorted(names) == ['confidence', 'heatmaps', 'keypoints']
  check(interpreter.get_signature_runner('serving_default')(images=images), 'tflite')

  readme = (out / 'README.md').read_text()
  assert f', {SIZE}, {SIZE}, 3)' in readme and '0 r_ankle' in readme and 'step 7' in readme


def test_bad_arguments_give_one_line_errors(tiny_data_dir, tiny_workdir, tmp_path):
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  (tmp_path / 'empty_run').mkdir()
  cases = {
      'workdir': (str(tmp_path / 'missing'), {}, 'does not exist'),
      'checkpoint': (str(tmp_path / 'empty_run'), {}, 'no checkpoint'),
      'step': (str(tiny_workdir), {'checkpoint': '5'}, 'no checkpoint of step 5'),
      'format': (str(tiny_workdir), {'formats': 'saved_model,caffe'}, "unknown export formats"),
      'size': (str(tiny_workdir), {'image_size': 62}, 'multiple of 4, got 62'),
      'batch': (str(tiny_workdir), {'batch': 0}, 'batch must be positive'),
      'web': (str(tiny_workdir), {'formats': 'tflite', 'onnxruntime_web': str(tmp_path)},
              '^onnxruntime_web is for the browser page of the onnx format'),
  }
  for name, (workdir, kwargs, message) in cases.items():
    with pytest.raises((ValueError, FileNotFoundError), match=message):
      export.export_checkpoint(config, workdir, str(tmp_path / name), **kwargs)
    assert not (tmp_path / name).exists()

  process = _start(_config_flags(tiny_data_dir) + [f'--workdir={tiny_workdir}',
                                                   f'--output={tmp_path / "x"}',
                                                   '--formats=tflite,pytorch'])
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 1
  assert 'Traceback' not in stderr
  assert stderr.strip().splitlines()[-1].startswith('error: unknown export formats')


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # abandoned reads
def test_latest_falls_back_past_an_unreadable_checkpoint(tiny_data_dir, broken_newest_workdir,
                                                         tmp_path, capsys):
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'export'
  export.export_checkpoint(tiny_config(tiny_data_dir), str(broken_newest_workdir), str(out),
                           checkpoint='latest', formats='jax_export')
  assert 'step 1' in (out / 'README.md').read_text()
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith('warning: checkpoint step 2 cannot be read: ')
  assert lines[0].endswith('; using step 1')
  assert (broken_newest_workdir / 'checkpoints' / 'unreadable' / 'latest_2').is_dir()


def test_a_stablehlo_gap_stops_the_tf_formats_before_anything_is_written(
    tiny_data_dir, tiny_workdir, tmp_path, monkeypatch):
  """A TensorFlow that reads none of JAX's StableHLO (simulated: its reader
  refuses everything): the TF formats stop with one line before anything is
  written, jax_export included (jax_export alone never calls TensorFlow:
  rhpe_jax.deploy.export.export asks tf_stablehlo only for the TF formats)."""
  from tensorflow.compiler.mlir.stablehlo import stablehlo  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import tf_stablehlo  # pylint: disable=g-import-not-at-top

  def reads_nothing(serialized):
    raise Exception('failed to deserialize module')  # pylint: disable=broad-exception-raised

  monkeypatch.setattr(stablehlo, 'deserialize_portable_artifact_str', reads_nothing)
  config = tiny_config(tiny_data_dir)
  with pytest.raises(tf_stablehlo.StableHloMismatch,
                     match=r"writes StableHLO [\d.]+, which .* formats=\['jax_export'\]"):
    export.export_checkpoint(config, str(tiny_workdir), str(tmp_path / 'both'),
                             formats='jax_export,tflite')
  assert not (tmp_path / 'both').exists()
