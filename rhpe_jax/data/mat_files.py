"""MATLAB .mat files as plain Python values (for rhpe_jax.interop.matconvnet).

`read_variables(path)` returns {name: value} with every value in one form,
whatever the file's version:

  struct (any size)   list of dicts, in MATLAB's element order
  cell                list, in MATLAB's element order
  char                str
  numeric, logical    np.ndarray with MATLAB's dimensions (at least 2), so a
                      3x3x64x128 kernel is (3, 3, 64, 128) and a 1xC bias (1, C)
  object              `MatlabObject` (class name and, where decoded, properties)

MAT v4-v7 files are read by `scipy.io.loadmat`, MAT v7.3 (HDF5) files by
h5py. A MATLAB object (MCOS; a class with `saveobj` stores its return value
as the property 'any') is opaque to both; the `mat-io` package decodes it
where it is installed (`decode_objects`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np


class MatFileError(ValueError):
  """A file that is not a MAT file, or that holds something unreadable."""


@dataclasses.dataclass
class MatlabObject:
  """A MATLAB class instance; `properties` is None where it was not decoded."""
  classname: str
  properties: dict[str, Any] | None = None


def is_hdf5(path: str | os.PathLike) -> bool:
  with open(path, 'rb') as f:
    f.seek(512)  # MATLAB's v7.3 files have a 512-byte header before HDF5's
    return f.read(8) == b'\x89HDF\r\n\x1a\n'


def read_variables(path: str | os.PathLike) -> dict[str, Any]:
  """The file's variables, normalised as the module docstring says."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} does not exist')
  if is_hdf5(path):
    return _read_hdf5(path)
  import scipy.io  # pylint: disable=g-import-not-at-top
  try:
    contents = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True,
                                chars_as_strings=True)
  except (ValueError, TypeError, NotImplementedError, OSError) as e:
    raise MatFileError(f'{path} is not a readable MAT file ({" ".join(str(e).split())})') from None
  variables = {}
  for name, value in contents.items():
    if name.startswith('__'):  # header, version, globals, object workspace
      continue
    variables[name] = _from_scipy(value)
  return variables


def _from_scipy(value: Any) -> Any:
  from scipy.io import matlab  # pylint: disable=g-import-not-at-top
  if isinstance(value, matlab.MatlabOpaque):
    classname = '?'
    names = value.dtype.names or ()
    # scipy < 1.18: (name, type system, class, ...) as s0, s1, s2; 1.18: named fields
    field = '_Class' if '_Class' in names else 's2' if 's2' in names else None
    if field:
      classname = np.asarray(value[field]).ravel()[0]
    return MatlabObject(classname.decode() if isinstance(classname, bytes) else str(classname))
  if isinstance(value, matlab.MatlabFunction):
    raise MatFileError('a MATLAB function handle cannot be read')
  if not isinstance(value, np.ndarray):
    return value
  if value.dtype.names:  # struct array
    return [{field: _from_scipy(element[field]) for field in value.dtype.names}
            for element in value.ravel(order='F')]
  if value.dtype == object:  # cell array
    return [_from_scipy(element) for element in value.ravel(order='F')]
  if value.dtype.kind in 'US':  # char array (rows are strings)
    return ''.join(str(v) for v in value.ravel())
  return value


# MATLAB classes of numeric data in v7.3 files.
_NUMERIC = ('double', 'single', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32',
            'int64', 'uint64')


def _read_hdf5(path: str | os.PathLike) -> dict[str, Any]:
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    with h5py.File(path, 'r') as f:
      return {name: _from_hdf5(f, f[name]) for name in f if not name.startswith('#')}
  except OSError as e:
    raise MatFileError(f'{path} is not a readable MAT v7.3 file ({e})') from None


def _attr(node, name: str) -> str | None:
  value = node.attrs.get(name)
  if value is None:
    return None
  return value.decode() if isinstance(value, bytes) else str(value)


def _from_hdf5(f, node) -> Any:
  """One v7.3 node; h5py shows MATLAB's dimensions reversed, hence `.T`."""
  import h5py  # pylint: disable=g-import-not-at-top
  kind = _attr(node, 'MATLAB_class')
  if isinstance(node, h5py.Group):
    if kind != 'struct':
      raise MatFileError(f'unsupported MATLAB class {kind!r} in {node.name}')
    fields = list(node.keys())
    ordered = node.attrs.get('MATLAB_fields')
    if ordered is not None:
      fields = [b''.join(np.asarray(n).ravel()).decode() for n in ordered]
    members = {field: node[field] for field in fields if field in node}
    if any(isinstance(m, h5py.Dataset) and m.dtype == h5py.ref_dtype
           and _attr(m, 'MATLAB_class') is None for m in members.values()):
      # a struct array: every field a (reversed) array of references, one per element
      refs = {field: m[()].T.ravel(order='F') for field, m in members.items()}
      count = len(next(iter(refs.values()))) if refs else 0
      return [{field: _from_hdf5(f, f[refs[field][i]]) for field in members}
              for i in range(count)]
    return [{field: _from_hdf5(f, m) for field, m in members.items()}]
  if _attr(node, 'MATLAB_object_decode') is not None or 'MATLAB_object_decode' in node.attrs:
    return MatlabObject(kind or '?')
  if node.attrs.get('MATLAB_empty'):
    if kind == 'char':
      return ''
    if kind == 'cell':
      return []
    if kind == 'struct':
      return []
    dims = tuple(int(d) for d in node[()]) if node.shape else (0, 0)
    return np.zeros(dims, dtype=np.float64)
  data = node[()]
  if kind == 'cell':
    return [_from_hdf5(f, f[ref]) for ref in np.asarray(data).T.ravel(order='F')]
  if kind == 'char':
    return ''.join(chr(c) for c in np.asarray(data).T.ravel(order='F'))
  if kind == 'logical':
    return np.asarray(data).T.astype(bool)
  if kind in _NUMERIC:
    array = np.asarray(data)
    if array.dtype.names and set(array.dtype.names) == {'real', 'imag'}:
      array = array['real'] + 1j * array['imag']
    array = array.T
    return array.reshape(array.shape + (1,) * (2 - array.ndim)) if array.ndim < 2 else array
  raise MatFileError(f'unsupported MATLAB class {kind!r} in {node.name}')


def decode_objects(path: str | os.PathLike) -> dict[str, Any] | None:
  """The file's variables with MATLAB objects decoded by `mat-io`, or None
  where that package is not installed."""
  try:
    import matio  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    contents = matio.load_from_mat(str(path))
  except Exception as e:  # pylint: disable=broad-except  # its errors have no common base
    raise MatFileError(f'mat-io could not read {path}: {" ".join(str(e).split())}') from None
  return {name: _from_matio(value) for name, value in contents.items()
          if not name.startswith('__')}


def _from_matio(value: Any) -> Any:
  """mat-io returns scipy's layout, plus its own MatlabOpaque for objects."""
  properties = getattr(value, 'properties', None)
  classname = getattr(value, 'classname', None)
  if classname is not None and not isinstance(value, np.ndarray):
    decoded = None
    if isinstance(properties, dict):
      decoded = {name: _from_matio(v) for name, v in properties.items()}
    return MatlabObject(str(classname), decoded)
  if isinstance(value, np.ndarray):
    if value.dtype.names:
      return [{field: _from_matio(element[field]) for field in value.dtype.names}
              for element in value.ravel(order='F')]
    if value.dtype == object:
      return [_from_matio(element) for element in value.ravel(order='F')]
    if value.dtype.kind in 'US':
      return ''.join(str(v) for v in value.ravel())
  return value
