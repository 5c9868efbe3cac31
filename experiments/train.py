r"""Trains the recurrent pose network.

  python -m experiments.train --config=experiments/configs/mpii.py --workdir=runs/mpii \
      [--config.batch_size=24] [--config.compute_dtype=bfloat16]

Resumes from --workdir when it holds checkpoints. Several hosts: start one
process per host with --coordinator_address, --num_processes, --process_id
(or none of them on Cloud TPU, where JAX finds its peers).
"""
from __future__ import annotations

import logging as py_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host).')
flags.DEFINE_integer('process_id', None, 'This process (multi-host).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() without '
                  'arguments (Cloud TPU pods, SLURM).')
flags.mark_flags_as_required(['config', 'workdir'])


def _override_naming(key: str, argv: list[str]) -> str:
  """The `--config.` argument that mentions `key`, for the error message."""
  for arg in argv[1:]:
    path = arg.split('=', 1)[0]
    if path.startswith('--config.') and key in path[len('--config.'):].split('.'):
      return arg
  return f'--config.{key}'


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with every flag or config error reported on one line."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as error:  # ml_collections: unknown config key
    key = str(error).strip('"\'')
    sys.exit(f'error: {_override_naming(key, argv)}: the config has no key {key!r}')
  except flags.Error as error:
    sys.exit(f'error: {error}')


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's per-save INFO lines (dozens per checkpoint) from the log."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or 'orbax' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_QuietOrbax())
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address or FLAGS.distributed:
    # CPU hosts need a collectives backend; GPU/TPU ignore this setting.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  from rhpe_jax import augment, runtime, train  # pylint: disable=g-import-not-at-top
  runtime.enable_compilation_cache()
  augment.hide_gpus_from_tensorflow()
  logging.info('JAX process %d/%d, local devices %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, train.NonFiniteLossError) as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
