"""Keypoint sets: MPII (16 keypoints), LSP (14), COCO (17), COCO-WholeBody
(133), Halpe-FullBody (136) and any set a dataset brings (a COCO-format
file's `categories` or its keypoint-set file). One name for one thing: a
keypoint set is the set of points a network predicts; `skeleton` means only
the edges drawn between them, as COCO's files use the word.

The built-in sets are keypoint-set files shipped beside this module
(`<name>.json`, the schema of `KeypointSet.to_dict`, each with the `source`
of its facts), read on first use.

Everything that depends on the order of keypoints lives here: names,
left/right flip pairs, the keypoint pairs that form body parts, the keypoint sigmas of
COCO's OKS, the LSP-to-MPII mapping that lets the two datasets train one
network, and the name matching that carries a head from one set to another.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

# Per-keypoint annotation status, shared by datasets, targets and metrics.
MISSING = 0  # not annotated
OCCLUDED = 1  # annotated, not visible
VISIBLE = 2  # annotated and visible


@dataclasses.dataclass(frozen=True)
class KeypointSet:
  """A keypoint set: names, flip pairs and body-part (limb) pairs, 0-based ids;
  `sigmas` are the per-keypoint OKS constants (None: `oks_sigmas` gives them
  by the documented rule); `groups` name index ranges [start, end) scored
  apart (COCO-WholeBody's body, foot, face and hands), in index order."""

  name: str
  keypoint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  part_pairs: tuple[tuple[int, int], ...]
  sigmas: tuple[float, ...] | None = None
  groups: tuple[tuple[str, int, int], ...] = ()

  def __post_init__(self):
    count = len(self.keypoint_names)
    if len(set(self.keypoint_names)) != count:
      raise ValueError(f'keypoint set {self.name!r}: keypoint names repeat: '
                       f'{list(self.keypoint_names)}')
    for kind, pairs in (('flip', self.flip_pairs), ('part', self.part_pairs)):
      for pair in pairs:
        if len(pair) != 2 or not all(0 <= int(i) < count for i in pair) or pair[0] == pair[1]:
          raise ValueError(f'keypoint set {self.name!r}: {kind} pair {tuple(pair)} is not two '
                           f'different keypoints of {count}')
    flipped = [i for pair in self.flip_pairs for i in pair]
    if len(set(flipped)) != len(flipped):
      raise ValueError(f'keypoint set {self.name!r}: a keypoint is in two flip pairs: '
                       f'{self.flip_pairs}')
    if self.sigmas is not None and (len(self.sigmas) != count or min(self.sigmas) <= 0):
      raise ValueError(f'keypoint set {self.name!r}: {len(self.sigmas)} sigmas for {count} '
                       'keypoints (each > 0)')
    if len({g[0] for g in self.groups}) != len(self.groups) or not all(
        0 <= start < end <= count for _, start, end in self.groups):
      raise ValueError(f'keypoint set {self.name!r}: groups {list(self.groups)} are not named '
                       f'ranges [start, end) of the {count} keypoints')

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  @property
  def num_parts(self) -> int:
    return len(self.part_pairs)

  @property
  def flip_permutation(self) -> np.ndarray:
    """Index array: keypoint j of a mirrored image is keypoint perm[j] of the original."""
    perm = np.arange(self.num_keypoints)
    for a, b in self.flip_pairs:
      perm[a], perm[b] = b, a
    return perm

  def keypoint_index(self, name: str) -> int:
    return self.keypoint_names.index(name)

  def to_dict(self) -> dict[str, Any]:
    """The set as JSON-ready lists (a dataset's metadata, a workdir's file)."""
    return {'name': self.name, 'keypoint_names': list(self.keypoint_names),
            'flip_pairs': [list(p) for p in self.flip_pairs],
            'part_pairs': [list(p) for p in self.part_pairs],
            'sigmas': None if self.sigmas is None else list(self.sigmas),
            'groups': {name: [start, end] for name, start, end in self.groups}}

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'KeypointSet':
    """The inverse of `to_dict`; a pair may name its keypoints instead of
    giving their 0-based indices (a keypoint-set file written by hand), and
    `groups` may be left out."""
    missing = {'name', 'keypoint_names', 'flip_pairs', 'part_pairs'} - set(values)
    if missing:
      raise ValueError(f'a keypoint set needs {sorted(missing)}; got keys {sorted(values)}')
    names = tuple(str(n) for n in values['keypoint_names'])
    index = {n: i for i, n in enumerate(names)}

    def keypoint(value: Any, kind: str) -> int:
      if isinstance(value, str):
        if value not in index:
          raise ValueError(f'keypoint set {values["name"]!r}: {kind} pair names {value!r}, '
                           'which is not one of its keypoint names')
        return index[value]
      if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f'keypoint set {values["name"]!r}: {kind} pair holds {value!r}, '
                         'neither a 0-based index nor a keypoint name')
      return int(value)

    def pairs(kind: str) -> tuple[tuple[int, int], ...]:
      given = values[f'{kind}_pairs']
      if not isinstance(given, (list, tuple)) or not all(
          isinstance(p, (list, tuple)) and len(p) == 2 for p in given):
        raise ValueError(f'keypoint set {values["name"]!r}: {kind}_pairs is not a list of '
                         'pairs')
      return tuple((keypoint(a, kind), keypoint(b, kind)) for a, b in given)

    groups = values.get('groups') or {}
    # A mapping (a ConfigDict too, which reorders its keys): the groups are
    # kept in the order of their ranges.
    if not hasattr(groups, 'items') or not all(
        isinstance(r, (list, tuple)) and len(r) == 2 for _, r in groups.items()):
      raise ValueError(f'keypoint set {values["name"]!r}: groups must map a name to '
                       f'[start, end), got {groups!r}'[:200])
    sigmas = values.get('sigmas')
    return cls(name=str(values['name']), keypoint_names=names,
               flip_pairs=pairs('flip'), part_pairs=pairs('part'),
               sigmas=None if sigmas is None else tuple(float(v) for v in sigmas),
               groups=tuple(sorted(((str(g), int(r[0]), int(r[1])) for g, r in groups.items()),
                                   key=lambda group: group[1:])))


# LSP joint k is MPII joint LSP_TO_MPII[k]; MPII's pelvis (6) and thorax (7)
# have no LSP counterpart. LSP's "neck" is MPII's "upper neck".
LSP_TO_MPII = np.array([0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9])

# Joint groups of the paper's tables (MPII ids); "total" leaves out pelvis and
# thorax.
MPII_TABLE_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ('Head', (8, 9)),
    ('Shoulder', (12, 13)),
    ('Elbow', (11, 14)),
    ('Wrist', (10, 15)),
    ('Hip', (2, 3)),
    ('Knee', (1, 4)),
    ('Ankle', (0, 5)),
)
MPII_TOTAL_JOINTS = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)

LSP_TABLE_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ('Head', (12, 13)),
    ('Shoulder', (8, 9)),
    ('Elbow', (7, 10)),
    ('Wrist', (6, 11)),
    ('Hip', (2, 3)),
    ('Knee', (1, 4)),
    ('Ankle', (0, 5)),
)
LSP_TOTAL_JOINTS = tuple(range(14))


def lsp_to_mpii(keypoints: np.ndarray, status: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
  """Maps LSP keypoints (..., 14, 2) and status (..., 14) into MPII order.

  Pelvis and thorax come out missing (status 0, coordinates 0).
  """
  keypoints = np.asarray(keypoints)
  status = np.asarray(status)
  count = _read_built_in('mpii').num_keypoints
  out_kp = np.zeros(keypoints.shape[:-2] + (count, 2), keypoints.dtype)
  out_st = np.zeros(status.shape[:-1] + (count,), status.dtype)
  out_kp[..., LSP_TO_MPII, :] = keypoints
  out_st[..., LSP_TO_MPII] = status
  return out_kp, out_st


# config.keypoint_set -> the keypoint set of the file <name>.json beside this
# module; 'dataset' (DATASET) takes the set from the dataset's metadata
# (rhpe_jax.data.datasets.resolve_keypoint_set).
BUILT_IN_NAMES = ('coco', 'coco_wholebody', 'halpe', 'lsp', 'mpii')
DATASET = 'dataset'
CONFIG_NAMES = (*BUILT_IN_NAMES, DATASET)


def built_in_path(name: str) -> str:
  """The shipped keypoint-set file of the built-in set `name`."""
  if name not in BUILT_IN_NAMES:
    raise ValueError(f'unknown keypoint set {name!r}; expected one of {sorted(BUILT_IN_NAMES)}')
  return os.path.join(os.path.dirname(__file__), f'{name}.json')


@functools.cache
def _read_built_in(name: str) -> KeypointSet:
  with open(built_in_path(name)) as f:
    return KeypointSet.from_dict(json.load(f))


def __getattr__(name: str) -> Any:
  """MPII, LSP, COCO and BUILT_IN, read from the package files on first use
  (nothing is read on import)."""
  if name in ('MPII', 'LSP', 'COCO'):
    return _read_built_in(name.lower())
  if name == 'BUILT_IN':
    return {n: _read_built_in(n) for n in BUILT_IN_NAMES}
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def built_in(name: str) -> KeypointSet:
  """Returns the built-in keypoint set called `name` (BUILT_IN_NAMES)."""
  built_in_path(name)  # an unknown name: one line naming the known ones
  return _read_built_in(name)


def of_config(config: Any) -> KeypointSet:
  """The keypoint set a config trains and evaluates: a built-in one by name, or
  the set a dataset brought (`config.dataset_keypoint_set`, filled in from the
  dataset's metadata by rhpe_jax.data.datasets.resolve_keypoint_set)."""
  if config.keypoint_set != DATASET:
    return built_in(config.keypoint_set)
  values = getattr(config, 'dataset_keypoint_set', None)
  if not values:
    raise ValueError("config.keypoint_set is 'dataset' but config.dataset_keypoint_set is empty: "
                     "the dataset's keypoint set has not been read "
                     '(datasets.resolve_keypoint_set)')
  return KeypointSet.from_dict(values)


# Name matching across keypoint sets. A name is lower-cased, its separators
# (space, '-', '.', camel case) become '_', a leading 'l'/'r' word becomes
# 'left'/'right', and ALIASES names the same point under another name.
ALIASES = {'upper_neck': 'neck', 'top_head': 'head_top'}
_SIDE = {'l': 'left', 'r': 'right', 'left': 'left', 'right': 'right'}


def canonical_name(name: str) -> str:
  """`name` in the form names are compared in: 'Left Knee', 'l_knee',
  'leftKnee' and 'left-knee' all become 'left_knee'."""
  words = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', name.strip())
  words = [w for w in re.split(r'[\s_\-.]+', words.lower()) if w]
  if words and words[0] in _SIDE:
    words[0] = _SIDE[words[0]]
  joined = '_'.join(words)
  return ALIASES.get(joined, joined)


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
  """Left/right pairs from keypoint names: 'left_x'/'right_x', 'Left X'/
  'Right X', 'l_x'/'r_x' (any of `canonical_name`'s spellings). A name with a
  side and no partner of the other side stays unpaired."""
  index = {canonical_name(n): i for i, n in enumerate(names)}
  pairs = []
  for name, i in index.items():
    partner = 'right_' + name[len('left_'):]
    if name.startswith('left_') and partner in index:
      pairs.append(tuple(sorted((i, index[partner]))))
  return tuple(sorted(pairs))


# OKS sigma of a keypoint with no COCO counterpart: COCO's shoulder value,
# which CrowdPose also gives its 'head' and 'neck'.
DEFAULT_SIGMA = 0.079


def oks_sigmas(keypoint_set: KeypointSet, default: float = DEFAULT_SIGMA) -> tuple[float, ...]:
  """The OKS sigmas of a set: its own when it has them; otherwise COCO's for
  every keypoint whose canonical name is a COCO keypoint's, and `default`
  for the rest."""
  if keypoint_set.sigmas is not None:
    return keypoint_set.sigmas
  coco_set = _read_built_in('coco')
  coco = {canonical_name(n): s for n, s in zip(coco_set.keypoint_names, coco_set.sigmas)}
  return tuple(coco.get(canonical_name(n), default) for n in keypoint_set.keypoint_names)


def match_keypoints(source: KeypointSet, target: KeypointSet) -> list[int | None]:
  """For each keypoint of `target`, the index of the `source` keypoint of the
  same canonical name (None where `source` has none): how a trained head is
  carried to another keypoint set. MPII 'r_ankle' is COCO 'right_ankle'."""
  index = {canonical_name(n): i for i, n in enumerate(source.keypoint_names)}
  return [index.get(canonical_name(n)) for n in target.keypoint_names]


# The file a training run (or an import) writes its keypoint set to in its
# workdir, so that prediction and fine-tuning need no dataset.
WORKDIR_FILE = 'keypoint_set.json'


def save_to_workdir(keypoint_set: KeypointSet, workdir: str) -> None:
  """Writes `keypoint_set` to `workdir`/WORKDIR_FILE (whole or not at all)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, WORKDIR_FILE)
  with open(path + '.partial', 'w') as f:
    json.dump(keypoint_set.to_dict(), f, indent=1)
  os.replace(path + '.partial', path)


def read_from_workdir(workdir: str) -> KeypointSet | None:
  """The keypoint set a run left in `workdir`, or None when it left none."""
  path = os.path.join(workdir, WORKDIR_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return KeypointSet.from_dict(json.load(f))
    except (json.JSONDecodeError, ValueError) as error:
      raise ValueError(f'{path}: not a keypoint set ({error})') from None
