"""Reader of the official MPII Human Pose annotation file and of `valid.h5`.

The official `mpii_human_pose_v1_u12_1.mat` holds one MATLAB struct `RELEASE`
whose fields come in several shapes (reference.md lists the quirks: empty,
numeric or string `is_visible`, missing or empty `annopoints`, absent points,
people without `objpos`/`scale`, test images with only `objpos`/`scale`, and
scipy's `squeeze_me` collapsing one-element struct arrays to scalars). Every
field goes through one of the small normalising helpers below, so the rest of
the project only ever sees plain NumPy arrays in the project's conventions:
0-based pixel centres (`x0 = x1 - 1`, converted here and nowhere else) and
joint status 0 missing / 1 occluded / 2 visible.

A malformed record (a point without coordinates, a joint id out of range, an
image entry without a name, ...) does not stop the reader: the person (or the
image) is left out and described in `Release.problems`. A file that does not
have the expected structure at all raises ValueError at once.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from rhpe_jax.core import keypoint_sets

NUM_JOINTS = keypoint_sets.MPII.num_keypoints  # 16


class MalformedRecord(ValueError):
  """One annotation record cannot be read; the caller skips and counts it."""


@dataclasses.dataclass(frozen=True)
class Person:
  """One entry of an image's `annorect`, in 0-based pixel coordinates."""

  index: int  # 0-based position in annorect
  keypoints: np.ndarray  # (16, 2) float64 [x, y]; zeros where missing
  status: np.ndarray  # (16,) int32: 0 missing, 1 occluded, 2 visible
  objpos: np.ndarray | None  # (2,) rough person centre, or None
  scale: float | None  # person height / 200 px, or None
  head_box: np.ndarray | None  # (4,) x1 y1 x2 y2, or None

  @property
  def has_keypoints(self) -> bool:
    return bool(np.any(self.status != keypoint_sets.MISSING))

  @property
  def head_size(self) -> float:
    """PCKh normaliser: 0.6 x head-box diagonal (0 when there is no box)."""
    if self.head_box is None:
      return 0.0
    x1, y1, x2, y2 = self.head_box
    return float(0.6 * np.hypot(x2 - x1, y2 - y1))


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One entry of `RELEASE.annolist` with its well-formed people."""

  index: int  # 0-based position in annolist
  name: str
  is_train: bool  # RELEASE.img_train == 1
  people: tuple[Person, ...]  # skipped (malformed) people are absent
  single_person: frozenset[int]  # 0-based annorect indices

  def person(self, person_index: int) -> Person | None:
    for p in self.people:
      if p.index == person_index:
        return p
    return None


@dataclasses.dataclass(frozen=True)
class Release:
  """The whole annotation file."""

  images: tuple[ImageRecord, ...]  # well-formed images, in annolist order
  num_images: int  # len(RELEASE.annolist), malformed entries included
  problems: tuple[str, ...]  # one line per skipped image or person

  def by_index(self) -> dict[int, ImageRecord]:
    return {im.index: im for im in self.images}


# ----------------------------------------------------------------------------
# Normalising helpers: each turns one loadmat quirk into a plain value.


def _is_struct(value: Any) -> bool:
  return hasattr(value, '_fieldnames')


def _as_list(value: Any) -> list[Any]:
  """A struct array, a squeezed single struct, or [] -> list of elements."""
  if value is None:
    return []
  if isinstance(value, np.ndarray):
    return list(value.ravel())
  return [value]


def _is_empty(value: Any) -> bool:
  if value is None:
    return True
  if isinstance(value, np.ndarray):
    return value.size == 0
  if isinstance(value, str):
    return not value.strip()
  return False


def _field(struct: Any, name: str) -> Any:
  """struct.name, or None when the field does not exist."""
  if not _is_struct(struct) or name not in struct._fieldnames:
    return None
  return getattr(struct, name)


def _number(value: Any, what: str) -> float | None:
  """A MATLAB scalar (number, 1-element array or numeric string) -> float.

  Empty values give None; anything else that is not one finite number raises
  MalformedRecord.
  """
  if _is_empty(value):
    return None
  if isinstance(value, np.ndarray):
    if value.size != 1:
      raise MalformedRecord(f'{what}: expected one number, got shape {value.shape}')
    value = value.item()
  if isinstance(value, (bytes, np.bytes_)):
    value = value.decode('ascii', 'replace')
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise MalformedRecord(f'{what}: expected a number, got {value!r}') from None
  if not np.isfinite(number):
    raise MalformedRecord(f'{what}: not finite ({number})')
  return number


def _text(value: Any) -> str | None:
  if _is_empty(value):
    return None
  if isinstance(value, np.ndarray) and value.size == 1:
    value = value.item()
  if isinstance(value, (bytes, np.bytes_)):
    value = value.decode('utf-8', 'replace')
  return value.strip() if isinstance(value, str) else None


def _visibility(value: Any, what: str) -> int:
  """is_visible (absent, empty, 0/1, '0'/'1') -> status code.

  Empty or absent means "annotated, visibility not recorded": such a point is
  counted as visible, in agreement with valid.h5 (docs/annotations.md).
  """
  number = _number(value, what)
  if number is None:
    return keypoint_sets.VISIBLE
  if number not in (0.0, 1.0):
    raise MalformedRecord(f'{what}: expected 0 or 1, got {number}')
  return keypoint_sets.VISIBLE if number == 1.0 else keypoint_sets.OCCLUDED


def _keypoints(annopoints: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
  """annopoints (absent, empty, one point or many) -> 0-based (16,2), (16,)."""
  keypoints = np.zeros((NUM_JOINTS, 2), np.float64)
  status = np.zeros((NUM_JOINTS,), np.int32)
  if _is_empty(annopoints):
    return keypoints, status
  if not _is_struct(annopoints):
    raise MalformedRecord(f'{what}: annopoints is not a struct')
  points = _field(annopoints, 'point')
  for k, point in enumerate(_as_list(points)):
    where = f'{what} point {k}'
    if not _is_struct(point):
      raise MalformedRecord(f'{where}: not a struct')
    joint = _number(_field(point, 'id'), f'{where} id')
    x = _number(_field(point, 'x'), f'{where} x')
    y = _number(_field(point, 'y'), f'{where} y')
    if joint is None or x is None or y is None:
      raise MalformedRecord(f'{where}: truncated (id, x or y empty or absent)')
    if joint != int(joint) or not 0 <= joint < NUM_JOINTS:
      raise MalformedRecord(f'{where}: joint id {joint} outside 0..{NUM_JOINTS - 1}')
    joint = int(joint)
    if status[joint] != keypoint_sets.MISSING:
      raise MalformedRecord(f'{where}: joint id {joint} given twice')
    status[joint] = _visibility(_field(point, 'is_visible'), f'{where} is_visible')
    keypoints[joint] = (x - 1.0, y - 1.0)  # MATLAB 1-based -> 0-based
  return keypoints, status


def _objpos(value: Any, what: str) -> np.ndarray | None:
  if _is_empty(value):
    return None
  if not _is_struct(value):
    raise MalformedRecord(f'{what}: objpos is not a struct')
  x = _number(_field(value, 'x'), f'{what} objpos.x')
  y = _number(_field(value, 'y'), f'{what} objpos.y')
  if x is None or y is None:
    return None
  return np.array([x - 1.0, y - 1.0])


def _head_box(rect: Any, what: str) -> np.ndarray | None:
  values = [_number(_field(rect, k), f'{what} {k}') for k in ('x1', 'y1', 'x2', 'y2')]
  if any(v is None for v in values):
    return None
  return np.array(values, np.float64) - 1.0


def _person(rect: Any, index: int, what: str) -> Person:
  if not _is_struct(rect):
    raise MalformedRecord(f'{what}: not a struct')
  keypoints, status = _keypoints(_field(rect, 'annopoints'), what)
  scale = _number(_field(rect, 'scale'), f'{what} scale')
  if scale is not None and scale <= 0:
    raise MalformedRecord(f'{what}: scale {scale} is not positive')
  return Person(
      index=index,
      keypoints=keypoints,
      status=status,
      objpos=_objpos(_field(rect, 'objpos'), what),
      scale=scale,
      head_box=_head_box(rect, what),
  )


def _single_person(value: Any, what: str) -> frozenset[int]:
  """RELEASE.single_person{i}: 1-based person numbers -> 0-based set."""
  if _is_empty(value):
    return frozenset()
  values = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
  if np.any(values != np.round(values)) or np.any(values < 1):
    raise MalformedRecord(f'{what}: single_person {values} are not 1-based indices')
  return frozenset(int(v) - 1 for v in values)


def _cell_per_image(value: Any, num: int, name: str) -> list[Any]:
  """A cell array with one entry per image (squeezed to its content if num == 1)."""
  is_cell = isinstance(value, np.ndarray) and value.dtype == object
  if num == 1 and not (is_cell and value.size == 1):
    return [value]
  if not is_cell or value.size != num:
    size = value.size if isinstance(value, np.ndarray) else 1
    raise ValueError(
        f'MPII annotations: RELEASE.{name} has {size} entries, annolist has '
        f'{num}; expected a cell array with one entry per image')
  return list(value.ravel())


# ----------------------------------------------------------------------------
# Public API.


def parse_release(release: Any) -> Release:
  """Normalises a `RELEASE` struct read with struct_as_record=False, squeeze_me=True."""
  if not _is_struct(release):
    raise ValueError('MPII annotations: RELEASE is not a MATLAB struct')
  for name in ('annolist', 'img_train', 'single_person'):
    if name not in release._fieldnames:
      raise ValueError(
          f'MPII annotations: RELEASE has no field {name!r} (fields: '
          f'{list(release._fieldnames)}); expected the official '
          'mpii_human_pose_v1_u12_1.mat')
  annolist = _as_list(release.annolist)
  num = len(annolist)
  if num == 0 or not any(_is_struct(e) for e in annolist):
    raise ValueError(
        'MPII annotations: RELEASE.annolist holds no structs; expected one '
        'struct (image, annorect) per image')
  img_train = np.atleast_1d(np.asarray(release.img_train)).ravel()
  if img_train.size != num:
    raise ValueError(
        f'MPII annotations: RELEASE.img_train has {img_train.size} entries, '
        f'annolist has {num}; expected one flag per image')
  single = _cell_per_image(release.single_person, num, 'single_person')
  images, problems = [], []
  for i, entry in enumerate(annolist):
    what = f'annolist[{i}]'
    try:
      if not _is_struct(entry):
        raise MalformedRecord(f'{what}: not a struct')
      name = _text(_field(_field(entry, 'image'), 'name'))
      if not name:
        raise MalformedRecord(f'{what}: image.name missing or empty')
      what = f'{what} ({name})'
      is_train = _number(img_train[i], f'{what} img_train')
      if is_train not in (0.0, 1.0):
        raise MalformedRecord(f'{what}: img_train is {is_train}, expected 0 or 1')
      single_person = _single_person(single[i], what)
    except MalformedRecord as e:
      problems.append(str(e))
      continue
    people = []
    for p, rect in enumerate(_as_list(_field(entry, 'annorect'))):
      try:
        people.append(_person(rect, p, f'{what} person {p}'))
      except MalformedRecord as e:
        problems.append(str(e))
    images.append(ImageRecord(
        index=i, name=name, is_train=is_train == 1.0, people=tuple(people),
        single_person=single_person))
  return Release(images=tuple(images), num_images=num, problems=tuple(problems))


def load_release(path: str | os.PathLike) -> Release:
  """Reads `mpii_human_pose_v1_u12_1.mat` (or a file of the same structure)."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'MPII annotation file not found: {path}')
  try:
    mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
  except Exception as e:  # scipy raises several types for non-MAT files.
    raise ValueError(f'MPII annotations: cannot read {path} as a MATLAB file: {e}') from e
  if 'RELEASE' not in mat:
    found = [k for k in mat if not k.startswith('__')]
    raise ValueError(
        f'MPII annotations: {path} has no variable RELEASE (found {found}); '
        'expected the official mpii_human_pose_v1_u12_1.mat')
  return parse_release(mat['RELEASE'])


@dataclasses.dataclass(frozen=True)
class ValidationPairs:
  """Rows of `valid.h5`: which (image, person) pairs form the validation split."""

  image_index: np.ndarray  # (N,) int64, 0-based annolist index
  person_index: np.ndarray  # (N,) int64, 0-based annorect index
  image_name: tuple[str, ...] | None  # from `imgname` when present


# The datasets of pose-hg-train's `valid.h5`, one row per person.
VALID_H5_FIELDS = ('part', 'visible', 'normalize', 'center', 'scale', 'index', 'person', 'imgname')


def read_valid_h5(path: str | os.PathLike, required: Sequence[str]) -> dict[str, Any]:
  """The one reader of Tompson et al.'s `valid.h5` (pose-hg-train's layout).

  Reads every dataset of VALID_H5_FIELDS the file holds and checks them all,
  whoever asks: one row per person in each, `part` (N, 16, 2) with `visible`
  (N, 16), `index`/`person` whole 0-based numbers. `required` names the
  datasets the caller needs; a missing one is a one-line error. Returns, for
  the datasets present:
    'keypoints' (N, 16, 2) 0-based pixels (`part - 1`; 0 where not annotated)
    and 'status' (N, 16) MISSING / OCCLUDED / VISIBLE (part == (0, 0) is
    missing), from `part` and `visible`;
    'head_size' (N,) the PCKh normaliser (`normalize`);
    'center' (N, 2) 0-based and 'scale' (N,) as stored: pose-hg-train's
    adjusted box (objpos + (0, 15 scale), 1.25 x scale), not the official
    objpos/scale;
    'index', 'person' (N,) int64 (annolist / annorect indices);
    'image_name' list of str (`imgname`).
  Flags and placeholders: docs/annotations.md.
  """
  import h5py  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: MPII validation file (valid.h5) not found')
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise ValueError(f'{path}: not a readable HDF5 file ({e})') from None
  with f:
    missing = [k for k in required if k not in f]
    if missing:
      raise ValueError(f'{path}: not in the valid.h5 layout of pose-hg-train, missing {missing} '
                       f'(found {sorted(f.keys())})')
    raw = {k: np.asarray(f[k][()]) for k in VALID_H5_FIELDS if k in f}
  rows = {k: v.shape[0] if v.ndim else 1 for k, v in raw.items()}
  rows.update({k: raw[k].size for k in ('index', 'person') if k in raw})
  n = rows[next(iter(rows))] if rows else 0
  num_keypoints = keypoint_sets.MPII.num_keypoints
  out: dict[str, Any] = {}
  if 'part' in raw:
    part = raw['part'].astype(np.float64)
    if part.ndim != 3 or part.shape[1:] != (num_keypoints, 2):
      raise ValueError(f'{path}: "part" must have shape (N, {num_keypoints}, 2), got {part.shape}')
    n = part.shape[0]
  for key, count in rows.items():
    if count != n:
      raise ValueError(f'{path}: "{key}" has {count} rows, expected {n}')
  if 'part' in raw:
    visible = raw.get('visible')
    if visible is None or visible.shape != (n, num_keypoints):
      raise ValueError(f'{path}: "visible" must have shape {(n, num_keypoints)}, '
                       f'got {None if visible is None else visible.shape}')
    annotated = np.any(part != 0, axis=-1)
    out['keypoints'] = np.where(annotated[..., None], part - 1.0, 0.0)
    out['status'] = np.where(annotated,
                             np.where(visible != 0, keypoint_sets.VISIBLE, keypoint_sets.OCCLUDED),
                             keypoint_sets.MISSING).astype(np.int32)
  if 'normalize' in raw:
    if raw['normalize'].shape != (n,):
      raise ValueError(f'{path}: "normalize" must have shape {(n,)}, got {raw["normalize"].shape}')
    out['head_size'] = raw['normalize'].astype(np.float64)
  if 'center' in raw:
    out['center'] = raw['center'].astype(np.float64) - 1.0
  if 'scale' in raw:
    out['scale'] = raw['scale'].astype(np.float64)
  for key in ('index', 'person'):
    if key in raw:
      values = raw[key].astype(np.float64).ravel()
      if np.any(values != np.round(values)) or np.any(values < 0):
        raise ValueError(f'{path}: "{key}" holds values that are not 0-based indices')
      out[key] = values.astype(np.int64)
  if 'imgname' in raw:
    out['image_name'] = [v.decode('utf-8') if isinstance(v, bytes) else str(v)
                         for v in raw['imgname'].ravel()]
  return out


def load_validation_pairs(path: str | os.PathLike) -> ValidationPairs:
  """The `index`/`person` pairs of `valid.h5` (`read_valid_h5`)."""
  fields = read_valid_h5(path, required=('index', 'person'))
  names = fields.get('image_name')
  return ValidationPairs(image_index=fields['index'], person_index=fields['person'],
                         image_name=tuple(names) if names is not None else None)


def validation_keys(pairs: ValidationPairs) -> list[tuple[int, int]]:
  """The (image_index, person_index) pairs in file order."""
  return list(zip(pairs.image_index.tolist(), pairs.person_index.tolist()))


def check_pairs_match(release: Release, pairs: ValidationPairs) -> None:
  """Fails at once when valid.h5 does not belong to this annotation file."""
  by_index = release.by_index()
  for row, (i, p) in enumerate(validation_keys(pairs)):
    if i >= release.num_images:
      raise ValueError(
          f'MPII validation row {row}: image index {i} is outside annolist '
          f'({release.num_images} images); valid.h5 and the .mat do not match')
    if pairs.image_name is not None and i in by_index and (
        by_index[i].name != pairs.image_name[row]):
      raise ValueError(
          f'MPII validation row {row}: image {i} is {by_index[i].name!r} in the '
          f'.mat but {pairs.image_name[row]!r} in valid.h5; the files do not match')


def summarize_problems(problems: Sequence[str], first: int = 5) -> str:
  """'N problems; first: a; b; c' for one log line."""
  head = '; '.join(problems[:first])
  more = f' (and {len(problems) - first} more)' if len(problems) > first else ''
  return f'{len(problems)}: {head}{more}'
