r"""Writes a manual dir holding a range of LSPET images, for a separate build.

Two builds of disjoint image ranges give a training set and a held-out set
that the network never saw (rhpe_jax.data.lspet_subset):

  python -m experiments.lspet_subset --source=../shared/data/lspet_sample \
      --first=1 --last=240 --output=/tmp/lspet_train
  tfds build tfds_builders/lsp --config=extended \
      --manual_dir=/tmp/lspet_train --data_dir=/tmp/lspet_train/tfds

The output holds `joints.mat` with the chosen columns and `images/` with
links to the chosen images, renumbered from im00001.jpg as the builder
expects; `source_images.txt` maps each new name to the original one.
"""
from __future__ import annotations

from absl import flags

from rhpe_jax import cli

_SOURCE = flags.DEFINE_string('source', None, 'LSPET folder with joints.mat and images/.',
                              required=True)
_FIRST = flags.DEFINE_integer('first', 1, 'First image number (1-based, inclusive).')
_LAST = flags.DEFINE_integer('last', None, 'Last image number (1-based, inclusive).',
                             required=True)
_OUTPUT = flags.DEFINE_string('output', None, 'Folder to write (created).', required=True)


def main(argv):
  cli.check_usage(argv)
  from rhpe_jax.data import lspet_subset  # pylint: disable=g-import-not-at-top
  names = lspet_subset.write_subset(_SOURCE.value, _FIRST.value, _LAST.value, _OUTPUT.value)
  print(f'wrote {len(names)} images ({names[0]} .. {names[-1]}) to {_OUTPUT.value}')


if __name__ == '__main__':
  cli.run(main)
