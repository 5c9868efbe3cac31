r"""The authors' trained network (MatConvNet .mat) as a checkpoint of this project.

  python -m experiments.import_matconvnet --mat=keypoint-v3.mat --output=runs/authors_v3

Reads keypoint-v3.mat or keypoint-v4.mat (ox-vgg/keypoint_models; MAT v5 or
v7.3, `net` as a struct, as top-level fields, or as a dagnn.DagNN object
where the mat-io package can decode it), checks it against the network the
authors' code builds (rhpe_jax.interop.matconvnet) and writes

  OUTPUT/config.py                    the config describing it (the MPII
                                      setting, batch_norm_per_pass=True)
  OUTPUT/checkpoints/latest/0/        the weights, as training saves them

which every tool takes as `--config=OUTPUT/config.py --workdir=OUTPUT`:

  python -m experiments.predict --config=OUTPUT/config.py --workdir=OUTPUT --image=photo.jpg --output=out/photo
  python -m experiments.evaluate --config=OUTPUT/config.py --workdir=OUTPUT --config.data_dir=...
  python -m experiments.export --config=OUTPUT/config.py --workdir=OUTPUT --output=OUTPUT/export

A file that is not that network is refused with one line listing every
difference; nothing is written then.
"""
from __future__ import annotations

from absl import flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags, defined when run (another tool's --output may share a process)."""
  flags.DEFINE_string('mat', None, "The authors' MatConvNet file (keypoint-v3.mat, "
                      'keypoint-v4.mat).')
  flags.DEFINE_string('output', None, 'Directory for config.py and checkpoints/ (created).')
  flags.DEFINE_bool('overwrite', False, 'Replace the checkpoint of an earlier import in --output.')
  flags.mark_flags_as_required(['mat', 'output'])


def main(argv):
  cli.check_usage(argv)
  # pylint: disable=g-import-not-at-top
  from rhpe_jax.interop import matconvnet
  from rhpe_jax.training import steps
  # pylint: enable=g-import-not-at-top
  written = matconvnet.import_to_workdir(FLAGS.mat, FLAGS.output, steps.train_state_from_variables,
                                         overwrite=FLAGS.overwrite)
  print('\n'.join(written.summary))


if __name__ == '__main__':
  define_flags()
  cli.run(main)
