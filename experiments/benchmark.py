r"""Benchmarks: training step, inference and the input pipeline.

  python -m experiments.benchmark --what=train_step --config=experiments/configs/mpii.py \
      --batch=2 --image_size=248 --steps=5 [--compare_torch] [--unroll=1]
  python -m experiments.benchmark --what=tflite --tflite=EXPORT/model.tflite --batch=1 --steps=20

Prints one JSON line per measurement (rhpe_jax.perf.benchmark): what, batch,
image_size, step_time_s (median over `--steps` timed runs after a warm-up),
images_per_s, compile_time_s, gflop_per_image (the project's count), mfu where
the device's peak is known, peak_memory_bytes where the backend reports it.
With --compare_torch it then times ../shared/bench/torch_reference.py on the
same shapes in a fresh interpreter (--torch_python, e.g. an environment with
torch), with as many threads as JAX uses, and prints both times and the ratio.
--what=tflite times the TFLite interpreter (XNNPACK, one thread per core) on
an exported model.tflite (experiments.export) the same way; --what=onnx
times onnxruntime's CPU provider the same way, on --onnx=FILE or on the
config's untrained network exported first (compare with --what=inference,
the JAX predict step, in a process of its own):

  python -m experiments.benchmark --what=onnx --config=experiments/configs/demo.py --batch=8
--what=predict_folder times `predict --images` on a folder: the first
--images images of ../shared/data/lspet_sample, an untrained checkpoint of
the config's network (throughput does not depend on the weights), batches of
--batch, --steps runs; images/s counts from the end of the first batch
(compilation excluded), `seconds` is each whole run:

  python -m experiments.benchmark --what=predict_folder \
      --config=experiments/configs/mpii.py --batch=8 --images=48 --steps=3

--what=predict_video times `predict --video` on the first --frames frames of
../shared/data/video_sample/basketball_300frames.mp4 (one person followed,
smoothing on), --steps runs, and gives each stage's share of the time
(decoding, cropping, the network, drawing, encoding):

  python -m experiments.benchmark --what=predict_video \
      --config=experiments/configs/lspet_sample.py --frames=60 --steps=3

--what=first_prediction times what a user's first call costs: --steps fresh
interpreters, one after the other, each importing rhpe_jax, building
PoseEstimator.from_workdir (JAX) or .from_export (onnxruntime, where the ONNX
packages are installed) on an untrained checkpoint of the config's network,
and predicting one LSPET image of ../shared/data/lspet_sample; the medians of
the whole and of its parts (import, load, predict), the modules loaded and
whether TensorFlow or JAX was among them:

  python -m experiments.benchmark --what=first_prediction \
      --config=experiments/configs/demo.py --steps=3
"""
from __future__ import annotations

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from rhpe_jax import cli
from rhpe_jax.perf import measurements

FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]
# The image of --what=first_prediction.
FIRST_IMAGE = 'im00001.jpg'


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', 'experiments/configs/mpii.py', 'Training config.')
  flags.DEFINE_enum('what', 'train_step', measurements.WHAT, 'What to measure.')
  flags.DEFINE_integer('frames', 30, 'With --what=predict_video: how many frames of the clip.')
  flags.DEFINE_integer('images', 48, 'With --what=predict_folder: how many LSPET images.')
  flags.DEFINE_integer('batch', 2, 'Batch size (per device for steps; per host for the '
                       'pipeline).')
  flags.DEFINE_integer('image_size', None, 'Input size; default: the config\'s input_size.')
  flags.DEFINE_integer('steps', 5, 'Timed repetitions after one warm-up; 0 measures '
                       'compilation only.')
  flags.DEFINE_integer('unroll', None, 'Fusion passes per scan step (default: fully unrolled).')
  flags.DEFINE_bool('compare_torch', False, 'Then time ../shared/bench/torch_reference.py in '
                    'a fresh interpreter.')
  flags.DEFINE_string('torch_reference', None, 'Path of torch_reference.py (default: '
                      '../shared/bench/torch_reference.py beside the repository).')
  flags.DEFINE_string('torch_python', sys.executable, 'Python interpreter with torch '
                      'installed, for --compare_torch.')
  flags.DEFINE_bool('torch_compile', False, 'With --compare_torch: also time torch.compile.')
  flags.DEFINE_string('tflite', None, 'With --what=tflite: the model.tflite to time.')
  flags.DEFINE_string('onnx', None, 'With --what=onnx: the model.onnx to time (default: the '
                      "config's network, untrained, exported first).")


def main(argv):
  cli.check_usage(argv)
  if FLAGS.what == 'tflite' and not FLAGS.tflite:
    raise app.UsageError('--tflite is required with --what=tflite')
  from rhpe_jax.perf import benchmark  # pylint: disable=g-import-not-at-top
  torch = benchmark.TorchComparison(
      FLAGS.torch_python, REPO / 'experiments' / 'torch_timing.py',
      pathlib.Path(FLAGS.torch_reference or REPO.parent / 'shared' / 'bench' /
                   'torch_reference.py'), compiled_too=FLAGS.torch_compile)
  benchmark.run(FLAGS.what, FLAGS.config, batch=FLAGS.batch, image_size=FLAGS.image_size,
                steps=FLAGS.steps, unroll=FLAGS.unroll, images=FLAGS.images,
                image_folder=REPO.parent / 'shared' / 'data' / 'lspet_sample' / 'images',
                tflite=FLAGS.tflite, torch=torch if FLAGS.compare_torch else None,
                frames=FLAGS.frames, onnx=FLAGS.onnx,
                clip=REPO.parent / 'shared' / 'data' / 'video_sample' / 'basketball_300frames.mp4',
                image=REPO.parent / 'shared' / 'data' / 'lspet_sample' / 'images' / FIRST_IMAGE)


if __name__ == '__main__':
  define_flags()
  cli.run(main, renamed={'torch.reference': 'torch_reference', 'torch.python': 'torch_python',
                         'torch': 'compare_torch'})
