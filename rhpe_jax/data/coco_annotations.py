"""COCO person-keypoint files (COCO 2017, CrowdPose, a user's own export):
reading and checking them, one record per person for the TFDS builder.

Coordinates are used as the file gives them, as the project's 0-based pixel
frame (docs/conventions.md): COCO keypoints and boxes share one frame.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Iterator, Sequence

from absl import logging
import numpy as np

from rhpe_jax.core import skeleton
from rhpe_jax.data.person_crops import box_center_scale  # pylint: disable=unused-import


class CocoFormatError(ValueError):
  """A COCO keypoint file that cannot be read as one: one line naming the file
  and, where there is one, the annotation (or image) id."""


# Body parts of a file that brings no usable `skeleton`: pairs of canonical
# keypoint names (skeleton.canonical_name), each used where the file has both
# names, in this order. Limbs, the torso's sides and cross links, the head.
FALLBACK_PART_NAMES: tuple[tuple[str, str], ...] = (
    ('left_shoulder', 'left_elbow'), ('left_elbow', 'left_wrist'),
    ('right_shoulder', 'right_elbow'), ('right_elbow', 'right_wrist'),
    ('left_hip', 'left_knee'), ('left_knee', 'left_ankle'),
    ('right_hip', 'right_knee'), ('right_knee', 'right_ankle'),
    ('left_shoulder', 'left_hip'), ('right_shoulder', 'right_hip'),
    ('left_shoulder', 'right_shoulder'), ('left_hip', 'right_hip'),
    ('pelvis', 'left_hip'), ('pelvis', 'right_hip'), ('pelvis', 'thorax'),
    ('thorax', 'neck'), ('thorax', 'left_shoulder'), ('thorax', 'right_shoulder'),
    ('neck', 'left_shoulder'), ('neck', 'right_shoulder'),
    ('neck', 'head'), ('neck', 'head_top'), ('neck', 'nose'),
    ('nose', 'left_eye'), ('nose', 'right_eye'),
    ('left_eye', 'left_ear'), ('right_eye', 'right_ear'),
)

# Why a person annotation is not an example (the keys of `skipped`).
SKIP_NO_BOX = 'no box'
SKIP_EMPTY_BOX = 'zero-size box'
SKIP_NO_KEYPOINTS = 'no labelled keypoint'
SKIP_CROWD_NO_BOX = 'crowd region without a box'
SKIP_OTHER_CATEGORY = 'other category'


@dataclasses.dataclass(frozen=True)
class Person:
  """One non-crowd annotation of the person category, in original pixels."""

  annotation_id: int
  index: int  # among its image's annotations of the category, in file order
  keypoints: np.ndarray  # (K, 2) float32, zeros where status is MISSING
  status: np.ndarray  # (K,) int32: MISSING, OCCLUDED or VISIBLE (v 0, 1, 2)
  bbox: np.ndarray | None  # (4,) float32 x, y, w, h; None without a box
  area: float  # the file's `area`; bbox w x h where the file has none

  @property
  def has_keypoints(self) -> bool:
    return bool(np.any(self.status != skeleton.MISSING))

  @property
  def has_box(self) -> bool:
    return self.bbox is not None and bool(self.bbox[2] > 0 and self.bbox[3] > 0)


@dataclasses.dataclass(frozen=True)
class CrowdRegion:
  """An `iscrowd` 1 annotation: a region of many people, never an example."""

  annotation_id: int
  bbox: np.ndarray  # (4,) float32 x, y, w, h
  area: float


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One entry of `images` with its persons and crowd regions."""

  image_id: int
  index: int  # in the file's `images` list
  file_name: str
  persons: tuple[Person, ...]
  crowd: tuple[CrowdRegion, ...]

  def others(self, person: Person) -> list[Person]:
    """The image's other persons with a labelled keypoint (their keypoints
    are the 'other people' of the targets; a box is not needed for that)."""
    return [p for p in self.persons if p is not person and p.has_keypoints]


@dataclasses.dataclass(frozen=True)
class KeypointFile:
  """A checked COCO person-keypoints file."""

  path: str
  category_id: int
  category_name: str
  keypoint_set: skeleton.Skeleton
  images: tuple[ImageRecord, ...]
  skipped: dict[str, int]  # reason -> person annotations left out

  def examples(self) -> Iterator[tuple[ImageRecord, Person]]:
    """(image, person) of every person with a box and a labelled keypoint:
    one top-down example each, in file order."""
    for image in self.images:
      for person in image.persons:
        if person.has_box and person.has_keypoints:
          yield image, person

  @property
  def num_examples(self) -> int:
    return sum(1 for _ in self.examples())


def _id(value: Any, path: str, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
    raise CocoFormatError(f'{path}: {what} is not an integer id: {value!r}')
  return int(value)


def _numbers(values: Any, path: str, what: str) -> np.ndarray:
  """A list of finite numbers as float64 (a one-line error otherwise)."""
  if not isinstance(values, (list, tuple)) or any(
      isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
    raise CocoFormatError(f'{path}: {what} is not a list of numbers')
  out = np.asarray(values, np.float64)
  if not np.all(np.isfinite(out)):
    raise CocoFormatError(f'{path}: {what} holds a value that is not finite')
  return out


def read_json(path: str | os.PathLike) -> dict[str, Any]:
  """The file's top-level object; malformed JSON is one line naming the file."""
  path = os.fspath(path)
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise CocoFormatError(f'{path}: malformed JSON (line {e.lineno}, column {e.colno}: '
                          f'{e.msg})') from None
  except UnicodeDecodeError as e:
    raise CocoFormatError(f'{path}: not UTF-8 text ({e.reason})') from None
  if not isinstance(data, dict):
    raise CocoFormatError(f'{path}: expected a JSON object with images, annotations and '
                          f'categories, got {type(data).__name__}')
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(data.get(key), list):
      raise CocoFormatError(f'{path}: no list {key!r} (a COCO keypoint file has images, '
                            'annotations and categories)')
  return data


def person_category(categories: list[Any], path: str,
                    category_id: int | None = None) -> dict[str, Any]:
  """The category whose annotations are persons: the one with `keypoints`, or
  `category_id` where several have them."""
  for c in categories:
    if not isinstance(c, dict) or 'id' not in c:
      raise CocoFormatError(f'{path}: a category without an id: {c!r}'[:200])
  if category_id is not None:
    chosen = [c for c in categories if _id(c['id'], path, 'category id') == category_id]
    if not chosen:
      raise CocoFormatError(f'{path}: no category with id {category_id} (ids: '
                            f'{[c["id"] for c in categories]})')
    category = chosen[0]
    if not category.get('keypoints'):
      raise CocoFormatError(f'{path}: category {category_id} ({category.get("name")!r}) '
                            'has no keypoints')
    return category
  with_keypoints = [c for c in categories if c.get('keypoints')]
  if not with_keypoints:
    raise CocoFormatError(f'{path}: no category has keypoints (categories: '
                          f'{[c.get("name", c["id"]) for c in categories]})')
  if len(with_keypoints) > 1:
    raise CocoFormatError(f'{path}: categories {[c["id"] for c in with_keypoints]} all '
                          'have keypoints; pick one with category_id')
  return with_keypoints[0]


def fallback_parts(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
  """Body parts by name (FALLBACK_PART_NAMES) for a file without a usable skeleton."""
  index = {skeleton.canonical_name(n): i for i, n in enumerate(names)}
  return tuple((index[a], index[b]) for a, b in FALLBACK_PART_NAMES
               if a in index and b in index)


def _file_parts(category: dict[str, Any], path: str) -> tuple[tuple[int, int], ...] | None:
  """The category's `skeleton` as 0-based pairs; None (with a warning for a bad
  edge) where it cannot describe the keypoints."""
  edges = category.get('skeleton')
  if not edges:
    return None
  count = len(category['keypoints'])
  parts = []
  for edge in edges:
    ok = (isinstance(edge, (list, tuple)) and len(edge) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= count
                  for v in edge) and edge[0] != edge[1])
    if not ok:
      logging.warning('%s: skeleton edge %s is not two different keypoints of 1..%d, so the '
                      "file's skeleton does not describe its keypoints; parts by name instead "
                      '(coco_annotations.FALLBACK_PART_NAMES)', path, edge, count)
      return None
    parts.append((edge[0] - 1, edge[1] - 1))
  return tuple(parts)


def keypoint_set_of(category: dict[str, Any], path: str, *, name: str | None = None,
                    flip_pairs: Sequence[Sequence[int]] | None = None,
                    part_pairs: Sequence[Sequence[int]] | None = None) -> skeleton.Skeleton:
  """The category's keypoint set: its names; parts from its 1-based `skeleton`
  (or FALLBACK_PART_NAMES where it has none or a bad edge); flip pairs from
  the names (skeleton.infer_flip_pairs). Given pairs (0-based) override both."""
  names = category['keypoints']
  if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
    raise CocoFormatError(f'{path}: category {category["id"]} keypoints are not a list of names')
  if part_pairs is None:
    part_pairs = _file_parts(category, path)
    if part_pairs is None:
      part_pairs = fallback_parts(names)
  if flip_pairs is None:
    flip_pairs = skeleton.infer_flip_pairs(names)
  try:
    return skeleton.Skeleton(
        name=name or str(category.get('name') or f'category_{category["id"]}'),
        joint_names=tuple(names),
        flip_pairs=tuple((int(a), int(b)) for a, b in flip_pairs),
        part_pairs=tuple((int(a), int(b)) for a, b in part_pairs))
  except ValueError as e:
    raise CocoFormatError(f'{path}: {e}') from None


def _person(ann: dict[str, Any], index: int, count: int, path: str, label: str) -> Person:
  values = ann.get('keypoints')
  if not isinstance(values, list) or len(values) != 3 * count:
    got = len(values) if isinstance(values, list) else type(values).__name__
    raise CocoFormatError(f'{path}: {label}: keypoints has {got} values, expected 3 x {count}')
  triples = _numbers(values, path, f'{label}: keypoints').reshape(count, 3)
  v = triples[:, 2]
  if not np.all(np.isin(v, (0, 1, 2))):
    raise CocoFormatError(f'{path}: {label}: visibility flags must be 0, 1 or 2, got '
                          f'{sorted(set(v.tolist()) - {0.0, 1.0, 2.0})}')
  status = v.astype(np.int32)  # v 0/1/2 are MISSING/OCCLUDED/VISIBLE
  keypoints = np.where((status != skeleton.MISSING)[:, None], triples[:, :2], 0.0)
  bbox = ann.get('bbox')
  if bbox is None or (isinstance(bbox, list) and not bbox):
    box = None
  else:
    box = _numbers(bbox, path, f'{label}: bbox')
    if box.shape != (4,):
      raise CocoFormatError(f'{path}: {label}: bbox has {box.size} values, expected x, y, w, h')
  area = ann.get('area')
  if area is None:
    area = 0.0 if box is None else max(box[2], 0.0) * max(box[3], 0.0)
  area = float(_numbers([area], path, f'{label}: area')[0])
  return Person(annotation_id=_id(ann.get('id'), path, 'an annotation id'), index=index,
                keypoints=keypoints.astype(np.float32), status=status,
                bbox=None if box is None else box.astype(np.float32), area=area)


def parse(data: dict[str, Any], path: str, *, category_id: int | None = None,
          name: str | None = None, flip_pairs: Sequence[Sequence[int]] | None = None,
          part_pairs: Sequence[Sequence[int]] | None = None) -> KeypointFile:
  """Checks a loaded file and groups its annotations by image (see load)."""
  category = person_category(data['categories'], path, category_id)
  cat_id = _id(category['id'], path, 'category id')
  joints = keypoint_set_of(category, path, name=name, flip_pairs=flip_pairs,
                           part_pairs=part_pairs)
  images: dict[int, dict[str, Any]] = {}
  for i, image in enumerate(data['images']):
    if not isinstance(image, dict) or 'id' not in image:
      raise CocoFormatError(f'{path}: images[{i}] has no id')
    image_id = _id(image['id'], path, f'images[{i}] id')
    if image_id in images:
      raise CocoFormatError(f'{path}: image id {image_id} appears twice in images')
    file_name = image.get('file_name')
    if not isinstance(file_name, str) or not file_name:
      raise CocoFormatError(f'{path}: image {image_id} has no file_name')
    images[image_id] = {'index': i, 'file_name': file_name, 'persons': [], 'crowd': [],
                        'count': 0}
  skipped: collections.Counter = collections.Counter()
  seen: set[int] = set()
  for n, ann in enumerate(data['annotations']):
    if not isinstance(ann, dict) or 'id' not in ann:
      raise CocoFormatError(f'{path}: annotations[{n}] has no id')
    ann_id = _id(ann['id'], path, f'annotations[{n}] id')
    label = f'annotation {ann_id}'
    if ann_id in seen:
      raise CocoFormatError(f'{path}: {label} appears twice')
    seen.add(ann_id)
    if _id(ann.get('category_id'), path, f'{label}: category_id') != cat_id:
      skipped[SKIP_OTHER_CATEGORY] += 1
      continue
    image_id = _id(ann.get('image_id'), path, f'{label}: image_id')
    if image_id not in images:
      raise CocoFormatError(f'{path}: {label}: image_id {image_id} is not in images')
    image = images[image_id]
    index = image['count']
    image['count'] += 1
    if ann.get('iscrowd'):
      box = ann.get('bbox')
      if not box:
        skipped[SKIP_CROWD_NO_BOX] += 1
        continue
      box = _numbers(box, path, f'{label}: bbox')
      if box.shape != (4,):
        raise CocoFormatError(f'{path}: {label}: bbox has {box.size} values, expected x, y, w, h')
      area = ann.get('area', box[2] * box[3])
      image['crowd'].append(CrowdRegion(
          annotation_id=ann_id, bbox=box.astype(np.float32),
          area=float(_numbers([area], path, f'{label}: area')[0])))
      continue
    person = _person(ann, index, joints.num_joints, path, label)
    image['persons'].append(person)
    if person.bbox is None:
      skipped[SKIP_NO_BOX] += 1
    elif not person.has_box:
      skipped[SKIP_EMPTY_BOX] += 1
    elif not person.has_keypoints:
      skipped[SKIP_NO_KEYPOINTS] += 1
  records = tuple(
      ImageRecord(image_id=image_id, index=v['index'], file_name=v['file_name'],
                  persons=tuple(v['persons']), crowd=tuple(v['crowd']))
      for image_id, v in images.items())
  return KeypointFile(path=path, category_id=cat_id, category_name=str(category.get('name', '')),
                      keypoint_set=joints, images=records, skipped=dict(skipped))


def load(path: str | os.PathLike, *, category_id: int | None = None, name: str | None = None,
         flip_pairs: Sequence[Sequence[int]] | None = None,
         part_pairs: Sequence[Sequence[int]] | None = None) -> KeypointFile:
  """Reads and checks a COCO person-keypoints file, one record per person.

  Bad input (malformed JSON, no category with keypoints, a keypoints list
  that is not 3 x K long, an annotation of an unknown image, ...) raises
  CocoFormatError naming the file and the annotation. Persons without a box
  (or with a zero-size one) or without a labelled keypoint (all v = 0; the
  flags decide, not `num_keypoints`) are kept as other persons but are not
  examples: `skipped` counts them. `iscrowd` annotations become crowd regions.
  """
  path = os.fspath(path)
  return parse(read_json(path), path, category_id=category_id, name=name,
               flip_pairs=flip_pairs, part_pairs=part_pairs)


def skipped_summary(skipped: dict[str, int]) -> str:
  """'no box: 1, no labelled keypoint: 2' (or 'none'), for one log line."""
  return ', '.join(f'{k}: {v}' for k, v in sorted(skipped.items())) or 'none'
