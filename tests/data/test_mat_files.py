"""rhpe_jax.data.mat_files: one struct saved as MAT v5 (scipy), v7.3 in MATLAB's
HDF5 layout (tests/matconvnet_reference.py) and v7.3 by mat-io reads back
as the same plain values, MATLAB's dimensions kept."""
from __future__ import annotations

import numpy as np
import pytest

from tests import matconvnet_reference as ref

KERNEL = np.arange(3 * 3 * 2 * 5, dtype=np.float32).reshape(3, 3, 2, 5)


def _struct():
  return {
      'name': 'layer1', 'empty_text': '', 'cell': ['a', 'bc'], 'empty_cell': [],
      'flag': np.array([[True]]), 'row': np.array([[1.0, 2.0, 3.0]]),
      'kernel': KERNEL, 'column': np.array([[1.5], [2.5]], np.float32),
      'block': {'pad': np.array([[1.0, 1.0, 1.0, 1.0]])},
      'items': ref.StructArray([{'name': 'x', 'inputs': ['p', 'q']},
                                {'name': 'y', 'inputs': []}]),
  }


def _check(value):
  assert isinstance(value, list) and len(value) == 1  # a 1x1 struct
  net = value[0]
  assert net['name'] == 'layer1' and net['empty_text'] == ''
  assert net['cell'] == ['a', 'bc'] and net['empty_cell'] == []
  assert bool(net['flag'].ravel()[0]) and net['flag'].shape == (1, 1)
  np.testing.assert_array_equal(net['row'], [[1.0, 2.0, 3.0]])
  assert net['kernel'].dtype == np.float32
  np.testing.assert_array_equal(net['kernel'], KERNEL)  # dimensions and element order
  np.testing.assert_array_equal(net['column'], [[1.5], [2.5]])
  np.testing.assert_array_equal(net['block'][0]['pad'], [[1, 1, 1, 1]])
  assert [(e['name'], e['inputs']) for e in net['items']] == [('x', ['p', 'q']), ('y', [])]


def test_v5_and_v73_read_the_same(tmp_path):
  from rhpe_jax.data import mat_files  # pylint: disable=g-import-not-at-top
  ref.write_v5(tmp_path / 'v5.mat', _struct())
  ref.write_v73(tmp_path / 'v73.mat', _struct())
  assert not mat_files.is_hdf5(tmp_path / 'v5.mat') and mat_files.is_hdf5(tmp_path / 'v73.mat')
  for name in ('v5.mat', 'v73.mat'):
    variables = mat_files.read_variables(tmp_path / name)
    assert list(variables) == ['net']
    _check(variables['net'])


def test_a_v73_file_written_by_mat_io(tmp_path):
  pytest.importorskip('matio', reason='the mat-io package is not installed')
  from matio import save_to_mat  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import mat_files  # pylint: disable=g-import-not-at-top
  save_to_mat(str(tmp_path / 'm.mat'), {'net': ref._scipy(_struct())}, version='v7.3')  # pylint: disable=protected-access
  _check(mat_files.read_variables(tmp_path / 'm.mat')['net'])
