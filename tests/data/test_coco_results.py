"""COCO results files (rhpe_jax.data.coco_results) on hand-made files: the
records as COCO's format defines them, and each bad detections file as one
line naming the file and the record."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rhpe_jax.data import coco_results


def test_keypoint_result_by_hand():
  record = coco_results.keypoint_result(785, np.array([[1.0, 2.0], [3.25, 4.5]]),
                                        np.array([0.2, 0.6]), box_score=0.5)
  assert record == {'image_id': 785, 'category_id': 1, 'keypoints': [1, 2, 1, 3.25, 4.5, 1],
                    'score': pytest.approx(0.5 * 0.4)}
  assert coco_results.keypoint_result(1, np.zeros((3, 2)), np.ones(3))['score'] == 1.0
  with pytest.raises(ValueError, match=r'need keypoints \(K, 2\) and confidence \(K,\)'):
    coco_results.keypoint_result(1, np.zeros((3, 2)), np.ones(2))


def test_write_results_is_whole_or_nothing(tmp_path):
  path = tmp_path / 'results.json'
  records = [coco_results.keypoint_result(7, np.ones((2, 2)), np.ones(2))]
  coco_results.write_results(str(path), records)
  assert json.loads(path.read_text()) == records
  bad = [dict(records[0], score=float('nan'))]  # NaN is no JSON number
  with pytest.raises(ValueError):
    coco_results.write_results(str(path), bad)
  assert json.loads(path.read_text()) == records  # the old file stands
  assert sorted(p.name for p in tmp_path.iterdir()) == ['results.json']  # no partial left


def test_read_detections_filters_and_orders(tmp_path):
  path = tmp_path / 'detections.json'
  path.write_text(json.dumps([
      {'image_id': 2, 'category_id': 1, 'bbox': [0, 0, 10, 20], 'score': 0.4},
      {'image_id': 2, 'category_id': 1, 'bbox': [5, 5, 10, 20], 'score': 0.9},
      {'image_id': 2, 'category_id': 3, 'bbox': [5, 5, 10, 20], 'score': 0.99},  # a car
      {'image_id': 3, 'bbox': [1, 1, 4, 4], 'score': 0.1},  # no category: a person
      {'image_id': 3, 'category_id': 1, 'bbox': [1, 1, 0, 4], 'score': 0.8},  # empty
  ]))
  assert coco_results.read_detections(str(path)) == {
      2: [{'bbox': [5.0, 5.0, 10.0, 20.0], 'score': 0.9, 'category_id': 1},
          {'bbox': [0.0, 0.0, 10.0, 20.0], 'score': 0.4, 'category_id': 1}],
      3: [{'bbox': [1.0, 1.0, 4.0, 4.0], 'score': 0.1, 'category_id': 1}]}
  assert coco_results.read_detections(str(path), score_threshold=0.4) == {
      2: [{'bbox': [5.0, 5.0, 10.0, 20.0], 'score': 0.9, 'category_id': 1},
          {'bbox': [0.0, 0.0, 10.0, 20.0], 'score': 0.4, 'category_id': 1}]}  # at least
  assert coco_results.read_detections(str(path), category_ids=(3,)) == {
      2: [{'bbox': [5.0, 5.0, 10.0, 20.0], 'score': 0.99, 'category_id': 3}]}
  both = coco_results.read_detections(str(path), category_ids=(1, 3), score_threshold=0.5)
  assert both == {2: [{'bbox': [5.0, 5.0, 10.0, 20.0], 'score': 0.99, 'category_id': 3},
                      {'bbox': [5.0, 5.0, 10.0, 20.0], 'score': 0.9, 'category_id': 1}]}


@pytest.mark.parametrize('text, words', [
    (None, 'no such detections file'),
    ('[{"image_id": 1,', 'not a JSON file'),
    ('{"annotations": []}', 'a JSON list of records, got a dict'),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1]}]', 'record 0: a detection needs'),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}, 7]', 'record 1: a detection needs'),
    ('[{"image_id": "a", "bbox": [0, 0, 1, 1], "score": 1}]', 'image_id must be an integer'),
    ('[{"image_id": null, "bbox": [0, 0, 1, 1], "score": 1}]', 'image_id must be an integer'),
    ('[{"image_id": 1, "bbox": [0, 0, 1], "score": 1}]', r'bbox must be \[x, y, width, height\]'),
    ('[{"image_id": 1, "bbox": [0, 0, NaN, 1], "score": 1}]', 'bbox must be'),
    ('[{"image_id": 1, "bbox": [0, "0", 1, 1], "score": 1}]', 'bbox must be'),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]', 'score must be a number'),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": true}]', 'score must be a number'),
    ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": Infinity}]', 'score must be a number'),
])
def test_each_bad_detections_file_is_one_line(tmp_path, text, words):
  path = tmp_path / 'detections.json'
  if text is not None:
    path.write_text(text)
  with pytest.raises(ValueError, match=words) as error:
    coco_results.read_detections(str(path))
  message = str(error.value)
  assert '\n' not in message and message.startswith(str(path))
