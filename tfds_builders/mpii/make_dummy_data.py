"""Writes dummy_data/: a tiny MPII release in the official file structure.

Made-up images and annotations (no real data is copied into the repository):
four small JPEGs, an annotation .mat with the official MATLAB struct layout
(RELEASE.annolist(i).image.name, .annorect(p).x1/y1/x2/y2/scale/objpos/
annopoints.point, img_train, single_person, act, video_list) and a valid.h5
with `index`/`person`/`imgname`. Run from the repository root:

  python tfds_builders/mpii/make_dummy_data.py

Splits it yields: train 3 persons, validation 1, test 1.
"""
from __future__ import annotations

import pathlib

import h5py
import numpy as np
from PIL import Image
import scipy.io

OUT = pathlib.Path(__file__).resolve().parent / 'dummy_data'
EMPTY = np.zeros((0, 0))


def _struct_array(records: list[dict], fields: list[str]) -> np.ndarray:
  """A 1 x N MATLAB struct array; absent values are [] as in MATLAB."""
  arr = np.empty((1, len(records)), dtype=[(f, 'O') for f in fields])
  for i, r in enumerate(records):
    arr[0, i] = tuple(r.get(f, EMPTY) for f in fields)
  return arr


def _person(rng: np.random.Generator, cx: float, cy: float, scale: float,
            num_points: int = 16) -> dict:
  """A made-up person around (cx, cy) (1-based MATLAB values)."""
  pts = []
  for j in range(num_points):
    pts.append({'id': float(j), 'x': float(cx + rng.uniform(-20, 20)),
                'y': float(cy + rng.uniform(-40, 40)),
                'is_visible': float(rng.integers(0, 2))})
  return {
      'x1': cx - 6.0, 'y1': cy - 50.0, 'x2': cx + 6.0, 'y2': cy - 38.0,
      'scale': scale, 'objpos': {'x': cx, 'y': cy},
      'annopoints': {'point': _struct_array(pts, ['id', 'x', 'y', 'is_visible'])},
  }


def main() -> None:
  rng = np.random.default_rng(0)
  (OUT / 'images').mkdir(parents=True, exist_ok=True)
  names = ['000000001.jpg', '000000002.jpg', '000000003.jpg', '000000004.jpg']
  for name in names:
    smooth = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    Image.fromarray(smooth).resize((160, 120), Image.BILINEAR).save(OUT / 'images' / name)

  rect_fields = ['x1', 'y1', 'x2', 'y2', 'annopoints', 'scale', 'objpos']
  annolist = [
      # Two people, train.
      {'image': {'name': names[0]},
       'annorect': _struct_array([_person(rng, 50, 60, 0.5), _person(rng, 110, 60, 0.5)],
                                 rect_fields)},
      # One person (squeezed to a scalar struct), train, and validation.
      {'image': {'name': names[1]},
       'annorect': _struct_array([_person(rng, 80, 60, 0.45)], rect_fields)},
      # One person with a few points, no objpos/scale: derived from keypoints.
      {'image': {'name': names[2]},
       'annorect': _struct_array([{**_person(rng, 70, 70, 0.4, num_points=5),
                                   'scale': EMPTY, 'objpos': EMPTY}], rect_fields)},
      # Test image: position and scale only.
      {'image': {'name': names[3]},
       'annorect': _struct_array([{'scale': 0.5, 'objpos': {'x': 80.0, 'y': 60.0}}],
                                 ['scale', 'objpos'])},
  ]
  single = np.empty((len(annolist), 1), dtype=object)
  single[:, 0] = [np.array([[1.0], [2.0]]), np.array([[1.0]]), EMPTY, np.array([[1.0]])]
  release = {
      'annolist': _struct_array(annolist, ['image', 'annorect']),
      'img_train': np.array([[1.0, 1.0, 1.0, 0.0]]),
      'single_person': single,
      'act': _struct_array([{'act_name': '', 'cat_name': '', 'act_id': -1.0}] * 4,
                           ['act_name', 'cat_name', 'act_id']),
      'video_list': np.array(['dummy'], dtype=object),
  }
  scipy.io.savemat(OUT / 'mpii_human_pose_v1_u12_1.mat', {'RELEASE': release})
  with h5py.File(OUT / 'valid.h5', 'w') as f:
    f['index'] = np.array([1.0])
    f['person'] = np.array([0.0])
    f['imgname'] = np.array([names[1].encode()])


if __name__ == '__main__':
  main()
