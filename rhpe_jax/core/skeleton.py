"""Joint sets of MPII (16 joints) and LSP (14 joints).

Everything that depends on the order of joints lives here: names, left/right
flip pairs, the joint pairs that form body parts, and the LSP-to-MPII mapping
that lets the two datasets train one network.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Per-joint annotation status, shared by datasets, targets and metrics.
MISSING = 0  # not annotated
OCCLUDED = 1  # annotated, not visible
VISIBLE = 2  # annotated and visible


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """A joint set: names, flip pairs and body-part (limb) pairs, 0-based ids."""

  name: str
  joint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  part_pairs: tuple[tuple[int, int], ...]

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


SKELETONS = {'lsp': LSP, 'mpii': MPII}  # config.skeleton -> the joint set


def get_skeleton(name: str) -> Skeleton:
  """Returns the joint set called `name` ('mpii' or 'lsp')."""
  if name not in SKELETONS:
    raise ValueError(f'unknown skeleton {name!r}; expected one of {sorted(SKELETONS)}')
  return SKELETONS[name]
