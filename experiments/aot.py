r"""Compiles the training and evaluation steps for a TPU slice one does not have.

  python -m experiments.aot --config=experiments/configs/mpii.py --topology=v5e-1 \
      [--batch_per_chip=N | --find_max_batch] [--what=train_step,predict_step] \
      [--config.compute_dtype=bfloat16] [--json=FILE]

Runs XLA's real TPU compiler (libtpu, the `tpu` extra) on this machine for
abstract chips (rhpe_jax.perf.tpu, rhpe_jax.perf.aot): the pmapped train step
with its donated state, the pmapped eval step, the predict step; nothing is
allocated. Prints a table and, last, one JSON line: memory per chip beside the
chip's HBM and `fits`, XLA's GFLOP per chip per step beside the project's
count, the bytes XLA accesses, and estimates (never measurements): the
roofline step time, the images/s and training time it allows, and how much of
the matrix unit each convolution fills (docs/tpu.md).

--topology: a preset (v5e-1, v6e-1, v2-8, v4-8, v5e-8, v5p-8, v6e-8) or a raw
libtpu topology (v5e:2x2, v4:2x2x1). The compiled program runs on every chip
of the slice (one process per host is how training runs on several hosts).
--batch_per_chip defaults to the config's batch_size over the chips.
--find_max_batch searches the largest per-chip batch that fits (compiles of
minutes each for the full network); --max_compiles caps them, and a search cut
short reports the bracket it reached (at least N fit, M does not).
"""
from __future__ import annotations

from typing import Sequence

from absl import flags
from ml_collections import config_flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=False)
  flags.DEFINE_string('topology', None, 'A preset (v5e-1, v6e-1, v2-8, v4-8, v5e-8, v5p-8, '
                      'v6e-8) or a libtpu topology such as v5e:2x2.')
  flags.DEFINE_integer('batch_per_chip', None, "Images per chip (default: the config's "
                       'batch_size over the chips).')
  flags.DEFINE_bool('find_max_batch', False, 'Search the largest per-chip batch that fits.')
  flags.DEFINE_integer('max_compiles', 10, 'At most this many compiles per step in '
                       '--find_max_batch; the search then reports the bracket it reached.')
  flags.DEFINE_list('what', ['train_step', 'predict_step'],
                    'Steps to compile: train_step, eval_step, predict_step.')
  flags.DEFINE_integer('epochs', None, "Epochs of the time-to-train estimate (default: the "
                       "config's num_epochs).")
  flags.DEFINE_integer('epoch_examples', None, 'Images per epoch of the time-to-train '
                       "estimate (default: the persons of MPII's training split).")
  flags.DEFINE_string('json', None, 'Also write the results to this file.')
  flags.DEFINE_string('markdown', None, 'Append one table row per step to this Markdown file '
                      '(the header first when the file is new).')


def main(argv: Sequence[str]) -> None:
  cli.check_usage(argv, required=('config', 'topology'))
  from rhpe_jax.perf import aot_report  # pylint: disable=g-import-not-at-top
  results = aot_report.run(FLAGS.config, FLAGS.topology, what=FLAGS.what,
                           batch_per_chip=FLAGS.batch_per_chip,
                           find_max_batch=FLAGS.find_max_batch, max_compiles=FLAGS.max_compiles,
                           epochs=FLAGS.epochs, epoch_examples=FLAGS.epoch_examples)
  aot_report.write_results(results, json_path=FLAGS.json, markdown_path=FLAGS.markdown)


if __name__ == '__main__':
  define_flags()
  cli.run(main)
