"""Scores a community MPII prediction file against valid.h5-layout ground truth.

  python -m experiments.evaluate_predictions --predictions=preds.h5 \
      --annotations=../shared/data/mpii_valid/valid.h5 [--threshold=0.5] \
      [--output_json=results.json]

Prints the paper's MPII table (Head .. Ankle, Total, AUC), computed as the
official evalMPII does (see rhpe_jax.evaluation.metrics). Row i of the predictions must
be the person of row i of the annotations.

Library logging is hidden; --verbosity=0 shows it.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Sequence

from absl import flags

from rhpe_jax import cli
from rhpe_jax.evaluation import metrics
from rhpe_jax.evaluation import prediction_io
from rhpe_jax.core import skeleton as skeleton_lib

_PREDICTIONS = flags.DEFINE_string(
    'predictions', None, 'Prediction file (.h5 dataset or .mat variable "preds", 1-based).')
_ANNOTATIONS = flags.DEFINE_string(
    'annotations', None, 'Ground truth in the valid.h5 layout.')
_THRESHOLD = flags.DEFINE_float('threshold', 0.5, 'PCKh threshold (fraction of head size).')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None, 'Optional path for the results as JSON.')


def evaluate(predictions_path: str, annotations_path: str, threshold: float) -> dict:
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


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    return cli.error_status(ValueError(f'unexpected arguments: {" ".join(argv[1:])}'))
  try:
    results = evaluate(_PREDICTIONS.value, _ANNOTATIONS.value, _THRESHOLD.value)
    print(f'{results["num_persons"]} persons, {_PREDICTIONS.value}')
    print(metrics.format_table(results, skeleton_lib.MPII))
    if _OUTPUT_JSON.value:
      path = pathlib.Path(_OUTPUT_JSON.value)
      path.write_text(json.dumps(prediction_io.jsonable(results), indent=2) + '\n')
  except (ValueError, OSError) as e:
    return cli.error_status(e)
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['predictions', 'annotations'])
  cli.run(main)
