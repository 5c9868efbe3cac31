r"""Times every distinct convolution of the network under each way of running
it: forward, input gradient and weight gradient, per layer shape.

  python -m experiments.gpu_conv_matrix --out=conv_matrix.json
  python -m experiments.gpu_conv_matrix --tiny --out=/tmp/conv_matrix.json   # CPU check
  python -m experiments.gpu_conv_matrix --write_table=conv_matrix.json

Layers from the network's jaxpr (at --batch, --image_size, --width, --dtype);
variants: the forms of rhpe_jax.model.conv.FORMS, XLA's convolution under
other flag sets (one process each), and PyTorch where it imports
(rhpe_jax.perf.gpu_conv_matrix). Prints the table, the best variant per layer
with its kernels, and each variant's convolution time per training step;
writes everything to --out as JSON.

--write_table=JSON writes the forms that win each layer's training time (by at
least --min_gain over XLA's, with an output error within --max_error_ratio of
XLA's) into the table file the model reads (--table_file), for the platform
the matrix ran on.
"""
from __future__ import annotations

from absl import app, flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined when run, not on import)."""
  flags.DEFINE_string('out', None, 'Where to write the JSON results.')
  flags.DEFINE_integer('batch', 20, 'Batch size.')
  flags.DEFINE_integer('image_size', 248, 'Input image size (a multiple of 4).')
  flags.DEFINE_float('width', 1.0, 'Channel multiplier of the network.')
  flags.DEFINE_enum('dtype', 'bfloat16', ['bfloat16', 'float32', 'float16'], 'Compute dtype.')
  flags.DEFINE_bool('tiny', False, 'Tiny shapes for a CPU check: batch 2, 32 px, width 0.125, '
                    'one repeat (overrides those flags).')
  # The most promising first: a process that runs out of time skips the last.
  flags.DEFINE_list('variants', ['xla', 'im2col', 'channels_padded', 'im2col_rows', 'taps',
                                 'winograd'], 'Forms of rhpe_jax.model.conv.FORMS to time, in order.')
  flags.DEFINE_list('flag_sets', ['base', 'nhwc_off', 'autotune_0', 'autotune_5'],
                    'XLA flag sets (FLAG_SETS), one process each; XLA\'s convolution only '
                    'except in the first, which times every variant.')
  flags.DEFINE_list('passes', ['forward', 'input_grad', 'weight_grad'], 'What to time per layer.')
  flags.DEFINE_integer('repeats', 3, 'Timed loops per item (the median is reported).')
  flags.DEFINE_float('loop_s', 0.02, 'Least seconds per timed loop (calls are repeated to fill it).')
  flags.DEFINE_integer('max_layers', 0, 'Only the N layers with the most FLOPs (0: all).')
  flags.DEFINE_list('layers', [], 'Only these layers: indices in the order the network runs them.')
  flags.DEFINE_float('budget_s', 330.0, 'Seconds for the whole matrix, all processes.')
  flags.DEFINE_enum('torch', 'auto', ['auto', 'on', 'off'], 'The torch yardstick: where '
                    'torch imports (auto), required (on) or not run (off).')
  flags.DEFINE_bool('profile', True, 'Record kernel names (one profiled call per item).')
  flags.DEFINE_string('write_table', None, 'A matrix JSON: write its winners into the table.')
  flags.DEFINE_string('table_file', None, 'The convolution table --write_table writes '
                      '(default: rhpe_jax/model/conv_table.json, the one the model reads).')
  flags.DEFINE_float('min_gain', 0.05, 'A form replaces XLA\'s convolution only when it '
                     'saves at least this fraction of the layer\'s training time.')
  flags.DEFINE_float('max_error_ratio', 4.0, 'A form qualifies only when its output error is at '
                     'most this many times XLA\'s (plus 1e-3).')


def main(argv):
  cli.check_usage(argv)
  from rhpe_jax.perf import gpu_conv_matrix  # pylint: disable=g-import-not-at-top
  if FLAGS.write_table:
    gpu_conv_matrix.write_table(FLAGS.write_table, FLAGS.table_file, min_gain=FLAGS.min_gain,
                                max_error_ratio=FLAGS.max_error_ratio)
    return
  if not FLAGS.out:
    raise app.UsageError('--out is required')
  gpu_conv_matrix.run(
      FLAGS.out, tiny=FLAGS.tiny, batch=FLAGS.batch, image_size=FLAGS.image_size,
      width=FLAGS.width, dtype=FLAGS.dtype, variants=FLAGS.variants, flag_sets=FLAGS.flag_sets,
      passes=FLAGS.passes, repeats=FLAGS.repeats, loop_s=FLAGS.loop_s,
      max_layers=FLAGS.max_layers, layers=FLAGS.layers, budget_s=FLAGS.budget_s,
      torch=FLAGS.torch, profile=FLAGS.profile)


if __name__ == '__main__':
  define_flags()
  cli.run(main, renamed={'matrix_path': 'write_table'})
