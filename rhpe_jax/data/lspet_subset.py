"""A range of LSPET images as a manual dir of its own, for a separate TFDS build.

Two builds of disjoint image ranges give a training set and a held-out set
that the network never saw (TFDS stores a build's examples shuffled, so a
split slice such as `train[:240]` is a random subset, not images 1-240).
The folder holds `joints.mat` with the chosen columns and `images/` with
links to the chosen images, renumbered from im00001.jpg as the builder
(tfds_builders/lsp, config `extended`) expects; `source_images.txt` maps
each new name to the original one.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import scipy.io


def write_subset(source: str | os.PathLike, first: int, last: int,
                 output: str | os.PathLike) -> list[str]:
  """Writes images `first`..`last` (1-based) of an LSPET folder; returns their names."""
  source, output = pathlib.Path(source), pathlib.Path(output)
  joints_path = source / 'joints.mat'
  if not joints_path.is_file():
    raise FileNotFoundError(f'no joints.mat in {source}')
  joints = scipy.io.loadmat(joints_path)['joints']
  if joints.ndim != 3 or joints.shape[:2] != (14, 3):
    raise ValueError(f'{joints_path}: expected the LSPET layout (14, 3, N), got {joints.shape}')
  n = joints.shape[2]
  if not 1 <= first <= last <= n:
    raise ValueError(f'need 1 <= first <= last <= {n} (images in {joints_path}), '
                     f'got first={first}, last={last}')
  (output / 'images').mkdir(parents=True, exist_ok=False)
  names = []
  for new, old in enumerate(range(first, last + 1), start=1):
    original = (source / 'images' / f'im{old:05d}.jpg').resolve()
    if not original.is_file():
      raise FileNotFoundError(f'image {original} is missing')
    (output / 'images' / f'im{new:05d}.jpg').symlink_to(original)
    names.append(original.name)
  scipy.io.savemat(output / 'joints.mat', {'joints': np.ascontiguousarray(
      joints[:, :, first - 1:last])})
  (output / 'source_images.txt').write_text(''.join(
      f'im{new:05d}.jpg {old}\n' for new, old in enumerate(names, start=1)))
  return names
