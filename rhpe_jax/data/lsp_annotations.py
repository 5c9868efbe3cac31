"""Reader of the Leeds Sports Pose `joints.mat` files (LSP and LSPET).

The two releases store the same 14 joints in two layouts with opposite flags:

* LSP original (`lsp_dataset.zip`, 2000 images): `joints` is (3, 14, N); rows
  are x, y and a flag that is 0 for a visible joint and 1 for an occluded one.
  The release's README calls the flag "visibility", but the common reading
  is that 1 marks occlusion (convolutional pose machines' `genJSON.m` and
  derived converters use `1 - flag` as the visibility).
* LSPET (`lspet_dataset.zip`, 10000 images): `joints` is (14, 3, N); columns
  are x, y and a flag that is 1 for a visible joint, 0 otherwise. A joint with
  flag 0 has no location: its x, y are placeholders outside the image (in the
  first 300 images all 551 such joints lie outside their frame, e.g.
  (0, -26.1), or one point shared by several joints of an image).

So the two flags are read differently. LSP: every joint is annotated, status
is VISIBLE (2) or OCCLUDED (1), and occluded joints keep their (real,
estimated) coordinates. LSPET: flag 1 is VISIBLE, flag 0 is MISSING (0) with
coordinates (0, 0), so that no placeholder ever reaches a crop box, a target
or a metric. Coordinates are MATLAB 1-based and converted once, here, to
0-based pixel centres; annotated joints outside the frame keep their
coordinates.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from rhpe_jax.core import keypoint_sets

NUM_JOINTS = keypoint_sets.LSP.num_keypoints  # 14

# layout name -> (shape description, release file)
LAYOUTS = {
    'original': ('(3, 14, N), third row 1 = occluded', 'lsp_dataset.zip'),
    'extended': ('(14, 3, N), third column 1 = visible', 'lspet_dataset.zip'),
}


@dataclasses.dataclass(frozen=True)
class LspJoints:
  """Joints of N images in the project's conventions."""

  keypoints: np.ndarray  # (N, 14, 2) float64, 0-based [x, y]
  status: np.ndarray  # (N, 14) int32: 0 missing (LSPET) / 1 occluded (LSP) / 2 visible
  valid: np.ndarray  # (N,) bool: False for a malformed record
  problems: tuple[str, ...]  # one line per malformed record

  @property
  def num_images(self) -> int:
    return self.keypoints.shape[0]


def parse_joints(joints: np.ndarray, layout: str) -> LspJoints:
  """Converts a raw `joints` array of the given layout ('original'/'extended')."""
  if layout not in LAYOUTS:
    raise ValueError(f'unknown LSP layout {layout!r}; expected one of {sorted(LAYOUTS)}')
  joints = np.asarray(joints)
  if not np.issubdtype(joints.dtype, np.number):
    raise ValueError(f'LSP joints: expected a numeric array, got dtype {joints.dtype}')
  if layout == 'original':
    ok = joints.ndim == 3 and joints.shape[:2] == (3, NUM_JOINTS)
    xyf = np.transpose(joints, (2, 1, 0)) if ok else None  # (N, 14, 3)
  else:
    ok = joints.ndim == 3 and joints.shape[:2] == (NUM_JOINTS, 3)
    xyf = np.transpose(joints, (2, 0, 1)) if ok else None  # (N, 14, 3)
  if not ok:
    shape, release = LAYOUTS[layout]
    raise ValueError(
        f'LSP joints: expected shape {shape} for the {layout!r} layout '
        f'({release}), got {joints.shape}')
  xyf = xyf.astype(np.float64)
  flags = xyf[..., 2]
  if layout == 'original':
    status = np.where(flags == 0, keypoint_sets.VISIBLE, keypoint_sets.OCCLUDED)
  else:
    status = np.where(flags == 1, keypoint_sets.VISIBLE, keypoint_sets.MISSING)
  status = status.astype(np.int32)
  keypoints = xyf[..., :2] - 1.0  # MATLAB 1-based -> 0-based
  # A missing joint's x, y are placeholders: store none of them.
  keypoints = np.where((status == keypoint_sets.MISSING)[..., None], 0.0, keypoints)

  valid = np.ones(xyf.shape[0], bool)
  problems = []
  for i in range(xyf.shape[0]):
    if not np.all(np.isfinite(xyf[i])):
      valid[i] = False
      problems.append(f'image {i}: joints hold non-finite values')
    elif not np.all(np.isin(flags[i], (0.0, 1.0))):
      valid[i] = False
      problems.append(f'image {i}: visibility flags {np.unique(flags[i])} are not 0/1')
  return LspJoints(keypoints=keypoints, status=status, valid=valid,
                   problems=tuple(problems))


def load_joints(path: str | os.PathLike, layout: str) -> LspJoints:
  """Reads `joints.mat` of LSP ('original') or LSPET ('extended')."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'LSP joints file not found: {path}')
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for non-MAT files.
    raise ValueError(f'LSP joints: cannot read {path} as a MATLAB file: {e}') from e
  if 'joints' not in mat:
    found = [k for k in mat if not k.startswith('__')]
    raise ValueError(f'LSP joints: {path} has no variable "joints" (found {found})')
  return parse_joints(mat['joints'], layout)


def centre_and_scale_from_keypoints(
    keypoints: np.ndarray, status: np.ndarray, margin: float = 1.25
) -> tuple[np.ndarray, float]:
  """Rough person centre and MPII-style scale from annotated joints.

  objpos = centre of the annotated joints' bounding box;
  scale = margin x max(box width, box height) / 200, so that the release's
  300 x scale window (1.875 x the box side for margin 1.25) covers the person.
  """
  keypoints = np.asarray(keypoints, np.float64)
  annotated = np.asarray(status) != keypoint_sets.MISSING
  if annotated.sum() < 2:
    raise ValueError('need at least two annotated joints to derive centre and scale')
  pts = keypoints[annotated]
  lo, hi = pts.min(axis=0), pts.max(axis=0)
  extent = float(np.max(hi - lo))
  if not np.isfinite(extent) or extent <= 0:
    raise ValueError('annotated joints span no area; cannot derive a scale')
  return (lo + hi) / 2.0, margin * extent / 200.0
