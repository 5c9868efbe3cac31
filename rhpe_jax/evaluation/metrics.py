"""Pose metrics that produce the published numbers: PCKh (MPII), PCK (LSP),
their AUC, and the paper's keypoint-visibility average precision.

Host-side NumPy. The MPII definitions match the official evaluation code
(evalMPII from the MPII Human Pose site, as kept in anibali/eval-mpii-pose:
`getDistPCKh.m`, `computePCK.m`, `genTablePCK.m`, `area_under_curve.m`), which
the HRNet and pose-hg-train Python ports follow:

- distance normalised by the head size (0.6 x the head-box diagonal, the
  `normalize` field of valid.h5); correct iff `distance / head_size <= t`
  (here with a 1e-10 relative slack, see `_BOUNDARY_RTOL`);
- joints without ground truth are left out; predictions that are NaN or
  infinite count as wrong (evalMPII sets them to inf);
- per-joint PCKh = correct / annotated for that joint;
- a table column (Head, Shoulder, ...) = the mean of its joints' PCKh
  (`genTablePCK`: e.g. Head = mean(upper neck, head top));
- Total = correct / annotated pooled over all joints but pelvis and thorax
  (`computePCK`), i.e. weighted by joint count;
- AUC = area under the Total PCKh curve for thresholds 0:0.01:0.5 (51 values),
  with the thresholds rescaled to [0, 1] and the curve linearly interpolated
  (`area_under_curve(scale01(range), pck)`, a quadrature of the piecewise
  linear curve, i.e. the trapezoidal rule), in percent.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from rhpe_jax.core import config as config_lib
from rhpe_jax.core import keypoint_sets

# MATLAB's `0:0.01:0.5`, each value the double nearest to k / 100.
PCKH_AUC_THRESHOLDS = np.arange(51) / 100.0

# Relative slack on the `<=` test: a point placed exactly on the threshold
# circle must count as correct even after float rounding of its coordinates
# (about 1e-15 relative). It changes no verdict for real predictions.
_BOUNDARY_RTOL = 1e-10

TORSO_DEFINITIONS = config_lib.TORSO_DEFINITIONS  # config.torso_definition
# The shoulder-hip diagonals (canonical names) whose mean is each torso size.
TORSO_JOINTS = {
    'lsp_diagonal': (('left_shoulder', 'right_hip'),),
    'mean_diagonals': (('left_shoulder', 'right_hip'), ('right_shoulder', 'left_hip')),
}


def generic_table_groups(keypoint_set: keypoint_sets.KeypointSet
                         ) -> tuple[tuple[str, tuple[int, ...]], ...]:
  """Table groups of any keypoint set: its keypoints grouped by canonical
  name with the side (left_/right_) stripped, in order of first appearance,
  e.g. COCO's Nose, Eye, Ear, Shoulder, ..., Ankle (Shoulder = left_shoulder
  + right_shoulder). A title is the stripped name with spaces, capitalised."""
  groups: dict[str, list[int]] = {}
  for index, name in enumerate(keypoint_set.keypoint_names):
    base = re.sub(r'^(left|right)_', '', keypoint_sets.canonical_name(name))
    groups.setdefault(base, []).append(index)
  return tuple((base.replace('_', ' ').capitalize(), tuple(ids)) for base, ids in groups.items())


def _table_spec(keypoint_set: keypoint_sets.KeypointSet
                ) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], tuple[int, ...]]:
  """The paper's table groups and the joints of "Total" for a keypoint set:
  MPII's and LSP's as the paper has them, any other set's by name
  (`generic_table_groups`) with every keypoint in "Total"."""
  if keypoint_set.name == 'mpii':
    return keypoint_sets.MPII_TABLE_GROUPS, keypoint_sets.MPII_TOTAL_JOINTS
  if keypoint_set.name == 'lsp':
    return keypoint_sets.LSP_TABLE_GROUPS, keypoint_sets.LSP_TOTAL_JOINTS
  return generic_table_groups(keypoint_set), tuple(range(keypoint_set.num_keypoints))


def _check_inputs(pred: Any, gt: Any, mask: Any, normaliser: Any, name: str,
                  drop_undefined: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Validates shapes; returns float arrays and the boolean counted-mask.

  With `drop_undefined`, a person whose normaliser is not positive and finite
  (a torso with a missing end) is left out instead of rejected.
  """
  pred = np.asarray(pred, dtype=np.float64)
  gt = np.asarray(gt, dtype=np.float64)
  mask = np.asarray(mask)
  normaliser = np.asarray(normaliser, dtype=np.float64)
  if gt.ndim != 3 or gt.shape[-1] != 2:
    raise ValueError(f'gt must have shape (N, J, 2), got {gt.shape}')
  if pred.shape != gt.shape:
    raise ValueError(f'pred shape {pred.shape} differs from gt shape {gt.shape}')
  if mask.shape != gt.shape[:2]:
    raise ValueError(f'mask must have shape {gt.shape[:2]}, got {mask.shape}')
  if normaliser.shape != gt.shape[:1]:
    raise ValueError(f'{name} must have shape {gt.shape[:1]}, got {normaliser.shape}')
  # A non-finite ground truth is missing ground truth (evalMPII stores NaN).
  counted = (mask != 0) & np.all(np.isfinite(gt), axis=-1)
  if drop_undefined:
    defined = np.isfinite(normaliser) & (normaliser > 0)
    counted &= defined[:, None]
    normaliser = np.where(defined, normaliser, 1.0)
  persons = np.any(counted, axis=1)
  bad = persons & ~(np.isfinite(normaliser) & (normaliser > 0))
  if np.any(bad):
    raise ValueError(
        f'{name} must be positive and finite for every person with annotated '
        f'joints; person {int(np.argmax(bad))} has {normaliser[bad][0]}')
  return pred, gt, counted, normaliser


def _normalised_distances(pred: np.ndarray, gt: np.ndarray,
                          normaliser: np.ndarray) -> np.ndarray:
  """`|pred - gt| / normaliser`, (N, J); inf where the prediction is not finite."""
  safe = np.where(np.isfinite(normaliser) & (normaliser > 0), normaliser, 1.0)
  dist = np.hypot(pred[..., 0] - gt[..., 0], pred[..., 1] - gt[..., 1])
  dist = np.where(np.isfinite(dist), dist, np.inf)
  return dist / safe[:, None]


def _is_correct(scaled: np.ndarray, threshold: float) -> np.ndarray:
  return scaled <= threshold * (1.0 + _BOUNDARY_RTOL)


def _summarise(scaled: np.ndarray, counted: np.ndarray, threshold: float,
               keypoint_set: keypoint_sets.KeypointSet, metric: str) -> dict:
  groups, total_joints = _table_spec(keypoint_set)
  if scaled.shape[1] != keypoint_set.num_keypoints:
    raise ValueError(
        f'{keypoint_set.name} has {keypoint_set.num_keypoints} joints, the arrays have '
        f'{scaled.shape[1]}')
  correct = np.sum(_is_correct(scaled, threshold) & counted, axis=0)
  counts = np.sum(counted, axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_joint = np.where(counts > 0, 100.0 * correct / np.maximum(counts, 1), np.nan)
  result = {
      'metric': metric,
      'keypoint_set': keypoint_set.name,
      'threshold': float(threshold),
      'keypoint_names': list(keypoint_set.keypoint_names),
      'per_joint': per_joint,
      'correct': correct.astype(np.int64),
      'counts': counts.astype(np.int64),
      'groups': {},
  }
  for name, joints in groups:
    values = per_joint[list(joints)]
    values = values[np.isfinite(values)]
    result['groups'][name] = float(np.mean(values)) if values.size else float('nan')
  total_joints = list(total_joints)
  total_counted = int(np.sum(counts[total_joints]))
  result['Total'] = (100.0 * float(np.sum(correct[total_joints])) / total_counted
                     if total_counted else float('nan'))
  return result


def pckh(pred: Any, gt: Any, visible_or_annotated_mask: Any, head_size: Any,
         threshold: float = 0.5) -> dict:
  """MPII PCKh@threshold of predictions `(N, 16, 2)` against ground truth.

  `visible_or_annotated_mask` `(N, 16)` selects the joints that have ground
  truth (non-zero = counted; a status array works: MISSING = 0 is left out,
  OCCLUDED and VISIBLE are counted, as in the official evaluation).
  `head_size` `(N,)` is the normaliser (0.6 x head-box diagonal).
  Returns a dict: 'per_joint' (%), 'correct', 'counts' (per joint),
  'groups' (the paper's columns), 'Total', 'AUC' (thresholds 0..0.5,
  independent of `threshold`) and bookkeeping fields.
  """
  pred, gt, counted, head_size = _check_inputs(
      pred, gt, visible_or_annotated_mask, head_size, 'head_size')
  scaled = _normalised_distances(pred, gt, head_size)
  result = _summarise(scaled, counted, threshold, keypoint_sets.MPII, 'PCKh')
  curve = _total_curve(scaled, counted, PCKH_AUC_THRESHOLDS,
                       keypoint_sets.MPII_TOTAL_JOINTS)
  result['AUC'] = auc(PCKH_AUC_THRESHOLDS, curve)
  return result


def torso_size(gt: Any, definition: str = 'lsp_diagonal',
               keypoint_set: keypoint_sets.KeypointSet = keypoint_sets.LSP,
               status: Any = None) -> np.ndarray:
  """PCK normaliser `(N,)` from ground truth `(N, J, 2)`.

  'lsp_diagonal': distance from the left shoulder to the right hip, with left
  and right as annotated (the common LSP PCK definition).
  'mean_diagonals': mean of the two shoulder-hip diagonals (left shoulder to
  right hip and right shoulder to left hip).
  Joints are looked up by canonical name (`keypoint_sets.canonical_name`: MPII's
  'l_shoulder' is COCO's 'left_shoulder'), so any keypoint set works that
  has the shoulders and hips the definition needs; one that lacks them
  raises ValueError naming them (such a set cannot be scored by PCK). With
  `status` `(N, J)`, a torso with a MISSING end is NaN (undefined): a missing
  joint's stored coordinates are no location; `pck` leaves such persons out.
  """
  if definition not in TORSO_DEFINITIONS:
    raise ValueError(
        f'unknown torso definition {definition!r}; expected one of {TORSO_DEFINITIONS}')
  gt = np.asarray(gt, dtype=np.float64)
  if gt.ndim != 3 or gt.shape[1:] != (keypoint_set.num_keypoints, 2):
    raise ValueError(
        f'gt must have shape (N, {keypoint_set.num_keypoints}, 2) for {keypoint_set.name}, '
        f'got {gt.shape}')
  index = {keypoint_sets.canonical_name(n): i for i, n in enumerate(keypoint_set.keypoint_names)}
  needed = TORSO_JOINTS[definition]
  lacking = [n for pair in needed for n in pair if n not in index]
  if lacking:
    raise ValueError(
        f'keypoint set {keypoint_set.name!r} has no {", ".join(dict.fromkeys(lacking))}: '
        f'no torso {definition!r} to normalise PCK by')
  known = (np.ones(gt.shape[:2], bool) if status is None
           else np.asarray(status) != keypoint_sets.MISSING)
  if known.shape != gt.shape[:2]:
    raise ValueError(f'status must have shape {gt.shape[:2]}, got {known.shape}')

  def diagonal(a, b):
    a, b = index[a], index[b]
    length = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    return np.where(known[:, a] & known[:, b], length, np.nan)

  return np.mean([diagonal(a, b) for a, b in needed], axis=0)


def pck(pred: Any, gt: Any, mask: Any, torso_size: Any, threshold: float = 0.2,
        keypoint_set: keypoint_sets.KeypointSet = keypoint_sets.LSP) -> dict:
  """PCK@threshold normalised by a torso size `(N,)` (see `torso_size`).

  Same rules and result layout as `pckh` (without 'AUC'), with the table
  groups and "Total" joints of `keypoint_set` (LSP: all 14 joints). A person
  whose torso is undefined (NaN or not positive) is left out; their number
  is 'persons_without_torso'.
  """
  pred, gt, counted, torso_size = _check_inputs(pred, gt, mask, torso_size,
                                                'torso_size', drop_undefined=True)
  scaled = _normalised_distances(pred, gt, torso_size)
  result = _summarise(scaled, counted, threshold, keypoint_set, 'PCK')
  annotated = np.any(np.asarray(mask) != 0, axis=1)
  result['persons_without_torso'] = int(np.sum(annotated & ~np.any(counted, axis=1)))
  return result


def _total_curve(scaled: np.ndarray, counted: np.ndarray,
                 thresholds: np.ndarray, joints: Sequence[int]) -> np.ndarray:
  joints = list(joints)
  values = scaled[:, joints][counted[:, joints]]
  if values.size == 0:
    return np.full(len(thresholds), np.nan)
  return np.array([100.0 * np.mean(_is_correct(values, t)) for t in thresholds])


def pck_curve(pred: Any, gt: Any, mask: Any, normaliser: Any,
              thresholds: Any = PCKH_AUC_THRESHOLDS,
              joints: Sequence[int] = keypoint_sets.MPII_TOTAL_JOINTS,
              drop_undefined: bool = False) -> np.ndarray:
  """Pooled PCK (%) over `joints` at each threshold: the curve under `auc`.

  `drop_undefined` leaves out persons without a normaliser, as `pck` does.
  """
  pred, gt, counted, normaliser = _check_inputs(pred, gt, mask, normaliser,
                                                'normaliser', drop_undefined)
  scaled = _normalised_distances(pred, gt, normaliser)
  return _total_curve(scaled, counted, np.asarray(thresholds, np.float64), joints)


def auc(thresholds: Any, values: Any) -> float:
  """Area under a PCK curve with thresholds rescaled to [0, 1] (evalMPII's
  `area_under_curve(scale01(range), pck)`): the trapezoidal rule, so a curve
  at 100 % everywhere gives 100."""
  thresholds = np.asarray(thresholds, dtype=np.float64)
  values = np.asarray(values, dtype=np.float64)
  if thresholds.ndim != 1 or thresholds.shape != values.shape or thresholds.size < 2:
    raise ValueError(
        f'auc needs two 1-D arrays of equal length >= 2, got {thresholds.shape} '
        f'and {values.shape}')
  if np.any(np.diff(thresholds) <= 0):
    raise ValueError('auc thresholds must be strictly increasing')
  x = (thresholds - thresholds[0]) / (thresholds[-1] - thresholds[0])
  return float(np.sum(np.diff(x) * 0.5 * (values[1:] + values[:-1])))


def visibility_average_precision(scores: Any, visible: Any, annotated: Any
                                 ) -> tuple[float, np.ndarray, np.ndarray]:
  """Average precision of heatmap maxima as a visibility detector (Sec. IV-B).

  Over all annotated (image, joint) entries, ranked by `scores` (descending):
  positives are visible joints, negatives annotated-but-occluded ones.
  AP is the non-interpolated area under the precision-recall curve,
  `sum_k (R_k - R_{k-1}) P_k` over distinct score thresholds (tied scores enter
  together, so the result does not depend on their order); without ties it is
  the mean, over positives, of the precision at each positive's rank.
  Returns (ap in [0, 1], precision, recall), one entry per distinct threshold.
  """
  scores = np.asarray(scores, dtype=np.float64)
  visible = np.asarray(visible) != 0
  annotated = np.asarray(annotated) != 0
  if not scores.shape == visible.shape == annotated.shape:
    raise ValueError(
        f'scores, visible and annotated must have one shape, got {scores.shape}, '
        f'{visible.shape}, {annotated.shape}')
  if np.any(visible & ~annotated):
    raise ValueError('a joint marked visible must also be annotated')
  s = scores[annotated]
  positive = visible[annotated]
  if not np.all(np.isfinite(s)):
    raise ValueError('visibility scores must be finite')
  num_positive = int(np.sum(positive))
  if num_positive == 0:
    raise ValueError('average precision needs at least one visible joint')
  order = np.argsort(-s, kind='stable')
  s, positive = s[order], positive[order]
  tp = np.cumsum(positive)
  fp = np.cumsum(~positive)
  # Last index of each run of equal scores: where a threshold admits them all.
  last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
  tp, fp = tp[last], fp[last]
  precision = tp / (tp + fp)
  recall = tp / num_positive
  ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
  return ap, precision, recall


def format_table(results: dict, keypoint_set: keypoint_sets.KeypointSet) -> str:
  """The paper's table row: Head .. Ankle, Total (and AUC for PCKh), one decimal."""
  groups, _ = _table_spec(keypoint_set)
  names = [name for name, _ in groups] + ['Total']
  values = [results['groups'][name] for name, _ in groups] + [results['Total']]
  if 'AUC' in results:
    names.append('AUC')
    values.append(results['AUC'])
  width = max(len(n) for n in names) + 2
  metric = f"{results.get('metric', 'PCK')}@{results.get('threshold', float('nan')):g}"
  header = f'{metric:<10}' + ''.join(f'{n:>{width}}' for n in names)
  row = f'{"":<10}' + ''.join(f'{v:>{width}.1f}' for v in values)
  return header + '\n' + row
