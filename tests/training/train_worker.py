"""Subprocess worker for the training tests: runs where the device count (set
through XLA_FLAGS before JAX starts) differs from the pytest process's.

  python tests/training/train_worker.py pmap OUT.npz
      N steps on one global batch: pmapped over every device (the CPU device
      count is set by the caller), and with plain `jit` on one device and no
      pmap axis; writes both results.
  python tests/training/train_worker.py reference OUT.npz DATA_DIR DATASET
      What `--num_processes=2` over 2 devices each computes, in one process
      over 4 devices: each global batch is process 0's batch then process
      1's, from the per-process streams of the real input pipeline.

`tiny_config` is shared with the tests that start `experiments.train`.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

from rhpe_jax.core import runtime

# The comparisons of a distributed run with a single-device one hold to 2e-5
# with YNNPACK's convolutions, whose reduction order does not depend on the
# batch; with Eigen's (the project's choice on CPU, for speed) the two differ
# by up to ~1.4e-4 after a few steps. They test the distribution, not the
# kernels, so they run on YNNPACK's where the jaxlib has it.
YNN_CONVOLUTIONS = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'


def comparison_xla_flags() -> list[str]:
  """XLA flags for the distributed-versus-single-device comparisons."""
  knows_ynn = any('ynn_fusion_type' in flag for flag in runtime.project_xla_flags())
  return [YNN_CONVOLUTIONS] if knows_ynn else []

# The tiny network and its schedule (SGD with momentum and ReLU outputs, as
# the paper): small enough to compile in seconds, large enough that a step
# moves every weight. (With linear outputs the first steps are so large that
# float rounding differences grow to ~1e-3 within three steps.)
TINY = {
    'width': 0.0625, 'input_size': 32, 'num_iterations': 1, 'max_other_people': 2,
    'optimizer': 'sgd', 'learning_rate': 2e-5, 'momentum': 0.9, 'grad_clip_norm': 0.0,
    'batch_size': 8, 'shuffle_buffer': 64, 'prefetch_batches': 1,
    'num_summary_images': 0, 'log_every_steps': 1, 'relu_output': True,
}
PMAP_STEPS = 3
PMAP_PER_DEVICE = 2
REFERENCE_STEPS = 4


def tiny_config(**overrides):
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  config.update(dict(TINY, **overrides))
  return config


def config_flags(**overrides) -> list[str]:
  """`--config.k=v` arguments giving `tiny_config(**overrides)` from demo.py."""
  return [f'--config.{k}={v}' for k, v in dict(TINY, **overrides).items()]


def flatten(tree, prefix: str) -> dict[str, np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return {prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def run_pmap(out: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax.perf.benchmark import fake_batch  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import steps as step_lib  # pylint: disable=g-import-not-at-top

  devices = jax.local_device_count()
  config = tiny_config(batch_size=devices * PMAP_PER_DEVICE)
  rng = np.random.default_rng(0)
  batches = [fake_batch(config, config.batch_size, config.input_size, rng)
             for _ in range(PMAP_STEPS)]
  init = step_lib.create_train_state(config, jax.random.key(0), steps_per_epoch=100)

  p_step = step_lib.pmapped_train_step(config)
  state = step_lib.replicate(init)
  for batch in batches:
    split = jax.tree_util.tree_map(
        lambda x: x.reshape((devices, PMAP_PER_DEVICE) + x.shape[1:]), batch)
    state, _ = p_step(state, split)
  pmapped = step_lib.unreplicate(state)

  one_step = jax.jit(functools.partial(step_lib.train_step, config=config, axis_name=None))
  single = init
  for batch in batches:
    single, _ = one_step(single, batch)

  arrays = {'devices': np.array(devices)}
  for name, final in (('pmap', pmapped), ('single', single)):
    arrays.update(flatten({'params': final.params, 'batch_stats': final.batch_stats}, name))
  arrays.update(flatten({'params': init.params}, 'init'))
  np.savez(out, **arrays)


def run_reference(out: str, data_dir: str, dataset: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import datasets as data  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import loop as train
  from rhpe_jax.training import steps as step_lib  # pylint: disable=g-import-not-at-top

  if jax.local_device_count() != 4:
    raise SystemExit(f'reference needs 4 devices, got {jax.local_device_count()}')
  config = tiny_config(dataset=dataset, data_dir=data_dir)
  streams = [data.TrainData(config, process_index=p, process_count=2, local_device_count=2)
             for p in range(2)]
  per_epoch = train.steps_per_epoch(config, streams[0].num_examples)
  iterators = [s.dataset(0).as_numpy_iterator() for s in streams]
  init = step_lib.create_train_state(config, jax.random.key(config.seed), per_epoch)
  arrays = flatten({'params': init.params, 'batch_stats': init.batch_stats}, 'init')
  state = step_lib.replicate(init)
  p_step = step_lib.pmapped_train_step(config)
  for _ in range(REFERENCE_STEPS):
    parts = [next(it) for it in iterators]
    batch = jax.tree_util.tree_map(lambda *x: np.concatenate(x, axis=0), *parts)
    state, _ = p_step(state, batch)
  final = step_lib.unreplicate(state)
  arrays.update(flatten({'params': final.params, 'batch_stats': final.batch_stats}, ''))
  np.savez(out, **arrays)


if __name__ == '__main__':
  runtime.setup()  # before JAX starts, as experiments.train has it
  mode = sys.argv[1]
  if mode == 'pmap':
    run_pmap(sys.argv[2])
  elif mode == 'reference':
    run_reference(sys.argv[2], sys.argv[3], sys.argv[4])
  else:
    raise SystemExit(f'unknown mode {mode!r}')
