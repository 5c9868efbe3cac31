"""Evaluation on a split: predictions in original image pixels and the paper's
accuracy measures (PCKh for MPII, PCK for LSP and synthetic).

The evaluator receives the function that predicts: training hands `Evaluator`
its pmapped eval step (it needs the loss), the standalone evaluation
(`predict_split`, rhpe_jax.evaluation.report) the predictor's
(rhpe_jax.inference.predictor). Nothing here imports training.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from rhpe_jax.core import keypoint_sets
from rhpe_jax.core import visualize
from rhpe_jax.data import datasets as data
from rhpe_jax.evaluation import coco_eval
from rhpe_jax.evaluation import metrics
from rhpe_jax import model as model_lib
from rhpe_jax.inference import predictor
from rhpe_jax.inference import topdown

# Batch fields kept next to the predictions (ground truth and provenance).
_KEPT_FIELDS = ('keypoints', 'keypoint_status', 'input_to_image', 'head_size',
                'image_index', 'person_index')
# Kept too where the dataset has them (a COCO-format build): COCO ids, box,
# area, crowd regions (rhpe_jax.evaluation.coco_eval).
_OPTIONAL_FIELDS = coco_eval.PERSON_FIELDS + coco_eval.CROWD_FIELDS


def _kept_fields(batch: dict) -> tuple[str, ...]:
  return _KEPT_FIELDS + tuple(k for k in _OPTIONAL_FIELDS if k in batch)


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
    for key in _kept_fields(batch):
      parts.setdefault(key, [])
    if sum(len(i) for i in images) < keep_images:
      images.append(np.asarray(batch['image']).reshape((-1,) + batch['image'].shape[2:]))
    out = p_eval_step(state, batch)
    out = jax.device_get(out)
    parts['pred'].append(out['keypoints'])
    parts['confidence'].append(out['confidence'])
    parts['loss'].append(np.asarray(out['loss']).reshape(-1)[:1])
    parts['valid'].append(np.array(batch['valid']))  # copies: tf.data reuses buffers
    for key in _kept_fields(batch):
      parts[key].append(np.array(batch[key]))
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
  keypoint_set = keypoint_sets.of_config(config)
  annotated = predictions['keypoint_status'] > 0
  pred, gt = predictions[pred_key], predictions['gt_image']
  if config.eval_metric == 'pckh':
    result = metrics.pckh(pred, gt, annotated, predictions['head_size'],
                          threshold=config.eval_pck_threshold)
  elif config.eval_metric == 'pck':
    torso = metrics.torso_size(gt, config.torso_definition, keypoint_set,
                               predictions['keypoint_status'])
    result = metrics.pck(pred, gt, annotated, torso, threshold=config.eval_pck_threshold,
                         keypoint_set=keypoint_set)
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


def mean_pose_baseline(config: ml_collections.ConfigDict, predictions: dict[str, np.ndarray],
                       split: str | None = None, data_dir: str | None = None
                       ) -> dict[str, Any]:
  """The mean-pose predictor, scored as the network is on the same examples.

  The mean of the training crops' poses (split `split`, default the config's
  `train_split`, of the build in `data_dir`, default the config's), in input
  pixels, is placed in every evaluated crop, i.e. in each person's box of
  annotated joints, and scored by `score`. A network that does not beat it
  has learned nothing about the image. The placed poses are returned too
  (`pred_image`), for scores of other kinds (COCO AP).
  """
  source = config.copy_and_resolve_references()
  source.num_eval_examples = -1
  if data_dir:
    source.data_dir = data_dir
  keypoints, status = [], []
  for batch in data.eval_dataset(source, split or config.train_split).as_numpy_iterator():
    valid = batch['valid'].reshape(-1).astype(bool)
    keypoints.append(batch['keypoints'].reshape((-1,) + batch['keypoints'].shape[2:])[valid])
    status.append(batch['keypoint_status'].reshape(
        (-1,) + batch['keypoint_status'].shape[2:])[valid])
  guess = mean_pose_predictions(np.concatenate(keypoints), np.concatenate(status), predictions)
  return dict(score(config, dict(predictions, pred_image=guess)), pred_image=guess)


# (replicated state, batch (D, B, ...)) -> {'loss', 'keypoints' (input pixels), 'confidence'}
EvalFn = Callable[[Any, dict], dict]


class Evaluator:
  """Evaluates replicated states on a config's evaluation split with
  `eval_fn` (training's pmapped eval step)."""

  def __init__(self, config: ml_collections.ConfigDict, eval_fn: EvalFn,
               split: str | None = None):
    self.config = config
    self.split = split or config.eval_split
    self._p_eval_step = eval_fn

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
  table = metrics.format_table(evaluation['result'], keypoint_sets.of_config(config))
  return f'evaluation at step {step} ({measure}, {len(evaluation["predictions"]["pred"])} examples)\n{table}'


def write_image_summaries(writer, config: ml_collections.ConfigDict, evaluation: dict,
                          step: int) -> None:
  """A few validation inputs with predicted (red) and true (green) skeletons."""
  predictions = evaluation['predictions']
  if 'images' not in predictions:
    return
  keypoint_set = keypoint_sets.of_config(config)
  pictures = []
  for i, image in enumerate(predictions['images']):
    annotated = predictions['keypoint_status'][i] > 0
    picture = visualize.draw_skeleton(image, predictions['keypoints'][i], annotated,
                                      keypoint_set, color=(0, 200, 0))
    picture = visualize.draw_skeleton(picture, predictions['pred'][i], None, keypoint_set,
                                      color=(230, 30, 30))
    pictures.append(picture)
  writer.image('eval/predictions', np.stack(pictures), step, max_outputs=len(pictures))


# --------------------------------------------------------------------------
# Standalone evaluation (rhpe_jax.evaluation.report): test-time augmentation,
# paper-style numbers.

def _scaled_config(config: ml_collections.ConfigDict, scale: float) -> ml_collections.ConfigDict:
  scaled = ml_collections.ConfigDict(config.to_dict())
  scaled.box_scale = float(config.box_scale) * float(scale)
  return scaled


def parse_scales(text: str) -> tuple[float, ...]:
  """'1.0,0.9,1.1' -> (1.0, 0.9, 1.1); the first must be 1 (the reference frame)."""
  try:
    scales = tuple(float(s) for s in str(text).split(',') if s.strip())
  except ValueError:
    raise ValueError(f'scales must be comma-separated numbers, got {text!r}') from None
  return topdown.check_scales(scales)


def predict_split(config: ml_collections.ConfigDict, variables, split: str, *,
                  flip: bool = False, scales: tuple[float, ...] = (1.0,),
                  batch_size: int | None = None) -> dict[str, np.ndarray]:
  """Predictions of the network's `variables` ({'params', 'batch_stats'})
  for every example of a split, sorted by (image, person).

  The stored crops of each box scale go through the pmapped predictor (the
  mirror averaged in, with `flip`); their heat maps are mapped as every
  prediction's are (`topdown.poses_in_input`: onto the scale-1 crop's grid,
  averaged, decoded). Returns 'pred' (input pixels of the scale-1 crop), 'pred_image'
  and 'gt_image' (original pixels), 'confidence' (max of each averaged map),
  and the ground-truth fields of the split (with a COCO-format build's ids,
  box, area and padded crowd regions, coco_eval.PERSON_FIELDS, CROWD_FIELDS).
  """
  if not scales or scales[0] != 1.0:
    raise ValueError(f'scales must start with 1.0, got {scales}')
  batch_size = batch_size or config.batch_size
  heatmap_fn = predictor.predict_fn(config, flip=flip, outputs=('heatmaps',),
                                    over_devices=True)
  replicated = predictor.replicate(variables)
  iterators = [data.eval_dataset(_scaled_config(config, s), split, batch_size).as_numpy_iterator()
               for s in scales]
  parts: dict[str, list] = {k: [] for k in ('pred', 'confidence', 'valid') + _KEPT_FIELDS}
  for batches in zip(*iterators):
    reference = batches[0]
    # Copies: tf.data may reuse the buffers of the arrays it hands out.
    flat = lambda x: np.array(x).reshape((-1,) + np.shape(x)[2:])
    maps = [flat(heatmap_fn(replicated, batch['image'])['heatmaps']) for batch in batches]
    keypoints, confidence = topdown.poses_in_input(
        maps, [flat(batch['input_to_image']) for batch in batches], model_lib.STRIDE)
    parts['pred'].append(np.asarray(keypoints))
    parts['confidence'].append(np.asarray(confidence))
    parts['valid'].append(flat(reference['valid']))
    for key in _kept_fields(reference):
      parts.setdefault(key, [])
      parts[key].append(flat(reference[key]))
  out = {k: np.concatenate(v) for k, v in parts.items()}
  keep = out.pop('valid').astype(bool)
  out = {k: v[keep] for k, v in out.items()}
  order = np.lexsort((out['person_index'], out['image_index']))
  out = {k: v[order] for k, v in out.items()}
  out['pred_image'] = _apply_affine(out['pred'], out['input_to_image'])
  out['gt_image'] = _apply_affine(out['keypoints'], out['input_to_image'])
  return out


def has_ground_truth(predictions: dict[str, np.ndarray]) -> bool:
  """False for a split without keypoints (MPII test): no table, a submission."""
  return bool(np.any(predictions['keypoint_status'] > 0))


def curve_thresholds(config: ml_collections.ConfigDict) -> np.ndarray:
  """PCKh: 0..0.5 in steps of 0.01 (the AUC's); PCK: 0..threshold in 0.01 steps."""
  if config.eval_metric == 'pckh':
    return metrics.PCKH_AUC_THRESHOLDS
  return np.arange(int(round(config.eval_pck_threshold * 100)) + 1) / 100.0


def accuracy_curves(config: ml_collections.ConfigDict, predictions: dict[str, np.ndarray]
                    ) -> dict[str, Any]:
  """PCK(h)-vs-threshold curves of every table group and of "Total" (pooled)."""
  keypoint_set = keypoint_sets.of_config(config)
  groups, total = metrics._table_spec(keypoint_set)  # pylint: disable=protected-access
  gt = predictions['gt_image']
  if config.eval_metric == 'pckh':
    normaliser = predictions['head_size']
  else:
    normaliser = metrics.torso_size(gt, config.torso_definition, keypoint_set,
                                    predictions['keypoint_status'])
  thresholds = curve_thresholds(config)
  annotated = predictions['keypoint_status'] > 0
  curve = functools.partial(metrics.pck_curve, predictions['pred_image'], gt, annotated,
                            normaliser, thresholds, drop_undefined=config.eval_metric == 'pck')
  curves = {name: curve(joints=ids) for name, ids in groups}
  curves['Total'] = curve(joints=total)
  return {'thresholds': thresholds, 'curves': curves,
          'auc': metrics.auc(thresholds, curves['Total'])}


def visibility(predictions: dict[str, np.ndarray]) -> dict[str, Any] | None:
  """The paper's visibility AP (Sec. IV-B), or None without both visible and
  occluded labels."""
  status = predictions['keypoint_status']
  if not (np.any(status == keypoint_sets.VISIBLE) and np.any(status == keypoint_sets.OCCLUDED)):
    return None
  ap, precision, recall = metrics.visibility_average_precision(
      predictions['confidence'], status == keypoint_sets.VISIBLE, status > 0)
  return {'ap': ap, 'precision': precision, 'recall': recall,
          'num_visible': int(np.sum(status == keypoint_sets.VISIBLE)),
          'num_occluded': int(np.sum(status == keypoint_sets.OCCLUDED))}
