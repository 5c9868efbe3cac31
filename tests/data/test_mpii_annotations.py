"""The one `valid.h5` reader: the builder's pairs and the evaluation's ground
truth come from the same checked read."""
import h5py
import numpy as np
import pytest

from rhpe_jax.data import mpii_annotations
from rhpe_jax.evaluation import prediction_io


def _write(path, **datasets):
  with h5py.File(path, 'w') as f:
    for name, value in datasets.items():
      f[name] = value


def test_both_callers_read_the_same_rows(tmp_path):
  path = tmp_path / 'valid.h5'
  part = np.zeros((3, 16, 2))
  part[1, 4] = [7.0, 9.0]
  _write(path, part=part, visible=np.ones((3, 16)), normalize=np.array([1.0, 2.0, 3.0]),
         index=np.array([5.0, 5.0, 8.0]), person=np.array([0.0, 1.0, 0.0]),
         imgname=np.array([b'x.jpg', b'x.jpg', b'y.jpg']))
  pairs = mpii_annotations.load_validation_pairs(path)
  truth = prediction_io.load_mpii_annotations(path)
  np.testing.assert_array_equal(pairs.image_index, [5, 5, 8])
  np.testing.assert_array_equal(pairs.person_index, [0, 1, 0])
  assert pairs.image_name == ('x.jpg', 'x.jpg', 'y.jpg')
  np.testing.assert_array_equal(truth['index'], pairs.image_index)
  np.testing.assert_array_equal(truth['keypoints'][1, 4], [6.0, 8.0])  # 1-based -> 0-based


@pytest.mark.parametrize('bad, message', [
    (dict(person=np.array([0.0, 1.0])), '"person" has 2 rows, expected 3'),
    (dict(index=np.array([0.5, 1.0, 2.0])), 'not 0-based indices'),
    (dict(part=np.zeros((3, 14, 2))), '"part" must have shape'),
])
def test_the_builder_gets_every_check(tmp_path, bad, message):
  """A file the evaluation would refuse is refused when building too."""
  fields = dict(part=np.zeros((3, 16, 2)), visible=np.ones((3, 16)),
                index=np.array([0.0, 1.0, 2.0]), person=np.array([0.0, 0.0, 0.0]))
  fields.update(bad)
  path = tmp_path / 'valid.h5'
  _write(path, **fields)
  with pytest.raises(ValueError, match=message):
    mpii_annotations.load_validation_pairs(path)


def test_missing_datasets_are_named(tmp_path):
  path = tmp_path / 'valid.h5'
  _write(path, part=np.zeros((1, 16, 2)))
  with pytest.raises(ValueError, match=r"missing \['index', 'person'\]"):
    mpii_annotations.load_validation_pairs(path)
  with pytest.raises(FileNotFoundError, match='absent.h5'):
    mpii_annotations.load_validation_pairs(tmp_path / 'absent.h5')
