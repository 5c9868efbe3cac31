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

from absl import flags
from ml_collections import config_flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', 'experiments/configs/mpii.py', 'Training config.')
  flags.DEFINE_enum('what', 'train_step', ['train_step', 'inference'], 'The step to profile.')
  flags.DEFINE_integer('batch', 2, 'Batch size.')
  flags.DEFINE_integer('image_size', None, 'Input size; default: the config\'s input_size.')
  flags.DEFINE_string('out', '/tmp/rhpe_profile', 'Directory for the trace and the HLO.')
  flags.DEFINE_integer('top', 20, 'Slowest operations to list.')


def main(argv):
  cli.check_usage(argv)
  from rhpe_jax.perf import profile  # pylint: disable=g-import-not-at-top
  profile.profile_step(FLAGS.config, FLAGS.what, FLAGS.batch, FLAGS.image_size, FLAGS.out,
                       FLAGS.top)


if __name__ == '__main__':
  define_flags()
  cli.run(main)
