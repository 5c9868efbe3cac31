"""Runs experiments/evaluate_predictions.py as a subprocess, as a user would."""
import json
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / '..' / 'shared' / 'data'
VALID_H5 = DATA / 'mpii_valid' / 'valid.h5'


def run_evaluator(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, '-m', 'experiments.evaluate_predictions', *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def write_small_annotations(path, part, normalize):
  with h5py.File(path, 'w') as f:
    f['part'] = part
    f['visible'] = np.ones(part.shape[:2])
    f['normalize'] = normalize


@pytest.fixture
def valid():
  if not VALID_H5.is_file():
    pytest.skip(f'real MPII validation data not found at {VALID_H5}')
  with h5py.File(VALID_H5, 'r') as f:
    return f['part'][()]


def test_ground_truth_as_predictions_scores_100(tmp_path, valid):
  # The community file is written here with h5py, 1-based like valid.h5.
  preds = tmp_path / 'gt_preds.h5'
  with h5py.File(preds, 'w') as f:
    f['preds'] = valid
  out_json = tmp_path / 'results.json'
  proc = run_evaluator(f'--predictions={preds}', f'--annotations={VALID_H5}',
                       f'--output_json={out_json}')
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  header = next(l for l in lines if 'Total' in l).split()
  row = lines[lines.index(next(l for l in lines if 'Total' in l)) + 1].split()
  assert header[1:] == ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle',
                        'Total', 'AUC']
  assert row[header.index('Total') - 1] == '100.0'
  assert row == ['100.0'] * 9
  results = json.loads(out_json.read_text())
  assert results['Total'] == 100.0 and results['num_persons'] == 2958


def test_hand_example_on_small_annotation_file(tmp_path):
  # Two persons, head size 10: person 0 right wrist (10) 6 px off (wrong),
  # everything else exact; person 1 has no ground truth for its left wrist
  # (15), predicted far away. Wrist = (50 + 100) / 2 = 75.0,
  # Total = 26 / 27 = 96.3 (pelvis and thorax left out).
  part = np.tile(np.arange(1.0, 33.0).reshape(1, 16, 2), (2, 1, 1)) * 10
  part[1, 15] = 0.0
  preds = part.copy()
  preds[0, 10, 0] += 6.0
  preds[1, 15] = [500.0, 500.0]
  ann = tmp_path / 'ann.h5'
  write_small_annotations(ann, part, np.array([10.0, 10.0]))
  pred_file = tmp_path / 'preds.mat'
  scipy.io.savemat(pred_file, {'preds': np.transpose(preds, (2, 1, 0))})  # MATLAB layout
  proc = run_evaluator(f'--predictions={pred_file}', f'--annotations={ann}',
                       '--output_json=' + str(tmp_path / 'r.json'))
  assert proc.returncode == 0, proc.stderr
  results = json.loads((tmp_path / 'r.json').read_text())
  assert results['groups']['Wrist'] == pytest.approx(75.0)
  assert results['Total'] == pytest.approx(100.0 * 26 / 27)
  assert '96.3' in proc.stdout


def test_bad_prediction_path_one_line_error(tmp_path):
  ann = tmp_path / 'ann.h5'
  write_small_annotations(ann, np.ones((1, 16, 2)), np.ones(1))
  proc = run_evaluator(f'--predictions={tmp_path / "absent.h5"}', f'--annotations={ann}')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and 'absent.h5' in lines[0]


def test_wrong_number_of_persons_one_line_error(tmp_path):
  ann = tmp_path / 'ann.h5'
  write_small_annotations(ann, np.ones((3, 16, 2)), np.ones(3))
  pred_file = tmp_path / 'p.h5'
  with h5py.File(pred_file, 'w') as f:
    f['preds'] = np.ones((2, 16, 2))
  proc = run_evaluator(f'--predictions={pred_file}', f'--annotations={ann}')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and 'shape' in lines[0]


def test_bad_annotation_format_one_line_error(tmp_path):
  bad = tmp_path / 'ann.h5'
  bad.write_bytes(b'not hdf5')
  pred_file = tmp_path / 'p.h5'
  with h5py.File(pred_file, 'w') as f:
    f['preds'] = np.ones((2, 16, 2))
  proc = run_evaluator(f'--predictions={pred_file}', f'--annotations={bad}')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and 'ann.h5' in lines[0]
