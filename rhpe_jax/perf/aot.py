"""Ahead-of-time compilation of the training and evaluation steps for devices
one does not have, and what XLA's compiled program says about them.

The functions compiled are exactly those training and evaluation run: the
pmapped `train_step` with its state donated (`train_step.pmapped_train_step`),
the pmapped `eval_step`, and `predict_step` jitted on one device (predict,
export). Their arguments are abstract (`jax.eval_shape` of the train state,
the input pipeline's batch shapes): nothing is allocated, so the paper's
network can be compiled for a TPU slice on a laptop (`rhpe_jax.perf.tpu`).

Every time and rate derived here is an estimate from XLA's cost analysis and
data-sheet peaks, never a measurement: the roofline bound is the larger of
FLOPs over the chip's peak and bytes accessed over its memory bandwidth.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from rhpe_jax import model as model_lib
from rhpe_jax.model import flops as flops_lib
from rhpe_jax.core import keypoint_sets
from rhpe_jax.training import steps as step_lib
from rhpe_jax.perf import hardware
from rhpe_jax.perf import tpu

STEPS = ('train_step', 'eval_step', 'predict_step')

# The TPU compiler refuses a program that does not fit: "Ran out of memory in
# memory space hbm ... (19.61G) exceeds available HBM (15.75G)".
_OUT_OF_MEMORY = re.compile(
    r'RESOURCE_EXHAUSTED: Ran out of memory.*?\(([\d.]+)([KMGT]?)\).*?available HBM \(([\d.]+)([KMGT]?)\)',
    re.S)
_UNITS = {'': 1, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}


def batch_spec(config: ml_collections.ConfigDict, batch: int, *, keys: Sequence[str] | None = None,
               devices: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes and dtypes of a batch as the input pipeline hands it to the
  steps (with a leading device axis when `devices` is given)."""
  num_keypoints = keypoint_sets.of_config(config).num_keypoints
  size, people = config.input_size, config.max_other_people
  shapes = {
      'image': ((batch, size, size, 3), jnp.uint8),
      'keypoints': ((batch, num_keypoints, 2), jnp.float32),
      'keypoint_status': ((batch, num_keypoints), jnp.int32),
      'other_keypoints': ((batch, people, num_keypoints, 2), jnp.float32),
      'other_keypoint_status': ((batch, people, num_keypoints), jnp.int32),
  }
  lead = () if devices is None else (devices,)
  return {key: jax.ShapeDtypeStruct(lead + shape, dtype)
          for key, (shape, dtype) in shapes.items() if keys is None or key in keys}


def abstract_train_state(config: ml_collections.ConfigDict) -> step_lib.TrainState:
  """The train state's shapes and dtypes, computed without allocating it.

  The learning-rate schedule is a constant of the compiled step whose value
  does not change its cost, so a nominal epoch of 1000 steps stands in for
  the dataset's."""
  steps_per_epoch = 1000
  total = config.num_train_steps if config.num_train_steps > 0 else steps_per_epoch * config.num_epochs
  return jax.eval_shape(lambda: step_lib.create_train_state(
      config, jax.random.key(0), steps_per_epoch, total))


def _with_device_axis(tree: Any, count: int) -> Any:
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct((count,) + x.shape, x.dtype), tree)


def _on_device(tree: Any, device) -> Any:
  sharding = jax.sharding.SingleDeviceSharding(device)
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def lower(what: str, config: ml_collections.ConfigDict, devices: Sequence, batch_per_chip: int):
  """The step `what` lowered for `devices` at `batch_per_chip` images each
  (predict_step: on the first device only, as predict and export run it)."""
  state = abstract_train_state(config)
  if what == 'train_step':
    step = step_lib.pmapped_train_step(config, devices=devices)
  elif what == 'eval_step':
    step = step_lib.pmapped_eval_step(config, devices=devices)
  elif what == 'predict_step':
    step = jax.jit(functools.partial(step_lib.predict_step, config=config))
    return step.lower(_on_device(state, devices[0]),
                      _on_device(batch_spec(config, batch_per_chip, keys=('image',)), devices[0]))
  else:
    raise ValueError(f'unknown step {what!r}: one of {", ".join(STEPS)}')
  count = len(devices)
  return step.lower(_with_device_axis(state, count),
                    batch_spec(config, batch_per_chip, devices=count))


def _targets_flops(config: ml_collections.ConfigDict, device, batch: int) -> float:
  """XLA's FLOPs for rendering one batch's targets on `device`: the train and
  eval steps render them, the project's count (rhpe_jax.model.flops) leaves them out."""
  grid = (config.input_size // model_lib.STRIDE,) * 2
  render = jax.jit(lambda b: step_lib.render_targets_for_batch(b, config, grid))
  compiled = render.lower(_on_device(batch_spec(config, batch), device)).compile()
  return float(_cost(compiled).get('flops', 0.0))


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def project_flops(what: str, config: ml_collections.ConfigDict, batch: int) -> int:
  """The project's count for one device's share (rhpe_jax.model.flops)."""
  net = model_lib.create_model(config)
  size = config.input_size
  if what == 'train_step':
    return flops_lib.train_step_flops(net, size, size, batch)
  return flops_lib.forward_flops(net, size, size, batch)


@dataclasses.dataclass
class Memory:
  """Bytes per chip of a compiled program (XLA's buffer assignment)."""
  arguments: int | None
  outputs: int | None
  aliased: int | None  # outputs written over donated arguments
  temporaries: int
  generated_code: int | None

  @property
  def total(self) -> int | None:
    parts = (self.arguments, self.outputs, self.aliased, self.generated_code)
    if any(part is None for part in parts):
      return None
    return self.arguments + self.outputs - self.aliased + self.temporaries + self.generated_code


def roofline_seconds(flops: float, bytes_accessed: float, chip: hardware.Chip) -> dict[str, Any]:
  """The step-time bound: the larger of compute time at the chip's peak and
  memory time at its bandwidth."""
  compute = flops / chip.peak_bf16_flops
  memory = bytes_accessed / chip.hbm_bytes_per_s
  return {'roofline_step_s': max(compute, memory), 'compute_bound_s': compute,
          'memory_bound_s': memory, 'bound_by': 'compute' if compute >= memory else 'memory'}


def compile_and_analyse(what: str, config: ml_collections.ConfigDict, tpu_slice: tpu.Slice,
                        devices: Sequence, batch_per_chip: int) -> dict[str, Any]:
  """Compile `what` for the slice and report memory, FLOPs and the bound.

  A program the compiler refuses for lack of memory is a result (fits:
  false, the temporaries it asked for), not an error."""
  chip = tpu_slice.chip
  chips = 1 if what == 'predict_step' else len(devices)
  report: dict[str, Any] = {
      'what': what, 'topology': tpu_slice.topology, 'preset': tpu_slice.name,
      'device_kind': devices[0].device_kind, 'chips': chips, 'hosts': tpu.num_hosts(devices),
      'batch_per_chip': batch_per_chip, 'global_batch': batch_per_chip * chips,
      'image_size': config.input_size, 'width': config.width, 'dtype': config.compute_dtype,
      'num_iterations': config.num_iterations, 'hbm_per_chip': chip.hbm_bytes,
  }
  start = time.perf_counter()
  lowered = lower(what, config, devices, batch_per_chip)
  try:
    compiled = lowered.compile()
  except Exception as error:  # pylint: disable=broad-except
    match = _OUT_OF_MEMORY.search(str(error))
    if not match:
      raise
    report['compile_s'] = round(time.perf_counter() - start, 1)
    need = float(match.group(1)) * _UNITS[match.group(2)]
    report['memory_per_chip'] = dataclasses.asdict(Memory(None, None, None, int(need), None))
    report['memory_per_chip']['total'] = None
    report['compiler_hbm_per_chip'] = int(float(match.group(3)) * _UNITS[match.group(4)])
    report['fits'] = False
    return report
  report['compile_s'] = round(time.perf_counter() - start, 1)
  stats = compiled.memory_analysis()
  memory = Memory(stats.argument_size_in_bytes, stats.output_size_in_bytes,
                  stats.alias_size_in_bytes, stats.temp_size_in_bytes,
                  stats.generated_code_size_in_bytes)
  report['memory_per_chip'] = dict(dataclasses.asdict(memory), total=memory.total)
  report['fits'] = memory.total <= chip.hbm_bytes
  cost = _cost(compiled)
  xla_flops = float(cost.get('flops', 0.0))
  bytes_accessed = float(cost.get('bytes accessed', 0.0))
  report['xla_gflop_per_chip'] = xla_flops / 1e9
  if what != 'predict_step':  # the steps render targets; the project's count does not
    targets = _targets_flops(config, devices[0], batch_per_chip)
    report['xla_targets_gflop_per_chip'] = targets / 1e9
    report['xla_network_gflop_per_chip'] = (xla_flops - targets) / 1e9
  else:
    report['xla_network_gflop_per_chip'] = xla_flops / 1e9
  report['project_gflop_per_chip'] = project_flops(what, config, batch_per_chip) / 1e9
  report['xla_gb_accessed_per_chip'] = bytes_accessed / 1e9
  estimate = roofline_seconds(xla_flops, bytes_accessed, chip)
  estimate['images_per_s'] = report['global_batch'] / estimate['roofline_step_s']
  optimal = cost.get('optimal_seconds')
  if isinstance(optimal, (int, float)) and optimal > 0:  # XLA's own model; negative when it fails
    estimate['xla_optimal_seconds'] = float(optimal)
  report['estimate'] = estimate
  return report


def find_max_batch(compile_at: Callable[[int], dict[str, Any]], start: int,
                   limit: int = 4096, max_compiles: int = 10,
                   line_steps: int = 4) -> tuple[int, list[dict[str, Any]]]:
  """The largest per-chip batch whose program fits, and every report made.

  `compile_at(batch)` compiles and reports (`compile_and_analyse`); each
  compile of the full network takes minutes, so few are made. Memory grows
  about linearly with the batch: up to `line_steps` guesses extend the line
  through the two measurements nearest the boundary to the memory limit
  (from one measurement: memory proportional to the batch), until a guess
  falls next to a known batch; then bisection closes the bracket [largest batch known to fit, smallest known
  not to], or, while no batch has failed yet, steps of doubling length
  climb from the largest that fits. No batch is compiled twice. Returns 0 when not even one image fits.
  """
  reports: dict[int, dict[str, Any]] = {}
  low, high = 0, limit + 1  # largest known to fit, smallest known not to

  def usage(batch: int) -> float:
    """Bytes the batch needs: temporaries plus the other buffers of the
    nearest fitting compile (a refused compile reports temporaries only)."""
    memory = reports[batch]['memory_per_chip']
    if memory['total'] is not None:
      return memory['total']
    fitting = [b for b in reports if reports[b]['fits']]
    if not fitting:
      return memory['temporaries']
    nearest = reports[min(fitting, key=lambda b: abs(b - batch))]['memory_per_chip']
    return memory['temporaries'] + nearest['total'] - nearest['temporaries']

  def budget() -> float:
    refused = [r['compiler_hbm_per_chip'] for r in reports.values() if 'compiler_hbm_per_chip' in r]
    return min(refused) if refused else next(iter(reports.values()))['hbm_per_chip']

  def line_guess() -> int | None:
    nearest = sorted(reports, key=lambda k: min(abs(k - low), abs(k - high)))
    if len(nearest) >= 2:
      a, b = sorted(nearest[:2])
      slope = (usage(b) - usage(a)) / (b - a)
      if slope > 0:
        return int(math.floor(a + (budget() - usage(a)) / slope))
    a = nearest[0]
    return int(math.floor(a * budget() / usage(a))) if usage(a) > 0 else None

  batch = max(1, min(start, limit))
  lines, stride = 0, 0
  while True:
    reports[batch] = compile_at(batch)
    if reports[batch]['fits']:
      low = max(low, batch)
    else:
      high = min(high, batch)
    if high - low <= 1 or len(reports) >= max_compiles:
      break
    guess = line_guess() if lines < line_steps else None
    if guess is not None and not low + 1 < guess < high - 1:
      lines = line_steps  # the line only creeps next to known batches from here
      guess = None
    lines += 1
    if guess is None:
      if high <= limit:
        guess = (low + high) // 2
      else:  # nothing has failed yet: gallop up from the largest fitting batch
        stride = max(1, low // 16) if not stride else 2 * stride
        guess = min(limit, low + stride)
    batch = guess
  return low, [reports[b] for b in sorted(reports)]


def mxu_fill(config: ml_collections.ConfigDict, chip: hardware.Chip) -> list[dict[str, Any]]:
  """Per distinct convolution: its share of the forward FLOPs and the
  fraction of the matrix unit its channel counts fill (an estimate:
  features padded up to the unit's width on both the contraction and the
  output side; the 3-channel first layer is left out, XLA folds its taps
  into the contraction)."""
  net = model_lib.create_model(config)
  layers = flops_lib.network_layers(net, config.input_size, config.input_size).convolutions
  total = sum(layer.conv_flops for layer in layers)
  rows: dict[tuple, dict[str, Any]] = {}
  for layer in layers:
    key = (layer.kernel, layer.in_features, layer.out_features, layer.height)
    row = rows.setdefault(key, {
        'kernel': layer.kernel, 'in_features': layer.in_features,
        'out_features': layer.out_features, 'resolution': layer.height,
        'flop_share': 0.0, 'fill': None})
    row['flop_share'] += layer.conv_flops / total
    if layer.in_features > 3:
      pad = lambda n: chip.mxu_width * math.ceil(n / chip.mxu_width)
      row['fill'] = layer.in_features / pad(layer.in_features) * layer.out_features / pad(
          layer.out_features)
  return list(rows.values())
