"""COCO results files: a detector's person boxes in, keypoints out.

The format every COCO tool reads (cocodataset.org/#format-results): a JSON
list of records with `image_id`, `category_id`, and `bbox` [x, y, w, h]
(detections) or `keypoints` [x, y, v] x K (keypoint results), and `score`.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Collection, Sequence

import numpy as np

PERSON_CATEGORY_ID = 1  # COCO's person


def keypoint_result(image_id: int, keypoints: np.ndarray, confidence: np.ndarray, *,
                    category_id: int = PERSON_CATEGORY_ID, box_score: float = 1.0
                    ) -> dict[str, Any]:
  """One keypoint result: `keypoints` (K, 2) in original image pixels,
  `confidence` (K,) the heat-map peaks. The score, which ranks a person
  among all results, is `box_score` times the mean peak (1 for ground-truth
  boxes); v is 1 for every keypoint, as pycocotools ignores it in results."""
  keypoints, confidence = np.asarray(keypoints, np.float64), np.asarray(confidence, np.float64)
  if keypoints.ndim != 2 or keypoints.shape[1] != 2 or confidence.shape != keypoints.shape[:1]:
    raise ValueError(f'need keypoints (K, 2) and confidence (K,), got {keypoints.shape} and '
                     f'{confidence.shape}')
  triples = np.concatenate([keypoints, np.ones_like(keypoints[:, :1])], axis=1)
  return {'image_id': int(image_id), 'category_id': int(category_id),
          'keypoints': [round(float(v), 3) for v in triples.ravel()],
          'score': float(box_score) * float(np.mean(confidence))}


def write_results(path: str, records: Sequence[dict[str, Any]]) -> None:
  """Writes `records` as a COCO results file, whole or not at all."""
  partial = f'{path}.partial'
  try:
    with open(partial, 'w') as f:
      json.dump(list(records), f, allow_nan=False)  # NaN is not JSON: COCO's tools refuse it
  except BaseException:
    if os.path.exists(partial):
      os.remove(partial)
    raise
  os.replace(partial, path)


def load_json(path: str, what: str, kind: type = list) -> Any:
  """The JSON `what` (e.g. 'detections file') at `path`, whose top level must
  be a `kind` (list or dict); a ValueError of one line naming the file when
  it is missing, not JSON, or of another kind."""
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise ValueError(f'{path}: no such {what}') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ValueError(f'{path}: not a JSON file ({error})') from None
  if not isinstance(data, kind):
    expected = 'list of records' if kind is list else 'object'
    raise ValueError(f'{path}: a COCO {what} is a JSON {expected}, got a {type(data).__name__}')
  return data


def read_detections(path: str, *, score_threshold: float = 0.0,
                    category_ids: Collection[int] = (PERSON_CATEGORY_ID,)
                    ) -> dict[int, list[dict[str, Any]]]:
  """A detector's boxes (COCO results format) by image id, each {'bbox',
  'score', 'category_id'}: records of one of `category_ids` (a record
  without one is a person detector's: a person) whose score is at least
  `score_threshold`, best first; empty boxes are left out.
  Raises ValueError with one line naming the file and the record at fault."""
  records = load_json(path, 'detections file')
  boxes: dict[int, list[dict[str, Any]]] = {}
  for number, record in enumerate(records):
    where = f'{path}: record {number}'
    if not isinstance(record, dict) or not {'image_id', 'bbox', 'score'} <= set(record):
      raise ValueError(f'{where}: a detection needs image_id, bbox and score')
    bbox, score = record['bbox'], record['score']
    if not isinstance(record['image_id'], int) or isinstance(record['image_id'], bool):
      raise ValueError(f'{where}: image_id must be an integer, got {record["image_id"]!r}')
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
      raise ValueError(f'{where}: bbox must be [x, y, width, height], got {bbox!r}')
    if not _is_number(score):
      raise ValueError(f'{where}: score must be a number, got {score!r}')
    category = record.get('category_id', PERSON_CATEGORY_ID)
    if category not in category_ids or score < score_threshold:
      continue
    if bbox[2] <= 0 or bbox[3] <= 0:
      continue  # an empty box: no person to crop
    boxes.setdefault(int(record['image_id']), []).append(
        {'bbox': [float(v) for v in bbox], 'score': float(score), 'category_id': int(category)})
  for image_boxes in boxes.values():
    image_boxes.sort(key=lambda b: -b['score'])
  return boxes


def _is_number(value: Any) -> bool:
  """A finite JSON number (true and false are not)."""
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))
