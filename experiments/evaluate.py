r"""Evaluates a trained checkpoint on a split, as the paper reports it.

  python -m experiments.evaluate --config=experiments/configs/mpii.py --workdir=runs/mpii \
      [--split=validation] [--flip] [--scales=1.0,0.9,1.1] \
      [--checkpoint=best|latest|STEP] [--output_dir=DIR] [--mean_pose_from=config|DATA_DIR] \
      [--num_examples=N] [--boxes=detections.json --image_dir=DIR [--box_score_threshold=T]
       [--annotations=person_keypoints.json]]

Restores the checkpoint (default: the best by validation accuracy), predicts
every person of the split (the first --num_examples only; the config's
`num_eval_examples` limits only the evaluation during training), optionally
averaging the heat maps of the mirrored input and of several box scales (the
paper's "+ Scale Aug."), and prints the paper's table with the persons scored
and left out (and why). Written to --output_dir (default WORKDIR/eval_<split>):
results.json (every number), predictions.h5 (community format, 1-based, rows
as valid.h5), predictions.mat (test split), pck_curves.png, visibility_pr.png.
A COCO-format split also gets COCO keypoint AP/AR (pycocotools) and
coco_results.json; --boxes scores the network in a detector's boxes instead
of the annotated ones (the original images from --image_dir).
--mean_pose_from also scores the mean-pose baseline. A split without keypoints
(MPII test) gives the submission files. See rhpe_jax.evaluation.report.

Library logging is hidden; --verbosity=0 shows it.
"""
from __future__ import annotations

from typing import Sequence

from absl import app, flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags (defined on demand: other scripts of the project define --config too)."""
  cli.define_checkpoint_flags()
  flags.DEFINE_string('split', None, 'Split to evaluate (default: the config\'s eval_split).')
  flags.DEFINE_bool('flip', False, 'Average with the heat maps of the mirrored input.')
  flags.DEFINE_string('scales', '1.0',
                      'Box scales whose heat maps are averaged, e.g. 1.0,0.9,1.1.')
  flags.DEFINE_string('output_dir', None,
                      'Where to write the results (default WORKDIR/eval_SPLIT).')
  flags.DEFINE_integer('batch_size', None, 'Evaluation batch size (default: the config\'s).')
  flags.DEFINE_integer('num_examples', None, 'Score only the first N persons of the split '
                       '(default: all of it, whatever config.num_eval_examples says).')
  flags.DEFINE_string('mean_pose_from', None,
                      'Also score the mean-pose baseline: the mean training pose of split '
                      "'train_split' of this TFDS data dir ('config': the config's data_dir).")
  flags.DEFINE_string('boxes', None, "A person detector's boxes (COCO results JSON) to "
                      'evaluate COCO keypoint AP in (a COCO-format split only).')
  flags.DEFINE_float('box_score_threshold', 0.0, 'Boxes of --boxes scoring below this are '
                     'dropped.')
  flags.DEFINE_string('image_dir', None, 'With --boxes: the folder of the original images '
                      "(each example's image_name in it).")
  flags.DEFINE_string('annotations', None, 'With --boxes: score against this COCO keypoints '
                      "file on the split's images (default: the split's own persons).")


def main(argv: Sequence[str]) -> int:
  cli.check_usage(argv, required=('workdir',))
  from rhpe_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from rhpe_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  try:
    scales = evaluator.parse_scales(FLAGS.scales)
  except ValueError as error:
    raise app.UsageError(f'--{error}') from None
  if FLAGS.boxes and not FLAGS.image_dir:
    raise app.UsageError('--boxes needs --image_dir, the folder of the original images')
  if FLAGS.num_examples is not None and FLAGS.num_examples < 1:
    raise app.UsageError(f'--num_examples must be >= 1, got {FLAGS.num_examples}')
  report.evaluate_checkpoint(
      FLAGS.config, FLAGS.workdir, split=FLAGS.split, flip=FLAGS.flip, scales=scales,
      checkpoint=FLAGS.checkpoint, output_dir=FLAGS.output_dir, batch_size=FLAGS.batch_size,
      mean_pose_from=FLAGS.mean_pose_from, num_examples=FLAGS.num_examples,
      boxes=FLAGS.boxes, box_score_threshold=FLAGS.box_score_threshold,
      image_dir=FLAGS.image_dir, annotations=FLAGS.annotations)
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run(main, compilation_cache=True)
