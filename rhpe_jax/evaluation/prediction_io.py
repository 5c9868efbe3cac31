"""Community MPII prediction files and the `valid.h5` annotation layout.

Prediction files are what the MATLAB evaluation (evalMPII) and most public
pose code exchange: a `.h5` file with dataset `preds` or a `.mat` file with
variable `preds`, shaped (N, J, 2) or, as MATLAB writes HDF5, (2, J, N), in
1-based MATLAB pixel coordinates; which layout a file holds is decided as
evalMPII decides it (see `_to_njc`). `part` in valid.h5 comes from the MATLAB
annotation too (integer 1-based pixels; (0, 0) = not annotated), so both
sides are converted to this project's 0-based frame here, once, by
`x0 = x1 - 1`. Distances, and hence PCKh, are the same in either frame.

Saving then loading returns float32 input (the network's output) exactly,
as float64 (values under 2**-29 in magnitude aside); so for float64 values
with at most 24 significant bits. Other float64 values come back within one
rounding step of `x + 1`.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Union

import h5py
import numpy as np
import scipy.io

from rhpe_jax.data import mpii_annotations

PathLike = Union[str, os.PathLike]

_H5_SUFFIXES = ('.h5', '.hdf5')
_MAT_SUFFIXES = ('.mat',)
_ANNOTATION_FIELDS = ('part', 'visible', 'normalize')


def _suffix(path: pathlib.Path) -> str:
  suffix = path.suffix.lower()
  if suffix not in _H5_SUFFIXES + _MAT_SUFFIXES:
    raise ValueError(
        f'{path}: unknown prediction file type {suffix!r}; expected .h5, .hdf5 or .mat')
  return suffix


def _existing(path: PathLike) -> pathlib.Path:
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path}: no such file')
  return path


def _read_h5_preds(path: pathlib.Path) -> np.ndarray:
  try:
    with h5py.File(path, 'r') as f:
      if 'preds' not in f or not isinstance(f['preds'], h5py.Dataset):
        raise ValueError(f'{path}: no dataset named "preds" (found {sorted(f.keys())})')
      return np.asarray(f['preds'][()])
  except OSError as e:
    raise ValueError(f'{path}: not a readable HDF5 file ({e})') from None


def _read_mat_preds(path: pathlib.Path) -> tuple[np.ndarray, bool]:
  """`preds` of a .mat file, and whether it is in MATLAB's axis order."""
  try:
    contents = scipy.io.loadmat(str(path), variable_names=['preds'])
  except NotImplementedError:
    # MATLAB v7.3 .mat files are HDF5; h5py shows MATLAB's axes reversed,
    # as for any HDF5 file.
    return _read_h5_preds(path), False
  except Exception as e:  # scipy reports corrupt files with assorted errors
    raise ValueError(f'{path}: not a readable MATLAB file ({e!r})') from None
  if 'preds' not in contents:
    raise ValueError(f'{path}: no variable named "preds"')
  return np.asarray(contents['preds']), True


def _to_njc(preds: np.ndarray, path: pathlib.Path, matlab_order: bool) -> np.ndarray:
  """(N, J, 2) or (2, J, N) -> (N, J, 2), deciding as evalMPII does.

  evalMPII permutes `preds` when MATLAB sees 2 rows. `matlab_order` says the
  array has MATLAB's axis order (scipy.io.loadmat); h5py shows an HDF5
  dataset with MATLAB's axes reversed. So a .mat array with 2 rows, or an
  HDF5 array whose last axis is not 2, is (2, J, N); this settles the
  ambiguous N = 2 the way the official tool does.
  """
  if not np.issubdtype(preds.dtype, np.number) or np.iscomplexobj(preds):
    raise ValueError(f'{path}: "preds" must be real numbers, got dtype {preds.dtype}')
  if preds.ndim != 3 or 2 not in (preds.shape[0], preds.shape[2]):
    raise ValueError(
        f'{path}: "preds" must have shape (N, J, 2) or (2, J, N), got {preds.shape}')
  transposed = preds.shape[0] == 2 if matlab_order else preds.shape[2] != 2
  return np.transpose(preds, (2, 1, 0)) if transposed else preds


def load_predictions(path: PathLike) -> np.ndarray:
  """Reads a community prediction file; returns (N, J, 2) float64, 0-based."""
  path = _existing(path)
  suffix = _suffix(path)
  if suffix in _H5_SUFFIXES:
    preds, matlab_order = _read_h5_preds(path), False
  else:
    preds, matlab_order = _read_mat_preds(path)
  preds = _to_njc(preds, path, matlab_order)
  return preds.astype(np.float64) - 1.0


def save_predictions(path: PathLike, preds_0based: Any) -> None:
  """Writes (N, J, 2) 0-based predictions as a community file, 1-based (N, J, 2)
  float64, `.h5` (dataset `preds`) or `.mat` (variable `preds`) by extension.

  The one exception: a .mat file with N = 2 is written as (2, J, 2) in the
  MATLAB layout, because evalMPII (and `load_predictions`) read a .mat array
  with 2 rows that way.
  """
  path = pathlib.Path(path)
  suffix = _suffix(path)
  preds = np.asarray(preds_0based)
  if preds.ndim != 3 or preds.shape[2] != 2:
    raise ValueError(f'predictions must have shape (N, J, 2), got {preds.shape}')
  if not np.issubdtype(preds.dtype, np.number):
    raise ValueError(f'predictions must be numbers, got dtype {preds.dtype}')
  if not path.parent.is_dir():
    raise FileNotFoundError(f'{path.parent}: no such directory')
  one_based = preds.astype(np.float64) + 1.0
  if suffix in _H5_SUFFIXES:
    with h5py.File(path, 'w') as f:
      f.create_dataset('preds', data=one_based)
  else:
    if one_based.shape[0] == 2:
      one_based = np.transpose(one_based, (2, 1, 0))
    scipy.io.savemat(str(path), {'preds': one_based})


def load_mpii_annotations(path: PathLike) -> dict:
  """Ground truth of a `valid.h5` for scoring: `keypoints`, `status`,
  `head_size` and whatever else the file holds
  (`rhpe_jax.data.mpii_annotations.read_valid_h5`, the one reader)."""
  return mpii_annotations.read_valid_h5(path, required=_ANNOTATION_FIELDS)


def jsonable(value: Any) -> Any:
  """NumPy arrays/scalars to plain Python; NaN and infinities to None (JSON
  has none), so results can be written with `json.dumps`."""
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    value = value.tolist()
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value
