"""The GPU convolution matrix: every distinct convolution of the network
timed under each way of running it (forward, input gradient, weight
gradient), and the table of winners the model reads.

The layers come from the network itself (the convolutions in the jaxpr of
its forward pass). The ways ("variants") are the forms of
`rhpe_jax.model.conv.FORMS` where they apply, XLA's convolution under other
XLA flag sets (`FLAG_SETS`, each in a process of its own, since XLA reads its
flags once per process), and the same layer in PyTorch (cuDNN autotuning,
channels_last) as a yardstick, where torch imports.

Each (layer, variant, pass) is compiled once, run once to warm up, then timed
as the median over `repeats` loops of back-to-back calls; a process stops
starting new items at its share of the budget and records the rest as
skipped. On GPUs one profiled call per item gives the kernels it ran, and the
compiled HLO gives cuDNN's algorithm per convolution. Every variant's forward
output is checked against a float32 convolution of the same inputs
(max_error: largest difference over the largest reference value).

`write_table` writes the form that wins each layer's training time into the
table file (`rhpe_jax.model.conv.TABLE_FILE`) for the platform the matrix
ran on. docs/performance.md ("The convolution matrix") has the whole story.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import glob
import gzip
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Sequence

from rhpe_jax.core import runtime
from rhpe_jax.model import conv
from rhpe_jax.model import conv_forms
from rhpe_jax.model import flops as flops_lib
from rhpe_jax.model import network as model_lib
from rhpe_jax.perf import hardware

# XLA flag sets, each measured in its own process; 'base' is the project's
# own (rhpe_jax.core.runtime adds --xla_gpu_force_conv_nhwc=true on GPU).
FLAG_SETS = {
    'base': '',
    # XLA's own layout choice for cuDNN convolutions (what the H200 profile
    # of 2026-11-26 ran, with legacy NCHW kernels for 11 of 24 convolutions).
    'nhwc_off': '--xla_gpu_force_conv_nhwc=false',
    # NCHW everywhere: the legacy kernels' layout, for contrast.
    'nchw': '--xla_gpu_force_conv_nhwc=false --xla_gpu_force_conv_nchw=true',
    # No autotuning: cuDNN's heuristics pick the first algorithm.
    'autotune_0': '--xla_gpu_autotune_level=0',
    # Autotuning that drops algorithms whose results differ from the reference.
    'autotune_5': '--xla_gpu_autotune_level=5',
    # cuDNN runtime-compiled fusion kernels for convolutions with their epilogue.
    'runtime_fusion': '--xla_gpu_use_runtime_fusion=true',
}
# Seconds a process may run past its deadline: the item in progress, then
# the profiled calls.
GRACE_S = 40.0
TINY = {'batch': 2, 'image_size': 32, 'width': 0.125, 'repeats': 1}
PASSES = ('forward', 'input_grad', 'weight_grad')


@dataclasses.dataclass(frozen=True)
class Layer:
  """A distinct convolution of the network: stride 1, 'SAME' padding."""
  height: int
  width: int
  kernel: int  # square kernels only, as in the network
  in_features: int
  out_features: int
  count: int  # times per forward pass
  takes_image: bool  # the first layer: training computes no input gradient

  @property
  def name(self) -> str:
    return f'{self.kernel}x{self.kernel} {self.in_features}>{self.out_features} @{self.height}'

  def gflop(self, batch: int) -> float:
    """One pass (forward, or either gradient) over `batch` images."""
    return batch * flops_lib.ConvLayer(self.height, self.width, self.kernel, self.in_features,
                                       self.out_features, False).conv_flops / 1e9

  def kernel_shape(self) -> tuple[int, int, int, int]:
    return (self.kernel, self.kernel, self.in_features, self.out_features)

  def training_passes(self) -> tuple[str, ...]:
    return ('forward', 'weight_grad') if self.takes_image else PASSES


def _subjaxprs(value) -> Iterable[Any]:
  """The jaxprs inside an equation parameter (Jaxpr, ClosedJaxpr, tuples)."""
  if hasattr(value, 'eqns'):
    yield value
  elif hasattr(value, 'jaxpr') and hasattr(value.jaxpr, 'eqns'):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _subjaxprs(item)


def _live_equations(jaxpr) -> list:
  """The equations that contribute to the jaxpr's outputs (or have effects):
  flax's scan leaves a dead copy of the loop-invariant skip convolution
  outside the loop, which XLA removes."""
  live = {v for v in jaxpr.outvars if not hasattr(v, 'val')}  # literals have .val
  kept = []
  for eqn in reversed(jaxpr.eqns):
    if eqn.effects or any(v in live for v in eqn.outvars):
      kept.append(eqn)
      live.update(v for v in eqn.invars if not hasattr(v, 'val'))
  return kept[::-1]


def _count_convolutions(jaxpr, times: int, counts: collections.Counter, order: list) -> None:
  for eqn in _live_equations(jaxpr):
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      lhs, rhs = (v.aval for v in eqn.invars[:2])
      if eqn.params['feature_group_count'] != 1 or set(eqn.params['window_strides']) != {1}:
        raise ValueError(f'unexpected convolution {eqn}')
      key = (tuple(lhs.shape), tuple(rhs.shape))
      if key not in counts:
        order.append(key)
      counts[key] += times
      continue
    inner = times * eqn.params['length'] if name == 'scan' else times
    if name == 'cond':  # one branch runs: the most convolutions of any
      branch_counts = []
      for branch in eqn.params['branches']:
        found = collections.Counter()
        _count_convolutions(branch.jaxpr, inner, found, order)
        branch_counts.append(found)
      for key in set().union(*branch_counts):
        counts[key] += max(c[key] for c in branch_counts)
      continue
    for value in eqn.params.values():
      for sub in _subjaxprs(value):
        _count_convolutions(sub, inner, counts, order)


def network_layers(net: model_lib.RecurrentPoseNet, batch: int, image_size: int) -> list[Layer]:
  """The network's distinct convolutions, in the order its forward pass
  first runs them, with how often it runs each (every stage's heads)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  net = net.clone(tuned_convolutions=False)  # every convolution as XLA's convolution
  images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
  variables = jax.eval_shape(  # abstract: this process starts no backend
      lambda: net.init(jax.random.key(0), jnp.zeros(images.shape, images.dtype), train=False))
  jaxpr = jax.make_jaxpr(functools.partial(net.apply, train=False))(variables, images)
  counts, order = collections.Counter(), []
  _count_convolutions(jaxpr.jaxpr, 1, counts, order)
  layers = []
  for lhs, rhs in order:
    (_, h, w, cin), (kh, kw, _, cout) = lhs, rhs
    if kh != kw:
      raise ValueError(f'non-square kernel {rhs}')
    layers.append(Layer(h, w, kh, cin, cout, counts[(lhs, rhs)], takes_image=cin == 3 and
                        h == image_size and not layers))
  return layers


# ---------------------------------------------------------------- JAX worker

def _one_line(error: Exception, limit: int = 300) -> str:
  """An exception's message on one line, cut to `limit` characters for the JSON."""
  return ' '.join(str(error).split())[:limit]


def _progress(layer: Layer, item: dict) -> None:
  outcome = f'{item["ms"]:.3f} ms' if 'ms' in item else f'error: {item.get("error")}'
  print(f'   {layer.name:24s} {item["variant"]:16s} {item["op"]:11s} {outcome}', flush=True)


def _pass_function(form: Callable, what: str) -> Callable:
  import jax  # pylint: disable=g-import-not-at-top
  if what == 'forward':
    return lambda x, kernel, grad: form(x, kernel)
  if what == 'input_grad':
    return lambda x, kernel, grad: jax.vjp(lambda x: form(x, kernel), x)[1](grad)[0]
  return lambda x, kernel, grad: jax.vjp(lambda k: form(x, k), kernel)[1](grad)[0]


def time_calls(fn: Callable, args: Sequence[Any], repeats: int, loop_s: float
               ) -> tuple[float, list[float]]:
  """Median seconds per call over `repeats` loops of back-to-back calls,
  after a warm-up call; each loop runs long enough to fill `loop_s`."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  single = time.perf_counter() - start
  calls = max(1, min(200, int(loop_s / max(single, 1e-6))))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = None
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / calls)
  return statistics.median(times), times


def hlo_summary(hlo_text: str) -> list[str]:
  """The library calls of a compiled program, with cuDNN's algorithm where
  one is chosen (e.g. '__cudnn$convForward algo 10'), or, where there are
  none (CPU), the count of each convolution and dot."""
  calls = []
  for line in hlo_text.splitlines():
    target = re.search(r'custom_call_target="([^"]+)"', line)
    if target:
      algo = re.search(r'"algo_id":"?(\d+)', line)
      calls.append(target.group(1) + (f' algo {algo.group(1)}' if algo else ''))
    kind = re.search(r'"kind":"(__triton_gemm|__cudnn\$fusion|__custom_fusion)"', line)
    if kind:
      calls.append(kind.group(1))
  if not calls:
    ops = collections.Counter(m.group(1) for m in
                              re.finditer(r'= \S+ (convolution|dot)\(', hlo_text))
    calls = [f'{op} x{n}' for op, n in sorted(ops.items())]
  return calls


def device_kernels(trace: dict, windows: dict[str, tuple[float, float]], top: int = 3
                   ) -> dict[str, list[tuple[str, float]]]:
  """{label: [(kernel, µs), ...]}: the device events of a Chrome-format
  profiler trace that start inside each label's host window, summed by name,
  the largest `top` first. Device events are those of /device:GPU or TPU
  processes; a CPU trace has none."""
  events = trace['traceEvents']
  devices = {e['pid'] for e in events if e.get('ph') == 'M' and e.get('name') == 'process_name'
             and re.match(r'/device:(GPU|TPU)', e['args']['name'])}
  out = {label: collections.Counter() for label in windows}
  spans = sorted((start, end, label) for label, (start, end) in windows.items())
  for e in events:
    if e.get('ph') != 'X' or e.get('pid') not in devices:
      continue
    for start, end, label in spans:
      if start <= e['ts'] <= end:
        out[label][e['name']] += e.get('dur', 0.0)
        break
  return {label: [(name, round(us, 1)) for name, us in counter.most_common(top)]
          for label, counter in out.items()}


def _trace_windows(trace: dict, prefix: str) -> dict[str, tuple[float, float]]:
  return {e['name']: (e['ts'], e['ts'] + e.get('dur', 0.0)) for e in trace['traceEvents']
          if e.get('ph') == 'X' and str(e.get('name', '')).startswith(prefix)}


def lowering_platform() -> str:
  """The platform name `lax.platform_dependent` uses for the default device."""
  import jax  # pylint: disable=g-import-not-at-top
  backend = jax.default_backend()
  if backend == 'gpu':
    version = str(getattr(jax.devices()[0].client, 'platform_version', '')).lower()
    return 'rocm' if 'rocm' in version else 'cuda'
  return backend


def jax_worker(spec: dict, save: Callable[[dict], None]) -> None:
  """Times spec['variants'] on spec['layers'] in this process; `save`s the
  results after every item (a process stopped at its timeout keeps them),
  then again with the kernels."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top
  if runtime.enable_compilation_cache():
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  deadline = spec['deadline']
  dtype = jnp.dtype(spec['dtype'])
  batch = spec['batch']
  layers = [Layer(**layer) for layer in spec['layers']]
  results, to_profile = [], []
  part = {'flag_set': spec['flag_set'], 'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'platform': lowering_platform(), 'device': jax.devices()[0].device_kind,
          'jax': jax.__version__, 'results': results}
  key = jax.random.key(0)
  # Within a variant, the layers with the most work first.
  by_work = sorted(range(len(layers)), key=lambda i: -layers[i].gflop(1) * layers[i].count)
  for variant in spec['variants']:
    form = conv.FORMS[variant]
    for index in by_work:
      layer = layers[index]
      if not conv_forms.applies(variant, layer.kernel_shape()):
        continue
      base = {'layer': index, 'variant': variant, 'flags': spec['flag_set']}
      if time.time() > deadline:
        results += [dict(base, op=op, skipped='budget') for op in spec['passes']]
        continue
      kx, kk, kg = jax.random.split(jax.random.fold_in(key, index), 3)
      x = jax.random.normal(kx, (batch, layer.height, layer.width, layer.in_features), dtype)
      kernel = (jax.random.normal(kk, layer.kernel_shape(), jnp.float32)
                * (2.0 / (layer.kernel ** 2 * layer.in_features)) ** 0.5).astype(dtype)
      grad = jax.random.normal(kg, (batch, layer.height, layer.width, layer.out_features), dtype)
      error = None
      for op in spec['passes']:
        item = dict(base, op=op)
        try:
          start = time.perf_counter()
          compiled = jax.jit(_pass_function(form, op)).lower(x, kernel, grad).compile()
          item['compile_s'] = round(time.perf_counter() - start, 2)
          seconds, times = time_calls(compiled, (x, kernel, grad), spec['repeats'], spec['loop_s'])
          item['ms'] = round(seconds * 1e3, 4)
          item['times_ms'] = [round(t * 1e3, 4) for t in times]
          item['tflops'] = round(layer.gflop(batch) / seconds / 1e3, 2)
          item['hlo'] = hlo_summary(compiled.as_text())
          if op == 'forward':
            reference = lax.conv_general_dilated(
                x.astype(jnp.float32), kernel.astype(jnp.float32), (1, 1), 'SAME',
                dimension_numbers=conv_forms.DIMENSIONS, precision=lax.Precision.HIGHEST)
            ours = compiled(x, kernel, grad).astype(jnp.float32)
            error = float(jnp.abs(ours - reference).max() / jnp.abs(reference).max())
          item['max_error'] = error
          to_profile.append((len(results), compiled, (x, kernel, grad)))
        except Exception as e:  # pylint: disable=broad-except
          item['error'] = _one_line(e)
        results.append(item)
        _progress(layer, item)
        save(part)
  save(part)  # with the items skipped at the end
  # The profiled calls take seconds; not when the grace time is half gone.
  if (spec['profile'] and to_profile and jax.default_backend() != 'cpu'
      and time.time() < deadline + GRACE_S / 2):
    _profile_kernels(results, to_profile)
    save(part)


def _profile_kernels(results: list[dict], to_profile: list) -> None:
  """Adds each item's device kernels (one profiled call) to its result."""
  import jax  # pylint: disable=g-import-not-at-top
  logdir = tempfile.mkdtemp(prefix='conv_matrix_trace_')
  try:
    with jax.profiler.trace(logdir):
      for position, compiled, args in to_profile:
        with jax.profiler.TraceAnnotation(f'rhpe_item:{position}'):
          jax.block_until_ready(compiled(*args))
    path = max(glob.glob(f'{logdir}/plugins/profile/*/*.trace.json.gz'), key=os.path.getmtime)
    trace = json.load(gzip.open(path))
    kernels = device_kernels(trace, _trace_windows(trace, 'rhpe_item:'))
    for label, found in kernels.items():
      results[int(label.split(':')[1])]['kernels'] = found
  except Exception as e:  # pylint: disable=broad-except
    print(f'kernel profile failed: {" ".join(str(e).split())[:200]}', flush=True)


# -------------------------------------------------------------- torch worker

def torch_worker(spec: dict, save: Callable[[dict], None]) -> None:
  """The same layers in PyTorch: cuDNN autotuning, channels_last; forward
  (F.conv2d) and each gradient alone (aten.convolution_backward)."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  torch.backends.cudnn.benchmark = True
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  dtype = getattr(torch, spec['dtype'])
  deadline = spec['deadline']
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  results = []
  part = {'flag_set': 'torch', 'platform': device, 'torch': torch.__version__,
          'device': torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
          'results': results}
  for index, layer in enumerate(Layer(**layer) for layer in spec['layers']):
    base = {'layer': index, 'variant': 'torch', 'flags': 'cudnn_benchmark'}
    if time.time() > deadline:
      results += [dict(base, op=op, skipped='budget') for op in spec['passes']]
      continue
    x = torch.randn(spec['batch'], layer.in_features, layer.height, layer.width, device=device,
                    dtype=dtype).to(memory_format=torch.channels_last)
    w = (torch.randn(layer.out_features, layer.in_features, layer.kernel, layer.kernel,
                     device=device, dtype=dtype) * 0.01).to(memory_format=torch.channels_last)
    pad = layer.kernel // 2  # odd kernels: 'SAME'
    grad = torch.randn(spec['batch'], layer.out_features, layer.height, layer.width,
                       device=device, dtype=dtype).to(memory_format=torch.channels_last)
    for op in spec['passes']:
      if op == 'forward':
        def fn():
          with torch.no_grad():
            return F.conv2d(x, w, padding=pad)
      else:
        mask = [op == 'input_grad', op == 'weight_grad', False]
        def fn(mask=mask):
          with torch.no_grad():
            return torch.ops.aten.convolution_backward(
                grad, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)
      item = dict(base, op=op)
      try:
        fn()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        calls = max(1, min(200, int(spec['loop_s'] / max(time.perf_counter() - start, 1e-6))))
        times = []
        for _ in range(spec['repeats']):
          start = time.perf_counter()
          for _ in range(calls):
            fn()
          sync()
          times.append((time.perf_counter() - start) / calls)
        item['ms'] = round(statistics.median(times) * 1e3, 4)
        item['times_ms'] = [round(t * 1e3, 4) for t in times]
        item['tflops'] = round(layer.gflop(spec['batch']) / statistics.median(times) / 1e3, 2)
      except Exception as e:  # pylint: disable=broad-except
        item['error'] = _one_line(e)
      if spec['profile'] and device == 'cuda' and 'ms' in item:
        try:
          item['kernels'] = _torch_kernels(fn)
        except Exception as e:  # pylint: disable=broad-except
          item['kernels_error'] = _one_line(e, 200)
      results.append(item)
      _progress(layer, item)
      save(part)
  save(part)  # with the items skipped at the end


def _torch_kernels(fn: Callable, top: int = 3) -> list[tuple[str, float]]:
  import torch  # pylint: disable=g-import-not-at-top
  from torch.profiler import ProfilerActivity, profile  # pylint: disable=g-import-not-at-top
  with profile(activities=[ProfilerActivity.CUDA]) as prof:
    fn()
    torch.cuda.synchronize()
  rows = []
  for event in prof.key_averages():
    us = getattr(event, 'self_device_time_total', None)
    if us is None:
      us = getattr(event, 'self_cuda_time_total', 0.0)
    if us > 0:
      rows.append((event.key, round(float(us), 1)))
  return sorted(rows, key=lambda row: -row[1])[:top]


# -------------------------------------------------------------- main process

def torch_available() -> bool:
  result = subprocess.run([sys.executable, '-c', 'import torch'], capture_output=True, check=False)
  return result.returncode == 0


def run_worker(kind: str, spec: dict, xla_flags: str, timeout_s: float) -> dict:
  """One process of the matrix (`worker_main`); its results, or the reason it
  gave none. Its progress lines pass through to this process's stdout."""
  with tempfile.TemporaryDirectory() as tmp:
    spec_path = pathlib.Path(tmp) / 'spec.json'
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    # The set's flags win over the same flags in this process's XLA_FLAGS
    # (which hold the project's, rhpe_jax.core.runtime).
    env['XLA_FLAGS'] = runtime.merged_xla_flags(xla_flags, os.environ.get('XLA_FLAGS', '').split())
    env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    # The worker imports this very copy of rhpe_jax, wherever it was found.
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get('PYTHONPATH')]))
    start = time.time()
    try:
      proc = subprocess.run(
          [sys.executable, '-c', WORKER_PROGRAM, kind, str(spec_path)], env=env,
          stderr=subprocess.PIPE, text=True, check=False, timeout=max(timeout_s, 1.0))
      error = None
      if proc.returncode:
        tail = ' '.join(proc.stderr.strip().splitlines()[-3:])
        error = f'exit status {proc.returncode}: {tail[-400:]}'
    except subprocess.TimeoutExpired:
      error = f'stopped at its timeout ({timeout_s:.0f} s)'
    part_path = spec_path.with_suffix('.out.json')
    try:  # what the process saved, even if it failed later
      part = json.loads(part_path.read_text())
    except (OSError, ValueError):
      part = {'flag_set': spec['flag_set'], 'results': []}
    if error:
      part['error'] = error
    part['wall_s'] = round(time.time() - start, 1)
    part['xla_flags_added'] = xla_flags
    return part


PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
WORKER_PROGRAM = ('import sys; from rhpe_jax.perf import gpu_conv_matrix; '
                  'gpu_conv_matrix.worker_main(sys.argv[1], sys.argv[2])')


def worker_main(kind: str, spec_path: str) -> None:
  """A worker process: times the spec's items with `jax_worker` or
  `torch_worker`, saving its results beside the spec as it goes."""
  runtime.setup()  # before JAX starts a backend
  spec_path = pathlib.Path(spec_path)
  spec = json.loads(spec_path.read_text())
  out_path = spec_path.with_suffix('.out.json')

  def save(part: dict) -> None:  # whole or not at all
    out_path.with_suffix('.tmp').write_text(json.dumps(part))
    out_path.with_suffix('.tmp').replace(out_path)

  (jax_worker if kind == 'jax' else torch_worker)(spec, save)


def merge_results(parts: list[dict]) -> list[dict]:
  """Every part's results, each variant of a flag set other than the
  first named `variant[flag set]`."""
  merged = []
  for number, part in enumerate(parts):
    for item in part['results']:
      item = dict(item)
      if number > 0 and part['flag_set'] != 'torch':
        item['variant'] = f'{item["variant"]}[{part["flag_set"]}]'
      merged.append(item)
  return merged


def cell(results: dict, layer: int, variant: str, passes: Sequence[str]) -> str:
  values = []
  for op in passes:
    item = results.get((layer, variant, op))
    if item is None:
      values.append('')
    elif 'ms' in item:
      values.append(f'{item["ms"]:.2f}')
    else:
      values.append('skip' if item.get('skipped') else 'err')
  return '/'.join(values) if any(values) else '-'


def training_ms(results: dict, layer: Layer, index: int, variant: str) -> float | None:
  """The layer's convolution time in one training step under `variant`
  (forward and gradients, times its count), or None where one is missing."""
  total = 0.0
  for op in layer.training_passes():
    item = results.get((index, variant, op))
    if item is None or 'ms' not in item:
      return None
    total += item['ms']
  return total * layer.count


def format_report(matrix: dict) -> str:
  """The printed table, best variants with kernels, and per-variant totals."""
  layers = [Layer(**layer) for layer in matrix['layers']]
  passes = matrix['meta']['passes']
  results = {(r['layer'], r['variant'], r['op']): r for r in matrix['results']}
  variants = list(dict.fromkeys(r['variant'] for r in matrix['results']))
  lines = [f'conv matrix: {matrix["meta"]["device"]}, batch {matrix["meta"]["batch"]}, '
           f'{matrix["meta"]["image_size"]} px, {matrix["meta"]["dtype"]}; ms per call as '
           + '/'.join(passes) + '; skip = out of time, err = failed']
  header = ['layer', 'count'] + variants
  rows = [[layer.name, str(layer.count)] + [cell(results, i, v, passes) for v in variants]
          for i, layer in enumerate(layers)]
  widths = [max(len(row[c]) for row in rows + [header]) for c in range(len(header))]
  for row in [header] + rows:
    lines.append('  '.join(text.ljust(width) for text, width in zip(row, widths)))
  lines.append('')
  lines.append('best per layer and pass (ms), kernels of the best and of XLA\'s default:')
  for i, layer in enumerate(layers):
    for op in passes:
      timed = [(results[(i, v, op)]['ms'], v) for v in variants
               if 'ms' in results.get((i, v, op), {})]
      if not timed:
        continue
      ms, best = min(timed)
      default = results.get((i, 'xla', op), {})
      lines.append(f'  {layer.name} {op}: {best} {ms:.3f}'
                   + (f' (xla {default["ms"]:.3f})' if 'ms' in default else ''))
      for name, item in ((best, results[(i, best, op)]), ('xla', default)):
        if item.get('kernels') or item.get('hlo'):
          kernels = '; '.join(f'{k[:90]} {us}us' for k, us in item.get('kernels') or [])
          lines.append(f'      {name}: {kernels or "-"} | hlo: {", ".join(item.get("hlo", []))[:160]}')
        if name == best == 'xla':
          break
  lines.append('')
  lines.append('convolution ms per training step (forward + gradients x count), per variant '
               'where every layer it applies to was timed, XLA\'s elsewhere:')
  for variant in variants:
    total, complete = 0.0, True
    for i, layer in enumerate(layers):
      ms = training_ms(results, layer, i, variant)
      if ms is None:
        ms = training_ms(results, layer, i, 'xla')
      if ms is None:
        complete = False
        break
      total += ms
    if complete:
      lines.append(f'  {variant}: {total:.2f}')
  best_total = 0.0
  for i, layer in enumerate(layers):
    candidates = [ms for v in variants if (ms := training_ms(results, layer, i, v)) is not None]
    best_total += min(candidates) if candidates else float('nan')
  lines.append(f'  best per layer: {best_total:.2f}')
  return '\n'.join(lines)


def check_choices(name: str, given: Sequence[str], known: Iterable[str]) -> None:
  """A ValueError naming the argument `name` unless `given` is a non-empty list of `known` names."""
  known = list(known)
  unknown = [value for value in given if value not in known]
  if unknown or not given:
    raise ValueError(f'{name}: unknown {unknown or "(none given)"}; known: {known}')


def run_matrix(*, batch: int, image_size: int, width: float, dtype: str, variants: Sequence[str],
               flag_sets: Sequence[str], passes: Sequence[str], repeats: int, loop_s: float,
               max_layers: int, layers: Sequence[str], budget_s: float, torch: str,
               profile: bool) -> dict:
  """The matrix: the network's layers timed under every variant and flag
  set, one process per flag set (and torch's), within `budget_s`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if image_size % 4:
    raise ValueError(f'image_size must be a multiple of 4, got {image_size}')
  check_choices('variants', variants, conv.FORMS)
  check_choices('flag_sets', flag_sets, FLAG_SETS)
  check_choices('passes', passes, PASSES)
  net = model_lib.RecurrentPoseNet(width=width, dtype=jnp.dtype(dtype))
  found = network_layers(net, batch, image_size)
  if layers:
    try:
      found = [found[int(i)] for i in layers]
    except (ValueError, IndexError):
      raise ValueError(f'layers: indices from 0 to {len(found) - 1}, '
                       f'got {",".join(layers)}') from None
  if max_layers:
    keep = sorted(range(len(found)), key=lambda i: -found[i].gflop(1) * found[i].count)
    found = [found[i] for i in sorted(keep[:max_layers])]
  spec = dict(batch=batch, dtype=dtype, passes=list(passes), repeats=repeats, loop_s=loop_s,
              profile=profile, layers=[dataclasses.asdict(layer) for layer in found])
  use_torch = torch == 'on' or (torch == 'auto' and torch_available())
  # Shares of the budget: the first process times every variant, the others
  # XLA's convolution only. Each process gets its share of the time left,
  # stops starting items at its deadline, and is stopped GRACE_S after it.
  processes = [(name, list(variants) if number == 0 else ['xla'],
                max(1.0, 0.6 * len(variants)) if number == 0 else 1.0)
               for number, name in enumerate(flag_sets)]
  if use_torch:
    processes.append(('torch', ['torch'], 0.8))
  start = time.time()
  end = start + budget_s
  parts = []
  for number, (name, process_variants, share) in enumerate(processes):
    left = end - time.time()
    deadline = time.time() + max(0.0, left * share / sum(p[2] for p in processes[number:]))
    what = 'cudnn benchmark, channels_last' if name == 'torch' else (
        FLAG_SETS[name] or 'the project\'s XLA flags')
    print(f'== process {name} ({what}): {", ".join(process_variants)}, '
          f'{deadline - time.time():.0f} s', flush=True)
    kind = 'torch' if name == 'torch' else 'jax'
    parts.append(run_worker(kind, dict(spec, flag_set=name, variants=process_variants,
                                       deadline=deadline),
                            FLAG_SETS.get(name, ''), timeout_s=deadline - time.time() + GRACE_S))
    print(f'   {len(parts[-1]["results"])} results in {parts[-1]["wall_s"]} s'
          + (f'; {parts[-1]["error"]}' if parts[-1].get('error') else ''), flush=True)
  first = parts[0]
  device = first.get('device', '?')
  peak = hardware.peak_bf16_flops(device)
  meta = dict(batch=batch, image_size=image_size, width=width, dtype=dtype, passes=list(passes),
              repeats=repeats, platform=first.get('platform', '?'), device=device,
              peak_bf16_tflops=None if peak is None else peak / 1e12, jax=jax.__version__,
              wall_s=round(time.time() - start, 1),
              processes=[{k: v for k, v in part.items() if k != 'results'} for part in parts])
  return {'meta': meta, 'layers': spec['layers'], 'results': merge_results(parts)}


def run(out: str | os.PathLike, *, tiny: bool, **settings) -> dict:
  """The command line's matrix: `run_matrix` (with TINY's settings when
  `tiny`), its JSON at `out`, then the printed report."""
  out = pathlib.Path(out)
  if not out.parent.is_dir():
    raise FileNotFoundError(f'out {out}: directory {out.parent} does not exist')
  if tiny:
    settings.update(TINY)
  matrix = run_matrix(**settings)
  out.write_text(json.dumps(matrix, indent=1))
  print(format_report(matrix), flush=True)
  print(f'wrote {out}', flush=True)
  return matrix


# --------------------------------------------------------------- the table

def table_winners(matrix: dict, min_gain: float, max_error_ratio: float
                  ) -> dict[tuple, str]:
  """{table key (rhpe_jax.model.conv.conv_table): form} for the layers where a form of conv.FORMS timed
  in the matrix's first process beats XLA's convolution on training time."""
  platform = matrix['meta']['platform']
  if platform not in conv.PLATFORMS:
    raise ValueError(f'the matrix ran on {platform!r}, not one of {conv.PLATFORMS}')
  results = {(r['layer'], r['variant'], r['op']): r for r in matrix['results']}
  winners = {}
  for index, fields in enumerate(matrix['layers']):
    layer = Layer(**fields)
    default = training_ms(results, layer, index, 'xla')
    if default is None:
      continue
    default_error = results[(index, 'xla', 'forward')].get('max_error') or 0.0
    best, best_ms = 'xla', default * (1 - min_gain)
    for form in conv.FORMS:
      ms = training_ms(results, layer, index, form)
      error = results.get((index, form, 'forward'), {}).get('max_error')
      if ms is None or error is None or error > max_error_ratio * default_error + 1e-3:
        continue
      if ms < best_ms:
        best, best_ms = form, ms
    if best != 'xla':
      key = conv.layer_key((matrix['meta']['batch'], layer.height, layer.width, 0),
                           layer.kernel_shape(), matrix['meta']['dtype'])
      winners[(platform, *key)] = best
  return winners


def write_table(matrix_path: str | os.PathLike, table_path: str | os.PathLike | None = None,
                *, min_gain: float, max_error_ratio: float) -> dict[tuple, str]:
  """The winners of the matrix at `matrix_path` into the table file (None: the one
  the model reads, rhpe_jax.model.conv.TABLE_FILE), replacing that platform's
  entries; other platforms' entries stay. Returns the winners."""
  try:
    matrix = json.loads(pathlib.Path(matrix_path).read_text())
  except OSError as error:
    raise OSError(f'matrix_path {matrix_path}: {error.strerror or error}') from error
  except ValueError as error:
    raise ValueError(f'matrix_path {matrix_path}: not JSON ({error})') from error
  try:
    winners = table_winners(matrix, min_gain, max_error_ratio)
    platform = matrix['meta']['platform']
  except (KeyError, TypeError) as error:
    raise ValueError(f'matrix_path {matrix_path}: not a matrix of experiments.gpu_conv_matrix '
                     f'({type(error).__name__}: {error})') from error
  table_path = pathlib.Path(table_path or conv.TABLE_FILE)
  table = conv.read_table(table_path) if table_path.exists() else {}
  kept = {key: form for key, form in table.items() if key[0] != platform}
  conv.write_table({**kept, **winners}, table_path)
  print(f'{table_path}: {len(winners)} entries for {platform}', flush=True)
  for key, form in sorted(winners.items()):
    print(f'  {key}: {form}', flush=True)
  return winners
