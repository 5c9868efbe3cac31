"""The evaluation path on hand-made cases: collect -> original pixels -> PCK(h),
curves, visibility AP, box scales. (Heat-map resampling for scale averaging:
tests/inference/test_predictor.py; finding and restoring checkpoints:
tests/test_checkpoints.py.)"""
from __future__ import annotations

import h5py
import ml_collections
import numpy as np
import pytest

from rhpe_jax.evaluation import evaluator as evaluation
from rhpe_jax.evaluation import prediction_io
from rhpe_jax.core import keypoint_sets


def _mpii_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict({
      'keypoint_set': 'mpii', 'eval_metric': 'pckh', 'eval_pck_threshold': 0.5,
      'torso_definition': 'lsp_diagonal'})
  config.update(overrides)
  return config


def _hand_made_batches():
  """Two persons, crops at 2x zoom with offsets; predictions with known errors.

  Ground truth of joint j of person p sits at input pixel (10 + j, 20 + p);
  input_to_image = 2 * x + (100, 50) for person 0, 3 * x + (7, 9) for person 1.
  Head sizes 10 and 12 original pixels, so PCKh@0.5 allows 5 and 6 pixels,
  i.e. 2.5 and 2 input pixels. Predictions move joint j along x by:
    person 0: 2.5 (exactly on the threshold: correct) for j < 8, 2.51 for j >= 8
    person 1: 0 for even j, 2.01 for odd j (wrong); joint 15 not annotated.
  """
  gt = np.zeros((2, 16, 2), np.float32)
  for p in range(2):
    gt[p, :, 0] = 10 + np.arange(16)
    gt[p, :, 1] = 20 + p
  shift = np.zeros((2, 16), np.float32)
  shift[0, :8], shift[0, 8:] = 2.5, 2.51
  shift[1, 1::2] = 2.01
  pred = gt.copy()
  pred[..., 0] += shift
  status = np.full((2, 16), keypoint_sets.VISIBLE, np.int32)
  status[1, 15] = keypoint_sets.MISSING
  status[0, 3] = keypoint_sets.OCCLUDED
  affine = np.array([[[2, 0, 100], [0, 2, 50]], [[3, 0, 7], [0, 3, 9]]], np.float32)
  batch = {
      'image': np.zeros((1, 2, 4, 4, 3), np.uint8),
      'valid': np.array([[1, 1]], np.int32),
      'keypoints': gt[None], 'keypoint_status': status[None],
      'input_to_image': affine[None], 'head_size': np.array([[10.0, 12.0]], np.float32),
      'image_index': np.array([[5, 6]], np.int32), 'person_index': np.array([[0, 0]], np.int32),
  }
  padding = {k: np.zeros_like(v) for k, v in batch.items()}  # a padded row (valid = 0)
  padded = {k: np.concatenate([v, padding[k]], axis=1) for k, v in batch.items()}
  predictions = np.concatenate([pred, np.full_like(pred, 999)])[None]
  return [padded], predictions, status


def test_collected_predictions_give_hand_computed_pckh():
  batches, pred, status = _hand_made_batches()

  def fake_eval_step(state, batch):
    del state
    return {'keypoints': pred, 'confidence': np.ones(pred.shape[:-1]),
            'loss': np.zeros(1)}

  collected = evaluation.collect_predictions(fake_eval_step, None, batches)
  assert collected['pred_image'].shape == (2, 16, 2)  # the padding row is dropped
  # Person 0's right ankle: input (12.5, 20) -> original (125, 90).
  np.testing.assert_allclose(collected['pred_image'][0, 0], [125.0, 90.0])
  np.testing.assert_allclose(collected['gt_image'][1, 2], [3 * 12 + 7, 3 * 21 + 9])
  result = evaluation.score(_mpii_config(), collected)
  expected = np.empty(16)
  for j in range(16):
    person0 = 1.0 if j < 8 else 0.0
    person1 = 1.0 if j % 2 == 0 else 0.0
    expected[j] = 100 * (person0 + person1) / 2 if j != 15 else 100 * person0
  np.testing.assert_allclose(result['per_joint'], expected)
  # Head = mean(upper neck 8, head top 9) = mean(50, 0); Total leaves out 6, 7.
  assert result['groups']['Head'] == pytest.approx(25.0)
  assert result['groups']['Ankle'] == pytest.approx(np.mean([expected[0], expected[5]]))
  total_ids = [j for j in range(16) if j not in (6, 7)]
  correct = sum((j < 8) + (j % 2 == 0 and j != 15) for j in total_ids)
  counted = 2 * len(total_ids) - 1
  assert result['Total'] == pytest.approx(100 * correct / counted)


def test_one_based_files_round_trip_exactly(tmp_path):
  rng = np.random.default_rng(0)
  preds = (rng.uniform(-50, 1500, (7, 16, 2))).astype(np.float32)
  path = tmp_path / 'preds.h5'
  prediction_io.save_predictions(path, preds)
  with h5py.File(path) as f:
    stored = f['preds'][()]
  assert stored.shape == (7, 16, 2)
  np.testing.assert_array_equal(stored, preds.astype(np.float64) + 1.0)
  np.testing.assert_array_equal(prediction_io.load_predictions(path), preds.astype(np.float64))


def _numpy_curve(pred, gt, mask, norm, thresholds, joints):
  out = []
  for t in thresholds:
    hits = total = 0
    for n in range(len(gt)):
      for j in joints:
        if mask[n, j]:
          total += 1
          hits += np.linalg.norm(pred[n, j] - gt[n, j]) / norm[n] <= t + 1e-12
    out.append(100.0 * hits / total)
  return np.array(out)


def test_accuracy_curves_match_a_loop():
  rng = np.random.default_rng(1)
  gt = rng.uniform(0, 100, (5, 16, 2))
  pred = gt + rng.normal(0, 3, gt.shape)
  status = rng.integers(0, 3, (5, 16))
  status[:3, [2, 3, 12, 13]] = 2  # persons 0-2 have a torso (hips, shoulders)
  predictions = {'pred_image': pred, 'gt_image': gt, 'keypoint_status': status,
                 'head_size': np.full(5, 10.0)}
  curves = evaluation.accuracy_curves(_mpii_config(), predictions)
  np.testing.assert_allclose(curves['thresholds'], np.arange(51) / 100)
  mask = status > 0
  np.testing.assert_allclose(
      curves['curves']['Wrist'], _numpy_curve(pred, gt, mask, np.full(5, 10.0),
                                               curves['thresholds'], (10, 15)))
  total = _numpy_curve(pred, gt, mask, np.full(5, 10.0), curves['thresholds'],
                       [j for j in range(16) if j not in (6, 7)])
  np.testing.assert_allclose(curves['curves']['Total'], total)
  trapezoid = sum(0.5 * (total[i] + total[i + 1]) for i in range(50)) / 50
  assert curves['auc'] == pytest.approx(trapezoid)
  # PCK: thresholds 0..0.2, torso = mean of the two shoulder-hip diagonals.
  config = _mpii_config(eval_metric='pck', eval_pck_threshold=0.2,
                        torso_definition='mean_diagonals')
  curves = evaluation.accuracy_curves(config, predictions)
  np.testing.assert_allclose(curves['thresholds'], np.arange(21) / 100)
  torso = 0.5 * (np.linalg.norm(gt[:, 13] - gt[:, 2], axis=-1)
                 + np.linalg.norm(gt[:, 12] - gt[:, 3], axis=-1))
  # A person with a missing shoulder or hip has no torso and is left out.
  has_torso = np.all(status[:, [2, 3, 12, 13]] > 0, axis=1)
  assert 0 < has_torso.sum() < 5
  np.testing.assert_allclose(
      curves['curves']['Knee'],
      _numpy_curve(pred, gt, mask & has_torso[:, None], np.where(has_torso, torso, 1.0),
                   curves['thresholds'], (1, 4)))


def test_visibility_ap_by_hand():
  # Ranked scores: V, O, V, (missing), O -> precisions at positives 1/1, 2/3.
  status = np.array([[2, 1, 2, 0, 1]])
  scores = np.array([[0.9, 0.8, 0.7, 5.0, 0.1]])
  vis = evaluation.visibility({'keypoint_status': status, 'confidence': scores})
  assert vis['ap'] == pytest.approx((1.0 + 2 / 3) / 2)
  assert vis['num_visible'] == 2 and vis['num_occluded'] == 2
  assert evaluation.visibility({'keypoint_status': np.array([[2, 2, 0]]),
                                'confidence': np.ones((1, 3))}) is None


def test_parse_scales():
  assert evaluation.parse_scales('0.9,1.0,1.1') == (1.0, 0.9, 1.1)
  assert evaluation.parse_scales('1') == (1.0,)
  for bad in ('a,b', '0.9,1.1', '1,-1', ''):
    with pytest.raises(ValueError, match='scales'):
      evaluation.parse_scales(bad)


def test_evaluator_scores_what_the_function_it_is_given_predicts(tiny_data_dir):
  """The in-training Evaluator runs the eval function it receives over the
  split: predicting the ground truth scores 100 on every person, and the
  loss is the function's."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  config.num_summary_images = 2
  seen = []

  def ground_truth(state, batch):
    seen.append(state)
    return {'keypoints': batch['keypoints'], 'confidence': np.ones(batch['keypoints'].shape[:-1]),
            'loss': np.full(batch['keypoints'].shape[:1], 0.25)}

  result = evaluation.Evaluator(config, ground_truth).evaluate('the state')
  assert seen and set(seen) == {'the state'}
  assert result['score'] == result['scalars']['total'] == pytest.approx(100.0)
  assert result['scalars']['loss'] == pytest.approx(0.25)
  assert len(result['predictions']['pred']) == 6  # the whole split (num_eval_examples -1)
  assert result['predictions']['images'].shape == (2, 64, 64, 3)
