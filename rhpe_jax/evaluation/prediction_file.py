"""Scoring a community MPII prediction file against valid.h5-layout ground
truth (`experiments.evaluate_predictions`), as the official evalMPII does
(rhpe_jax.evaluation.metrics). Row i of the predictions must be the person of
row i of the annotations."""
from __future__ import annotations

import json
import math
import pathlib

from rhpe_jax.core import keypoint_sets
from rhpe_jax.evaluation import metrics
from rhpe_jax.evaluation import prediction_io


def score_prediction_file(predictions_path: str, annotations_path: str,
                          threshold: float = 0.5) -> dict:
  """PCKh results of a prediction file (see metrics.pckh for the fields)."""
  if not (threshold >= 0 and math.isfinite(threshold)):
    raise ValueError(f'threshold must be a non-negative number, got {threshold}')
  annotations = prediction_io.load_mpii_annotations(annotations_path)
  preds = prediction_io.load_predictions(predictions_path)
  gt = annotations['keypoints']
  if preds.shape != gt.shape:
    raise ValueError(
        f'{predictions_path}: predictions have shape {preds.shape} (N, J, 2), the '
        f'annotations {gt.shape}; they must describe the same persons and joints')
  results = metrics.pckh(preds, gt, annotations['status'], annotations['head_size'],
                         threshold=threshold)
  results['num_persons'] = int(gt.shape[0])
  results['predictions'] = str(predictions_path)
  results['annotations'] = str(annotations_path)
  return results


def report_prediction_file(predictions_path: str, annotations_path: str,
                           threshold: float = 0.5, output_json: str | None = None) -> dict:
  """Scores the file, prints the paper's MPII table (Head .. Ankle, Total,
  AUC) and writes the results to `output_json` when given; returns them."""
  results = score_prediction_file(predictions_path, annotations_path, threshold)
  print(f'{results["num_persons"]} persons, {predictions_path}')
  print(metrics.format_table(results, keypoint_sets.MPII))
  if output_json:
    pathlib.Path(output_json).write_text(
        json.dumps(prediction_io.jsonable(results), indent=2) + '\n')
  return results
