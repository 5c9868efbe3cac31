"""rhpe_jax.PoseEstimator: from a workdir against the TensorFlow crop and the
JAX predictor's own decoding on real LSPET images, from an ONNX export against
from_workdir, bad input, and a fresh process that predicts without TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_DATA, tiny_config

LSPET_IMAGES = [SHARED_DATA / 'lspet_sample' / 'images' / f'im0000{i}.jpg' for i in range(1, 5)]


def _lspet():
  if not LSPET_IMAGES[-1].is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET_IMAGES[0].parent}')
  return [str(p) for p in LSPET_IMAGES]


def _reference(config, variables, image, centre, side):
  """The crop of the training pipeline (TensorFlow) and the predictor's
  in-graph decoding, mapped by hand into image pixels."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  size = config.input_size
  matrix = augment.input_to_stored_matrix(tf.constant(centre, tf.float64),
                                          tf.constant(side, tf.float64), size,
                                          augment.identity_params()).numpy()
  pixels = augment.warp_image(tf.constant(image), matrix, size).numpy()
  out = predictor.predict_fn(config)(variables, pixels[None])
  keypoints = np.asarray(out['keypoints'][0], np.float64)
  return keypoints @ matrix[:2, :2].T + matrix[:2, 2], np.asarray(out['confidence'][0])


def test_from_workdir_on_lspet_images_and_boxes(tiny_data_dir, tiny_workdir):
  from rhpe_jax import PoseEstimator, checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import image_io  # pylint: disable=g-import-not-at-top
  paths = _lspet()
  est = PoseEstimator.from_workdir(tiny_workdir)  # the config it wrote beside its checkpoints
  config = tiny_config(tiny_data_dir)
  variables, _ = checkpoints.restore_variables(config, str(tiny_workdir))
  assert len(est.keypoint_names) == 16 and est.skeleton[0] == (0, 1)
  image = image_io.read_image(paths[0])
  height, width = image.shape[:2]
  poses = est.predict(paths[0])
  assert poses.keypoints.shape == (1, 16, 2) and poses.keypoints.dtype == np.float32
  assert poses.scores.shape == (1, 16) and poses.scores.dtype == np.float32
  np.testing.assert_array_equal(poses.boxes, [[0, 0, width, height]])
  expected, confidence = _reference(config, variables, image,
                                    ((width - 1) / 2, (height - 1) / 2), max(height, width))
  np.testing.assert_allclose(poses.keypoints[0], expected, atol=1e-3)
  np.testing.assert_allclose(poses.scores[0], confidence, atol=1e-5)
  # Two boxes: each person's window is box_scale x its longer side around its centre.
  boxes = [[10.0, 20.0, 60.0, 100.0], [40.0, 5.0, 30.0, 50.0]]
  poses = est.predict(image, boxes)
  for person, (x, y, w, h) in enumerate(boxes):
    expected, _ = _reference(config, variables, image, (x + w / 2, y + h / 2),
                             config.box_scale * max(w, h))
    np.testing.assert_allclose(poses.keypoints[person], expected, atol=1e-3)
  # The same from a PIL image, and in the batched form.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(paths[0]) as opened:
    again = est.predict(opened, boxes)
  np.testing.assert_allclose(again.keypoints, poses.keypoints)
  batch = est.predict_batch([image, paths[1]], [boxes[:1], None])  # one network batch of 2
  np.testing.assert_allclose(batch[0].keypoints, poses.keypoints[:1], atol=1e-4)
  np.testing.assert_allclose(batch[1].keypoints, est.predict(paths[1]).keypoints, atol=1e-4)
  assert len(est.predict(image, np.zeros((0, 4)))) == 0
  drawn = poses.draw(image)
  assert drawn.shape == image.shape and np.any(drawn != image)


def test_from_workdir_on_the_coco_sample_with_its_detections(tiny_data_dir, tiny_workdir):
  """Every detection scoring >= 0.3 on the COCO sample's images (stored frame,
  as `evaluate --boxes` reads them) against the TensorFlow crop of its window
  (box_scale x the box's longer side around its centre) and the predictor's
  in-graph decoding."""
  from rhpe_jax import PoseEstimator, checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import coco_results, image_io  # pylint: disable=g-import-not-at-top
  sample = SHARED_DATA / 'coco_sample'
  if not (sample / 'person_detections.json').is_file():
    pytest.skip(f'the COCO sample is not at {sample}')
  detections = coco_results.read_detections(str(sample / 'person_detections.json'),
                                            score_threshold=0.3)
  config = tiny_config(tiny_data_dir)
  variables, _ = checkpoints.restore_variables(config, str(tiny_workdir))
  est = PoseEstimator.from_workdir(tiny_workdir)
  checked = 0
  for path in sorted((sample / 'images').glob('*.jpg')):
    boxes = [d['bbox'] for d in detections.get(int(path.stem), ())]
    image = image_io.read_image(str(path), apply_orientation=False)
    poses = est.predict(image, boxes)
    assert poses.keypoints.shape == (len(boxes), 16, 2)
    np.testing.assert_allclose(poses.boxes, np.asarray(boxes, np.float32).reshape(-1, 4))
    for person, (x, y, w, h) in enumerate(boxes):
      centre = np.array([x + w / 2, y + h / 2], np.float32)  # the builder's float32 centre
      expected, confidence = _reference(config, variables, image, tuple(centre.tolist()),
                                        config.box_scale * max(w, h))
      np.testing.assert_allclose(poses.keypoints[person], expected, atol=2e-3)
      np.testing.assert_allclose(poses.scores[person], confidence, atol=1e-5)
      checked += 1
  assert checked >= 10


def test_flip_and_box_scales_average_heat_maps(tiny_workdir):
  """The flip test is symmetric: the mirrored image's keypoints, mirrored
  back and renamed, are the image's (a property of the averaged maps)."""
  from rhpe_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import image_io  # pylint: disable=g-import-not-at-top
  image = image_io.read_image(_lspet()[1])
  est = PoseEstimator.from_workdir(tiny_workdir, flip=True, scales=(1.0, 0.8, 1.25))
  width = image.shape[1]
  side = max(image.shape[:2])
  if (side - width) % 2:
    image = image[:, :-1]  # an even margin: the window mirrors onto itself
  poses = est.predict(image)
  mirrored = est.predict(np.ascontiguousarray(image[:, ::-1]))
  back = mirrored.keypoints[0][est.keypoint_set.flip_permutation]
  back[:, 0] = image.shape[1] - 1 - back[:, 0]
  np.testing.assert_allclose(back, poses.keypoints[0], atol=0.05)


def test_bad_input_gives_one_line_errors(tiny_workdir, tmp_path):
  from rhpe_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  est = PoseEstimator.from_workdir(tiny_workdir)
  image = np.zeros((40, 30, 3), np.uint8)
  cases = [((image.astype(np.float32),), 'uint8'), ((image[..., :2],), 'H x W x 3'),
           ((42,), 'a path, a PIL image'), ((image, [[0, 0, -5, 10]]), r'boxes\[0\]'),
           ((image, [[0, 0, 5, 10, 3]]), r'shape \(P, 4\)'),
           ((str(tmp_path / 'none.jpg'),), 'does not exist')]
  for args, message in cases:
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
      est.predict(*args)
    assert '\n' not in str(error.value)
  with pytest.raises(FileNotFoundError, match='config.json'):
    PoseEstimator.from_workdir(tmp_path)
  with pytest.raises(ValueError, match='scales must include 1.0'):
    PoseEstimator.from_workdir(tiny_workdir, scales=(0.9,))
  assert PoseEstimator.from_workdir(tiny_workdir, box_scale=2.0).box_scale == 2.0


def test_prediction_from_a_workdir_leaves_tensorflow_out(tiny_workdir):
  code = ('import sys\nfrom rhpe_jax import PoseEstimator\n'
          'import numpy as np\n'
          f'poses = PoseEstimator.from_workdir({str(tiny_workdir)!r}).predict('
          'np.full((50, 40, 3), 90, np.uint8))\n'
          'assert poses.keypoints.shape[0] == 1\n'
          "print('tensorflow' in sys.modules, 'jax' in sys.modules)\n")
  env = dict(os.environ, PYTHONPATH=str(REPO))
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                        timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split() == ['False', 'True']


def test_importing_the_package_imports_no_jax():
  code = ('import sys, rhpe_jax\nrhpe_jax.Poses\n'
          "print(sorted(m for m in ('jax', 'tensorflow') if m in sys.modules))")
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120, check=False)
  assert done.returncode == 0 and done.stdout.strip() == '[]', done.stderr[-2000:]


@pytest.fixture(scope='module')
def onnx_export(tiny_data_dir, tiny_workdir, tmp_path_factory):
  pytest.importorskip('onnxruntime', reason='onnxruntime is not installed (pip install '
                      "'rhpe_jax[onnx]')")
  pytest.importorskip('jax2onnx', reason="the ONNX converter is not installed (pip install "
                      "'rhpe_jax[onnx]')")
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  variables, step = checkpoints.restore_variables(config, str(tiny_workdir))
  out = tmp_path_factory.mktemp('export') / 'onnx'
  export.export(config, variables, out, formats=('onnx',), step=step)
  return out


@pytest.mark.slow  # the ONNX export: ~30 s on 2 cores
def test_the_manifest_holds_the_processing(onnx_export, tiny_data_dir):
  from rhpe_jax.core import keypoint_sets  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  section = json.loads((onnx_export / 'manifest.json').read_text())['processing']
  keypoint_set = keypoint_sets.of_config(config)
  assert section['input_size'] == 64 and section['stride'] == 4  # 2 poolings of 2
  assert section['box_scale'] == config.box_scale
  assert section['normalisation']['mean'] == 128.0 and section['normalisation']['scale'] == 256.0
  assert section['keypoint_names'] == list(keypoint_set.keypoint_names)
  assert section['skeleton'] == [list(p) for p in keypoint_set.part_pairs]
  assert section['flip_pairs'] == [list(p) for p in keypoint_set.flip_pairs]


@pytest.mark.slow
def test_from_export_agrees_with_from_workdir(onnx_export, tiny_workdir, tmp_path):
  from rhpe_jax import PoseEstimator  # pylint: disable=g-import-not-at-top
  paths = _lspet()
  exported = PoseEstimator.from_export(onnx_export, flip=True)
  trained = PoseEstimator.from_workdir(tiny_workdir, flip=True)
  assert exported.keypoint_names == trained.keypoint_names
  distances = []
  for path in paths:
    a, b = exported.predict(path, [[5, 5, 60, 90]]), trained.predict(path, [[5, 5, 60, 90]])
    distances.append(np.linalg.norm(a.keypoints - b.keypoints, axis=-1))
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
  assert np.median(distances) < 0.05 and np.max(distances) < 0.5
  # An export made before the processing section: one line, export again.
  old = tmp_path / 'old'
  old.mkdir()
  manifest = json.loads((onnx_export / 'manifest.json').read_text())
  manifest.pop('processing')
  (old / 'manifest.json').write_text(json.dumps(manifest))
  with pytest.raises(ValueError, match='export it again'):
    PoseEstimator.from_export(old)
