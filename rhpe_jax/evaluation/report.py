"""The standalone evaluation of a checkpoint (`experiments.evaluate`): the
paper's table, every number as JSON, community prediction files, curves.

Restores the checkpoint's variables (rhpe_jax.checkpoints.restore_variables),
predicts every person of the split (the first `num_examples` only, when given;
the config's `num_eval_examples` limits only the evaluation during training),
optionally averaging the heat maps of the mirrored input and of several box
scales (the paper's "+ Scale Aug.", `evaluator.predict_split`), and writes to
`output_dir` (default WORKDIR/eval_<split>):

  results.json       every number (table, per joint, curves, visibility AP)
  predictions.h5     community format: `preds` (N, J, 2), 1-based pixels,
                     rows sorted by (image index, person index), as valid.h5
  predictions.mat    the same for the MATLAB tools (test split)
  pck_curves.png     accuracy against the threshold, per group and total
  visibility_pr.png  heat-map maximum as visibility score (paper Fig. 7),
                     where the split has visible and occluded labels
  coco_results.json  a COCO-format split (COCO ids): keypoint results in
                     original pixels (image_id, category_id, keypoints,
                     score), scored by COCOeval beside the table
                     (results.json `coco`: AP..ARl, the OKS sigmas, their rule)

With `mean_pose_from`, the mean-pose predictor (`evaluator.mean_pose_baseline`)
is scored the same way and printed under the table. The output says how many
persons were scored and how many were left out, and why (`persons_count`). A
split without keypoints (MPII test) gives the submission files and the
image/person index of every row in results.json instead of a table.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from rhpe_jax import checkpoints
from rhpe_jax.core import keypoint_sets
from rhpe_jax.core import visualize
from rhpe_jax.data import coco_results
from rhpe_jax.evaluation import coco_eval
from rhpe_jax.evaluation import detections
from rhpe_jax.evaluation import evaluator as evaluation
from rhpe_jax.evaluation import metrics
from rhpe_jax.evaluation import prediction_io


def check_split(config, split: str) -> int:
  """Fails with one line unless the split is built; returns its size."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = config.data_dir or None
  try:
    builder = tfds.builder(config.dataset, data_dir=data_dir)
  except Exception:  # TFDS raises several kinds for unknown names
    builder = None
  if builder is None or not builder.is_prepared():
    raise FileNotFoundError(
        f'dataset {config.dataset!r} is not built in {data_dir or "the TFDS default directory"}')
  base = split.split('[')[0]
  if base not in builder.info.splits:
    raise ValueError(
        f'unknown split {split!r} of {config.dataset}; it has {sorted(builder.info.splits)}')
  return int(builder.info.splits[base].num_examples)


def persons_count(num_in_split: int, predictions: dict, table: dict | None,
                  num_examples: int | None) -> dict[str, Any]:
  """How many persons of the split were scored, and how many were left out, why."""
  evaluated = int(len(predictions['pred']))
  without_joints = int(np.sum(~np.any(predictions['keypoint_status'] > 0, axis=1)))
  without_torso = int((table or {}).get('persons_without_torso', 0))
  left_out = {}
  if num_in_split > evaluated:
    left_out[f'not among the first {num_examples} (num_examples)' if num_examples
             else 'outside the requested slice of the split'] = num_in_split - evaluated
  if table is not None and without_joints:
    left_out['no annotated joints'] = without_joints
  if without_torso:
    left_out['no torso to normalise by (a shoulder or hip missing)'] = without_torso
  scored = evaluated - (without_joints if table is not None else 0) - without_torso
  return {'in_split': num_in_split, 'predicted': evaluated,
          'scored': scored if table is not None else 0, 'left_out': left_out}


def format_persons(counts: dict[str, Any]) -> str:
  """`scored 98 of 100 persons; left out: 2 no annotated joints`."""
  text = f'scored {counts["scored"]} of {counts["in_split"]} persons'
  if counts['left_out']:
    return text + '; left out: ' + ', '.join(f'{n} {why}' for why, n in counts['left_out'].items())
  return text + ' (none left out)'


def _coco_scores(config, variables, split: str, predictions: dict, out_dir: pathlib.Path,
                 results: dict[str, Any], *, flip: bool, boxes: str | None,
                 box_score_threshold: float, image_dir: str | None, batch_size: int,
                 annotations: str | None, verbose: bool,
                 mean_pose: np.ndarray | None = None) -> None:
  """COCO AP/AR beside the PCK table: in the ground-truth boxes (every
  person predicted, score = mean peak), and with `boxes` in a detector's;
  `mean_pose` (the baseline's poses in original pixels) is scored as well;
  writes coco_results.json (of the detector's boxes when given) and puts the
  scores, the sigmas and their rule in `results`."""
  keypoint_set = keypoint_sets.of_config(config)
  sigmas, rule = coco_eval.sigmas_of(config)
  ground_truth = coco_eval.ground_truth_from_predictions(predictions, keypoint_set.keypoint_names)
  records = coco_eval.results_from_predictions(predictions)
  groups = None
  if keypoint_set.groups:  # COCO-WholeBody's body, foot, face, hands, each alone, then all
    groups = coco_eval.group_scores(ground_truth, records, sigmas, keypoint_set.groups)
    scores = groups[coco_eval.WHOLE_GROUP]
  else:
    scores = coco_eval.keypoint_ap(ground_truth, records, sigmas)
  coco: dict[str, Any] = {
      'boxes': 'ground truth', 'scores': scores, 'sigmas': list(sigmas), 'sigma_rule': rule,
      'num_persons': int(sum(a['num_keypoints'] > 0 for a in ground_truth['annotations'])),
      'num_crowd_regions': int(sum(a['iscrowd'] for a in ground_truth['annotations'])),
      'num_images': len(ground_truth['images']),
      'scale': 'fractions as COCOeval gives them; -1: undefined'}
  results['coco'] = coco
  lines = [f'COCO keypoints, ground-truth boxes ({coco["num_persons"]} persons, '
           f'{coco["num_images"]} images, OKS sigmas: {rule})', coco_eval.format_scores(scores)]
  if groups:
    coco['group_scores'] = groups
    lines += [coco_eval.format_scores(s, name).splitlines()[1] for name, s in groups.items()]
  if mean_pose is not None:  # every person scored 1: the ranking tells nothing
    placed = dict(predictions, pred_image=mean_pose,
                  confidence=np.ones_like(predictions['confidence']))
    coco['mean_pose_scores'] = coco_eval.keypoint_ap(
        ground_truth, coco_eval.results_from_predictions(placed), sigmas)
    lines.append('mean pose' + coco_eval.format_scores(coco['mean_pose_scores']).splitlines()[1][
        len('mean pose'):])
  if boxes:
    detected, records, counts = detections.evaluate_boxes(
        config, variables, split, boxes, image_dir, score_threshold=box_score_threshold,
        flip=flip, batch_size=batch_size, annotations=annotations)
    results['coco_detections'] = {'boxes': boxes, 'box_score_threshold': box_score_threshold,
                                  'ground_truth': annotations or 'the split\'s examples',
                                  'scores': detected, **counts}
    lines += [f'COCO keypoints, boxes of {boxes} ({counts["boxes_scored"]} boxes with score >= '
              f'{box_score_threshold:g} on {counts["images_with_boxes"]} of '
              f'{counts["images"]} images; {counts["boxes_on_other_images"]} boxes on other '
              'images ignored)', coco_eval.format_scores(detected)]
  path = out_dir / 'coco_results.json'
  coco_results.write_results(str(path), records)
  results['files']['coco_results'] = str(path)
  if verbose:
    print('\n'.join(lines))


def evaluate_checkpoint(config: ml_collections.ConfigDict | str | None, workdir: str, *,
                        split: str | None = None, flip: bool = False,
                        scales: str | Sequence[float] = '1.0', checkpoint: str = 'best',
                        output_dir: str | None = None, batch_size: int | None = None,
                        mean_pose_from: str | None = None, num_examples: int | None = None,
                        boxes: str | None = None, box_score_threshold: float = 0.0,
                        image_dir: str | None = None, annotations: str | None = None,
                        verbose: bool = True) -> dict[str, Any]:
  """Evaluates a checkpoint of `workdir` on a split, writes every output
  (see the module doc); returns the results dict (as in the JSON). `config`
  None: the one the run wrote beside its checkpoints (checkpoints.config_of_workdir).

  The whole split unless `num_examples` (the first N persons) is given:
  `config.num_eval_examples` is the training-time evaluation's subset. With
  `boxes` (a detector's boxes, COCO results format; a COCO-format split
  only), COCO AP is also computed in those boxes (`detections.evaluate_boxes`:
  boxes scoring below `box_score_threshold` dropped, the original images
  read from `image_dir`; scored against the COCO file `annotations` on the
  split's images when given), and coco_results.json holds those results.
  """
  if num_examples is not None and num_examples < 1:
    raise ValueError(f'num_examples must be >= 1, got {num_examples}')
  if boxes and not image_dir:
    raise ValueError('boxes needs image_dir, the folder of the original images')
  if config is None and not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir} does not exist')
  config = checkpoints.config_of_workdir(workdir, config)
  training_subset = config.num_eval_examples
  config = ml_collections.ConfigDict(config.to_dict())
  config.num_eval_examples = num_examples or -1
  if isinstance(scales, str):
    scales = evaluation.parse_scales(scales)
  else:
    scales = evaluation.parse_scales(','.join(str(s) for s in scales))
  split = split or config.eval_split
  checkpoints.find_checkpoint(workdir, checkpoint)  # fail early
  num_in_split = check_split(config, split)
  if batch_size is None:
    batch_size = config.batch_size
  devices = jax.local_device_count()
  batch_size = max(devices, (batch_size // devices) * devices)

  variables, step = checkpoints.restore_variables(config, workdir, checkpoint)
  path, _ = checkpoints.find_checkpoint(workdir, str(step))  # the one restored
  predictions = evaluation.predict_split(config, variables, split, flip=flip, scales=scales,
                                         batch_size=batch_size)
  out_dir = pathlib.Path(output_dir or os.path.join(workdir, f'eval_{split.split("[")[0]}'))
  out_dir.mkdir(parents=True, exist_ok=True)
  keypoint_set = keypoint_sets.of_config(config)
  results: dict[str, Any] = {
      'checkpoint': path, 'step': step, 'dataset': config.dataset, 'split': split,
      'flip': bool(flip), 'scales': list(scales), 'num_persons': int(len(predictions['pred'])),
      'keypoint_names': list(keypoint_set.keypoint_names),
      'rows': 'sorted by (image_index, person_index)',
      'image_index': predictions['image_index'], 'person_index': predictions['person_index'],
      'files': {},
  }
  h5 = out_dir / 'predictions.h5'
  prediction_io.save_predictions(h5, predictions['pred_image'])
  results['files']['predictions'] = str(h5)
  results['confidence'] = predictions['confidence']

  table = None
  if evaluation.has_ground_truth(predictions):
    table = evaluation.score(config, predictions)
  if split.split('[')[0] != split:
    num_in_split = len(predictions['pred'])  # a slice asked for: that is the split here
  results['persons'] = persons_count(num_in_split, predictions, table, num_examples)
  if verbose and training_subset > 0 and num_examples is None:
    print(f'(config.num_eval_examples = {training_subset} is for the evaluation during '
          f'training; this scores the whole split: num_examples={training_subset} for that '
          'subset)')

  if table is None:
    mat = out_dir / 'predictions.mat'
    prediction_io.save_predictions(mat, predictions['pred_image'])
    results['files']['submission'] = str(mat)
    results['submission'] = True
    if verbose:
      print(f'{split}: {len(predictions["pred"])} persons without ground truth; '
            f'submission written to {h5} and {mat}')
  else:
    results['submission'] = False
    results['metric'] = table['metric']
    results['threshold'] = table['threshold']
    results['table'] = dict(table['groups'], Total=table['Total'])
    if 'AUC' in table:
      results['table']['AUC'] = table['AUC']
    results['per_joint'] = dict(zip(keypoint_set.keypoint_names, table['per_joint']))
    results['counts'] = dict(zip(keypoint_set.keypoint_names, table['counts']))
    results['correct'] = dict(zip(keypoint_set.keypoint_names, table['correct']))
    curves = evaluation.accuracy_curves(config, predictions)
    if mean_pose_from:
      baseline = evaluation.mean_pose_baseline(
          config, predictions, data_dir=None if mean_pose_from == 'config' else mean_pose_from)
      results['mean_pose_baseline'] = dict(baseline['groups'], Total=baseline['Total'])
    results['curves'] = {'thresholds': curves['thresholds'], **curves['curves']}
    results['curve_auc'] = curves['auc']
    png = out_dir / 'pck_curves.png'
    visualize.save_pck_curves(png, curves['thresholds'], curves['curves'], table['metric'],
                              title=f'{table["metric"]} on {config.dataset} {split}')
    results['files']['curves'] = str(png)
    vis = evaluation.visibility(predictions)
    if vis is not None:
      png = out_dir / 'visibility_pr.png'
      visualize.save_precision_recall(png, vis['precision'], vis['recall'], vis['ap'])
      results['visibility'] = {'ap': 100.0 * vis['ap'], 'num_visible': vis['num_visible'],
                               'num_occluded': vis['num_occluded'],
                               'precision': vis['precision'], 'recall': vis['recall']}
      results['files']['visibility'] = str(png)
    if verbose:
      tta = ' + flip' if flip else ''
      tta += f' + scales {",".join(f"{s:g}" for s in scales)}' if len(scales) > 1 else ''
      print(f'{config.dataset} {split}, step {step}{tta}: '
            f'{format_persons(results["persons"])}')
      print(metrics.format_table(table, keypoint_set))
      if mean_pose_from:
        row = metrics.format_table(baseline, keypoint_set).splitlines()[1]
        print('mean pose' + row[len('mean pose'):])
      if vis is not None:
        print(f'visibility AP {100 * vis["ap"]:.1f} % '
              f'({vis["num_visible"]} visible, {vis["num_occluded"]} occluded joints)')
  if table is not None and coco_eval.has_coco_ids(predictions):
    _coco_scores(config, variables, split, predictions, out_dir, results, flip=flip,
                 boxes=boxes, box_score_threshold=box_score_threshold, image_dir=image_dir,
                 batch_size=batch_size, annotations=annotations, verbose=verbose,
                 mean_pose=baseline['pred_image'] if mean_pose_from else None)
  elif boxes:
    raise ValueError(f'boxes: {config.dataset} {split} has no COCO ids (coco_image_id) to '
                     'score detections against')
  json_path = out_dir / 'results.json'
  results['files']['results'] = str(json_path)
  json_path.write_text(json.dumps(prediction_io.jsonable(results), indent=1) + '\n')
  if verbose:
    print(f'wrote {", ".join(sorted(results["files"].values()))}')
  return results
