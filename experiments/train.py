r"""Trains the recurrent pose network.

  python -m experiments.train --config=experiments/configs/mpii.py --workdir=runs/mpii \
      [--config.batch_size=24] [--config.compute_dtype=bfloat16]

Resumes from --workdir when it holds checkpoints (from the newest readable
one: an unreadable newer one is reported in one line and moved to
WORKDIR/checkpoints/unreadable). Several hosts: start one
process per host with --coordinator_address, --num_processes, --process_id
(or none of them on Cloud TPU, where JAX finds its peers). Library logging
is hidden; --verbosity=0 shows it.
"""
from __future__ import annotations

from absl import flags, logging
from ml_collections import config_flags

from rhpe_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host).')
flags.DEFINE_integer('process_id', None, 'This process (multi-host).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() without '
                  'arguments (Cloud TPU pods, SLURM).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  cli.check_usage(argv)
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import processes  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address or FLAGS.distributed:  # before JAX starts a backend
    processes.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  from rhpe_jax.training import loop  # pylint: disable=g-import-not-at-top
  logging.info('JAX process %d/%d, local devices %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  # Bad config or data, unreadable checkpoints, a full disk, divergence: one
  # line each (cli.run).
  loop.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main, compilation_cache=True)
