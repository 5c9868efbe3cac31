"""Following persons through a video with a single-person, top-down network.

The network sees one person's window; in a video, frame t+1's window comes
from frame t's pose: the box around the confident keypoints, grown by a
margin (`keypoint_box`). When the confidence collapses (occlusion, a blur,
the person lost), the track keeps its last good box and waits there. With a
detector's boxes (`--boxes`), every frame's detections are matched to the
tracks by box overlap (IoU, greedily, best pair first): a track that had
lost its person takes the matched detection's box, a detection no track
matches starts a new track (a new id), and a track no detection matches for
`max_unmatched` frames that have detections ends (the person left).

Boxes are COCO's [x, y, width, height] in frame pixels; None stands for the
whole frame (the first frame's window when nothing says where the person
is). Nothing here runs the network: `Follower.crops` says what to predict,
`Follower.observe` takes what was predicted.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

Box = list  # [x, y, width, height]

CONFIDENCE = 0.2  # a joint's heat-map peak that counts as found
MIN_JOINTS = 4  # fewer confident joints than this: the pose collapsed
MARGIN = 0.15  # each side of the keypoints' box grows by this x its longer side
MATCH_IOU = 0.3  # the least overlap of a track's box and a detection to match
MAX_UNMATCHED = 15  # frames with detections but none for a track, before it ends


def parse_box(values: Sequence[str | float]) -> Box:
  """A person box `box` (x, y, w, h: numbers or their strings) as four
  numbers, a positive width and height."""
  try:
    box = [float(v) for v in values]
  except (TypeError, ValueError):
    raise ValueError(f'box needs four numbers x,y,width,height, got {list(values)}') from None
  if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
    raise ValueError(f'box needs four numbers x,y,width,height with a positive width and '
                     f'height, got {list(values)}')
  return box


def keypoint_box(keypoints: np.ndarray, confidence: np.ndarray, *,
                 threshold: float = CONFIDENCE, margin: float = MARGIN,
                 min_joints: int = MIN_JOINTS) -> Box | None:
  """The box around the joints whose confidence reaches `threshold`, each
  side grown by `margin` x its longer side (joints lie inside the body: the
  margin takes in the head, hands and feet); None with fewer than
  `min_joints` such joints."""
  keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
  found = np.asarray(confidence, np.float64).reshape(-1) >= threshold
  found &= np.all(np.isfinite(keypoints), axis=1)
  if found.sum() < max(1, min_joints):
    return None
  lo, hi = keypoints[found].min(0), keypoints[found].max(0)
  side = max(float((hi - lo).max()), 1.0)
  lo, hi = lo - margin * side, hi + margin * side
  return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
  """Intersection over union of two [x, y, w, h] boxes (0 with None)."""
  if a is None or b is None:
    return 0.0
  width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
  height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
  inter = max(width, 0.0) * max(height, 0.0)
  union = a[2] * a[3] + b[2] * b[3] - inter
  return inter / union if union > 0 else 0.0


def match(boxes: Sequence[Box | None], detections: Sequence[Box], min_iou: float
          ) -> list[tuple[int, int]]:
  """(box index, detection index) pairs, greedily by overlap (the best pair
  first, each box and detection once), overlap at least `min_iou`."""
  pairs = sorted(((iou(b, d), i, j) for i, b in enumerate(boxes)
                  for j, d in enumerate(detections)), reverse=True)
  used_boxes, used_detections, out = set(), set(), []
  for overlap, i, j in pairs:
    if overlap < min_iou or overlap <= 0:
      break
    if i not in used_boxes and j not in used_detections:
      used_boxes.add(i)
      used_detections.add(j)
      out.append((i, j))
  return out


@dataclasses.dataclass
class Track:
  """One followed person: the window of its next frame (`box`), its last box
  from a confident pose, and how many frames in a row it had no confident
  pose (`lost`) and no matching detection (`unmatched`)."""
  track_id: int
  box: Box | None
  last_good: Box | None = None
  lost: int = 0
  unmatched: int = 0


class Follower:
  """The tracks of a video, frame by frame: `crops(detections)` then
  `observe(track, keypoints, confidence)` for each track it returned."""

  def __init__(self, first_boxes: Sequence[Box | None] = (None,), *,
               threshold: float = CONFIDENCE, margin: float = MARGIN,
               min_joints: int = MIN_JOINTS, match_iou: float = MATCH_IOU,
               max_unmatched: int = MAX_UNMATCHED):
    self.threshold, self.margin, self.min_joints = threshold, margin, min_joints
    self.match_iou, self.max_unmatched = match_iou, max_unmatched
    self.tracks: list[Track] = []
    self._next_id = 0
    for box in first_boxes:
      self._start(box)

  def _start(self, box: Box | None) -> Track:
    track = Track(self._next_id, None if box is None else list(box),
                  None if box is None else list(box))
    self._next_id += 1
    self.tracks.append(track)
    return track

  def crops(self, detections: Sequence[Sequence[float]] | None = None) -> list[Track]:
    """The tracks to predict in this frame, each with its window's `box`,
    after this frame's detections (None: the frame has none to match)."""
    if detections is not None:
      detections = [list(map(float, d)) for d in detections]
      pairs = match([t.box if t.box is not None else t.last_good for t in self.tracks],
                    detections, self.match_iou)
      matched = dict(pairs)
      for i, track in enumerate(self.tracks):
        if i in matched:
          track.unmatched = 0
          if track.lost or track.box is None:  # no pose of its own to follow
            track.box = list(detections[matched[i]])
        else:
          track.unmatched += 1
      self.tracks = [t for t in self.tracks if t.unmatched <= self.max_unmatched]
      taken = set(matched.values())
      for j, detection in enumerate(detections):
        if j not in taken:
          self._start(detection)
    return list(self.tracks)

  def observe(self, track: Track, keypoints: np.ndarray, confidence: np.ndarray) -> None:
    """The pose predicted in `track`'s window: its next window."""
    box = keypoint_box(keypoints, confidence, threshold=self.threshold, margin=self.margin,
                       min_joints=self.min_joints)
    if box is None:
      track.lost += 1
      track.box = track.last_good
    else:
      track.lost = 0
      track.box = track.last_good = box
