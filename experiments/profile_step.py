r"""Where a step's time goes: one traced step, its XLA operations summed.

  python -m experiments.profile_step --what=train_step --batch=2 --image_size=248 \
      --out=/tmp/profile

Compiles the step, runs it once untraced and once under `jax.profiler`, and
prints each kind of operation's share of the traced time and the slowest
operations with their shapes (the trace and the optimised HLO stay in --out,
for TensorBoard or Perfetto). On CPU set
XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true so that XLA's kernels appear in
the trace. Only traced operations are counted: Eigen's large convolutions
(XLA's default on CPU with the project's flags) run on XLA's thread pool
untraced, so compare the traced total with the step time.
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

from absl import app, flags

import jax
import numpy as np

from experiments import benchmark
from rhpe_jax.training import steps as step_lib

# --config, --what, --batch and --image_size are the benchmark's flags.
FLAGS = flags.FLAGS
flags.DEFINE_string('out', '/tmp/rhpe_profile', 'Directory for the trace and the HLO.')
flags.DEFINE_integer('top', 20, 'Slowest operations to list.')

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.what not in ('train_step', 'inference'):
    raise app.UsageError('--what must be train_step or inference')
  config = FLAGS.config
  config.input_size = FLAGS.image_size = FLAGS.image_size or config.input_size
  state = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=1000)
  batch = jax.device_put(benchmark.fake_batch(config, FLAGS.batch, FLAGS.image_size,
                                              np.random.default_rng(0)))
  if FLAGS.what == 'train_step':
    step = functools.partial(step_lib.train_step, config=config, axis_name=None)
  else:
    step = functools.partial(step_lib.predict_step, config=config)
  compiled = jax.jit(step).lower(state, batch).compile()
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'optimized_hlo.txt').write_text(compiled.as_text())
  jax.block_until_ready(compiled(state, batch))
  with jax.profiler.trace(str(out), create_perfetto_trace=True):
    start = time.perf_counter()
    jax.block_until_ready(compiled(state, batch))
    print(f'traced step: {time.perf_counter() - start:.2f} s')
  summarise(out, compiled.as_text(), FLAGS.top)


if __name__ == '__main__':
  app.run(main)
