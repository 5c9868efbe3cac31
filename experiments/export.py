r"""Exports a trained checkpoint for deployment (rhpe_jax.deploy.export).

  python -m experiments.export --config=experiments/configs/mpii.py --workdir=runs/mpii \
      --output=runs/mpii/export [--checkpoint=best|latest|STEP] \
      [--formats=saved_model,tflite,jax_export,onnx] [--image_size=248] [--batch=B] \
      [--precision=float32|float16|int8] [--onnxruntime_web=node_modules/onnxruntime-web]

Writes to --output, for uint8 images (B, S, S, 3) in and keypoints (input
pixels), confidences and heat maps out, batch norm folded, float32:
  saved_model/       TF SavedModel, signature serving_default (TF Serving)
  model.tflite       TFLite, builtin ops only
  model.jax_export   jax.export serialisation
  model.onnx         ONNX for onnxruntime (only when asked: needs pip install 'rhpe_jax[onnx]')
  index.html         with model.onnx: the browser page (onnxruntime-web's files beside it
                     from --onnxruntime_web=node_modules/onnxruntime-web)
  README.md          input size, joint order, keypoints back to the image, running each
  manifest.json      versions, config, checkpoint step, input and output contract
--image_size defaults to the config's input_size; without --batch the batch
size is left free (symbolic). --precision=float16 or int8 (tflite, onnx)
writes the reduced model and its measured keypoint distance (pixels) to the
float32 network on validation crops into README.md and manifest.json.
"""
from __future__ import annotations

from typing import Sequence

from absl import flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags (defined on demand: other scripts of the project define --config too)."""
  cli.define_checkpoint_flags()
  flags.DEFINE_string('output', None, 'Directory for the artefacts (created).')
  flags.DEFINE_string('formats', 'saved_model,tflite,jax_export',
                      'Comma-separated: saved_model, tflite, jax_export, onnx.')
  flags.DEFINE_integer('image_size', None, 'Input side S (default: the config\'s input_size).')
  flags.DEFINE_integer('batch', None, 'Fixed batch size (default: any batch size).')
  flags.DEFINE_string('precision', 'float32', 'float32 (every format), float16 (tflite, onnx) '
                      'or int8 (tflite, onnx; calibrated on crops of the training split).')
  flags.DEFINE_string('onnxruntime_web', None, 'With --formats=onnx: the folder of npm install '
                      'onnxruntime-web (or its dist/), whose files the browser page '
                      'index.html needs beside it.')


def main(argv: Sequence[str]) -> int:
  cli.check_usage(argv, required=('workdir', 'output'))
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  paths = export.export_checkpoint(
      FLAGS.config, FLAGS.workdir, FLAGS.output, checkpoint=FLAGS.checkpoint,
      formats=FLAGS.formats, image_size=FLAGS.image_size, batch=FLAGS.batch,
      precision=FLAGS.precision, onnxruntime_web=FLAGS.onnxruntime_web)
  print(f'wrote {", ".join(paths.values())}')
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run(main)
