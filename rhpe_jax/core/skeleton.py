"""Joint sets: MPII (16 joints), LSP (14), COCO (17) and any set a dataset
brings (a COCO-format file's `categories`).

Everything that depends on the order of joints lives here: names, left/right
flip pairs, the joint pairs that form body parts, the keypoint sigmas of
COCO's OKS, the LSP-to-MPII mapping that lets the two datasets train one
network, and the name matching that carries a head from one set to another.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

# Per-joint annotation status, shared by datasets, targets and metrics.
MISSING = 0  # not annotated
OCCLUDED = 1  # annotated, not visible
VISIBLE = 2  # annotated and visible


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """A joint set: names, flip pairs and body-part (limb) pairs, 0-based ids;
  `sigmas` are the per-keypoint OKS constants (None: `oks_sigmas` gives them
  by the documented rule)."""

  name: str
  joint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  part_pairs: tuple[tuple[int, int], ...]
  sigmas: tuple[float, ...] | None = None

  def __post_init__(self):
    count = len(self.joint_names)
    if len(set(self.joint_names)) != count:
      raise ValueError(f'keypoint set {self.name!r}: keypoint names repeat: {list(self.joint_names)}')
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

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def num_parts(self) -> int:
    return len(self.part_pairs)

  @property
  def flip_permutation(self) -> np.ndarray:
    """Index array: joint j of a mirrored image is joint perm[j] of the original."""
    perm = np.arange(self.num_joints)
    for a, b in self.flip_pairs:
      perm[a], perm[b] = b, a
    return perm

  def joint_index(self, name: str) -> int:
    return self.joint_names.index(name)

  def to_dict(self) -> dict[str, Any]:
    """The set as JSON-ready lists (a dataset's metadata, a workdir's file)."""
    return {'name': self.name, 'keypoint_names': list(self.joint_names),
            'flip_pairs': [list(p) for p in self.flip_pairs],
            'part_pairs': [list(p) for p in self.part_pairs],
            'sigmas': None if self.sigmas is None else list(self.sigmas)}

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'Skeleton':
    """The inverse of `to_dict`."""
    missing = {'name', 'keypoint_names', 'flip_pairs', 'part_pairs'} - set(values)
    if missing:
      raise ValueError(f'a keypoint set needs {sorted(missing)}; got keys {sorted(values)}')
    sigmas = values.get('sigmas')
    return cls(name=str(values['name']),
               joint_names=tuple(str(n) for n in values['keypoint_names']),
               flip_pairs=tuple((int(a), int(b)) for a, b in values['flip_pairs']),
               part_pairs=tuple((int(a), int(b)) for a, b in values['part_pairs']),
               sigmas=None if sigmas is None else tuple(float(v) for v in sigmas))


MPII = Skeleton(
    name='mpii',
    joint_names=(
        'r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis',
        'thorax', 'upper_neck', 'head_top', 'r_wrist', 'r_elbow',
        'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    # The 15 body parts of the authors' release (reference.md).
    part_pairs=((0, 1), (1, 2), (2, 6), (3, 4), (4, 5), (6, 3), (7, 9),
                (8, 9), (10, 11), (11, 12), (12, 7), (13, 7), (13, 14),
                (14, 15), (6, 7)),
)

LSP = Skeleton(
    name='lsp',
    joint_names=(
        'r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'r_wrist',
        'r_elbow', 'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist', 'neck',
        'head_top'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    # MPII's parts that do not need pelvis or thorax, plus neck-shoulder and
    # hip-hip links to close the torso.
    part_pairs=((0, 1), (1, 2), (3, 4), (4, 5), (12, 13), (6, 7), (7, 8),
                (8, 12), (9, 12), (9, 10), (10, 11), (2, 3), (8, 2), (9, 3)),
)

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
  out_kp = np.zeros(keypoints.shape[:-2] + (MPII.num_joints, 2), keypoints.dtype)
  out_st = np.zeros(status.shape[:-1] + (MPII.num_joints,), status.dtype)
  out_kp[..., LSP_TO_MPII, :] = keypoints
  out_st[..., LSP_TO_MPII] = status
  return out_kp, out_st


# COCO's 17 person keypoints, their 19 skeleton edges (0-based) and the OKS
# sigmas of the COCO keypoint evaluation (cocodataset.org/#keypoints-eval).
COCO = Skeleton(
    name='coco',
    joint_names=(
        'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
        'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
        'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    part_pairs=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                (3, 5), (4, 6)),
    sigmas=(.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
            .087, .087, .089, .089),
)

# config.skeleton -> the joint set; 'dataset' (DATASET_SKELETON) takes the set
# from the dataset's metadata (rhpe_jax.data.datasets.resolve_keypoint_set).
SKELETONS = {'coco': COCO, 'lsp': LSP, 'mpii': MPII}
DATASET_SKELETON = 'dataset'
SKELETON_NAMES = (*SKELETONS, DATASET_SKELETON)


def get_skeleton(name: str) -> Skeleton:
  """Returns the built-in joint set called `name` ('coco', 'lsp' or 'mpii')."""
  if name not in SKELETONS:
    raise ValueError(f'unknown skeleton {name!r}; expected one of {sorted(SKELETONS)}')
  return SKELETONS[name]


def of_config(config: Any) -> Skeleton:
  """The joint set a config trains and evaluates: a built-in one by name, or
  the set a dataset brought (`config.keypoint_set`, filled in from the
  dataset's metadata by rhpe_jax.data.datasets.resolve_keypoint_set)."""
  if config.skeleton != DATASET_SKELETON:
    return get_skeleton(config.skeleton)
  values = getattr(config, 'keypoint_set', None)
  if not values:
    raise ValueError("config.skeleton is 'dataset' but config.keypoint_set is empty: the "
                     "dataset's keypoint set has not been read (datasets.resolve_keypoint_set)")
  return Skeleton.from_dict(values)


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


def oks_sigmas(joints: Skeleton, default: float = DEFAULT_SIGMA) -> tuple[float, ...]:
  """The OKS sigmas of a set: its own when it has them; otherwise COCO's for
  every keypoint whose canonical name is a COCO keypoint's, and `default`
  for the rest."""
  if joints.sigmas is not None:
    return joints.sigmas
  coco = {canonical_name(n): s for n, s in zip(COCO.joint_names, COCO.sigmas)}
  return tuple(coco.get(canonical_name(n), default) for n in joints.joint_names)


def match_keypoints(source: Skeleton, target: Skeleton) -> list[int | None]:
  """For each keypoint of `target`, the index of the `source` keypoint of the
  same canonical name (None where `source` has none): how a trained head is
  carried to another keypoint set. MPII 'r_ankle' is COCO 'right_ankle'."""
  index = {canonical_name(n): i for i, n in enumerate(source.joint_names)}
  return [index.get(canonical_name(n)) for n in target.joint_names]


# The file a training run (or an import) writes its joint set to in its
# workdir, so that prediction and fine-tuning need no dataset.
WORKDIR_FILE = 'keypoint_set.json'


def save_to_workdir(joints: Skeleton, workdir: str) -> None:
  """Writes `joints` to `workdir`/WORKDIR_FILE (whole or not at all)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, WORKDIR_FILE)
  with open(path + '.partial', 'w') as f:
    json.dump(joints.to_dict(), f, indent=1)
  os.replace(path + '.partial', path)


def read_from_workdir(workdir: str) -> Skeleton | None:
  """The joint set a run left in `workdir`, or None when it left none."""
  path = os.path.join(workdir, WORKDIR_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return Skeleton.from_dict(json.load(f))
    except (json.JSONDecodeError, ValueError) as error:
      raise ValueError(f'{path}: not a keypoint set ({error})') from None
