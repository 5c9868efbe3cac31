"""Keypoint sets: flip pairs from names, name matching, OKS sigmas, the
metadata form. Expected values are written out by hand from the sets' docs."""
import pytest

from rhpe_jax.core import keypoint_sets


def test_flip_pairs_inferred_from_names_are_the_hand_written_ones():
  for keypoint_set in (keypoint_sets.MPII, keypoint_sets.LSP, keypoint_sets.COCO):
    assert keypoint_sets.infer_flip_pairs(keypoint_set.keypoint_names) == keypoint_set.flip_pairs
  # Every spelling the issue names, a side without a partner, a centre point.
  names = ['Left Knee', 'Right Knee', 'l_wrist', 'r_wrist', 'leftEye', 'rightEye',
           'left_tail', 'nose']
  assert keypoint_sets.infer_flip_pairs(names) == ((0, 1), (2, 3), (4, 5))


def test_canonical_names_and_matching_across_sets():
  assert {keypoint_sets.canonical_name(n) for n in
          ('Left Knee', 'l_knee', 'leftKnee', 'left-knee', 'L.knee')} == {'left_knee'}
  assert keypoint_sets.canonical_name('upper_neck') == 'neck'  # MPII's is LSP's neck
  mpii_for_coco = keypoint_sets.match_keypoints(keypoint_sets.MPII, keypoint_sets.COCO)
  # COCO: nose, eyes, ears have no MPII counterpart; left_shoulder is MPII 13,
  # right_shoulder 12, ..., right_ankle MPII 0 (r_ankle).
  assert mpii_for_coco == [None] * 5 + [13, 12, 14, 11, 15, 10, 3, 2, 4, 1, 5, 0]
  assert keypoint_sets.match_keypoints(keypoint_sets.MPII, keypoint_sets.LSP) == [
      0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9]  # as LSP_TO_MPII says
  assert (keypoint_sets.match_keypoints(keypoint_sets.MPII, keypoint_sets.LSP)
          == list(keypoint_sets.LSP_TO_MPII))


def test_oks_sigmas_by_rule():
  assert keypoint_sets.oks_sigmas(keypoint_sets.COCO)[:3] == (.026, .025, .025)
  # LSP: COCO's value for each limb joint, 0.079 for neck and head top.
  assert keypoint_sets.oks_sigmas(keypoint_sets.LSP) == (
      .089, .087, .107, .107, .087, .089, .062, .072, .079, .079, .072, .062, .079, .079)


def test_metadata_round_trip_and_bad_sets():
  for keypoint_set in (keypoint_sets.MPII, keypoint_sets.LSP, keypoint_sets.COCO):
    assert keypoint_sets.KeypointSet.from_dict(keypoint_set.to_dict()) == keypoint_set
  good = keypoint_sets.LSP.to_dict()
  bad = [(dict(good, part_pairs=[[0, 14]]), r'part pair \(0, 14\)'),
         (dict(good, flip_pairs=[[0, 5], [5, 1]]), 'two flip pairs'),
         (dict(good, sigmas=[0.1]), '1 sigmas for 14'),
         (dict(good, keypoint_names=['a'] * 14), 'names repeat'),
         ({'name': 'x'}, 'needs')]
  for values, message in bad:
    with pytest.raises(ValueError, match=message):
      keypoint_sets.KeypointSet.from_dict(values)


def test_built_in_sets_are_the_shipped_files():
  assert keypoint_sets.built_in('coco') is keypoint_sets.COCO
  for name in keypoint_sets.BUILT_IN_NAMES:
    keypoint_set = keypoint_sets.built_in(name)
    assert keypoint_set.name == name
    # A flip is an involution that maps a left keypoint to a right one.
    perm = keypoint_set.flip_permutation
    assert list(perm[perm]) == list(range(keypoint_set.num_keypoints))
    for a, b in keypoint_set.flip_pairs:  # the face's points have no side in their names
      names = keypoint_set.keypoint_names
      left, right = sorted(keypoint_sets.canonical_name(names[i]) for i in (a, b))
      assert right == left.replace('left_', 'right_', 1) or left.startswith('face')
  with pytest.raises(ValueError, match="unknown keypoint set 'crowdpose'"):
    keypoint_sets.built_in('crowdpose')


def test_coco_wholebody_is_the_documented_133():
  """COCO-WholeBody's data_format.md: 17 body, 6 foot, 68 face, 21 + 21
  hands in that order; the sigmas of its evaluation (myeval_*.py), written
  out here by hand."""
  wb = keypoint_sets.built_in('coco_wholebody')
  assert wb.num_keypoints == 133 and wb.keypoint_names[:17] == keypoint_sets.COCO.keypoint_names
  assert wb.keypoint_names[17:23] == ('left_big_toe', 'left_small_toe', 'left_heel',
                                   'right_big_toe', 'right_small_toe', 'right_heel')
  assert wb.keypoint_names[23] == 'face-0' and wb.keypoint_names[90] == 'face-67'
  assert wb.keypoint_names[91] == 'left_hand_root' and wb.keypoint_names[112] == 'right_hand_root'
  assert wb.keypoint_names[111] == 'left_pinky_finger4'
  assert wb.keypoint_names[132] == 'right_pinky_finger4'
  assert wb.groups == (('body', 0, 17), ('foot', 17, 23), ('face', 23, 91),
                       ('lefthand', 91, 112), ('righthand', 112, 133))
  assert wb.sigmas[:17] == keypoint_sets.COCO.sigmas
  assert wb.sigmas[17:23] == (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)
  assert wb.sigmas[23:26] == (0.042, 0.043, 0.044) and wb.sigmas[90] == 0.008
  assert wb.sigmas[91:94] == wb.sigmas[112:115] == (0.029, 0.022, 0.035)
  perm = wb.flip_permutation
  # Jaw 0 <-> 16, eye corners 36 <-> 45, mouth 48 <-> 54; nose tip 30 and
  # chin 8 stay; hands swap whole; feet swap.
  assert perm[23 + 0] == 23 + 16 and perm[23 + 36] == 23 + 45 and perm[23 + 48] == 23 + 54
  assert perm[23 + 30] == 23 + 30 and perm[23 + 8] == 23 + 8
  assert perm[91 + 7] == 112 + 7 and perm[17] == 20
  # Parts: the body's 19 edges only.
  assert wb.part_pairs == keypoint_sets.COCO.part_pairs


def test_halpe_is_the_documented_136():
  halpe = keypoint_sets.built_in('halpe')
  assert halpe.num_keypoints == 136
  assert halpe.keypoint_names[:17] == keypoint_sets.COCO.keypoint_names
  assert halpe.keypoint_names[17:26] == ('head', 'neck', 'hip', 'left_big_toe', 'right_big_toe',
                                      'left_small_toe', 'right_small_toe', 'left_heel',
                                      'right_heel')
  assert halpe.keypoint_names[26] == 'face-0' and halpe.keypoint_names[94] == 'left_hand_root'
  assert halpe.sigmas[17:26] == (0.08,) * 3 + (0.089,) * 6
  assert halpe.groups == ()  # scored as one set, as Halpe's own evaluation
  assert set(halpe.sigmas[26:]) == {0.015}


def test_a_hand_written_set_names_its_pairs_and_groups():
  keypoint_set = keypoint_sets.KeypointSet.from_dict({
      'name': 'toy', 'keypoint_names': ['nose', 'left_eye', 'right_eye', 'tail'],
      'flip_pairs': [['left_eye', 'right_eye']], 'part_pairs': [['nose', 'tail'], [0, 1]],
      'groups': {'head': [0, 3], 'tail': [3, 4]}})
  assert keypoint_set.flip_pairs == ((1, 2),) and keypoint_set.part_pairs == ((0, 3), (0, 1))
  assert keypoint_set.groups == (('head', 0, 3), ('tail', 3, 4))
  assert keypoint_sets.KeypointSet.from_dict(keypoint_set.to_dict()) == keypoint_set
  # A config holds the set as a ConfigDict, which sorts keys by name: the
  # groups come back in the order of their ranges.
  import ml_collections  # pylint: disable=g-import-not-at-top
  wholebody = keypoint_sets.built_in('coco_wholebody')
  config = ml_collections.ConfigDict({'keypoint_set': 'dataset',
                                     'dataset_keypoint_set': wholebody.to_dict()})
  assert keypoint_sets.of_config(config) == wholebody
  good = keypoint_set.to_dict()
  for values, message in [(dict(good, flip_pairs=[['left_eye', 'ear']]), "'ear', which is not"),
                          (dict(good, part_pairs=[[0.5, 1]]), 'neither a 0-based index'),
                          (dict(good, groups={'a': [2, 9]}), 'not named ranges'),
                          (dict(good, groups=[0, 1]), 'groups must map')]:
    with pytest.raises(ValueError, match=message):
      keypoint_sets.KeypointSet.from_dict(values)
