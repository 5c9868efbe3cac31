"""COCO person-keypoint files (COCO 2017, CrowdPose, COCO-WholeBody, Halpe,
AP-10K, Human-Art, a user's own export): reading and checking them, one
record per person for the TFDS builder.

A keypoint-set file (`read_keypoint_set_file`) names the keypoints where the
file's categories do not (Halpe) or name them wrongly (COCO-WholeBody's name
its 17 body keypoints only), and says which annotation fields hold them
(`field`: Human-Art's `keypoints_21`, COCO-WholeBody's five fields joined).

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

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data.person_crops import box_center_scale  # pylint: disable=unused-import


class CocoFormatError(ValueError):
  """A COCO keypoint file that cannot be read as one: one line naming the file
  and, where there is one, the annotation (or image) id."""


# Body parts of a file that brings no usable `skeleton`: pairs of canonical
# keypoint names (keypoint_sets.canonical_name), each used where the file has both
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
  category_id: int = 1
  # The keypoint-set file's `boxes` (COCO-WholeBody's face_box, ...): name ->
  # (4,) float32 x, y, w, h, zeros where the annotation has none.
  part_boxes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  @property
  def has_keypoints(self) -> bool:
    return bool(np.any(self.status != keypoint_sets.MISSING))

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
  category_ids: tuple[int, ...]  # the categories whose annotations are persons (merged)
  category_name: str
  keypoint_set: keypoint_sets.KeypointSet
  images: tuple[ImageRecord, ...]
  skipped: dict[str, int]  # reason -> person annotations left out
  part_boxes: tuple[str, ...] = ()  # the keypoint-set file's `boxes`

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


def person_categories(categories: list[Any], path: str, category_id: int | None = None,
                      named: bool = False) -> list[dict[str, Any]]:
  """The categories whose annotations are persons: `category_id`'s where
  given, else every category with `keypoints` (merged: they must name the
  same keypoints unless a keypoint-set file names them, `named`), else, with
  a keypoint-set file, every category (Halpe's names none)."""
  for c in categories:
    if not isinstance(c, dict) or 'id' not in c:
      raise CocoFormatError(f'{path}: a category without an id: {c!r}'[:200])
  if category_id is not None:
    chosen = [c for c in categories if _id(c['id'], path, 'category id') == category_id]
    if not chosen:
      raise CocoFormatError(f'{path}: no category with id {category_id} (ids: '
                            f'{[c["id"] for c in categories]})')
    if not named and not chosen[0].get('keypoints'):
      raise CocoFormatError(f'{path}: category {category_id} ({chosen[0].get("name")!r}) '
                            'has no keypoints (name them in annotations/keypoint_set.json)')
    return chosen
  with_keypoints = [c for c in categories if c.get('keypoints')]
  if not with_keypoints:
    if named and categories:
      return list(categories)
    raise CocoFormatError(f'{path}: no category has keypoints (categories: '
                          f'{[c.get("name", c["id"]) for c in categories]}); name them in '
                          'annotations/keypoint_set.json')
  if not named:
    first = with_keypoints[0]
    for other in with_keypoints[1:]:
      if other['keypoints'] != first['keypoints']:
        raise CocoFormatError(
            f'{path}: categories {first["id"]} and {other["id"]} name different keypoints; '
            'pick one with category_id')
  return with_keypoints


def fallback_parts(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
  """Body parts by name (FALLBACK_PART_NAMES) for a file without a usable skeleton."""
  index = {keypoint_sets.canonical_name(n): i for i, n in enumerate(names)}
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
                    part_pairs: Sequence[Sequence[int]] | None = None) -> keypoint_sets.KeypointSet:
  """The category's keypoint set: its names; parts from its 1-based `skeleton`
  (or FALLBACK_PART_NAMES where it has none or a bad edge); flip pairs from
  the names (keypoint_sets.infer_flip_pairs). Given pairs (0-based) override both."""
  names = category['keypoints']
  if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
    raise CocoFormatError(f'{path}: category {category["id"]} keypoints are not a list of names')
  if part_pairs is None:
    part_pairs = _file_parts(category, path)
    if part_pairs is None:
      part_pairs = fallback_parts(names)
  if flip_pairs is None:
    flip_pairs = keypoint_sets.infer_flip_pairs(names)
  try:
    return keypoint_sets.KeypointSet(
        name=name or str(category.get('name') or f'category_{category["id"]}'),
        keypoint_names=tuple(names),
        flip_pairs=tuple((int(a), int(b)) for a, b in flip_pairs),
        part_pairs=tuple((int(a), int(b)) for a, b in part_pairs))
  except ValueError as e:
    raise CocoFormatError(f'{path}: {e}') from None


# The keypoint-set file of a manual dir (annotations/SET_FILE): the schema of
# a run's keypoint_set.json (keypoint_sets.KeypointSet.to_dict) plus where the
# annotations keep the keypoints and which part boxes they carry.
SET_FILE = 'keypoint_set.json'
DEFAULT_FIELD = 'keypoints'
SET_FILE_KEYS = ('name', 'source', 'keypoint_names', 'flip_pairs', 'part_pairs', 'sigmas',
                 'groups', 'field', 'boxes')


@dataclasses.dataclass(frozen=True)
class KeypointSetFile:
  """A keypoint set and how a file's annotations hold it: `fields`, joined in
  order, give the 3 x K keypoint values (one field, `keypoints`, as COCO);
  `boxes` are annotation fields of part boxes kept with each person."""

  keypoint_set: keypoint_sets.KeypointSet
  fields: tuple[str, ...] = (DEFAULT_FIELD,)
  boxes: tuple[str, ...] = ()


def _names(value: Any, path: str, key: str) -> tuple[str, ...]:
  """A field name or a list of them (a keypoint-set file's `field`, `boxes`)."""
  values = [value] if isinstance(value, str) else value
  if not isinstance(values, list) or not values or not all(
      isinstance(v, str) and v for v in values):
    raise CocoFormatError(f'{path}: {key} must be an annotation field name or a list of them, '
                          f'got {value!r}'[:200])
  return tuple(values)


def read_keypoint_set_file(path: str | os.PathLike) -> KeypointSetFile:
  """A keypoint-set file: `keypoint_names` (required), `flip_pairs` and
  `part_pairs` (0-based indices or names; inferred from the names when left
  out), `sigmas`, `groups` ({name: [start, end)}), `name` (default: the
  file's folder name), `field` and `boxes`; `source` says where its facts
  come from. Anything else, or a bad value, is one line naming the file."""
  path = os.fspath(path)
  try:
    with open(path, encoding='utf-8') as f:
      values = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CocoFormatError(f'{path}: not a JSON keypoint-set file ({e})') from None
  if not isinstance(values, dict) or 'keypoint_names' not in values:
    raise CocoFormatError(f'{path}: a keypoint-set file is a JSON object with keypoint_names')
  unknown = sorted(set(values) - set(SET_FILE_KEYS))
  if unknown:
    raise CocoFormatError(f'{path}: unknown keys {unknown} (a keypoint-set file has '
                          f'{", ".join(SET_FILE_KEYS)})')
  names = values['keypoint_names']
  if not isinstance(names, list) or not names or not all(isinstance(n, str) and n
                                                         for n in names):
    raise CocoFormatError(f'{path}: keypoint_names is not a list of names')
  folder = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path))))
  filled = {'name': folder or 'keypoint_set', 'flip_pairs': keypoint_sets.infer_flip_pairs(names),
            'part_pairs': fallback_parts(names), **values}
  try:
    keypoint_set = keypoint_sets.KeypointSet.from_dict(filled)
  except (ValueError, TypeError) as e:
    raise CocoFormatError(f'{path}: {e}') from None
  return KeypointSetFile(keypoint_set, _names(values.get('field', DEFAULT_FIELD), path, 'field'),
                         _names(values['boxes'], path, 'boxes') if 'boxes' in values else ())


def built_in_set_file(name: str) -> KeypointSetFile:
  """The keypoint-set file shipped for the built-in set `name`
  (keypoint_sets.BUILT_IN_NAMES), e.g. COCO-WholeBody's with its five fields."""
  return read_keypoint_set_file(keypoint_sets.built_in_path(name))


def _status(v: np.ndarray, path: str, label: str) -> np.ndarray:
  """COCO's v as statuses: 0 missing, 1 occluded, 2 visible; a fraction in
  (0, 1) (COCO-WholeBody's face and hand scores) is labelled: 1, as its
  neighbouring v = 1.0."""
  bad = ~(np.isin(v, (0, 1, 2)) | ((v > 0) & (v < 1)))
  if np.any(bad):
    raise CocoFormatError(f'{path}: {label}: visibility flags must be 0, 1, 2 or a fraction in '
                          f'(0, 1), got {sorted(set(v[bad].tolist()))}')
  return np.where((v > 0) & (v < 1), keypoint_sets.OCCLUDED, v).astype(np.int32)


def _box(value: Any, path: str, what: str) -> np.ndarray | None:
  """An x, y, w, h box; None where the annotation has none (absent, null, [])."""
  if value is None or (isinstance(value, list) and not value):
    return None
  box = _numbers(value, path, what)
  if box.shape != (4,):
    raise CocoFormatError(f'{path}: {what} has {box.size} values, expected x, y, w, h')
  return box


def _person(ann: dict[str, Any], index: int, count: int, path: str, label: str,
            set_file: KeypointSetFile) -> Person:
  values = []
  for field in set_file.fields:
    given = ann.get(field)
    if not isinstance(given, list):
      what = 'missing' if given is None else f'a {type(given).__name__}'
      raise CocoFormatError(f'{path}: {label}: {field} is {what}, expected a list of x, y, v')
    values += given
  fields = ' + '.join(set_file.fields)
  if len(values) != 3 * count:
    raise CocoFormatError(f'{path}: {label}: {fields} has {len(values)} values, '
                          f'expected 3 x {count}')
  triples = _numbers(values, path, f'{label}: {fields}').reshape(count, 3)
  status = _status(triples[:, 2], path, label)
  keypoints = np.where((status != keypoint_sets.MISSING)[:, None], triples[:, :2], 0.0)
  box = _box(ann.get('bbox'), path, f'{label}: bbox')
  area = ann.get('area')
  if area is None:
    area = 0.0 if box is None else max(box[2], 0.0) * max(box[3], 0.0)
  area = float(_numbers([area], path, f'{label}: area')[0])
  part_boxes = {}
  for name in set_file.boxes:
    part = _box(ann.get(name), path, f'{label}: {name}')
    part_boxes[name] = np.zeros(4, np.float32) if part is None else part.astype(np.float32)
  return Person(annotation_id=_id(ann.get('id'), path, 'an annotation id'), index=index,
                keypoints=keypoints.astype(np.float32), status=status,
                bbox=None if box is None else box.astype(np.float32), area=area,
                category_id=_id(ann.get('category_id'), path, f'{label}: category_id'),
                part_boxes=part_boxes)


def _set_name(categories: list[dict[str, Any]]) -> str:
  """A merged set's name: the one category's name, else the supercategory
  they share (AP-10K's species: 'animal'), else the first's name."""
  supers = {c.get('supercategory') for c in categories}
  if len(categories) > 1 and len(supers) == 1 and None not in supers:
    return str(supers.pop())
  return str(categories[0].get('name') or f'category_{categories[0]["id"]}')


def parse(data: dict[str, Any], path: str, *, category_id: int | None = None,
          name: str | None = None, flip_pairs: Sequence[Sequence[int]] | None = None,
          part_pairs: Sequence[Sequence[int]] | None = None,
          set_file: KeypointSetFile | None = None) -> KeypointFile:
  """Checks a loaded file and groups its annotations by image (see load)."""
  categories = person_categories(data['categories'], path, category_id,
                                 named=set_file is not None)
  cat_ids = tuple(_id(c['id'], path, 'category id') for c in categories)
  if set_file is None:
    set_file = KeypointSetFile(keypoint_set_of(categories[0], path, name=name or _set_name(
        categories), flip_pairs=flip_pairs, part_pairs=part_pairs))
  else:  # the config's overrides win over the keypoint-set file
    overrides = {'name': name, 'flip_pairs': flip_pairs, 'part_pairs': part_pairs}
    try:
      set_file = dataclasses.replace(set_file, keypoint_set=dataclasses.replace(
          set_file.keypoint_set, **{k: tuple(tuple(int(i) for i in p) for p in v)
                                    if k != 'name' else v
                                    for k, v in overrides.items() if v is not None}))
    except ValueError as e:
      raise CocoFormatError(f'{path}: {e}') from None
  keypoint_set = set_file.keypoint_set
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
    if _id(ann.get('category_id'), path, f'{label}: category_id') not in cat_ids:
      skipped[SKIP_OTHER_CATEGORY] += 1
      continue
    image_id = _id(ann.get('image_id'), path, f'{label}: image_id')
    if image_id not in images:
      raise CocoFormatError(f'{path}: {label}: image_id {image_id} is not in images')
    image = images[image_id]
    index = image['count']
    image['count'] += 1
    if ann.get('iscrowd'):
      box = _box(ann.get('bbox'), path, f'{label}: bbox')
      if box is None:
        skipped[SKIP_CROWD_NO_BOX] += 1
        continue
      area = ann.get('area', box[2] * box[3])
      image['crowd'].append(CrowdRegion(
          annotation_id=ann_id, bbox=box.astype(np.float32),
          area=float(_numbers([area], path, f'{label}: area')[0])))
      continue
    person = _person(ann, index, keypoint_set.num_keypoints, path, label, set_file)
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
  return KeypointFile(path=path, category_ids=cat_ids, category_name=_set_name(categories),
                      keypoint_set=keypoint_set, images=records, skipped=dict(skipped),
                      part_boxes=set_file.boxes)


def load(path: str | os.PathLike, *, category_id: int | None = None, name: str | None = None,
         flip_pairs: Sequence[Sequence[int]] | None = None,
         part_pairs: Sequence[Sequence[int]] | None = None,
         set_file: KeypointSetFile | None = None) -> KeypointFile:
  """Reads and checks a COCO person-keypoints file, one record per person.

  The keypoints are those `set_file` names, read from its fields, or else
  those the person categories name (categories naming the same keypoints
  are merged: each person keeps its `category_id`). `name`, `flip_pairs`
  and `part_pairs` override either.

  Bad input (malformed JSON, no category with keypoints, a keypoints list
  that is not 3 x K long, an annotation of an unknown image, ...) raises
  CocoFormatError naming the file and the annotation. Persons without a box
  (or with a zero-size one) or without a labelled keypoint (all v = 0; the
  flags decide, not `num_keypoints`) are kept as other persons but are not
  examples: `skipped` counts them. `iscrowd` annotations become crowd regions.
  """
  path = os.fspath(path)
  return parse(read_json(path), path, category_id=category_id, name=name,
               flip_pairs=flip_pairs, part_pairs=part_pairs, set_file=set_file)


def skipped_summary(skipped: dict[str, int]) -> str:
  """'no box: 1, no labelled keypoint: 2' (or 'none'), for one log line."""
  return ', '.join(f'{k}: {v}' for k, v in sorted(skipped.items())) or 'none'
