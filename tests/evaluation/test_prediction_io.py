"""Tests of rhpe_jax.evaluation.prediction_io: community files written/read independently."""
import json
import pathlib

import h5py
import numpy as np
import pytest

from tests.conftest import SHARED_DATA
import scipy.io

from rhpe_jax.evaluation import metrics
from rhpe_jax.evaluation import prediction_io
from rhpe_jax.core import keypoint_sets

DATA = SHARED_DATA
VALID_H5 = DATA / 'mpii_valid' / 'valid.h5'


def random_preds(n=5, j=16, seed=0):
  """0-based float32 predictions, as the network produces them."""
  return np.random.default_rng(seed).uniform(-20, 1300, size=(n, j, 2)).astype(np.float32)


@pytest.mark.parametrize('name', ['p.h5', 'p.hdf5', 'p.mat'])
def test_save_writes_one_based_njc_and_round_trips_exactly(tmp_path, name):
  preds = random_preds()
  path = tmp_path / name
  prediction_io.save_predictions(path, preds)
  if name.endswith('.mat'):
    stored = scipy.io.loadmat(path)['preds']
  else:
    with h5py.File(path, 'r') as f:
      stored = f['preds'][()]
  assert stored.shape == (5, 16, 2)
  np.testing.assert_array_equal(stored, preds.astype(np.float64) + 1.0)
  loaded = prediction_io.load_predictions(path)
  assert loaded.shape == (5, 16, 2)
  np.testing.assert_array_equal(loaded, preds.astype(np.float64))


@pytest.mark.parametrize('suffix', ['.h5', '.mat'])
@pytest.mark.parametrize('matlab_layout', [False, True])
def test_load_both_layouts_written_by_others(tmp_path, suffix, matlab_layout):
  one_based = np.random.default_rng(1).uniform(1, 1000, size=(7, 16, 2)).round(3)
  stored = np.transpose(one_based, (2, 1, 0)) if matlab_layout else one_based
  path = tmp_path / f'preds{suffix}'
  if suffix == '.mat':
    scipy.io.savemat(path, {'preds': stored})
  else:
    with h5py.File(path, 'w') as f:
      f['preds'] = stored
  np.testing.assert_allclose(prediction_io.load_predictions(path), one_based - 1.0,
                             rtol=0, atol=1e-12)


def test_load_hand_value(tmp_path):
  path = tmp_path / 'p.h5'
  with h5py.File(path, 'w') as f:
    f['preds'] = np.array([[[1.0, 1.0], [804.0, 711.0]]])
  np.testing.assert_array_equal(prediction_io.load_predictions(path),
                                [[[0.0, 0.0], [803.0, 710.0]]])


def test_missing_file_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such file'):
    prediction_io.load_predictions(tmp_path / 'absent.h5')


def test_unknown_extension_raises(tmp_path):
  path = tmp_path / 'p.txt'
  path.write_text('1 2 3')
  with pytest.raises(ValueError, match='unknown prediction file type'):
    prediction_io.load_predictions(path)


def test_no_preds_raises(tmp_path):
  h5 = tmp_path / 'p.h5'
  with h5py.File(h5, 'w') as f:
    f['other'] = np.zeros((3, 16, 2))
  with pytest.raises(ValueError, match='no dataset named "preds"'):
    prediction_io.load_predictions(h5)
  mat = tmp_path / 'p.mat'
  scipy.io.savemat(mat, {'other': np.zeros((3, 16, 2))})
  with pytest.raises(ValueError, match='no variable named "preds"'):
    prediction_io.load_predictions(mat)


def test_wrong_shape_raises(tmp_path):
  path = tmp_path / 'p.h5'
  with h5py.File(path, 'w') as f:
    f['preds'] = np.zeros((3, 16, 3))
  with pytest.raises(ValueError, match=r'\(N, J, 2\) or \(2, J, N\)'):
    prediction_io.load_predictions(path)


def test_not_an_hdf5_file_raises(tmp_path):
  for name in ('p.h5', 'p.mat'):
    path = tmp_path / name
    path.write_bytes(b'this is not a pose file')
    with pytest.raises(ValueError, match='not a readable'):
      prediction_io.load_predictions(path)


def test_save_rejects_bad_shape(tmp_path):
  with pytest.raises(ValueError, match=r'\(N, J, 2\)'):
    prediction_io.save_predictions(tmp_path / 'p.h5', np.zeros((3, 16)))


def write_valid_layout(path, part, visible, normalize, **extra):
  with h5py.File(path, 'w') as f:
    f['part'] = part
    f['visible'] = visible
    f['normalize'] = normalize
    for k, v in extra.items():
      f[k] = v


def test_load_annotations_small_file(tmp_path):
  part = np.zeros((2, 16, 2))
  part[0, 0] = [11.0, 21.0]
  part[0, 1] = [0.0, 5.0]  # x = 0 is a real (edge) coordinate, not missing
  part[1, 9] = [100.0, 50.0]
  visible = np.zeros((2, 16))
  visible[0, 0] = 1
  path = tmp_path / 'valid.h5'
  write_valid_layout(path, part, visible, np.array([30.0, 40.0]),
                     center=np.array([[101.0, 201.0], [1.0, 1.0]]),
                     imgname=np.array([b'a.jpg', b'b.jpg']),
                     index=np.array([3.0, 4.0]))
  a = prediction_io.load_mpii_annotations(path)
  np.testing.assert_array_equal(a['keypoints'][0, 0], [10.0, 20.0])
  np.testing.assert_array_equal(a['keypoints'][0, 1], [-1.0, 4.0])
  np.testing.assert_array_equal(a['keypoints'][0, 2], [0.0, 0.0])
  expected_status = np.zeros((2, 16), np.int32)
  expected_status[0, 0] = keypoint_sets.VISIBLE
  expected_status[0, 1] = keypoint_sets.OCCLUDED
  expected_status[1, 9] = keypoint_sets.OCCLUDED
  np.testing.assert_array_equal(a['status'], expected_status)
  np.testing.assert_array_equal(a['head_size'], [30.0, 40.0])
  np.testing.assert_array_equal(a['center'], [[100.0, 200.0], [0.0, 0.0]])
  assert a['image_name'] == ['a.jpg', 'b.jpg']
  np.testing.assert_array_equal(a['index'], [3, 4])


def test_load_annotations_bad_files(tmp_path):
  with pytest.raises(FileNotFoundError):
    prediction_io.load_mpii_annotations(tmp_path / 'absent.h5')
  path = tmp_path / 'bad.h5'
  with h5py.File(path, 'w') as f:
    f['part'] = np.zeros((2, 16, 2))
  with pytest.raises(ValueError, match=r"missing \['visible', 'normalize'\]"):
    prediction_io.load_mpii_annotations(path)
  path = tmp_path / 'bad2.h5'
  write_valid_layout(path, np.zeros((2, 14, 2)), np.zeros((2, 14)), np.ones(2))
  with pytest.raises(ValueError, match='"part" must have shape'):
    prediction_io.load_mpii_annotations(path)


def test_load_real_valid_h5():
  if not VALID_H5.is_file():
    pytest.skip(f'real MPII validation data not found at {VALID_H5}')
  a = prediction_io.load_mpii_annotations(VALID_H5)
  assert a['keypoints'].shape == (2958, 16, 2)
  # First person (005808361.jpg): right ankle at MATLAB (804, 711), all visible,
  # head size 117.96 (values read from the file with h5py by hand).
  np.testing.assert_array_equal(a['keypoints'][0, 0], [803.0, 710.0])
  assert np.all(a['status'][0] == keypoint_sets.VISIBLE)
  assert a['head_size'][0] == pytest.approx(117.96219733)
  assert a['image_name'][0] == '005808361.jpg'
  assert int(a['index'][0]) == 6 and int(a['person'][0]) == 0
  # 3088 joints are stored as (0, 0), i.e. not annotated.
  assert int(np.sum(a['status'] == keypoint_sets.MISSING)) == 3088
  # Writing the 0-based ground truth as a community file gives back valid.h5's
  # 1-based `part` exactly.
  with h5py.File(VALID_H5, 'r') as f:
    part = f['part'][()]
  annotated = a['status'] != keypoint_sets.MISSING
  np.testing.assert_array_equal((a['keypoints'] + 1.0)[annotated], part[annotated])


def test_two_person_files_follow_evalmpii_layout_rule(tmp_path):
  # N = 2 is ambiguous: evalMPII permutes a .mat `preds` with 2 rows, and an
  # HDF5 dataset (which MATLAB sees with reversed axes) whose last axis is 2
  # stays as it is.
  one_based = np.arange(1.0, 65.0).reshape(2, 16, 2)
  mat = tmp_path / 'two.mat'
  scipy.io.savemat(mat, {'preds': np.transpose(one_based, (2, 1, 0))})
  np.testing.assert_array_equal(prediction_io.load_predictions(mat), one_based - 1)
  h5 = tmp_path / 'two.h5'
  with h5py.File(h5, 'w') as f:
    f['preds'] = one_based
  np.testing.assert_array_equal(prediction_io.load_predictions(h5), one_based - 1)
  # Saving two persons to .mat stores the layout that reads back correctly.
  out = tmp_path / 'saved.mat'
  prediction_io.save_predictions(out, one_based - 1)
  assert scipy.io.loadmat(out)['preds'].shape == (2, 16, 2)
  np.testing.assert_array_equal(prediction_io.load_predictions(out), one_based - 1)


# ----------------------------------------------------------------------------
# Flags and placeholders of the real valid.h5 (docs/annotations.md). The counts
# were read from the file with h5py by hand; the expectations below are
# recomputed from the raw arrays, not from the code under test.

SAMPLE_JSON = DATA / 'mpii_sample' / 'annotations.json'


def _raw_valid_h5() -> dict:
  if not VALID_H5.is_file():
    pytest.skip(f'real MPII validation data not found at {VALID_H5}')
  with h5py.File(VALID_H5, 'r') as f:
    return {k: f[k][()] for k in ('part', 'visible', 'center', 'scale', 'imgname')}


def test_real_valid_h5_zero_is_missing_and_visible_zero_is_occluded():
  raw = _raw_valid_h5()
  part, visible = raw['part'], raw['visible']
  placeholder = np.all(part == 0, axis=-1)
  assert placeholder.sum() == 3088
  assert not np.any(visible[placeholder])  # the placeholder is never flagged visible
  occluded = ~placeholder & (visible == 0)
  assert occluded.sum() == 10243  # annotated, not visible: real locations
  a = prediction_io.load_mpii_annotations(VALID_H5)
  np.testing.assert_array_equal(a['status'] == keypoint_sets.MISSING, placeholder)
  np.testing.assert_array_equal(a['status'] == keypoint_sets.OCCLUDED, occluded)
  np.testing.assert_array_equal(a['status'] == keypoint_sets.VISIBLE, visible == 1)
  assert np.all(a['keypoints'][placeholder] == 0)  # not (-1, -1): no `part - 1` there
  # Real points at the border are not placeholders: 13 with one coordinate 0
  # and 32 above the image (y < 0), all upper necks or head tops.
  border = ~placeholder & np.any(part <= 0, axis=-1)
  assert border.sum() == 45 and np.sum(part[..., 1] < 0) == 32
  assert set(np.nonzero(border)[1]) == {8, 9}
  assert np.all(a['status'][border] == keypoint_sets.VISIBLE)


def test_real_valid_h5_pckh_counts_annotated_joints_only():
  raw = _raw_valid_h5()
  placeholder = np.all(raw['part'] == 0, axis=-1)
  a = prediction_io.load_mpii_annotations(VALID_H5)
  gt = a['keypoints']
  # Missing joints predicted at valid.h5's placeholder (1-based (0, 0)) or far
  # away: the same counts, all annotated joints right, missing ones not counted.
  for where in (-1.0, 1e4):
    preds = np.where(placeholder[..., None], where, gt)
    result = metrics.pckh(preds, gt, a['status'], a['head_size'])
    np.testing.assert_array_equal(result['counts'], np.sum(~placeholder, axis=0))
    np.testing.assert_array_equal(result['correct'], result['counts'])
  # The 45 border points are ground truth: missing them by 1000 px costs
  # exactly them (joint 8: 2 of 2932, joint 9: 43 of 2932).
  border = ~placeholder & np.any(raw['part'] <= 0, axis=-1)
  result = metrics.pckh(np.where(border[..., None], gt + 1000.0, gt), gt, a['status'],
                        a['head_size'])
  np.testing.assert_array_equal(result['counts'] - result['correct'], border.sum(axis=0))
  assert result['groups']['Head'] == pytest.approx(
      (100.0 * 2930 / 2932 + 100.0 * 2889 / 2932) / 2)


def test_valid_h5_against_the_official_values_of_the_sample():
  # annotations.json holds the official .mat values of valid.h5's first five
  # persons (a third-party JSON conversion): what each file stores for the
  # same joints.
  raw = _raw_valid_h5()
  if not SAMPLE_JSON.is_file():
    pytest.skip(f'real MPII sample not found at {SAMPLE_JSON}')
  records = json.loads(SAMPLE_JSON.read_text())
  names = [n.decode() for n in raw['imgname'][:len(records)]]
  assert names == [r['image'] for r in records]
  joints = np.array([r['joints'] for r in records])
  annotated = np.array([r['joints_vis'] for r in records]) == 1
  part, visible = raw['part'][:len(records)], raw['visible'][:len(records)]
  # Not annotated: [-1, -1] in the JSON, (0, 0) in valid.h5 (4 ankles).
  assert (~annotated).sum() == 4
  assert np.all(joints[~annotated] == -1) and np.all(part[~annotated] == 0)
  assert np.all(np.any(part[annotated] != 0, axis=-1))
  # valid.h5 stores the official coordinates rounded down to integers (the
  # head points are fractional in the .mat).
  np.testing.assert_array_equal(part[annotated], np.floor(joints[annotated]))
  # joints_vis means annotated, not visible: 051423444.jpg's right wrist and
  # elbow are annotated and occluded.
  assert np.sum(annotated & (visible == 0)) == 2
  assert np.all(visible[2, [10, 11]] == 0) and np.all(annotated[2, [10, 11]])
  # valid.h5's center/scale are pose-hg-train's adjusted box, not objpos/scale.
  objpos = np.array([r['center'] for r in records])
  scale = np.array([r['scale'] for r in records])
  np.testing.assert_allclose(raw['center'][:len(records)],
                             objpos + np.stack([0 * scale, 15 * scale], -1), atol=1e-4)
  np.testing.assert_allclose(raw['scale'][:len(records)], 1.25 * scale, rtol=1e-6)
