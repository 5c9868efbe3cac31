"""experiments/evaluate.py (rhpe_jax.evaluation.report) on a tiny checkpoint:
the written files, numbers that agree with an independent computation from
the written .h5, a test-split submission, and one-line errors for bad input."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, tiny_config

TOTAL = [j for j in range(16) if j not in (6, 7)]  # MPII "Total": no pelvis, thorax
GROUPS = {'Head': (8, 9), 'Shoulder': (12, 13), 'Elbow': (11, 14), 'Wrist': (10, 15),
          'Hip': (2, 3), 'Knee': (1, 4), 'Ankle': (0, 5)}


def _ground_truth(data_dir, split='validation'):
  """Keypoints in original pixels and status, straight from the TFDS files,
  in (image_index, person_index) order."""
  import tensorflow_datasets as tfds
  builder = tfds.builder('synthetic_pose/tiny_eval', data_dir=str(data_dir))
  rows = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
  rows.sort(key=lambda r: (int(r['image_index']), int(r['person_index'])))
  gt, status = [], []
  for r in rows:
    c2i = r['crop_to_image'].astype(np.float64)
    gt.append(r['keypoints'] @ c2i[:, :2].T + c2i[:, 2])
    status.append(r['keypoint_status'])
  return np.array(gt), np.array(status), [int(r['image_index']) for r in rows]


def _average_precision(scores, positive):
  order = np.argsort(-scores, kind='stable')
  hits = positive[order]
  precisions = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(np.mean(precisions[hits]))


def test_evaluate_writes_files_whose_numbers_recompute(tiny_data_dir, tiny_workdir, tmp_path,
                                                       capsys):
  from rhpe_jax.evaluation import report
  config = tiny_config(tiny_data_dir)
  config.num_eval_examples = 2  # the training-time subset: the command scores all 6
  out = tmp_path / 'eval'
  report.evaluate_checkpoint(config, str(tiny_workdir), flip=True, scales='1.0,1.25',
                             output_dir=str(out), mean_pose_from='config')
  printed = capsys.readouterr().out
  assert 'scored 6 of 6 persons (none left out)' in printed
  assert 'config.num_eval_examples = 2' in printed and 'num_examples=2 for that subset' in printed
  for name in ('results.json', 'predictions.h5', 'pck_curves.png', 'visibility_pr.png'):
    assert (out / name).is_file(), name
  for name in ('pck_curves.png', 'visibility_pr.png'):
    with Image.open(out / name) as picture:
      assert picture.format == 'PNG' and min(picture.size) > 100
  results = json.loads((out / 'results.json').read_text())
  with h5py.File(out / 'predictions.h5') as f:
    preds = f['preds'][()] - 1.0  # the file is 1-based
  gt, status, image_index = _ground_truth(tiny_data_dir)
  assert preds.shape == gt.shape == (6, 16, 2)
  assert results['persons'] == {'in_split': 6, 'predicted': 6, 'scored': 6, 'left_out': {}}
  assert results['image_index'] == image_index
  assert results['flip'] and results['scales'] == [1.0, 1.25]

  # PCK@0.2, torso = mean of the shoulder-hip diagonals (the demo config).
  torso = 0.5 * (np.linalg.norm(gt[:, 13] - gt[:, 2], axis=-1)
                 + np.linalg.norm(gt[:, 12] - gt[:, 3], axis=-1))
  dist = np.linalg.norm(preds - gt, axis=-1) / torso[:, None]
  annotated = status > 0
  correct = (dist <= 0.2) & annotated
  per_joint = 100.0 * correct.sum(0) / annotated.sum(0)
  for j, name in enumerate(results['keypoint_names']):
    assert results['per_joint'][name] == pytest.approx(per_joint[j], abs=1e-9), name
  total = 100.0 * correct[:, TOTAL].sum() / annotated[:, TOTAL].sum()
  assert results['table']['Total'] == pytest.approx(total, abs=1e-9)
  for name, (a, b) in GROUPS.items():
    assert results['table'][name] == pytest.approx((per_joint[a] + per_joint[b]) / 2, abs=1e-9)
  thresholds = np.array(results['curves']['thresholds'])
  assert thresholds[-1] == pytest.approx(0.2)
  curve = [100.0 * ((dist[:, TOTAL] <= t) & annotated[:, TOTAL]).sum()
           / annotated[:, TOTAL].sum() for t in thresholds]
  np.testing.assert_allclose(results['curves']['Total'], curve, atol=1e-9)

  # The mean-pose baseline (checked against joints.mat in test_train.py) is
  # written beside the table, scored on the same persons.
  assert set(results['mean_pose_baseline']) == set(results['table'])
  assert 0.0 <= results['mean_pose_baseline']['Total'] <= 100.0

  # Visibility AP from the written confidences (heat-map maxima).
  confidence = np.array(results['confidence'])
  ap = _average_precision(confidence[annotated], status[annotated] == 2)
  assert results['visibility']['ap'] == pytest.approx(100 * ap)


def test_a_subset_when_asked_for(tiny_data_dir, tiny_workdir, tmp_path,
                                                      capsys):
  """--num_examples limits the command (config.num_eval_examples does not),
  and the output says what was left out and why."""
  from rhpe_jax.evaluation import report
  config = tiny_config(tiny_data_dir)
  config.num_eval_examples = 2  # the whole split: test_evaluate_writes_files_...
  _, status, _ = _ground_truth(tiny_data_dir)
  subset = report.evaluate_checkpoint(config, str(tiny_workdir), output_dir=str(tmp_path / 'b'),
                                      num_examples=4, flip=True)  # flip: the step compiled above
  printed = capsys.readouterr().out
  assert subset['num_persons'] == 4
  assert subset['persons']['left_out'] == {'not among the first 4 (num_examples)': 2}
  assert 'scored 4 of 6 persons; left out: 2 not among the first 4 (num_examples)' in printed
  written = json.loads((tmp_path / 'b' / 'results.json').read_text())
  assert written['persons'] == subset['persons']
  # Persons without a torso, counted by hand from the ground truth: none here,
  # and a person without annotated joints is named as such.
  predictions = {'pred': np.zeros((3, 16, 2)), 'keypoint_status': status[:3].copy()}
  predictions['keypoint_status'][1] = 0
  counts = report.persons_count(5, predictions, {'persons_without_torso': 1}, None)
  assert counts == {'in_split': 5, 'predicted': 3, 'scored': 1, 'left_out': {
      'outside the requested slice of the split': 2, 'no annotated joints': 1,
      'no torso to normalise by (a shoulder or hip missing)': 1}}


def test_split_without_keypoints_gives_a_submission(tiny_data_dir, tiny_workdir, tmp_path):
  import tensorflow_datasets as tfds
  from rhpe_jax.evaluation import report
  from rhpe_jax.data import pose_features
  from rhpe_jax.data import synthetic
  examples = []
  for _, ex in synthetic.generate_split('test', 3, 64, base_seed=5):
    ex['keypoint_status'] = np.zeros_like(ex['keypoint_status'])
    ex['keypoints'] = np.zeros_like(ex['keypoints'])
    examples.append(ex)
  examples = examples[::-1]  # stored out of order: the output must be sorted
  tfds.dataset_builders.store_as_tfds_dataset(
      name='rhpe_nogt_pose', version='1.0.0', data_dir=tmp_path / 'data',
      features=pose_features.pose_features(16, (64, 64, 3)),
      split_datasets={'test': list(enumerate(examples))})
  config = tiny_config(tiny_data_dir)
  config.dataset = 'rhpe_nogt_pose'
  config.data_dir = str(tmp_path / 'data')
  results = report.evaluate_checkpoint(config, str(tiny_workdir), split='test', flip=True,
                         output_dir=str(tmp_path / 'o'), verbose=False)
  assert results['submission'] and 'table' not in results
  written = json.loads((tmp_path / 'o' / 'results.json').read_text())
  assert written['image_index'] == [0, 1, 2]
  import scipy.io
  mat = scipy.io.loadmat(tmp_path / 'o' / 'predictions.mat')['preds']
  with h5py.File(tmp_path / 'o' / 'predictions.h5') as f:
    np.testing.assert_array_equal(f['preds'][()], mat)
  assert mat.shape == (3, 16, 2)


def _run_cli(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, '-m', 'experiments.evaluate', *args], cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bad_input_gives_one_line_errors(tiny_data_dir, tiny_workdir, tmp_path):
  """As the command line reports them: exit 1 (bad input) or 2 (usage), one
  `error:` line, no traceback (two cases run as processes, in parallel; the
  rest in-process: the library's one-line errors, which cli.run prints as it
  prints the unknown split's)."""
  from rhpe_jax.evaluation import report
  base = ['--config=experiments/configs/demo.py',
          '--config.dataset=synthetic_pose/tiny_eval', f'--config.data_dir={tiny_data_dir}',
          '--config.width=0.0625', '--config.input_size=64']
  cases = {
      'unknown split': ([f'--workdir={tiny_workdir}', '--split=bogus'], 1),
      '--workdir is required': ([], 2),
  }
  processes = {k: (_run_cli(base + args), status) for k, (args, status) in cases.items()}
  config = tiny_config(tiny_data_dir)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    report.evaluate_checkpoint(config, str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    report.evaluate_checkpoint(config, str(tmp_path / 'empty'))
  for bad in ('1.0,big', '0.8,1.2', '1,0'):
    with pytest.raises(ValueError, match='scales'):
      report.evaluate_checkpoint(config, str(tiny_workdir), scales=bad)
  with pytest.raises(ValueError, match='step number'):
    report.evaluate_checkpoint(config, str(tiny_workdir), checkpoint='newest')
  for expected, (process, status) in processes.items():
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == status, (expected, stderr)
    assert 'Traceback' not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and expected in errors[0], stderr
    assert stderr.strip().splitlines()[-1] == errors[0]


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # abandoned reads
def test_latest_falls_back_past_an_unreadable_checkpoint(tiny_data_dir, broken_newest_workdir,
                                                         tmp_path, capsys):
  from rhpe_jax.evaluation import report
  results = report.evaluate_checkpoint(
      tiny_config(tiny_data_dir), str(broken_newest_workdir), checkpoint='latest',
      output_dir=str(tmp_path / 'eval'), verbose=False)
  latest = broken_newest_workdir / 'checkpoints' / 'latest'
  assert results['step'] == 1 and results['checkpoint'] == str(latest / '1')
  assert json.loads((tmp_path / 'eval' / 'results.json').read_text())['step'] == 1
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith('warning: checkpoint step 2 cannot be read: ')
  assert lines[0].endswith('; using step 1')
