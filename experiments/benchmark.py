r"""Benchmarks: training step, inference and the input pipeline.

  python -m experiments.benchmark --what=train_step --config=experiments/configs/mpii.py \
      --batch=2 --image_size=248 --steps=5 [--compare_torch] [--unroll=1]
  python -m experiments.benchmark --what=tflite --tflite=EXPORT/model.tflite --batch=1 --steps=20

Prints one JSON line per measurement: what, batch, image_size, step_time_s
(median over `--steps` timed runs after a warm-up), images_per_s,
compile_time_s, gflop_per_image (the project's count of the step,
rhpe_jax.model.flops: XLA's cost analysis misses cuDNN's convolutions on GPU), mfu
where the device's peak is known, peak_memory_bytes where the backend reports
it. With --compare_torch it then times ../shared/bench/torch_reference.py on
the same shapes in a fresh interpreter (--torch_python, e.g. a separate
environment with torch), with as many threads as JAX uses, and prints both
times and the ratio.
--what=tflite times the TFLite interpreter (XNNPACK, one thread per core) on
an exported model.tflite (experiments.export) the same way.
--what=predict_folder times `predict --images` on a folder: the first
--images images of ../shared/data/lspet_sample, an untrained checkpoint of
the config's network (throughput does not depend on the weights), batches of
--batch, --steps runs; images/s counts from the end of the first batch
(compilation excluded), `seconds` is each whole run:

  python -m experiments.benchmark --what=predict_folder \
      --config=experiments/configs/mpii.py --batch=8 --images=48 --steps=3
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app, flags
from ml_collections import config_flags

import jax
import numpy as np

from rhpe_jax import cli
from rhpe_jax import model as model_lib
from rhpe_jax.model import flops as flops_lib
from rhpe_jax.core import skeleton
from rhpe_jax.training import steps as step_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'experiments/configs/mpii.py', 'Training config.')
flags.DEFINE_enum('what', 'train_step',
                  ['train_step', 'inference', 'input_pipeline', 'tflite', 'predict_folder'],
                  'What to measure.')
flags.DEFINE_integer('images', 48, 'With --what=predict_folder: how many LSPET images.')
flags.DEFINE_integer('batch', 2, 'Batch size (per device for steps; per host for the pipeline).')
flags.DEFINE_integer('image_size', None, 'Input size; default: the config\'s input_size.')
flags.DEFINE_integer('steps', 5, 'Timed repetitions after one warm-up; 0 measures compilation only.')
flags.DEFINE_integer('unroll', None, 'Fusion passes per scan step (default: fully unrolled).')
flags.DEFINE_bool('compare_torch', False, 'Then time ../shared/bench/torch_reference.py in '
                  'a fresh interpreter.')
flags.DEFINE_string('torch_reference', None, 'Path of torch_reference.py (default: '
                    '../shared/bench/torch_reference.py beside the repository).')
flags.DEFINE_string('torch_python', sys.executable, 'Python interpreter with torch installed, '
                    'for --compare_torch.')
flags.DEFINE_bool('torch_compile', False, 'With --compare_torch: also time torch.compile.')
flags.DEFINE_string('tflite', None, 'With --what=tflite: the model.tflite to time.')

# Dense bf16 peak (TFLOP/s) per chip, from the vendors' data sheets:
# H100 SXM 989.4 and H200 989.4 (NVIDIA H100/H200 Tensor Core GPU datasheets,
# dense, without sparsity), A100 312 (NVIDIA A100 datasheet), TPU v4 275,
# v5e 197, v5p 459, v6e 918 (Google Cloud TPU system architecture pages).
PEAK_TFLOPS = {
    'h100': 989.4, 'h200': 989.4, 'a100': 312.0,
    'tpu v4': 275.0, 'tpu v5 lite': 197.0, 'tpu v5e': 197.0, 'tpu v5p': 459.0,
    'tpu v6': 918.0,
}

REPO = pathlib.Path(__file__).resolve().parents[1]


def device_peak_tflops(device: jax.Device) -> float | None:
  kind = device.device_kind.lower()
  for name, peak in PEAK_TFLOPS.items():
    if name in kind:
      return peak
  return None


def peak_memory_bytes(device: jax.Device) -> int | None:
  try:
    stats = device.memory_stats()
  except Exception:  # CPU backends may not implement it
    return None
  return (stats or {}).get('peak_bytes_in_use')


def fake_batch(config, batch: int, image_size: int, rng: np.random.Generator) -> dict:
  """A batch of random images and keypoints shaped like the pipeline's."""
  joints = skeleton.get_skeleton(config.skeleton).num_joints
  people = config.max_other_people
  return {
      'image': rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
      'keypoints': rng.uniform(0, image_size, (batch, joints, 2)).astype(np.float32),
      'keypoint_status': rng.integers(0, 3, (batch, joints)).astype(np.int32),
      'other_keypoints': rng.uniform(0, image_size, (batch, people, joints, 2)).astype(np.float32),
      'other_keypoint_status': rng.integers(0, 3, (batch, people, joints)).astype(np.int32),
  }


def time_compiled(fn, args_fn, steps: int) -> list[float]:
  """Wall time of `steps` calls of fn(*args_fn()) after one warm-up call."""
  jax.block_until_ready(fn(*args_fn()))
  times = []
  for _ in range(steps):
    args = args_fn()
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return times


def report(what: str, batch: int, image_size: int, times: list[float], flops: int | None = None,
           compile_time: float | None = None, **extra) -> dict:
  step_time = statistics.median(times)
  out = {'what': what, 'batch': batch, 'image_size': image_size,
         'step_time_s': round(step_time, 4), 'images_per_s': round(batch / step_time, 3),
         'device': jax.devices()[0].device_kind, 'backend': jax.default_backend()}
  if compile_time is not None:
    out['compile_time_s'] = round(compile_time, 2)
  if flops:
    out['gflop_per_image'] = round(flops / batch / 1e9, 2)
    peak = device_peak_tflops(jax.devices()[0])
    if peak:
      out['mfu'] = round(flops / step_time / (peak * 1e12), 4)
  memory = peak_memory_bytes(jax.devices()[0])
  if memory is not None:
    out['peak_memory_bytes'] = memory
  out.update(extra)
  print(json.dumps(out), flush=True)
  return out


def benchmark_step(config, what: str, batch: int, image_size: int, steps: int,
                   unroll: int | None) -> dict:
  config.input_size = image_size
  if unroll is not None:
    config.scan_unroll = unroll
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=1000)
  rng = np.random.default_rng(0)
  if what == 'train_step':
    fn = jax.jit(functools.partial(step_lib.train_step, config=config, axis_name=None),
                 donate_argnums=(0,))
  else:
    fn = jax.jit(functools.partial(step_lib.predict_step, config=config))
  batches = [jax.device_put(fake_batch(config, batch, image_size, rng)) for _ in range(2)]
  start = time.perf_counter()
  compiled = fn.lower(state, batches[0]).compile()
  compile_time = time.perf_counter() - start
  if steps == 0:  # compile time only
    out = {'what': f'{what}_compile', 'batch': batch, 'image_size': image_size,
           'compile_time_s': round(compile_time, 2), 'backend': jax.default_backend(),
           'unroll': 'full' if unroll is None else unroll, 'width': config.width}
    print(json.dumps(out), flush=True)
    return out

  holder = {'state': state, 'i': 0}

  def run(b):
    if what == 'train_step':
      holder['state'], metrics = compiled(holder['state'], b)
      return metrics
    return compiled(holder['state'], b)

  def args():
    holder['i'] += 1
    return (batches[holder['i'] % 2],)

  times = time_compiled(run, args, steps)
  net = model_lib.create_model(config)
  count = flops_lib.train_step_flops if what == 'train_step' else flops_lib.forward_flops
  return report(what, batch, image_size, times, count(net, image_size, image_size, batch),
                compile_time,
                unroll='full' if unroll is None else unroll, dtype=config.compute_dtype,
                width=config.width, num_iterations=config.num_iterations)


def mpii_style_crops(num_examples: int, resolution: int = 384):
  """Raw examples shaped like the MPII builder's: JPEG person crops of
  `resolution` px (synthetic pictures, so no dataset is needed)."""
  import io  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  examples = [synthetic.generate_example(seed, resolution) for seed in range(num_examples)]

  def jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=90)
    return buffer.getvalue()

  columns = {key: np.stack([e[key] for e in examples])
             for key in ('keypoints', 'keypoint_status', 'crop_to_image', 'objpos', 'scale',
                         'head_size', 'image_index', 'person_index')}
  columns['image'] = np.array([jpeg(e['image']) for e in examples], dtype=object)
  columns['other_keypoints'] = np.zeros((num_examples, 0, 16, 2), np.float32)
  columns['other_keypoint_status'] = np.zeros((num_examples, 0, 16), np.int32)
  return tf.data.Dataset.from_tensor_slices(columns)


def benchmark_input_pipeline(config, batch: int, steps: int) -> dict:
  """Images/s of the training pipeline with the config's augmentation on
  MPII-style 384 px JPEG crops, per process and per available core."""
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import input_pipeline
  raw = mpii_style_crops(64)
  rate = input_pipeline.benchmark_input_pipeline(
      raw, steps, batch, config=augment.AugmentConfig.from_mapping(config))
  cores = len(os.sched_getaffinity(0))
  out = {'what': 'input_pipeline', 'batch': batch, 'image_size': config.input_size,
         'images_per_s': round(rate, 1), 'cores': cores,
         'images_per_s_per_core': round(rate / cores, 1)}
  print(json.dumps(out), flush=True)
  return out


def benchmark_tflite(path: str, batch: int, steps: int) -> dict:
  """Per-call time of the TFLite interpreter on random uint8 images."""
  import warnings  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    sys.exit(f'error: --tflite {path} does not exist')
  threads = len(os.sched_getaffinity(0))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # tf.lite.Interpreter's deprecation notice
    interpreter = tf.lite.Interpreter(model_path=path, num_threads=threads)
  runner = interpreter.get_signature_runner('serving_default')
  image_size = int(runner.get_input_details()['images']['shape'][1])
  rng = np.random.default_rng(0)
  images = itertools.cycle(
      [rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
       for _ in range(2)])
  times = time_compiled(lambda x: runner(images=x), lambda: (next(images),), steps)
  return report('tflite', batch, image_size, times, num_threads=threads,
                file_bytes=os.path.getsize(path))


def benchmark_predict_folder(config, batch: int, num_images: int, runs: int) -> dict:
  """Images/s of folder prediction (rhpe_jax.inference.batch, as `predict
  --images` runs it) on real LSPET images with an untrained checkpoint."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from rhpe_jax.inference import batch as batch_predict
  from rhpe_jax import checkpoints
  from rhpe_jax.evaluation import evaluator as evaluation
  from rhpe_jax.data import image_inputs
  source = REPO.parent / 'shared' / 'data' / 'lspet_sample' / 'images'
  names = sorted(source.glob('*.jpg'))[:num_images]
  if len(names) < num_images:
    sys.exit(f'error: --images={num_images}, but {source} has {len(names)} images')
  with tempfile.TemporaryDirectory() as tmp:
    workdir = pathlib.Path(tmp) / 'run'
    folder = pathlib.Path(tmp) / 'images'
    folder.mkdir()
    for name in names:
      shutil.copy(name, folder / name.name)
    state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=1,
                                        total_steps=1)
    manager = checkpoints.CheckpointManager(str(workdir), config)
    manager.save(1, state, metric=0.0, force=True)
    manager.wait()
    manager.close()
    state, step = evaluation.restore_state(config, str(workdir))
    items, _ = image_inputs.list_images(str(folder))
    rates, seconds = [], []
    with open(os.devnull, 'w') as quiet:
      for _ in range(runs):
        summary = batch_predict.predict_images(
            config, state, step, items, pathlib.Path(tmp) / 'out.jsonl', batch_size=batch,
            overwrite=True, report=lambda line: None, progress_stream=quiet)
        if summary.failed or summary.predicted != len(items):
          sys.exit(f'error: {len(summary.failed)} images failed')
        rates.append(summary.images_per_s)
        seconds.append(summary.seconds)
  out = {'what': 'predict_folder', 'batch': batch, 'image_size': config.input_size,
         'width': config.width, 'num_iterations': config.num_iterations,
         'images': len(items), 'runs': runs,
         'images_per_s': round(statistics.median(rates), 3),
         'images_per_s_runs': [round(r, 3) for r in rates],
         'seconds_runs': [round(t, 1) for t in seconds],
         'cores': len(os.sched_getaffinity(0)), 'backend': jax.default_backend()}
  print(json.dumps(out), flush=True)
  return out


def torch_reference_path() -> pathlib.Path:
  path = pathlib.Path(FLAGS.torch_reference or
                      REPO.parent / 'shared' / 'bench' / 'torch_reference.py')
  if not path.is_file():
    sys.exit(f'error: torch reference not found at {path} (pass --torch_reference=PATH)')
  return path


def time_torch(what: str, batch: int, image_size: int, steps: int, compile_model: bool,
               bfloat16: bool) -> dict:
  """Runs experiments/torch_timing.py in a fresh `--torch_python` interpreter."""
  args = [FLAGS.torch_python, str(REPO / 'experiments' / 'torch_timing.py'),
          f'--reference={torch_reference_path()}', f'--what={what}', f'--batch={batch}',
          f'--image_size={image_size}', f'--steps={steps}']
  if jax.default_backend() == 'cpu':  # the threads XLA's CPU backend runs on
    args.append(f'--threads={len(os.sched_getaffinity(0))}')
  args += ['--compile'] * compile_model + ['--bfloat16'] * bfloat16
  result = subprocess.run(args, capture_output=True, text=True, check=False)
  if result.returncode:
    if "No module named 'torch'" in result.stderr:
      sys.exit(f'error: {FLAGS.torch_python} cannot import torch '
               '(pass --torch_python=PATH of an environment with torch)')
    sys.exit(f'error: the torch reference failed:\n{result.stderr.strip()}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def compare_torch(ours: dict, what: str, batch: int, image_size: int, steps: int,
                  bfloat16: bool) -> None:
  """Times the PyTorch reference on the same shapes, after our measurement and
  in its own process, and prints its time and the ratio."""
  for compiled in (False, True) if FLAGS.torch_compile else (False,):
    theirs = time_torch(what, batch, image_size, steps, compiled, bfloat16)
    print(json.dumps(theirs), flush=True)
    print(json.dumps({'what': f'{what}_ratio_jax_over_torch', 'torch_compiled': compiled,
                      'jax_step_time_s': ours['step_time_s'],
                      'torch_step_time_s': theirs['step_time_s'],
                      'ratio': round(ours['step_time_s'] / theirs['step_time_s'], 3)}),
          flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = FLAGS.config
  image_size = FLAGS.image_size or config.input_size
  if FLAGS.what == 'input_pipeline':
    benchmark_input_pipeline(config, FLAGS.batch, FLAGS.steps)
    return
  if FLAGS.what == 'tflite':
    benchmark_tflite(FLAGS.tflite or '', FLAGS.batch, FLAGS.steps)
    return
  if FLAGS.what == 'predict_folder':
    config.input_size = image_size
    benchmark_predict_folder(config, FLAGS.batch, FLAGS.images, max(1, FLAGS.steps))
    return
  if FLAGS.compare_torch:
    torch_reference_path()  # fail before the long measurement
    net = model_lib.create_model(config)
    if (net.width, net.num_iterations, net.num_keypoints, net.num_parts) != (1.0, 2, 16, 15):
      sys.exit('error: --compare_torch needs the reference network (width 1, num_iterations 2, '
               '16 keypoints, 15 parts, as experiments/configs/mpii.py)')
  ours = benchmark_step(config, FLAGS.what, FLAGS.batch, image_size, FLAGS.steps, FLAGS.unroll)
  if FLAGS.compare_torch and FLAGS.steps:
    compare_torch(ours, FLAGS.what, FLAGS.batch, image_size, FLAGS.steps,
                  bfloat16=config.compute_dtype == 'bfloat16')

if __name__ == '__main__':
  cli.run(main)
