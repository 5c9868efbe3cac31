"""COCO person-keypoint files (COCO 2017, CrowdPose, a user's own export):
reading and checking them, one record per person for the TFDS builder.

Coordinates are used as the file gives them, as the project's 0-based pixel
frame (docs/conventions.md): COCO keypoints and boxes share one frame.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def box_center_scale(bbox: Sequence[float]) -> tuple[np.ndarray, float]:
  """A COCO box [x, y, width, height] as MPII's (objpos, scale): the box's
  centre, and its longer side in MPII's unit (scale = person height / 200 px),
  so that `box_scale` adds the same margin around a box as around an MPII
  person. The builder and `predict --boxes` both crop through this."""
  x, y, w, h = (float(v) for v in bbox)
  if not (w > 0 and h > 0 and np.all(np.isfinite([x, y, w, h]))):
    raise ValueError(f'a person box needs a positive width and height, got {list(bbox)}')
  return np.array([x + w / 2.0, y + h / 2.0], np.float32), max(w, h) / 200.0
