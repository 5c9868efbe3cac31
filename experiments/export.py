r"""Exports a trained checkpoint for deployment (rhpe_jax.deploy.export).

  python -m experiments.export --config=experiments/configs/mpii.py --workdir=runs/mpii \
      --output=runs/mpii/export [--checkpoint=best|latest|STEP] \
      [--formats=saved_model,tflite,jax_export] [--image_size=248] [--batch=B]

Writes to --output, for uint8 images (B, S, S, 3) in and keypoints (input
pixels), confidences and heat maps out, batch norm folded, float32:
  saved_model/       TF SavedModel, signature serving_default (TF Serving)
  model.tflite       TFLite, builtin ops only
  model.jax_export   jax.export serialisation
  README.md          input size, joint order, keypoints back to the image
--image_size defaults to the config's input_size; without --batch the batch
size is left free (symbolic).
"""
from __future__ import annotations

import os
from typing import Sequence

from absl import flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined on demand, so that importing this module
  next to other scripts of the project does not clash over --config)."""
  cli.define_checkpoint_flags()
  flags.DEFINE_string('output', None, 'Directory for the artefacts (created).')
  flags.DEFINE_string('formats', 'saved_model,tflite,jax_export',
                      'Comma-separated: saved_model, tflite, jax_export.')
  flags.DEFINE_integer('image_size', None, 'Input side S (default: the config\'s input_size).')
  flags.DEFINE_integer('batch', None, 'Fixed batch size (default: any batch size).')


def run(config, workdir: str, output: str, *, checkpoint: str = 'best',
        formats: str | Sequence[str] = 'saved_model,tflite,jax_export',
        image_size: int | None = None, batch: int | None = None) -> dict[str, str]:
  """Checks the arguments, restores the checkpoint, writes the artefacts;
  returns their paths."""
  # pylint: disable-next=g-import-not-at-top
  from rhpe_jax.evaluation import evaluator as evaluation
  from rhpe_jax.deploy import export
  formats = export.parse_formats(formats)
  export.input_spec(config.input_size if image_size is None else image_size, batch)
  evaluation.find_checkpoint(workdir, checkpoint)
  if os.path.isfile(output):
    raise FileExistsError(f'--output {output} is a file, not a directory')
  state, step = evaluation.restore_state(config, workdir, checkpoint)
  return export.export(config, state, output, formats=formats, image_size=image_size,
                       batch=batch, step=step)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    return cli.error_status(ValueError(f'unexpected arguments: {" ".join(argv[1:])}'))
  try:
    for name in ('config', 'workdir', 'output'):
      if getattr(FLAGS, name) is None:
        raise ValueError(f'--{name} is required')
    paths = run(FLAGS.config, FLAGS.workdir, FLAGS.output, checkpoint=FLAGS.checkpoint,
                formats=FLAGS.formats, image_size=FLAGS.image_size, batch=FLAGS.batch)
    print(f'wrote {", ".join(paths.values())}')
  except (ValueError, OSError) as e:  # bad input, missing or unreadable files
    return cli.error_status(e)
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run(main)
