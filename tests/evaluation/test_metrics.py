"""Tests of rhpe_jax.evaluation.metrics against hand computations and real MPII ground truth."""
import pathlib

import h5py
import numpy as np
import pytest

from tests.conftest import SHARED_DATA

from rhpe_jax.evaluation import metrics
from rhpe_jax.core import keypoint_sets

DATA = SHARED_DATA
VALID_H5 = DATA / 'mpii_valid' / 'valid.h5'

# Hand example: 2 persons, head sizes 10 and 20 (radius 5 and 10 px at 0.5).
# Errors (px) per joint, applied along +x except joint 1 of person 0, moved by
# (3, 4) -> exactly 5 px.
ERRORS = np.array([
    [1, 5, 6, 0, 2, 9, 100, 100, 4, 4, 5, 7, 0, 0, 3, 20],
    [12, 10, 10.5, 0, 30, 1, 0, 0, 9, 11, 0, 0, 10, 0, 0, 0],
], dtype=np.float64)
MASK = np.ones((2, 16), bool)
MASK[1, 0] = MASK[1, 15] = MASK[0, 5] = False  # no ground truth
HEAD = np.array([10.0, 20.0])
# Worked out by hand from ERRORS and MASK (correct / counted per joint):
# j0 1/1, j1 2/2, j2 0/2, j3 2/2, j4 1/2, j5 1/1, j6 1/2, j7 1/2, j8 2/2,
# j9 1/2, j10 2/2, j11 1/2, j12 2/2, j13 2/2, j14 2/2, j15 0/1.
EXPECTED_PER_JOINT = [100, 100, 0, 100, 50, 100, 50, 50, 100, 50, 100, 50, 100, 100, 100, 0]
EXPECTED_COUNTS = [1, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1]
# Columns = mean of the two joints' PCKh, e.g. Head = (100 + 50) / 2.
EXPECTED_GROUPS = {'Head': 75.0, 'Shoulder': 100.0, 'Elbow': 75.0, 'Wrist': 50.0,
                   'Hip': 50.0, 'Knee': 75.0, 'Ankle': 100.0}
# Total: 19 correct of 25 counted joints without pelvis/thorax = 76.0 (the mean
# of per-joint values would be 75.0; with pelvis and thorax 21 / 29 = 72.4).
EXPECTED_TOTAL = 76.0


def hand_example():
  rng = np.random.default_rng(0)
  gt = rng.uniform(50, 500, size=(2, 16, 2)).round()
  pred = gt.copy()
  pred[..., 0] += ERRORS
  pred[0, 1] = gt[0, 1] + [3.0, 4.0]
  # Joints without ground truth get far-off predictions: they must not count.
  pred[~MASK] = gt[~MASK] + 1000.0
  return pred, gt


def test_pckh_hand_example():
  pred, gt = hand_example()
  result = metrics.pckh(pred, gt, MASK, HEAD)
  np.testing.assert_allclose(result['per_joint'], EXPECTED_PER_JOINT)
  np.testing.assert_array_equal(result['counts'], EXPECTED_COUNTS)
  for name, value in EXPECTED_GROUPS.items():
    assert result['groups'][name] == pytest.approx(value), name
  assert result['Total'] == pytest.approx(EXPECTED_TOTAL)


def test_pckh_accepts_status_codes_as_mask():
  pred, gt = hand_example()
  status = np.where(MASK, keypoint_sets.OCCLUDED, keypoint_sets.MISSING)
  status[0, :4] = keypoint_sets.VISIBLE
  result = metrics.pckh(pred, gt, status, HEAD)
  assert result['Total'] == pytest.approx(EXPECTED_TOTAL)


def test_pckh_boundary_is_inclusive():
  gt = np.zeros((1, 16, 2))
  pred = gt.copy()
  pred[0, :, 0] = 5.0  # exactly 0.5 x head size 10
  mask = np.ones((1, 16), bool)
  assert metrics.pckh(pred, gt, mask, [10.0])['Total'] == 100.0
  assert metrics.pckh(pred, gt, mask, [10.0], threshold=0.49)['Total'] == 0.0
  pred[0, :, 0] = 5.001
  assert metrics.pckh(pred, gt, mask, [10.0])['Total'] == 0.0


def test_nan_prediction_counts_as_wrong():
  gt = np.zeros((1, 16, 2))
  pred = gt.copy()
  pred[0, 0] = np.nan
  pred[0, 1] = np.inf
  result = metrics.pckh(pred, gt, np.ones((1, 16), bool), [10.0])
  assert result['per_joint'][0] == 0.0 and result['per_joint'][1] == 0.0
  assert result['Total'] == pytest.approx(100.0 * 12 / 14)


def test_joint_never_annotated_is_nan_and_left_out_of_its_group():
  gt = np.zeros((1, 16, 2))
  mask = np.ones((1, 16), bool)
  mask[0, 9] = False  # head top
  pred = gt.copy()
  pred[0, 8, 0] = 100.0  # upper neck wrong
  result = metrics.pckh(pred, gt, mask, [10.0])
  assert np.isnan(result['per_joint'][9]) and result['counts'][9] == 0
  assert result['groups']['Head'] == 0.0  # only the upper neck is left
  assert result['Total'] == pytest.approx(100.0 * 12 / 13)


def test_auc_hand_example():
  # One person, head size 1, two counted joints off by 0.1 and 0.3: PCKh is
  # 0 below 0.1, 50 from 0.1, 100 from 0.3. Trapezoids on the 51 thresholds
  # scaled to [0, 1]: (25 + 19 * 50 + 75 + 20 * 100) / 50 = 61.0 (the mean
  # of the 51 values would be 60.78).
  gt = np.zeros((1, 16, 2))
  pred = gt.copy()
  pred[0, 0, 0] = 0.1
  pred[0, 1, 1] = 0.3
  mask = np.zeros((1, 16), bool)
  mask[0, :2] = True
  result = metrics.pckh(pred, gt, mask, [1.0])
  assert result['AUC'] == pytest.approx(61.0)
  curve = metrics.pck_curve(pred, gt, mask, [1.0])
  expected = np.array([0.0] * 10 + [50.0] * 20 + [100.0] * 21)
  np.testing.assert_array_equal(curve, expected)
  assert metrics.auc(metrics.PCKH_AUC_THRESHOLDS, expected) == pytest.approx(61.0)


def test_auc_thresholds_match_matlab_range():
  assert len(metrics.PCKH_AUC_THRESHOLDS) == 51
  assert metrics.PCKH_AUC_THRESHOLDS[0] == 0.0 and metrics.PCKH_AUC_THRESHOLDS[-1] == 0.5
  assert metrics.PCKH_AUC_THRESHOLDS[35] == 0.35


def test_auc_rejects_bad_input():
  with pytest.raises(ValueError, match='auc'):
    metrics.auc([0.0], [1.0])
  with pytest.raises(ValueError, match='increasing'):
    metrics.auc([0.0, 0.2, 0.1], [1.0, 2.0, 3.0])


def test_pckh_rejects_bad_shapes_and_head_sizes():
  gt = np.zeros((2, 16, 2))
  with pytest.raises(ValueError, match='pred shape'):
    metrics.pckh(np.zeros((2, 15, 2)), gt, np.ones((2, 16)), [1.0, 1.0])
  with pytest.raises(ValueError, match='head_size'):
    metrics.pckh(gt, gt, np.ones((2, 16)), [1.0, 0.0])
  with pytest.raises(ValueError, match='mask'):
    metrics.pckh(gt, gt, np.ones((2, 15)), [1.0, 1.0])


def test_visibility_ap_hand_example():
  # Ranked annotated scores 0.9 V, 0.8 O, 0.7 V, 0.6 V, 0.5 O (V = visible).
  # Precision at the three positives: 1/1, 2/3, 3/4 -> AP = 29/36.
  # The unannotated joint (score 1.0) is left out.
  scores = np.array([[0.7, 0.9, 1.0], [0.5, 0.6, 0.8]])
  visible = np.array([[1, 1, 0], [0, 1, 0]])
  annotated = np.array([[1, 1, 0], [1, 1, 1]])
  ap, precision, recall = metrics.visibility_average_precision(scores, visible, annotated)
  assert ap == pytest.approx(29 / 36)
  np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
  np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 1, 1])


def test_visibility_ap_ties_do_not_depend_on_order():
  # Scores 0.9 (V), 0.9 (O), 0.5 (V): the tie enters at once: P = 1/2 at
  # R = 1/2, then P = 2/3 at R = 1 -> AP = 1/4 + 1/3.
  for visible in ([1, 0, 1], [0, 1, 1]):
    ap, _, _ = metrics.visibility_average_precision(
        np.array([0.9, 0.9, 0.5]), np.array(visible), np.ones(3))
    assert ap == pytest.approx(0.25 + 1 / 3)


def test_visibility_ap_needs_a_positive():
  with pytest.raises(ValueError, match='visible'):
    metrics.visibility_average_precision(np.ones(3), np.zeros(3), np.ones(3))


def torso_example(skel):
  gt = np.zeros((1, skel.num_keypoints, 2))
  gt[0, skel.keypoint_index('l_shoulder')] = [0.0, 0.0]
  gt[0, skel.keypoint_index('r_hip')] = [3.0, 4.0]  # diagonal 5
  gt[0, skel.keypoint_index('r_shoulder')] = [10.0, 0.0]
  gt[0, skel.keypoint_index('l_hip')] = [10.0, 12.0]  # diagonal 12
  return gt


@pytest.mark.parametrize('skel', [keypoint_sets.LSP, keypoint_sets.MPII])
def test_torso_definitions_hand_values(skel):
  gt = torso_example(skel)
  np.testing.assert_allclose(metrics.torso_size(gt, 'lsp_diagonal', skel), [5.0])
  np.testing.assert_allclose(metrics.torso_size(gt, 'mean_diagonals', skel), [8.5])
  with pytest.raises(ValueError, match='torso definition'):
    metrics.torso_size(gt, 'hips', skel)


def test_pck_lsp_hand_example():
  # Torso 5 and 10 -> radius 1 and 2 px at 0.2. Person 0: every joint off by
  # 1 px (correct) except the head top, off by 1.5 (wrong). Person 1: every
  # joint off by 2 px (correct) except both wrists off by 2.5 (wrong).
  gt = np.zeros((2, 14, 2))
  pred = gt.copy()
  pred[0, :, 1] = 1.0
  pred[0, 13, 1] = 1.5
  pred[1, :, 1] = 2.0
  pred[1, [6, 11], 1] = 2.5
  result = metrics.pck(pred, gt, np.ones((2, 14)), [5.0, 10.0])
  expected = np.full(14, 100.0)
  expected[[13, 6, 11]] = 50.0
  np.testing.assert_allclose(result['per_joint'], expected)
  assert result['groups']['Head'] == 75.0  # neck 100, head top 50
  assert result['groups']['Wrist'] == 50.0
  assert result['groups']['Ankle'] == 100.0
  assert result['Total'] == pytest.approx(100.0 * 25 / 28)
  assert 'AUC' not in result


def test_torso_with_a_missing_end_is_undefined():
  # Person 1's right hip is missing (status 0, stored at (0, 0) as LSPET's
  # reader stores it): its torso is not the distance to (0, 0) but undefined.
  gt = np.concatenate([torso_example(keypoint_sets.LSP)] * 2)
  status = np.full((2, 14), 2)
  status[1, keypoint_sets.LSP.keypoint_index('r_hip')] = 0
  gt[1, keypoint_sets.LSP.keypoint_index('r_hip')] = [0.0, 0.0]
  torso = metrics.torso_size(gt, 'lsp_diagonal', keypoint_sets.LSP, status)
  assert torso[0] == 5.0 and np.isnan(torso[1])
  assert np.all(np.isnan(metrics.torso_size(gt, 'mean_diagonals', keypoint_sets.LSP, status)[1:]))


def test_pck_leaves_out_persons_without_a_torso():
  # Person 0: torso 5 (radius 1 at 0.2), every joint 0.5 px off: all correct.
  # Person 1: no torso; all its joints 100 px off. Had it counted (with any
  # finite torso under 500), PCK would be 50 %; left out, PCK is 100 %.
  gt = np.zeros((2, 14, 2))
  pred = gt.copy()
  pred[0, :, 0] = 0.5
  pred[1, :, 0] = 100.0
  result = metrics.pck(pred, gt, np.ones((2, 14)), [5.0, np.nan])
  assert result['Total'] == 100.0
  assert result['counts'].tolist() == [1] * 14
  assert result['persons_without_torso'] == 1


def test_format_table_mpii_and_lsp():
  pred, gt = hand_example()
  table = metrics.format_table(metrics.pckh(pred, gt, MASK, HEAD), keypoint_sets.MPII)
  header, row = table.splitlines()
  assert header.split()[1:] == ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee',
                                'Ankle', 'Total', 'AUC']
  assert row.split()[:8] == ['75.0', '100.0', '75.0', '50.0', '50.0', '75.0',
                             '100.0', '76.0']
  lsp = metrics.pck(np.zeros((1, 14, 2)), np.zeros((1, 14, 2)), np.ones((1, 14)), [1.0])
  header, row = metrics.format_table(lsp, keypoint_sets.LSP).splitlines()
  assert header.split()[-1] == 'Total' and row.split() == ['100.0'] * 8


# --- Real MPII validation ground truth -------------------------------------

@pytest.fixture(scope='module')
def valid():
  if not VALID_H5.is_file():
    pytest.skip(f'real MPII validation data not found at {VALID_H5}')
  with h5py.File(VALID_H5, 'r') as f:
    part = f['part'][()]
    normalize = f['normalize'][()]
  annotated = ~np.all(part == 0, axis=-1)
  return part, annotated, normalize


def test_valid_ground_truth_scores_100(valid):
  part, annotated, normalize = valid
  result = metrics.pckh(part, part, annotated, normalize)
  counted = annotated.sum(axis=0)
  np.testing.assert_array_equal(result['per_joint'], np.full(16, 100.0))
  np.testing.assert_array_equal(result['counts'], counted)
  assert all(v == 100.0 for v in result['groups'].values())
  assert result['Total'] == 100.0 and result['AUC'] == 100.0
  # 2958 persons x 16 joints minus the 3088 stored as (0, 0).
  assert counted.sum() == 2958 * 16 - 3088


@pytest.mark.parametrize('factor, expected', [(0.5, 100.0), (0.51, 0.0)])
def test_valid_moved_by_fraction_of_head_size(valid, factor, expected):
  part, annotated, normalize = valid
  angle = np.random.default_rng(1).uniform(0, 2 * np.pi, size=part.shape[:2])
  step = factor * normalize[:, None]
  pred = part + np.stack([step * np.cos(angle), step * np.sin(angle)], axis=-1)
  result = metrics.pckh(pred, part, annotated, normalize)
  assert result['Total'] == expected
  np.testing.assert_array_equal(result['per_joint'], np.full(16, expected))


def test_valid_known_perturbation_of_a_subset(valid):
  # Every third person: right wrist and left ankle moved by 0.7 x head size
  # (wrong), left knee by 0.3 x (still right). Expected values by counting.
  part, annotated, normalize = valid
  pred = part.astype(np.float64).copy()
  rows = np.arange(part.shape[0]) % 3 == 0
  pred[rows, 10, 0] += 0.7 * normalize[rows]
  pred[rows, 5, 1] -= 0.7 * normalize[rows]
  pred[rows, 4, 0] += 0.3 * normalize[rows]
  result = metrics.pckh(pred, part, annotated, normalize)
  counts = annotated.sum(axis=0)
  wrong = {j: int(np.sum(annotated[rows, j])) for j in (10, 5)}
  for j in (10, 5):
    assert result['per_joint'][j] == pytest.approx(100.0 * (counts[j] - wrong[j]) / counts[j])
  assert result['per_joint'][4] == 100.0
  assert result['groups']['Wrist'] == pytest.approx(
      (100.0 * (counts[10] - wrong[10]) / counts[10] + 100.0) / 2)
  total_joints = list(keypoint_sets.MPII_TOTAL_JOINTS)
  total = counts[total_joints].sum()
  assert result['Total'] == pytest.approx(100.0 * (total - wrong[10] - wrong[5]) / total)


def test_pck_on_coco_keypoints_against_numpy():
  """PCK@0.2 of the COCO set: torso left_shoulder (5) to right_hip (12),
  groups by name without side (Nose, Eye, ..., Ankle), Total over all 17;
  a person with an unannotated torso end left out and counted."""
  rng = np.random.default_rng(3)
  gt = rng.uniform(0, 200, (5, 17, 2))
  pred = gt + rng.normal(0, 8, gt.shape)
  status = rng.choice([0, 1, 2], (5, 17), p=[0.2, 0.3, 0.5])
  status[:, [5, 12]] = 2
  status[4, 12] = 0  # person 4: no right hip, no torso
  torso = metrics.torso_size(gt, 'lsp_diagonal', keypoint_sets.COCO, status)
  result = metrics.pck(pred, gt, status, torso, threshold=0.2, keypoint_set=keypoint_sets.COCO)
  # By hand.
  size = np.hypot(*(gt[:4, 5] - gt[:4, 12]).T)
  dist = np.hypot(*(pred[:4] - gt[:4]).transpose(2, 0, 1)) / size[:, None]
  counted = status[:4] > 0
  correct = (dist <= 0.2) & counted
  per_joint = 100.0 * correct.sum(0) / counted.sum(0)
  np.testing.assert_allclose(result['per_joint'], per_joint)
  assert result['Total'] == pytest.approx(100.0 * correct.sum() / counted.sum())
  assert result['persons_without_torso'] == 1
  names = ['Nose', 'Eye', 'Ear', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle']
  assert list(result['groups']) == names
  groups = [(0,), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
  for name, ids in zip(names, groups):
    assert result['groups'][name] == pytest.approx(np.nanmean(per_joint[list(ids)]))
  header, row = metrics.format_table(result, keypoint_sets.COCO).splitlines()
  assert header.split() == ['PCK@0.2'] + names + ['Total']
  # mean_diagonals: with right_shoulder (6) to left_hip (11).
  both = metrics.torso_size(gt, 'mean_diagonals', keypoint_sets.COCO)
  np.testing.assert_allclose(both, 0.5 * (np.hypot(*(gt[:, 5] - gt[:, 12]).T)
                                          + np.hypot(*(gt[:, 6] - gt[:, 11]).T)))


def test_generic_groups_and_a_set_without_a_torso():
  lspet = keypoint_sets.KeypointSet(
      name='lspet_coco', keypoint_names=('right_ankle', 'left_ankle', 'Left Shoulder',
                                      'r_shoulder', 'right_hip', 'l_hip', 'neck', 'head_top'),
      flip_pairs=((0, 1),), part_pairs=((6, 7),))
  assert metrics.generic_table_groups(lspet) == (
      ('Ankle', (0, 1)), ('Shoulder', (2, 3)), ('Hip', (4, 5)), ('Neck', (6,)),
      ('Head top', (7,)))
  gt = np.zeros((1, 8, 2))
  gt[0, 2], gt[0, 4] = [0, 0], [3, 4]
  np.testing.assert_allclose(metrics.torso_size(gt, 'lsp_diagonal', lspet), [5.0])
  face = keypoint_sets.KeypointSet(name='face', keypoint_names=('nose', 'left_eye', 'right_eye'),
                           flip_pairs=((1, 2),), part_pairs=())
  with pytest.raises(ValueError, match="'face' has no left_shoulder, right_hip: no torso"):
    metrics.torso_size(np.zeros((1, 3, 2)), 'lsp_diagonal', face)
