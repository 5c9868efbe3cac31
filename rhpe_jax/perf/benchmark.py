"""Benchmarks: the training step, inference, the input pipeline, TFLite,
onnxruntime, folder and video prediction and the time to a fresh process's
first prediction, each printed as one JSON line (experiments/benchmark.py has
the command line and what each line holds).

Step times are medians over timed runs after a warm-up; FLOPs are the
project's count (rhpe_jax.model.flops: XLA's cost analysis misses cuDNN's
convolutions on GPU); the MFU uses the device's data-sheet peak
(rhpe_jax.perf.hardware).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from rhpe_jax import model as model_lib
from rhpe_jax.core import keypoint_sets
from rhpe_jax.model import flops as flops_lib
from rhpe_jax.perf import hardware
from rhpe_jax.perf.measurements import STEPS, WHAT
from rhpe_jax.training import steps as step_lib


def peak_memory_bytes(device: jax.Device) -> int | None:
  try:
    stats = device.memory_stats()
  except Exception:  # CPU backends may not implement it
    return None
  return (stats or {}).get('peak_bytes_in_use')


def fake_batch(config, batch: int, image_size: int, rng: np.random.Generator) -> dict:
  """A batch of random images and keypoints shaped like the pipeline's."""
  num_keypoints = keypoint_sets.of_config(config).num_keypoints
  people = config.max_other_people
  return {
      'image': rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
      'keypoints': rng.uniform(0, image_size, (batch, num_keypoints, 2)).astype(np.float32),
      'keypoint_status': rng.integers(0, 3, (batch, num_keypoints)).astype(np.int32),
      'other_keypoints': rng.uniform(0, image_size, (batch, people, num_keypoints, 2)
                                     ).astype(np.float32),
      'other_keypoint_status': rng.integers(0, 3, (batch, people, num_keypoints)).astype(np.int32),
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
    peak = hardware.peak_bf16_flops(jax.devices()[0].device_kind)
    if peak:
      out['mfu'] = round(flops / step_time / peak, 4)
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
    raise FileNotFoundError(f'tflite {path} does not exist')
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


def benchmark_onnx(config, batch: int, steps: int, image_size: int, path: str | None) -> dict:
  """Per-call time of onnxruntime's CPU provider with the README's session
  options (estimator.onnx_session_options: one thread per core, spinning off;
  printed with the time) on random uint8 images, for the ONNX file `path`,
  or when None for the config's network at its initial weights exported by
  experiments.export's library call (throughput does not depend on the
  weights)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    export_time = None
    if path is None:
      config.input_size = image_size
      save_untrained(config, pathlib.Path(tmp) / 'run')
      variables, _ = checkpoints.restore_variables(config, str(pathlib.Path(tmp) / 'run'))
      start = time.perf_counter()
      path = export.export(config, variables, pathlib.Path(tmp) / 'export', formats=('onnx',))[
          'onnx']
      export_time = time.perf_counter() - start
    elif not os.path.isfile(path):
      raise FileNotFoundError(f'onnx {path} does not exist')
    session = onnx_export.session(path)
    options = session.get_session_options()
    image_size = int(session.get_inputs()[0].shape[1])
    rng = np.random.default_rng(0)
    images = itertools.cycle(
        [rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
         for _ in range(2)])
    times = time_compiled(lambda x: session.run(None, {'images': x}), lambda: (next(images),),
                          steps)
    extra = {'export_time_s': round(export_time, 1)} if export_time is not None else {}
    return report('onnx', batch, image_size, times, num_threads=options.intra_op_num_threads,
                  session_options=onnx_export.describe_options(options),
                  file_bytes=os.path.getsize(path), width=config.width,
                  num_iterations=config.num_iterations, **extra)


def folder_predictor(config, workdir: str):
  """predict(items, out_path, batch) -> summary: the weights of `workdir`
  restored and a folder predicted as `predict --images` does. The one place
  the benchmark names the inference API (rhpe_jax.inference.batch and
  checkpoints.restore_variables)."""
  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints
  from rhpe_jax.inference import batch as batch_predict
  variables, step = checkpoints.restore_variables(config, workdir)

  def predict(items, out_path, batch: int):
    with open(os.devnull, 'w') as quiet:
      return batch_predict.predict_images(
          config, variables, step, items, out_path, batch_size=batch, overwrite=True,
          report=lambda line: None, progress_stream=quiet)
  return predict


def save_untrained(config, workdir: pathlib.Path) -> None:
  """A checkpoint of the config's network at its initial weights in
  `workdir` (throughput does not depend on the weights)."""
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=1,
                                      total_steps=1)
  manager = checkpoints.CheckpointManager(str(workdir), config)
  manager.save(1, state, metric=0.0, force=True)
  manager.wait()
  manager.close()


def benchmark_predict_video(config, frames: int, runs: int, clip: pathlib.Path) -> dict:
  """Frames/s of `predict --video` (one person followed from the whole first
  frame, smoothing on) on the first `frames` frames of `clip`, with an
  untrained checkpoint; medians over `runs` runs in this process, each
  counted from the end of its first frame, and each stage's median share."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import video  # pylint: disable=g-import-not-at-top
  if not pathlib.Path(clip).is_file():
    raise FileNotFoundError(f'{clip}: no such video file')
  rates, shares, seconds = [], [], []
  with tempfile.TemporaryDirectory() as tmp:
    save_untrained(config, pathlib.Path(tmp) / 'run')
    variables, step = checkpoints.restore_variables(config, str(pathlib.Path(tmp) / 'run'))
    for _ in range(runs):
      with open(os.devnull, 'w') as quiet:
        summary = video.predict_video(config, variables, step, str(clip),
                                      pathlib.Path(tmp) / 'out.mp4', max_frames=frames,
                                      progress_stream=quiet)
      rates.append(summary.frames_per_s)
      shares.append(summary.shares())
      seconds.append(summary.seconds)
  out = {'what': 'predict_video', 'clip': pathlib.Path(clip).name, 'frames': summary.frames,
         'image_size': config.input_size, 'width': config.width,
         'num_iterations': config.num_iterations, 'runs': runs,
         'frames_per_s': round(statistics.median(rates), 3),
         'frames_per_s_runs': [round(r, 3) for r in rates],
         'share': {k: round(statistics.median(s[k] for s in shares), 3) for k in video.STAGES},
         'seconds_runs': [round(t, 1) for t in seconds],
         'cores': len(os.sched_getaffinity(0)), 'backend': jax.default_backend()}
  print(json.dumps(out), flush=True)
  return out


def benchmark_predict_folder(config, batch: int, num_images: int, runs: int,
                             source: pathlib.Path) -> dict:
  """Images/s of folder prediction (as `predict --images` runs it) on the
  first `num_images` images of `source` with an untrained checkpoint."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import image_inputs  # pylint: disable=g-import-not-at-top
  names = sorted(pathlib.Path(source).glob('*.jpg'))[:num_images]
  if len(names) < num_images:
    raise ValueError(f'images={num_images}, but {source} has {len(names)} images')
  with tempfile.TemporaryDirectory() as tmp:
    workdir = pathlib.Path(tmp) / 'run'
    folder = pathlib.Path(tmp) / 'images'
    folder.mkdir()
    for name in names:
      shutil.copy(name, folder / name.name)
    save_untrained(config, workdir)
    predict = folder_predictor(config, str(workdir))
    items, _ = image_inputs.list_images(str(folder))
    rates, seconds = [], []
    for _ in range(runs):
      summary = predict(items, pathlib.Path(tmp) / 'out.jsonl', batch)
      if summary.failed or summary.predicted != len(items):
        raise ValueError(f'{len(summary.failed)} of {len(items)} images failed')
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


# What a user's first call does, in a fresh interpreter: import, load, one
# image (argv: the PoseEstimator constructor, its folder, the image).
_FIRST_PREDICTION = """
import json, sys, time
start = time.perf_counter()
from rhpe_jax import PoseEstimator
imported = time.perf_counter()
estimator = getattr(PoseEstimator, sys.argv[1])(sys.argv[2])
loaded = time.perf_counter()
poses = estimator.predict(sys.argv[3])
done = time.perf_counter()
print(json.dumps({'import_s': imported - start, 'load_s': loaded - imported,
                  'predict_s': done - loaded, 'seconds': done - start,
                  'modules': len(sys.modules), 'persons': len(poses.keypoints),
                  'tensorflow': 'tensorflow' in sys.modules, 'jax': 'jax' in sys.modules}))
"""


def benchmark_first_prediction(config, runs: int, image: pathlib.Path) -> list[dict]:
  """Seconds from a fresh interpreter's first line to one image's poses
  (import rhpe_jax, PoseEstimator.from_workdir or .from_export, predict),
  for the config's network at its initial weights; medians over `runs`
  processes run one after the other, with the modules each one loaded and
  whether TensorFlow or JAX was among them. from_export is measured where
  the ONNX packages are installed."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from rhpe_jax.deploy import onnx_export  # pylint: disable=g-import-not-at-top
  if not pathlib.Path(image).is_file():
    raise FileNotFoundError(f'image {image} does not exist')
  out = []
  with tempfile.TemporaryDirectory() as tmp:
    workdir = pathlib.Path(tmp) / 'run'
    save_untrained(config, workdir)
    checkpoints.save_config(config, str(workdir))
    sources = {'from_workdir': workdir}
    try:
      onnx_export.check_packages()
    except onnx_export.MissingPackage as missing:
      print(f'from_export not measured: {missing}', file=sys.stderr, flush=True)
    else:
      export.export_checkpoint(config, str(workdir), str(pathlib.Path(tmp) / 'export'),
                               formats=('onnx',))
      sources['from_export'] = pathlib.Path(tmp) / 'export'
    for via, folder in sources.items():
      results = []
      for _ in range(runs):
        done = subprocess.run([sys.executable, '-c', _FIRST_PREDICTION, via, str(folder),
                               str(image)], capture_output=True, text=True, check=False)
        if done.returncode:
          raise RuntimeError(f'{via}: {done.stderr.strip().splitlines()[-1:]}')
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
      median = lambda key: round(statistics.median(r[key] for r in results), 3)
      line = {'what': 'first_prediction', 'via': via, 'image': pathlib.Path(image).name,
              'image_size': config.input_size, 'width': config.width,
              'num_iterations': config.num_iterations, 'runs': runs,
              **{key: median(key) for key in ('seconds', 'import_s', 'load_s', 'predict_s')},
              'seconds_runs': [round(r['seconds'], 3) for r in results],
              'modules': int(median('modules')),
              'tensorflow_imported': any(r['tensorflow'] for r in results),
              'jax_imported': any(r['jax'] for r in results),
              'cores': len(os.sched_getaffinity(0))}
      print(json.dumps(line), flush=True)
      out.append(line)
  return out


@dataclasses.dataclass(frozen=True)
class TorchComparison:
  """How to time the PyTorch reference (experiments/torch_timing.py run by
  `python` in a fresh interpreter, on the network of `reference`)."""
  python: str
  script: pathlib.Path
  reference: pathlib.Path
  compiled_too: bool = False  # also torch.compile


def check_torch_comparison(torch: TorchComparison, config) -> None:
  """Fails before the long measurement: no reference file, or a network that is not its."""
  if not torch.reference.is_file():
    raise FileNotFoundError(f'torch.reference {torch.reference} does not exist')
  net = model_lib.create_model(config)
  if (net.width, net.num_iterations, net.num_keypoints, net.num_parts) != (1.0, 2, 16, 15):
    raise ValueError('torch needs the reference network (width 1, num_iterations 2, '
                     '16 keypoints, 15 parts, as experiments/configs/mpii.py)')


def time_torch(torch: TorchComparison, what: str, batch: int, image_size: int, steps: int,
               compile_model: bool, bfloat16: bool) -> dict:
  """One run of the torch timing script in a fresh interpreter; its JSON line."""
  args = [torch.python, str(torch.script), f'--reference={torch.reference}', f'--what={what}',
          f'--batch={batch}', f'--image_size={image_size}', f'--steps={steps}']
  if jax.default_backend() == 'cpu':  # the threads XLA's CPU backend runs on
    args.append(f'--threads={len(os.sched_getaffinity(0))}')
  args += ['--compile'] * compile_model + ['--bfloat16'] * bfloat16
  # The script imports rhpe_jax.perf.torch_timing from this copy of the package.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, [str(pathlib.Path(__file__).resolve().parents[2]),
                    os.environ.get('PYTHONPATH')])))
  result = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
  if result.returncode:
    if "No module named 'torch'" in result.stderr:
      raise ValueError(f'torch.python {torch.python} cannot import torch '
                       '(give the Python of an environment with torch)')
    tail = ' | '.join(result.stderr.strip().splitlines()[-3:])
    raise ValueError(f'the torch reference failed: {tail}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def compare_torch(torch: TorchComparison, ours: dict, what: str, batch: int, image_size: int,
                  steps: int, bfloat16: bool) -> None:
  """Times the PyTorch reference on the same shapes, after our measurement and
  in its own process, and prints its time and the ratio."""
  for compiled in (False, True) if torch.compiled_too else (False,):
    theirs = time_torch(torch, what, batch, image_size, steps, compiled, bfloat16)
    print(json.dumps(theirs), flush=True)
    print(json.dumps({'what': f'{what}_ratio_jax_over_torch', 'torch_compiled': compiled,
                      'jax_step_time_s': ours['step_time_s'],
                      'torch_step_time_s': theirs['step_time_s'],
                      'ratio': round(ours['step_time_s'] / theirs['step_time_s'], 3)}),
          flush=True)


def run(what: str, config, *, batch: int, image_size: int | None, steps: int,
        unroll: int | None, images: int, image_folder: pathlib.Path, tflite: str | None,
        torch: TorchComparison | None, frames: int = 30,
        clip: pathlib.Path | None = None, onnx: str | None = None,
        image: pathlib.Path | None = None) -> None:
  """The command line's measurement `what`, printed as JSON lines (module docstring)."""
  image_size = image_size or config.input_size
  if what == 'input_pipeline':
    benchmark_input_pipeline(config, batch, steps)
  elif what == 'tflite':
    benchmark_tflite(tflite, batch, steps)
  elif what == 'onnx':
    benchmark_onnx(config, batch, steps, image_size, onnx)
  elif what == 'predict_folder':
    config.input_size = image_size
    benchmark_predict_folder(config, batch, images, max(1, steps), image_folder)
  elif what == 'predict_video':
    config.input_size = image_size
    benchmark_predict_video(config, frames, max(1, steps), clip)
  elif what == 'first_prediction':
    config.input_size = image_size
    benchmark_first_prediction(config, max(1, steps), image)
  elif what in STEPS:
    if torch:
      check_torch_comparison(torch, config)
    ours = benchmark_step(config, what, batch, image_size, steps, unroll)
    if torch and steps:
      compare_torch(torch, ours, what, batch, image_size, steps,
                    bfloat16=config.compute_dtype == 'bfloat16')
  else:
    raise ValueError(f'unknown measurement {what!r}: one of {", ".join(WHAT)}')
