"""rhpe_jax.inference.tracking: boxes from keypoints and box overlaps worked
out by hand; the follower's fall-backs (a collapsed pose, detections) and its
track ids when two persons are detected."""
from __future__ import annotations

import numpy as np
import pytest

from rhpe_jax.inference import tracking


def test_keypoint_box_by_hand():
  keypoints = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0], [500.0, 500.0]])
  confidence = np.array([0.9, 0.8, 0.5, 0.1])  # the last is below the threshold: left out
  # Joints span x 10..30, y 20..60: longer side 40, margin 0.25 -> 10 px each side.
  box = tracking.keypoint_box(keypoints, confidence, threshold=0.2, margin=0.25, min_joints=3)
  assert box == pytest.approx([0.0, 10.0, 40.0, 60.0])
  assert tracking.keypoint_box(keypoints, confidence, threshold=0.2, min_joints=4) is None
  assert tracking.keypoint_box(keypoints, np.zeros(4), min_joints=1) is None


def test_iou_and_greedy_matching_by_hand():
  # Overlap 5 x 10 = 50 of 100 + 100 - 50 = 150.
  assert tracking.iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(1 / 3)
  assert tracking.iou([0, 0, 10, 10], [20, 0, 10, 10]) == 0.0
  assert tracking.iou(None, [0, 0, 10, 10]) == 0.0
  boxes = [[0, 0, 10, 10], [100, 0, 10, 10]]
  detections = [[101, 0, 10, 10], [1, 0, 10, 10], [300, 0, 10, 10]]
  assert sorted(tracking.match(boxes, detections, 0.3)) == [(0, 1), (1, 0)]
  assert tracking.match(boxes, detections, 0.95) == []


@pytest.mark.parametrize('values', [['1', '2', '3'], ['1', '2', '0', '4'], ['a', '2', '3', '4']])
def test_parse_box_refuses_bad_boxes(values):
  with pytest.raises(ValueError, match='^box needs four numbers'):
    tracking.parse_box(values)


def _pose(box):
  """16 confident joints spread over a box [x, y, w, h]."""
  x, y, w, h = box
  grid = np.stack(np.meshgrid(np.linspace(x, x + w, 4), np.linspace(y, y + h, 4)), -1)
  return grid.reshape(16, 2), np.ones(16)


def test_a_collapsed_pose_keeps_the_last_good_box_then_a_detection_takes_over():
  follower = tracking.Follower([[0, 0, 50, 100]], margin=0.0)
  (track,) = follower.crops()
  assert track.box == [0, 0, 50, 100]
  follower.observe(track, *_pose([10, 0, 50, 100]))
  assert track.box == pytest.approx([10, 0, 50, 100])
  follower.observe(track, _pose([10, 0, 50, 100])[0], np.zeros(16))  # the pose collapsed
  assert track.box == pytest.approx([10, 0, 50, 100]) and track.lost == 1
  # No detection in this frame: it waits on its last good box.
  assert follower.crops(None)[0].box == pytest.approx([10, 0, 50, 100])
  follower.observe(track, _pose([10, 0, 50, 100])[0], np.zeros(16))
  # A detection that overlaps it: the lost track takes the detector's box.
  (track,) = follower.crops([[14, 2, 50, 100]])
  assert track.box == [14, 2, 50, 100] and track.track_id == 0


def test_two_detected_persons_keep_their_ids_as_they_move():
  """Two persons walking towards each other, detected in every frame (in
  varying order), a third one appearing late; the network's poses are the
  true boxes' corners."""
  follower = tracking.Follower([], margin=0.0)
  paths = {0: lambda t: [10 + 5 * t, 50, 40, 100], 1: lambda t: [300 - 5 * t, 60, 40, 100]}
  for t in range(20):
    boxes = [paths[1](t), paths[0](t)] if t % 2 else [paths[0](t), paths[1](t)]
    if t >= 15:
      boxes.append([600, 0, 40, 100])
    tracks = follower.crops(boxes)
    for track in tracks:
      truth = paths[track.track_id](t) if track.track_id in paths else [600, 0, 40, 100]
      assert tracking.iou(track.box, truth) > 0.7, (t, track)
      follower.observe(track, *_pose(truth))
    assert sorted(tr.track_id for tr in tracks) == ([0, 1, 2] if t >= 15 else [0, 1])


def test_a_track_no_detection_matches_ends():
  follower = tracking.Follower([], margin=0.0, max_unmatched=2)
  follower.crops([[0, 0, 40, 100]])
  for _ in range(2):
    assert len(follower.crops([[500, 0, 40, 100]])) == 2  # the second person: track 1
  assert [t.track_id for t in follower.crops([[500, 0, 40, 100]])] == [1]
