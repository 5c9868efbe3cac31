"""Keypoint sets: flip pairs from names, name matching, OKS sigmas, the
metadata form. Expected values are written out by hand from the sets' docs."""
import pytest

from rhpe_jax.core import skeleton


def test_flip_pairs_inferred_from_names_are_the_hand_written_ones():
  for joints in (skeleton.MPII, skeleton.LSP, skeleton.COCO):
    assert skeleton.infer_flip_pairs(joints.joint_names) == joints.flip_pairs
  # Every spelling the issue names, a side without a partner, a centre point.
  names = ['Left Knee', 'Right Knee', 'l_wrist', 'r_wrist', 'leftEye', 'rightEye',
           'left_tail', 'nose']
  assert skeleton.infer_flip_pairs(names) == ((0, 1), (2, 3), (4, 5))


def test_canonical_names_and_matching_across_sets():
  assert {skeleton.canonical_name(n) for n in
          ('Left Knee', 'l_knee', 'leftKnee', 'left-knee', 'L.knee')} == {'left_knee'}
  assert skeleton.canonical_name('upper_neck') == 'neck'  # MPII's is LSP's neck
  mpii_for_coco = skeleton.match_keypoints(skeleton.MPII, skeleton.COCO)
  # COCO: nose, eyes, ears have no MPII counterpart; left_shoulder is MPII 13,
  # right_shoulder 12, ..., right_ankle MPII 0 (r_ankle).
  assert mpii_for_coco == [None] * 5 + [13, 12, 14, 11, 15, 10, 3, 2, 4, 1, 5, 0]
  assert skeleton.match_keypoints(skeleton.MPII, skeleton.LSP) == [
      0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9]  # as LSP_TO_MPII says
  assert skeleton.match_keypoints(skeleton.MPII, skeleton.LSP) == list(skeleton.LSP_TO_MPII)


def test_oks_sigmas_by_rule():
  assert skeleton.oks_sigmas(skeleton.COCO)[:3] == (.026, .025, .025)
  # LSP: COCO's value for each limb joint, 0.079 for neck and head top.
  assert skeleton.oks_sigmas(skeleton.LSP) == (
      .089, .087, .107, .107, .087, .089, .062, .072, .079, .079, .072, .062, .079, .079)


def test_metadata_round_trip_and_bad_sets():
  for joints in (skeleton.MPII, skeleton.LSP, skeleton.COCO):
    assert skeleton.Skeleton.from_dict(joints.to_dict()) == joints
  good = skeleton.LSP.to_dict()
  bad = [(dict(good, part_pairs=[[0, 14]]), r'part pair \(0, 14\)'),
         (dict(good, flip_pairs=[[0, 5], [5, 1]]), 'two flip pairs'),
         (dict(good, sigmas=[0.1]), '1 sigmas for 14'),
         (dict(good, keypoint_names=['a'] * 14), 'names repeat'),
         ({'name': 'x'}, 'needs')]
  for values, message in bad:
    with pytest.raises(ValueError, match=message):
      skeleton.Skeleton.from_dict(values)
