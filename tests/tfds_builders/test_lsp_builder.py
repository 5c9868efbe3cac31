"""LSP/LSPET builder and joints reader against real and hand-made data.

The LSPET check runs the `tfds build` command line on the real 300-image
sample in ../shared/data/lspet_sample and compares every joint of every image
with joints.mat read directly. The two layouts and their opposite flags are
checked on small arrays whose expected statuses are written out by hand.
"""
from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import scipy.io

from rhpe_jax.data import lsp_annotations
from rhpe_jax.core import keypoint_sets

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO / '..' / 'shared' / 'data'
LSPET = SHARED / 'lspet_sample'
LSP_VERSION = '1.1.0'


def _need_lspet() -> None:
  if not (LSPET / 'joints.mat').exists():
    pytest.skip(f'real LSPET sample not found at {LSPET} (../shared/data is absent)')


def _load_split(data_dir: pathlib.Path, config: str, split: str,
                encoded: bool = False) -> dict[str, dict]:
  """Examples of a built dataset as NumPy, by image name (images as bytes if encoded)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(str(data_dir / 'lsp' / config / LSP_VERSION))
  decoders = {'image': tfds.decode.SkipDecoding()} if encoded else None
  out = {}
  for ex in tfds.as_numpy(builder.as_dataset(split=split, decoders=decoders)):
    out[ex['image_name'].decode()] = ex
  return out


# ---------------------------------------------------------------------------
# Layouts and conventions, by hand.


def test_original_layout_third_row_flags_occlusion():
  # Two images; joint k of image i at x = 10*i + k + 1, y = 100 + k + 1
  # (1-based). Flags: image 0 joint 3 and image 1 joints 0, 13 occluded (1).
  n = 2
  joints = np.zeros((3, 14, n))
  for i in range(n):
    for k in range(14):
      joints[0, k, i] = 10 * i + k + 1
      joints[1, k, i] = 100 + k + 1
  joints[2, 3, 0] = 1
  joints[2, 0, 1] = 1
  joints[2, 13, 1] = 1
  got = lsp_annotations.parse_joints(joints, 'original')
  assert got.keypoints.shape == (2, 14, 2)
  assert got.keypoints[1, 5].tolist() == [15.0, 105.0]  # 0-based: minus one
  assert got.keypoints[0, 0].tolist() == [0.0, 100.0]
  expected = np.full((2, 14), 2)
  expected[0, 3] = 1
  expected[1, 0] = 1
  expected[1, 13] = 1
  np.testing.assert_array_equal(got.status, expected)
  assert got.valid.all()


def test_extended_layout_third_column_flags_visibility():
  n = 3
  joints = np.zeros((14, 3, n))
  for i in range(n):
    for k in range(14):
      joints[k, 0, i] = 7 * i + k + 1
      joints[k, 1, i] = 50 - k + 1
  joints[:, 2, :] = 1
  joints[4, 2, 0] = 0
  joints[12, 2, 2] = 0
  joints[4, :2, 0] = (0.0, -26.1)  # a placeholder, as LSPET stores them
  got = lsp_annotations.parse_joints(joints, 'extended')
  assert got.keypoints[2, 9].tolist() == [23.0, 41.0]
  expected = np.full((3, 14), 2)
  expected[0, 4] = 0  # flag 0: no location (MISSING), not occluded
  expected[2, 12] = 0
  np.testing.assert_array_equal(got.status, expected)
  # The placeholders are not kept.
  assert got.keypoints[0, 4].tolist() == [0.0, 0.0]
  assert got.keypoints[2, 12].tolist() == [0.0, 0.0]


def test_wrong_layout_fails_with_expected_shape():
  with pytest.raises(ValueError, match=r'\(3, 14, N\)'):
    lsp_annotations.parse_joints(np.zeros((14, 3, 5)), 'original')
  with pytest.raises(ValueError, match=r'\(14, 3, N\)'):
    lsp_annotations.parse_joints(np.zeros((3, 14, 5)), 'extended')
  with pytest.raises(ValueError, match='unknown LSP layout'):
    lsp_annotations.parse_joints(np.zeros((3, 14, 5)), 'lsp')


def test_malformed_records_are_flagged_not_raised():
  joints = np.ones((14, 3, 3))
  joints[2, 0, 1] = np.nan
  joints[5, 2, 2] = 7
  got = lsp_annotations.parse_joints(joints, 'extended')
  assert got.valid.tolist() == [True, False, False]
  assert len(got.problems) == 2


def test_centre_and_scale_by_hand():
  kp = np.array([[10.0, 20.0], [30.0, 100.0], [20.0, 60.0], [500.0, 500.0]])
  status = np.array([2, 1, 2, 0])  # the last joint is missing: ignored
  objpos, scale = lsp_annotations.centre_and_scale_from_keypoints(kp, status)
  np.testing.assert_allclose(objpos, [20.0, 60.0])
  assert scale == pytest.approx(1.25 * 80.0 / 200.0)
  with pytest.raises(ValueError):
    lsp_annotations.centre_and_scale_from_keypoints(kp[:1], status[:1])


# ---------------------------------------------------------------------------
# The real LSPET sample through the tfds command line.


@pytest.fixture(scope='module')
def lspet_build(tmp_path_factory):
  _need_lspet()
  tmp = tmp_path_factory.mktemp('lspet')
  manual = tmp / 'manual'
  manual.mkdir()
  (manual / 'images').symlink_to((LSPET / 'images').resolve())
  (manual / 'joints.mat').write_bytes((LSPET / 'joints.mat').read_bytes())
  data_dir = tmp / 'data'
  tfds_cli = pathlib.Path(sys.executable).parent / 'tfds'
  cmd = ([str(tfds_cli)] if tfds_cli.exists() else
         [sys.executable, '-m', 'tensorflow_datasets.scripts.cli.main'])
  cmd += ['build', str(REPO / 'tfds_builders' / 'lsp'), '--config=extended',
          f'--manual_dir={manual}', f'--data_dir={data_dir}']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return data_dir


@pytest.fixture(scope='module')
def lspet_examples(lspet_build):
  return _load_split(lspet_build, 'extended', 'train')


def test_lspet_build_has_300_examples(lspet_examples):
  assert len(lspet_examples) == 300
  assert sorted(lspet_examples) == [f'im{i:05d}.jpg' for i in range(1, 301)]


def test_lspet_keypoints_equal_joints_mat(lspet_examples):
  joints = scipy.io.loadmat(LSPET / 'joints.mat')['joints']  # (14, 3, 300)
  assert joints.shape == (14, 3, 300)
  for i in range(300):
    ex = lspet_examples[f'im{i + 1:05d}.jpg']
    assert ex['image_index'] == i
    for k in range(14):
      x1, y1, flag = joints[k, 0, i], joints[k, 1, i], joints[k, 2, i]
      if flag == 1:  # visible: joints.mat minus one
        assert ex['keypoint_status'][k] == keypoint_sets.VISIBLE, (i, k)
        assert ex['keypoints'][k, 0] == np.float32(x1 - 1), (i, k)
        assert ex['keypoints'][k, 1] == np.float32(y1 - 1), (i, k)
      else:  # flag 0: no location
        assert flag == 0
        assert ex['keypoint_status'][k] == keypoint_sets.MISSING, (i, k)
        assert ex['keypoints'][k].tolist() == [0.0, 0.0], (i, k)


def test_lspet_flag_zero_joints_are_missing(lspet_examples):
  # The sample's README: every joint flagged 0 lies outside the image frame
  # (551 of 4200): placeholders, stored as MISSING. No joint is OCCLUDED.
  joints = scipy.io.loadmat(LSPET / 'joints.mat')['joints']
  placeholders = 0
  for i in range(300):
    ex = lspet_examples[f'im{i + 1:05d}.jpg']
    h, w = ex['original_size']
    x, y = joints[:, 0, i] - 1, joints[:, 1, i] - 1
    off = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
    placeholders += int(np.sum(off & (joints[:, 2, i] == 0)))
  statuses = np.stack([ex['keypoint_status'] for ex in lspet_examples.values()])
  assert int(np.sum(statuses == keypoint_sets.MISSING)) == 551 == placeholders
  assert int(np.sum(statuses == keypoint_sets.OCCLUDED)) == 0
  assert int(np.sum(statuses == keypoint_sets.VISIBLE)) == 4200 - 551


def test_lspet_crop_windows_are_set_by_the_visible_joints(lspet_examples):
  # objpos = centre of the visible joints' box, scale = 1.25 x its longer
  # side / 200 (computed here from joints.mat directly), so the default
  # training window (box_scale x 200 x scale) holds every visible joint.
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  joints = scipy.io.loadmat(LSPET / 'joints.mat')['joints']
  for i in range(300):
    ex = lspet_examples[f'im{i + 1:05d}.jpg']
    seen = joints[:, 2, i] == 1
    pts = joints[seen, :2, i] - 1
    lo, hi = pts.min(0), pts.max(0)
    np.testing.assert_allclose(ex['objpos'], (lo + hi) / 2, rtol=1e-6, atol=1e-3)
    assert ex['scale'] == pytest.approx(1.25 * np.max(hi - lo) / 200, rel=1e-5)
    half = augment.DEFAULT_BOX_SCALE * 200 * ex['scale'] / 2
    assert np.all(np.abs(pts - ex['objpos']) <= half), i


def test_lspet_images_and_metadata(lspet_build, lspet_examples):
  encoded = _load_split(lspet_build, 'extended', 'train', encoded=True)
  for name in ('im00001.jpg', 'im00150.jpg', 'im00300.jpg'):
    ex = lspet_examples[name]
    with Image.open(LSPET / 'images' / name) as im:
      ref = np.asarray(im.convert('RGB')).astype(np.float64)
    assert ex['image'].shape == ref.shape
    assert tuple(ex['original_size']) == ref.shape[:2]
    # The JPEG is stored as it is (no second lossy encoding) ...
    assert encoded[name]['image'] == (LSPET / 'images' / name).read_bytes()
    # ... and TF's decoder agrees with PIL's up to IDCT rounding.
    assert np.abs(ex['image'].astype(np.float64) - ref).mean() < 2.0
  for ex in lspet_examples.values():
    np.testing.assert_array_equal(ex['crop_to_image'], [[1, 0, 0], [0, 1, 0]])
    assert ex['other_keypoints'].shape == (0, 14, 2)
    assert ex['head_size'] == 0 and not ex['head_box'].any()
    assert ex['person_index'] == 0 and ex['single_person']


# ---------------------------------------------------------------------------
# LSP original from a hand-made release, with bad input.


def _make_original(root: pathlib.Path, n: int) -> np.ndarray:
  """images/im0001.jpg.. and joints.mat (3, 14, n); returns the raw joints."""
  rng = np.random.default_rng(1)
  (root / 'images').mkdir(parents=True)
  for i in range(n):
    Image.fromarray(rng.integers(0, 255, (40 + i, 30 + i, 3), dtype=np.uint8)).save(
        root / 'images' / f'im{i + 1:04d}.jpg')
  joints = np.zeros((3, 14, n))
  joints[0] = rng.uniform(1, 30, (14, n))
  joints[1] = rng.uniform(1, 40, (14, n))
  joints[2] = rng.integers(0, 2, (14, n))
  scipy.io.savemat(root / 'joints.mat', {'joints': joints})
  return joints


def _build(manual: pathlib.Path, data_dir: pathlib.Path, config: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tfds_builders.lsp import lsp_dataset_builder  # pylint: disable=g-import-not-at-top
  builder = lsp_dataset_builder.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual)))
  return builder


def test_original_splits_convention_and_bad_input(tmp_path, caplog):
  manual = tmp_path / 'manual'
  joints = _make_original(manual / 'lsp_dataset', 8)
  joints[0, 3, 6] = np.nan  # truncated record: image 7
  scipy.io.savemat(manual / 'lsp_dataset' / 'joints.mat', {'joints': joints})
  data = (manual / 'lsp_dataset' / 'images' / 'im0002.jpg').read_bytes()
  (manual / 'lsp_dataset' / 'images' / 'im0002.jpg').write_bytes(data[:len(data) // 2])
  (manual / 'lsp_dataset' / 'images' / 'im0008.jpg').unlink()
  with caplog.at_level(logging.WARNING):
    _build(manual, tmp_path / 'data', 'original')
  train = _load_split(tmp_path / 'data', 'original', 'train')
  test = _load_split(tmp_path / 'data', 'original', 'test')
  assert sorted(train) == ['im0001.jpg', 'im0003.jpg', 'im0004.jpg']
  assert sorted(test) == ['im0005.jpg', 'im0006.jpg']
  for split in (train, test):
    for name, ex in split.items():
      i = int(name[2:6]) - 1
      for k in range(14):
        assert ex['keypoints'][k, 0] == np.float32(joints[0, k, i] - 1)
        assert ex['keypoints'][k, 1] == np.float32(joints[1, k, i] - 1)
        # LSP original: flag 0 = visible, 1 = occluded.
        assert ex['keypoint_status'][k] == (2 if joints[2, k, i] == 0 else 1)
      assert tuple(ex['original_size']) == (40 + i, 30 + i)
  log = caplog.text
  assert 'corrupt image: 1 (im0002.jpg)' in log
  assert 'malformed record: 1 (im0007.jpg)' in log
  assert 'missing image: 1 (im0008.jpg)' in log


def test_manual_images_of_any_mode_are_read_in_the_stored_frame(tmp_path):
  """16-bit grey, CMYK and EXIF-tagged manual images: the stored pixels
  through rhpe_jax.data.image_io (16 bits scaled, not clipped), the EXIF
  orientation not applied (the joints are coordinates of the stored pixels)."""
  manual = tmp_path / 'manual'
  root = manual / 'lsp_dataset'
  _make_original(root, 4)  # 2 train, 2 test
  rng = np.random.default_rng(1)
  blocks = lambda rows, cols, *c: np.kron(  # 16 px blocks: JPEG keeps them nearly exact
      rng.integers(0, 256, (rows, cols, *c), dtype=np.uint8),
      np.ones((16, 16, *(1,) * len(c)), np.uint8))
  grey8 = blocks(3, 2)  # image 2: 48 x 32, 16-bit grey
  Image.fromarray(grey8.astype(np.uint16) * 257).save(root / 'images' / 'im0002.jpg',
                                                       format='PNG')
  sideways = blocks(3, 2, 3)  # image 1: 48 x 32 stored, EXIF orientation 6
  picture = Image.fromarray(sideways)
  exif = picture.getexif()
  exif[0x0112] = 6
  picture.save(root / 'images' / 'im0001.jpg', format='PNG', exif=exif.tobytes())
  colours = blocks(2, 3, 3)  # image 4: 32 x 48, CMYK
  cmyk = np.concatenate([255 - colours, np.zeros((32, 48, 1), np.uint8)], axis=-1)
  Image.frombytes('CMYK', (48, 32), cmyk.tobytes()).save(root / 'images' / 'im0004.jpg',
                                                         format='TIFF')
  _build(manual, tmp_path / 'data', 'original')
  train = _load_split(tmp_path / 'data', 'original', 'train')
  test = _load_split(tmp_path / 'data', 'original', 'test')
  # Pixel arrays are stored JPEG-encoded (pose_features): equal up to JPEG
  # noise, far from the wrong readings (clipped 16 bits: nearly all white;
  # rotated: another shape).
  def close(stored, expected):
    assert stored.shape == expected.shape
    assert np.mean(np.abs(stored.astype(int) - expected)) < 3.0

  close(train['im0002.jpg']['image'], np.repeat(grey8[..., None], 3, axis=-1))
  close(train['im0001.jpg']['image'], sideways)
  assert tuple(train['im0001.jpg']['original_size']) == (48, 32)
  close(test['im0004.jpg']['image'], colours)  # C = 255 - R, ..., K = 0


def test_original_config_rejects_lspet_layout(tmp_path):
  _need_lspet()
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'images').symlink_to((LSPET / 'images').resolve())
  (manual / 'joints.mat').write_bytes((LSPET / 'joints.mat').read_bytes())
  with pytest.raises(ValueError, match=r'expected shape \(3, 14, N\)'):
    _build(manual, tmp_path / 'data', 'original')


def test_missing_manual_dir_fails_at_once(tmp_path):
  with pytest.raises(FileNotFoundError, match='lspet_dataset.zip'):
    _build(tmp_path / 'nowhere', tmp_path / 'data', 'extended')
  with pytest.raises(FileNotFoundError, match='lsp_dataset.zip'):
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'readme.txt').write_text('not a release')
    _build(tmp_path / 'other', tmp_path / 'data', 'original')


def test_manual_dir_with_the_release_zip(tmp_path):
  import zipfile  # pylint: disable=g-import-not-at-top
  src = tmp_path / 'src'
  joints = _make_original(src, 4)
  manual = tmp_path / 'manual'
  manual.mkdir()
  with zipfile.ZipFile(manual / 'lsp_dataset.zip', 'w') as z:
    z.write(src / 'joints.mat', 'joints.mat')
    for path in sorted((src / 'images').iterdir()):
      z.write(path, f'images/{path.name}')
  _build(manual, tmp_path / 'data', 'original')
  train = _load_split(tmp_path / 'data', 'original', 'train')
  test = _load_split(tmp_path / 'data', 'original', 'test')
  assert sorted(train) == ['im0001.jpg', 'im0002.jpg']
  assert sorted(test) == ['im0003.jpg', 'im0004.jpg']
  np.testing.assert_array_equal(train['im0002.jpg']['keypoints'],
                                (joints[:2, :, 1].T - 1).astype(np.float32))
