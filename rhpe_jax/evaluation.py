"""Evaluation of a train state on a split: predictions in original image pixels
and the paper's accuracy measures (PCKh for MPII, PCK for LSP and synthetic).
"""
from __future__ import annotations

from typing import Any, Iterable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from rhpe_jax import data, metrics, skeleton, visualize
from rhpe_jax import train_step as step_lib

# Batch fields kept next to the predictions (ground truth and provenance).
_KEPT_FIELDS = ('keypoints', 'keypoint_status', 'input_to_image', 'head_size',
                'image_index', 'person_index')


def _apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
  """(N, J, 2) points through per-example (N, 2, 3) affines."""
  return np.einsum('nij,nkj->nki', affine[:, :, :2], points) + affine[:, None, :, 2]


def collect_predictions(p_eval_step, state, batches: Iterable[dict],
                        keep_images: int = 0) -> dict[str, np.ndarray]:
  """Runs the pmapped eval step over `batches`; returns flat per-example arrays.

  `pred` and `gt` are in ORIGINAL image pixels (through `input_to_image`);
  `pred` and `keypoints` in input pixels; padding rows (`valid` = 0) are
  dropped; every process gets all examples. The first `keep_images` input
  images of this process come back as `images`.
  """
  parts: dict[str, list] = {k: [] for k in ('pred', 'confidence', 'valid', 'loss') + _KEPT_FIELDS}
  images = []
  for batch in batches:
    if sum(len(i) for i in images) < keep_images:
      images.append(np.asarray(batch['image']).reshape((-1,) + batch['image'].shape[2:]))
    out = p_eval_step(state, batch)
    out = jax.device_get(out)
    parts['pred'].append(out['keypoints'])
    parts['confidence'].append(out['confidence'])
    parts['loss'].append(np.asarray(out['loss']).reshape(-1)[:1])
    parts['valid'].append(np.asarray(batch['valid']))
    for key in _KEPT_FIELDS:
      parts[key].append(np.asarray(batch[key]))
  flat = {}
  for key, values in parts.items():
    if key == 'loss':
      continue
    joined = np.concatenate([v.reshape((-1,) + v.shape[2:]) for v in values])
    flat[key] = multihost_utils.process_allgather(joined, tiled=True) if jax.process_count() > 1 else joined
  keep = flat.pop('valid').astype(bool)
  flat = {k: v[keep] for k, v in flat.items()}
  flat['loss'] = float(np.mean(np.concatenate(parts['loss']))) if parts['loss'] else float('nan')
  flat['pred_image'] = _apply_affine(flat['pred'], flat['input_to_image'])
  flat['gt_image'] = _apply_affine(flat['keypoints'], flat['input_to_image'])
  if images:
    flat['images'] = np.concatenate(images)[:keep_images]
  return flat


def score(config: ml_collections.ConfigDict, predictions: dict[str, np.ndarray],
          pred_key: str = 'pred_image') -> dict[str, Any]:
  """The config's accuracy measure on collected predictions."""
  joints = skeleton.get_skeleton(config.skeleton)
  annotated = predictions['keypoint_status'] > 0
  pred, gt = predictions[pred_key], predictions['gt_image']
  if config.eval_metric == 'pckh':
    result = metrics.pckh(pred, gt, annotated, predictions['head_size'],
                          threshold=config.eval_pck_threshold)
  elif config.eval_metric == 'pck':
    torso = metrics.torso_size(gt, config.torso_definition, joints)
    result = metrics.pck(pred, gt, annotated, torso, threshold=config.eval_pck_threshold,
                         skeleton=joints)
  else:
    raise ValueError(f"eval_metric must be 'pckh' or 'pck', got {config.eval_metric!r}")
  return result


def mean_pose_predictions(train_keypoints: np.ndarray, train_status: np.ndarray,
                          predictions: dict[str, np.ndarray]) -> np.ndarray:
  """The mean-pose baseline: the average training pose (in input pixels,
  over annotated joints) for every example, mapped to original pixels."""
  annotated = (train_status > 0)[..., None]
  mean = (train_keypoints * annotated).sum(0) / np.maximum(annotated.sum(0), 1)
  guess = np.broadcast_to(mean, predictions['pred'].shape)
  return _apply_affine(guess, predictions['input_to_image'])


class Evaluator:
  """Evaluates replicated train states on a config's evaluation split."""

  def __init__(self, config: ml_collections.ConfigDict, split: str | None = None):
    self.config = config
    self.split = split or config.eval_split
    self._p_eval_step = step_lib.pmapped_eval_step(config)

  def evaluate(self, state) -> dict[str, Any]:
    batches = data.eval_dataset(self.config, self.split).as_numpy_iterator()
    predictions = collect_predictions(self._p_eval_step, state, batches,
                                      keep_images=self.config.num_summary_images)
    result = score(self.config, predictions)
    scalars = {'loss': predictions['loss'], 'total': result['Total']}
    for name, value in result['groups'].items():
      scalars[name.lower()] = value
    if 'AUC' in result:
      scalars['auc'] = result['AUC']
    return {'score': result['Total'], 'scalars': scalars, 'result': result,
            'predictions': predictions}


def format_summary(config: ml_collections.ConfigDict, evaluation: dict, step: int) -> str:
  measure = f'{config.eval_metric.upper()}@{config.eval_pck_threshold:g}'
  table = metrics.format_table(evaluation['result'], skeleton.get_skeleton(config.skeleton))
  return f'evaluation at step {step} ({measure}, {len(evaluation["predictions"]["pred"])} examples)\n{table}'


def write_image_summaries(writer, config: ml_collections.ConfigDict, evaluation: dict,
                          step: int) -> None:
  """A few validation inputs with predicted (red) and true (green) skeletons."""
  predictions = evaluation['predictions']
  if 'images' not in predictions:
    return
  joints = skeleton.get_skeleton(config.skeleton)
  pictures = []
  for i, image in enumerate(predictions['images']):
    annotated = predictions['keypoint_status'][i] > 0
    picture = visualize.draw_skeleton(image, predictions['keypoints'][i], annotated,
                                      joints, color=(0, 200, 0))
    picture = visualize.draw_skeleton(picture, predictions['pred'][i], None, joints,
                                      color=(230, 30, 30))
    pictures.append(picture)
  writer.image('eval/predictions', np.stack(pictures), step, max_outputs=len(pictures))
