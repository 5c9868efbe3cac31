"""Writes dummy_data/: tiny made-up LSP and LSPET releases in their layouts.

dummy_data/lsp_dataset/: images/im0001.jpg..im0004.jpg and joints.mat shaped
(3, 14, 4) (third row 1 = occluded); dummy_data/lspet_dataset/:
images/im00001.jpg..im00003.jpg and joints.mat shaped (14, 3, 3) (third
column 1 = visible). Run from the repository root:

  python tfds_builders/lsp/make_dummy_data.py
"""
from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image
import scipy.io

OUT = pathlib.Path(__file__).resolve().parent / 'dummy_data'


def _write(folder: pathlib.Path, names: list[str], joints: np.ndarray,
           rng: np.random.Generator) -> None:
  (folder / 'images').mkdir(parents=True, exist_ok=True)
  for name in names:
    w, h = int(rng.integers(60, 120)), int(rng.integers(80, 140))
    smooth = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
    Image.fromarray(smooth).resize((w, h), Image.BILINEAR).save(folder / 'images' / name)
  scipy.io.savemat(folder / 'joints.mat', {'joints': joints})


def main() -> None:
  rng = np.random.default_rng(0)
  n = 4
  xy = rng.uniform(5, 60, (n, 14, 2)) + 1.0  # 1-based values
  flags = rng.integers(0, 2, (n, 14)).astype(np.float64)
  original = np.concatenate([xy, flags[..., None]], axis=-1)  # (N, 14, 3)
  _write(OUT / 'lsp_dataset', [f'im{i + 1:04d}.jpg' for i in range(n)],
         np.transpose(original, (2, 1, 0)), rng)  # (3, 14, N)
  n = 3
  xy = rng.uniform(5, 60, (n, 14, 2)) + 1.0
  flags = rng.integers(0, 2, (n, 14)).astype(np.float64)
  extended = np.concatenate([xy, flags[..., None]], axis=-1)
  _write(OUT / 'lspet_dataset', [f'im{i + 1:05d}.jpg' for i in range(n)],
         np.transpose(extended, (1, 2, 0)), rng)  # (14, 3, N)


if __name__ == '__main__':
  main()
