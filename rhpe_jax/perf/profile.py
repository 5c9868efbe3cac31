"""Where a step's time goes: one traced step, its XLA operations summed
(`experiments/profile_step.py`).

Only traced operations are counted: on CPU, XLA's kernels appear in the
trace with XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true, and Eigen's large
convolutions run on XLA's thread pool untraced, so compare the traced total
with the step time.
"""
from __future__ import annotations

import collections
import functools
import glob
import gzip
import json
import pathlib
import re
import time

import jax
import numpy as np

from rhpe_jax.perf import benchmark
from rhpe_jax.training import steps as step_lib

INSTRUCTION = re.compile(r'\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w-]+)\(')


def operation_kinds(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (kind, shape); fusions named by their kind or library."""
  kinds = {}
  for line in hlo_text.splitlines():
    match = INSTRUCTION.match(line)
    if not match:
      continue
    name, shape, opcode = match.groups()
    if opcode == 'fusion':
      library = re.search(r'"kind":"(__\w+)"', line)
      fusion_kind = re.search(r'kind=(\w+)', line)
      opcode = library.group(1) if library else f'fusion:{fusion_kind.group(1)}'
    kinds[name] = (opcode, shape)
  return kinds


def summarise(trace_dir: pathlib.Path, hlo_text: str, top: int) -> None:
  trace = json.load(gzip.open(glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True)[0]))
  kinds = operation_kinds(hlo_text)
  per_op = collections.Counter()
  for event in trace['traceEvents']:
    if event.get('ph') == 'X' and event.get('name') in kinds:
      per_op[event['name']] += event['dur'] / 1e3
  total = sum(per_op.values())
  per_kind = collections.Counter()
  for name, ms in per_op.items():
    per_kind[kinds[name][0]] += ms
  print(f'traced operations: {total:.0f} ms')
  for kind, ms in per_kind.most_common():
    print(f'  {kind:28s} {ms:9.1f} ms {100 * ms / total:5.1f} %')
  print('slowest:')
  for name, ms in per_op.most_common(top):
    print(f'  {ms:9.1f} ms  {name}  {kinds[name][0]}  {kinds[name][1]}')


def profile_step(config, what: str, batch: int, image_size: int | None, out: str,
                 top: int) -> None:
  """Compiles the step `what` (train_step or inference), runs it once
  untraced and once under `jax.profiler` (trace and optimised HLO in `out`),
  and prints the operations' shares of the traced time."""
  if what not in benchmark.STEPS:
    raise ValueError(f'what must be one of {", ".join(benchmark.STEPS)}, got {what!r}')
  config.input_size = image_size = image_size or config.input_size
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=1000)
  images = jax.device_put(benchmark.fake_batch(config, batch, image_size,
                                               np.random.default_rng(0)))
  if what == 'train_step':
    step = functools.partial(step_lib.train_step, config=config, axis_name=None)
  else:
    step = functools.partial(step_lib.predict_step, config=config)
  compiled = jax.jit(step).lower(state, images).compile()
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'optimized_hlo.txt').write_text(compiled.as_text())
  jax.block_until_ready(compiled(state, images))
  with jax.profiler.trace(str(out), create_perfetto_trace=True):
    start = time.perf_counter()
    jax.block_until_ready(compiled(state, images))
    print(f'traced step: {time.perf_counter() - start:.2f} s')
  summarise(out, compiled.as_text(), top)
