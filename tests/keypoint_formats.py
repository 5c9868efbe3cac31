"""Keypoint files in the public formats of COCO-WholeBody, Halpe-FullBody,
AP-10K and Human-Art, written over the shared COCO and CrowdPose samples'
images from each format's documentation (made-up points, real images).

- COCO-WholeBody (github.com/jin-s13/COCO-WholeBody, data_format.md): COCO's
  annotation with `foot_kpts` (6), `face_kpts` (68), `lefthand_kpts`,
  `righthand_kpts` (21 each) as [x, y, v] triples, `face_box`,
  `lefthand_box`, `righthand_box` as [x, y, w, h], and `*_valid` flags; an
  invalid part is all zeros; the category names the 17 body keypoints only.
  Face and hand v are scores in (0, 1]. Results carry the five fields.
- Halpe-FullBody (github.com/Fang-Haoshu/Halpe-FullBody): `keypoints` holds
  136 triples; the category names no keypoints.
- AP-10K (github.com/AlexTheBad/AP-10K): one category per species, each
  naming the same 17 keypoints and skeleton, `supercategory` its family.
- Human-Art (github.com/IDEA-Research/HumanArt): `keypoints` (COCO's 17) and
  `keypoints_21` (COCO's 17, then left/right finger, left/right toe).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

WHOLEBODY_PARTS = (('foot_kpts', 6), ('face_kpts', 68), ('lefthand_kpts', 21),
                   ('righthand_kpts', 21))
WHOLEBODY_FIELDS = ('keypoints',) + tuple(field for field, _ in WHOLEBODY_PARTS)
WHOLEBODY_BOXES = ('face_box', 'lefthand_box', 'righthand_box')
AP10K_NAMES = ['left_eye', 'right_eye', 'nose', 'neck', 'root_of_tail', 'left_shoulder',
               'left_elbow', 'left_front_paw', 'right_shoulder', 'right_elbow',
               'right_front_paw', 'left_hip', 'left_knee', 'left_back_paw', 'right_hip',
               'right_knee', 'right_back_paw']
HUMANART_EXTRA = ['left_finger', 'right_finger', 'left_toe', 'right_toe']


def _points(rng: np.random.Generator, box: list[float], count: int, scores: bool
            ) -> list[float]:
  """`count` [x, y, v] triples inside `box`, about a fifth unlabelled (zeros);
  v a score in (0, 1] (3 decimals, some exactly 1) or COCO's 1/2."""
  x, y, w, h = box
  out = []
  for _ in range(count):
    if rng.uniform() < 0.2:
      out += [0, 0, 0]
      continue
    v = (1.0 if rng.uniform() < 0.2 else round(float(rng.uniform(0.05, 0.99)), 3)) if scores \
        else int(rng.integers(1, 3))
    out += [round(float(rng.uniform(x, x + w)), 2), round(float(rng.uniform(y, y + h)), 2), v]
  return out


def _sub_box(rng: np.random.Generator, bbox: list[float], fraction: float) -> list[float]:
  x, y, w, h = bbox
  bw, bh = w * fraction, h * fraction
  return [round(float(rng.uniform(x, x + w - bw)), 2), round(float(rng.uniform(y, y + h - bh)), 2),
          round(bw, 2), round(bh, 2)]


def wholebody(coco: dict[str, Any], seed: int = 0) -> dict[str, Any]:
  """The COCO file as COCO-WholeBody: each non-crowd person with a box gets
  feet, face and hands; every third part is invalid (zeros, *_valid false)."""
  rng = np.random.default_rng(seed)
  data = copy.deepcopy(coco)
  n = 0
  for ann in data['annotations']:
    labelled = not ann.get('iscrowd') and ann.get('num_keypoints', 0) > 0
    for (field, count), box_name in zip(WHOLEBODY_PARTS, (None,) + WHOLEBODY_BOXES):
      valid = labelled and n % 3 != 2
      n += 1
      part = field.replace('_kpts', '')
      ann[f'{part}_valid'] = valid
      box = _sub_box(rng, ann['bbox'], 0.3 if field == 'face_kpts' else 0.15)
      ann[field] = _points(rng, box, count, field != 'foot_kpts') if valid else [0] * (3 * count)
      if box_name:
        ann[box_name] = box if valid else [0, 0, 0, 0]
  return data


def wholebody_results(data: dict[str, Any], shift: dict[str, tuple[float, float]],
                      seed: int = 0) -> list[dict[str, Any]]:
  """Results in COCO-WholeBody's format: the ground truth of every labelled
  person with each field moved by `shift[field]` pixels (unlabelled points at
  the box centre), scores spread."""
  rng = np.random.default_rng(seed)
  out = []
  persons = [a for a in data['annotations']
             if not a.get('iscrowd') and a.get('num_keypoints', 0) > 0]
  for ann in persons:
    x, y, w, h = ann['bbox']
    record = {'image_id': ann['image_id'], 'category_id': ann['category_id'],
              'score': round(float(rng.uniform(0.3, 1.0)), 4)}
    for field in WHOLEBODY_FIELDS:
      triples = np.array(ann[field], np.float64).reshape(-1, 3)
      xy = np.where(triples[:, 2:] > 0, triples[:, :2], [x + w / 2, y + h / 2])
      xy = xy + np.asarray(shift.get(field, (0.0, 0.0)))
      record[field] = np.concatenate([xy, np.ones((len(xy), 1))], 1).round(3).ravel().tolist()
    out.append(record)
  return out


def joined_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """COCO-WholeBody results as plain COCO ones of 133 keypoints (the
  fields joined in the documented order)."""
  return [{'image_id': r['image_id'], 'category_id': r['category_id'], 'score': r['score'],
           'keypoints': [v for field in WHOLEBODY_FIELDS for v in r[field]]} for r in results]


def halpe(coco: dict[str, Any], seed: int = 0) -> dict[str, Any]:
  """The COCO file as Halpe-FullBody: COCO's 17 then 119 more triples in one
  `keypoints`; a category without keypoint names."""
  rng = np.random.default_rng(seed)
  data = copy.deepcopy(coco)
  for ann in data['annotations']:
    if ann.get('iscrowd') or ann.get('num_keypoints', 0) == 0:
      ann['keypoints'] = list(ann['keypoints']) + [0] * (3 * 119)
    else:
      ann['keypoints'] = list(ann['keypoints']) + _points(rng, ann['bbox'], 119, False)
  data['categories'] = [{'supercategory': 'person', 'id': 1, 'name': 'person'}]
  return data


def two_species(crowdpose: dict[str, Any], seed: int = 0) -> dict[str, Any]:
  """CrowdPose's persons as animals of two AP-10K species sharing its 17
  keypoints: persons alternate between category 1 and category 2."""
  rng = np.random.default_rng(seed)
  skeleton = [[1, 2], [1, 3], [2, 3], [3, 4], [4, 5], [4, 6], [6, 7], [7, 8], [4, 9], [9, 10],
               [10, 11], [5, 12], [12, 13], [13, 14], [5, 15], [15, 16], [16, 17]]
  data = {'images': copy.deepcopy(crowdpose['images']), 'annotations': [], 'categories': [
      {'id': 1, 'name': 'antelope', 'supercategory': 'Bovidae', 'keypoints': AP10K_NAMES,
       'skeleton': skeleton},
      {'id': 2, 'name': 'argali sheep', 'supercategory': 'Bovidae', 'keypoints': AP10K_NAMES,
       'skeleton': skeleton}]}
  for n, ann in enumerate(crowdpose['annotations']):
    x, y, w, h = ann['bbox']
    data['annotations'].append({
        'id': 5000 + n, 'image_id': ann['image_id'], 'category_id': 1 + n % 2, 'iscrowd': 0,
        'bbox': ann['bbox'], 'area': round(w * h, 2),
        'keypoints': _points(rng, ann['bbox'], 17, False), 'num_keypoints': 0})
  for ann in data['annotations']:
    ann['num_keypoints'] = int(sum(v > 0 for v in ann['keypoints'][2::3]))
  return data


def human_art(coco: dict[str, Any], seed: int = 0) -> dict[str, Any]:
  """The COCO file as Human-Art: `keypoints_21` beside COCO's `keypoints`."""
  rng = np.random.default_rng(seed)
  data = copy.deepcopy(coco)
  for ann in data['annotations']:
    extra = ([0] * 12 if ann.get('iscrowd') or ann.get('num_keypoints', 0) == 0
             else _points(rng, ann['bbox'], 4, False))
    ann['keypoints_21'] = list(ann['keypoints']) + extra
  return data


def human_art_set(coco_names: list[str]) -> dict[str, Any]:
  """The keypoint-set file a Human-Art user writes: the 21 names, the field,
  pairs by name (flip pairs left out: inferred from the names)."""
  return {'name': 'humanart21', 'keypoint_names': coco_names + HUMANART_EXTRA,
          'field': 'keypoints_21',
          'part_pairs': [['left_ankle', 'left_knee'], ['left_knee', 'left_hip'],
                         ['right_ankle', 'right_knee'], ['right_knee', 'right_hip'],
                         ['left_ankle', 'left_toe'], ['right_ankle', 'right_toe'],
                         ['left_wrist', 'left_finger'], ['right_wrist', 'right_finger']]}
