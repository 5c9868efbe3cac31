"""Scores a community MPII prediction file against valid.h5-layout ground truth.

  python -m experiments.evaluate_predictions --predictions=preds.h5 \
      --annotations=../shared/data/mpii_valid/valid.h5 [--threshold=0.5] \
      [--output_json=results.json]

Prints the paper's MPII table (Head .. Ankle, Total, AUC), computed as the
official evalMPII does (see rhpe_jax.evaluation.metrics). Row i of the predictions must
be the person of row i of the annotations (rhpe_jax.evaluation.prediction_file).

Library logging is hidden; --verbosity=0 shows it.
"""
from __future__ import annotations

from typing import Sequence

from absl import flags

from rhpe_jax import cli

_PREDICTIONS = flags.DEFINE_string(
    'predictions', None, 'Prediction file (.h5 dataset or .mat variable "preds", 1-based).')
_ANNOTATIONS = flags.DEFINE_string(
    'annotations', None, 'Ground truth in the valid.h5 layout.')
_THRESHOLD = flags.DEFINE_float('threshold', 0.5, 'PCKh threshold (fraction of head size).')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None, 'Optional path for the results as JSON.')


def main(argv: Sequence[str]) -> int:
  cli.check_usage(argv, required=(_PREDICTIONS.name, _ANNOTATIONS.name))
  from rhpe_jax.evaluation import prediction_file  # pylint: disable=g-import-not-at-top
  prediction_file.report_prediction_file(_PREDICTIONS.value, _ANNOTATIONS.value,
                                         _THRESHOLD.value, _OUTPUT_JSON.value)
  return 0


if __name__ == '__main__':
  cli.run(main)
