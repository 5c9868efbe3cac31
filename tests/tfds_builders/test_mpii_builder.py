"""MPII reader and builder on a fixture in the official .mat structure.

The fixture is written here with scipy.io.savemat as MATLAB structs, from the
real images and annotation values of ../shared/data/mpii_sample, and seeded
with the quirks of the official file (string and empty `is_visible`, absent
points, empty `annopoints`, a person without `objpos`, one-element struct
arrays, a multi-person image, a test image with only `objpos`/`scale`) plus
bad input (a truncated record, an image entry without a name, a corrupt and a
missing JPEG). The expected values are kept beside it in plain Python
(`Truth`), computed from the JSON values, not by the code under test.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib

import h5py
import numpy as np
from PIL import Image
import pytest
import scipy.io

from rhpe_jax.data import mpii_annotations

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO / '..' / 'shared' / 'data'
SAMPLE = SHARED / 'mpii_sample'
VALID_H5 = SHARED / 'mpii_valid' / 'valid.h5'
EMPTY = np.zeros((0, 0))


def _need(path: pathlib.Path) -> None:
  if not path.exists():
    pytest.skip(f'real MPII data not found at {path} (../shared/data is absent)')


# ---------------------------------------------------------------------------
# Writing MATLAB structs.


def _struct_array(records: list[dict], fields: list[str]) -> np.ndarray:
  """1 x N struct array; a field a record lacks is [] (as in MATLAB)."""
  arr = np.empty((1, len(records)), dtype=[(f, 'O') for f in fields])
  for i, r in enumerate(records):
    arr[0, i] = tuple(r.get(f, EMPTY) for f in fields)
  return arr


@dataclasses.dataclass
class Truth:
  """What one person must come out as (0-based pixels)."""

  keypoints: np.ndarray  # (16, 2), zeros where missing
  status: np.ndarray  # (16,)
  objpos: np.ndarray | None
  scale: float | None
  head_box: np.ndarray | None


@functools.lru_cache(maxsize=None)
def _official_visibility(image: str) -> tuple[float, ...]:
  """valid.h5's `visible` row of a sample image (1.0 each when valid.h5 is absent).

  The JSON's joints_vis says "annotated", not "visible" (docs/annotations.md),
  so the real is_visible values come from valid.h5.
  """
  if not VALID_H5.exists():
    return (1.0,) * 16
  with h5py.File(VALID_H5, 'r') as f:
    names = [n.decode() for n in f['imgname'][()]]
    return tuple(float(v) for v in f['visible'][names.index(image)])


def _person(rec: dict, *, shift=(0.0, 0.0), vis: dict | None = None,
            drop: tuple = (), order=None, objpos=True, head=True
            ) -> tuple[dict, Truth]:
  """A MATLAB annorect entry from a JSON record, and its truth.

  JSON coordinates are the official 1-based values. `vis` maps joint id to the
  is_visible value to write (default: the real flag, from valid.h5); joints
  with joints_vis 0 or listed in `drop` get no point at all.
  """
  vis = {**dict(enumerate(_official_visibility(rec['image']))), **(vis or {})}
  joints = np.asarray(rec['joints'], np.float64) + np.asarray(shift)
  ids = [j for j in range(16) if rec['joints_vis'][j] and j not in drop]
  if order is not None:
    ids = [ids[k] for k in order(len(ids))]
  points, kp, st = [], np.zeros((16, 2)), np.zeros(16, np.int64)
  for j in ids:
    v = vis[j]
    points.append({'id': float(j), 'x': joints[j, 0], 'y': joints[j, 1], 'is_visible': v})
    kp[j] = joints[j] - 1.0
    empty = isinstance(v, np.ndarray) and v.size == 0
    st[j] = 2 if empty or float(v) == 1.0 else 1
  entry = {'annopoints': {'point': _struct_array(points, ['id', 'x', 'y', 'is_visible'])}}
  truth = Truth(kp, st, None, None, None)
  if objpos:
    cx, cy = np.asarray(rec['center']) + np.asarray(shift)
    entry['objpos'] = {'x': float(cx), 'y': float(cy)}
    entry['scale'] = float(rec['scale'])
    truth.objpos, truth.scale = np.array([cx - 1.0, cy - 1.0]), float(rec['scale'])
  if head:  # plausible box: square on the upper-neck / head-top segment
    mid = (joints[8] + joints[9]) / 2.0
    half = np.linalg.norm(joints[9] - joints[8]) / 2.0
    box = [mid[0] - half, mid[1] - half, mid[0] + half, mid[1] + half]
    entry.update(x1=box[0], y1=box[1], x2=box[2], y2=box[3])
    truth.head_box = np.asarray(box) - 1.0
  return entry, truth


RECT = ['x1', 'y1', 'x2', 'y2', 'annopoints', 'scale', 'objpos']
TRAIN = {(0, 0), (0, 1), (0, 3), (2, 0), (5, 1)}
VALIDATION = [(3, 0), (1, 0)]  # valid.h5 order (not annolist order)
TEST = [(4, 0)]


def write_fixture(root: pathlib.Path) -> dict[tuple[int, int], Truth]:
  """manual dir: images/, mpii_human_pose_v1_u12_1.mat, valid.h5; returns truths."""
  recs = {r['image']: r for r in json.loads((SAMPLE / 'annotations.json').read_text())}
  a, b, c, d, e = (recs[n] for n in ('005808361.jpg', '052475643.jpg', '051423444.jpg',
                                      '004645041.jpg', '060754485.jpg'))
  images = root / 'images'
  images.mkdir(parents=True)
  for name in recs:
    (images / name).symlink_to((SAMPLE / 'images' / name).resolve())
  (images / 'twin_052475643.jpg').symlink_to((SAMPLE / 'images' / '052475643.jpg').resolve())
  whole = (SAMPLE / 'images' / '005808361.jpg').read_bytes()
  (images / 'corrupt.jpg').write_bytes(whole[:len(whole) // 2])

  truth = {}
  # 0: four people. Visibility as number, string and empty; a second person;
  # one without annopoints; one with a single point (a squeezed struct).
  p00, truth[0, 0] = _person(a, vis={10: 0.0, 11: '0', 12: '1', 3: EMPTY})
  p01, truth[0, 1] = _person(a, shift=(-500.0, 20.0), vis={0: 0.0})
  p02 = {'objpos': {'x': 200.0, 'y': 300.0}, 'scale': 2.0, 'annopoints': EMPTY}
  p03, truth[0, 3] = _person(b, shift=(700.0, 100.0), drop=tuple(range(1, 16)))
  # 1: one person (annorect squeezed to a struct), is_visible mostly empty.
  p10, truth[1, 0] = _person(b, vis={j: EMPTY for j in range(1, 16)})
  # 2: no objpos/scale, points in scrambled order, two joints absent, right
  # wrist and elbow annotated but occluded (the real flags).
  p20, truth[2, 0] = _person(c, objpos=False, order=lambda n: list(range(n))[::-1])
  # 3: validation person, two joints absent, some occluded.
  p30, truth[3, 0] = _person(d, vis={13: 0.0, 14: '0'})
  # 4: test image: only objpos and scale; a second test person without them.
  p40 = {'objpos': {'x': float(e['center'][0]), 'y': float(e['center'][1])},
         'scale': float(e['scale'])}
  truth[4, 0] = Truth(np.zeros((16, 2)), np.zeros(16, np.int64),
                      np.asarray(e['center'], np.float64) - 1.0, float(e['scale']), None)
  p41 = {'objpos': EMPTY, 'scale': EMPTY}
  # 5: a truncated record (a point whose y is empty) beside a good person.
  bad, _ = _person(b)
  pts = bad['annopoints']['point'].copy()
  pts['y'][0, 4] = EMPTY
  bad['annopoints'] = {'point': pts}
  p51, truth[5, 1] = _person(b, shift=(3.0, -2.0))
  # 6: corrupt JPEG; 8: missing JPEG.
  p60, _ = _person(a)
  p80, _ = _person(d)

  annolist = [
      {'image': {'name': '005808361.jpg'}, 'annorect': _struct_array([p00, p01, p02, p03], RECT)},
      {'image': {'name': '052475643.jpg'}, 'annorect': _struct_array([p10], RECT)},
      {'image': {'name': '051423444.jpg'}, 'annorect': _struct_array([p20], RECT)},
      {'image': {'name': '004645041.jpg'}, 'annorect': _struct_array([p30], RECT)},
      {'image': {'name': '060754485.jpg'},
       'annorect': _struct_array([p40, p41], ['scale', 'objpos'])},
      {'image': {'name': 'twin_052475643.jpg'}, 'annorect': _struct_array([bad, p51], RECT)},
      {'image': {'name': 'corrupt.jpg'}, 'annorect': _struct_array([p60], RECT)},
      {'image': {'name': EMPTY}, 'annorect': _struct_array([p60], RECT)},  # no name
      {'image': {'name': 'missing.jpg'}, 'annorect': _struct_array([p80], RECT)},
      {'image': {'name': 'nobody.jpg'}, 'annorect': EMPTY},
  ]
  n = len(annolist)
  single = np.empty((n, 1), dtype=object)
  single[:, 0] = [EMPTY] * n
  single[0, 0] = np.array([[1.0], [2.0]])  # 1-based
  single[1, 0] = np.array([[1.0]])
  release = {
      'annolist': _struct_array(annolist, ['image', 'annorect', 'frame_sec', 'vididx']),
      'img_train': np.array([[1, 1, 1, 1, 0, 1, 1, 1, 1, 1]], np.float64),
      'single_person': single,
      'act': _struct_array([{'act_name': 'x', 'cat_name': 'y', 'act_id': 1.0}] * n,
                           ['act_name', 'cat_name', 'act_id']),
      'video_list': np.array(['vid'], dtype=object),
  }
  scipy.io.savemat(root / 'mpii_human_pose_v1_u12_1.mat', {'RELEASE': release})
  names = ['005808361.jpg', '052475643.jpg', '051423444.jpg', '004645041.jpg']
  with h5py.File(root / 'valid.h5', 'w') as f:  # same layout as the real one
    f['index'] = np.array([i for i, _ in VALIDATION], np.float64)
    f['person'] = np.array([p for _, p in VALIDATION], np.float64)
    f['imgname'] = np.array([names[i].encode() for i, _ in VALIDATION])
  return truth


# ---------------------------------------------------------------------------
# Reader.


@pytest.fixture(scope='module')
def fixture_dir(tmp_path_factory):
  _need(SAMPLE / 'annotations.json')
  root = tmp_path_factory.mktemp('mpii') / 'manual'
  truth = write_fixture(root)
  return root, truth


def test_reader_normalises_every_quirk(fixture_dir):
  root, truth = fixture_dir
  release = mpii_annotations.load_release(root / 'mpii_human_pose_v1_u12_1.mat')
  assert release.num_images == 10
  by_index = release.by_index()
  assert 7 not in by_index  # the entry without a name
  assert [im.is_train for im in release.images] == [
      True, True, True, True, False, True, True, True, True]
  for (i, p), t in truth.items():
    person = by_index[i].person(p)
    np.testing.assert_allclose(person.keypoints, t.keypoints, atol=1e-9)
    np.testing.assert_array_equal(person.status, t.status)
    if t.objpos is None:
      assert person.objpos is None and person.scale is None
    else:
      np.testing.assert_allclose(person.objpos, t.objpos, atol=1e-9)
      assert person.scale == pytest.approx(t.scale)
    if t.head_box is not None:
      np.testing.assert_allclose(person.head_box, t.head_box, atol=1e-9)
  assert not by_index[0].person(2).has_keypoints  # empty annopoints
  if VALID_H5.exists():  # the real is_visible 0 of 051423444.jpg
    assert list(np.flatnonzero(by_index[2].person(0).status == 1)) == [10, 11]
  assert by_index[5].person(0) is None  # truncated
  assert by_index[9].people == ()
  assert by_index[0].single_person == {0, 1}
  assert by_index[1].single_person == {0}
  assert len(release.problems) == 2
  assert any('annolist[5] (twin_052475643.jpg) person 0' in p and 'truncated' in p
             for p in release.problems)
  assert any(p.startswith('annolist[7]') for p in release.problems)


def test_reader_rejects_wrong_structure(tmp_path):
  path = tmp_path / 'bad.mat'
  scipy.io.savemat(path, {'RELEASE': {'annolist': np.zeros((1, 3))}})
  with pytest.raises(ValueError, match="no field 'img_train'"):
    mpii_annotations.load_release(path)
  scipy.io.savemat(path, {'RELEASE': {'annolist': np.zeros((1, 3)), 'img_train': np.ones((1, 3)),
                                      'single_person': np.zeros((3, 1), object)}})
  with pytest.raises(ValueError, match='annolist holds no structs'):
    mpii_annotations.load_release(path)
  annolist = _struct_array([{'image': {'name': 'a.jpg'}}] * 3, ['image', 'annorect'])
  single = np.empty((2, 1), object)
  single[:, 0] = [EMPTY, EMPTY]
  scipy.io.savemat(path, {'RELEASE': {'annolist': annolist, 'img_train': np.ones((1, 3)),
                                      'single_person': single}})
  with pytest.raises(ValueError, match='single_person has 2 entries, annolist has 3'):
    mpii_annotations.load_release(path)
  scipy.io.savemat(path, {'something': np.zeros(3)})
  with pytest.raises(ValueError, match='no variable RELEASE'):
    mpii_annotations.load_release(path)
  path.write_text('not a mat file')
  with pytest.raises(ValueError, match='cannot read'):
    mpii_annotations.load_release(path)
  with pytest.raises(FileNotFoundError):
    mpii_annotations.load_release(tmp_path / 'absent.mat')


def test_real_valid_h5_pairs():
  _need(VALID_H5)
  pairs = mpii_annotations.load_validation_pairs(VALID_H5)
  with h5py.File(VALID_H5, 'r') as f:
    index, person = f['index'][()], f['person'][()]
    names = [n.decode() for n in f['imgname'][()]]
  assert pairs.image_index.size == 2958
  np.testing.assert_array_equal(pairs.image_index, index.astype(int))
  np.testing.assert_array_equal(pairs.person_index, person.astype(int))
  assert list(pairs.image_name) == names
  # The README's first rows: images 6, 17, 27 (0-based), person 0.
  assert mpii_annotations.validation_keys(pairs)[:3] == [(6, 0), (17, 0), (27, 0)]


# ---------------------------------------------------------------------------
# Builder.


def _build(manual: pathlib.Path, data_dir: pathlib.Path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tfds_builders.mpii import mpii_dataset_builder  # pylint: disable=g-import-not-at-top
  builder = mpii_dataset_builder.Builder(data_dir=str(data_dir), config='crop384')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual)))
  return builder


@pytest.fixture(scope='module')
def built(fixture_dir, tmp_path_factory):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root, truth = fixture_dir
  data_dir = tmp_path_factory.mktemp('mpii_data')
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logger = logging.getLogger('absl')
  logger.addHandler(handler)
  try:
    builder = _build(root, data_dir)
  finally:
    logger.removeHandler(handler)
  splits = {s: list(tfds.as_numpy(builder.as_dataset(split=s)))
            for s in ('train', 'validation', 'test')}
  log = '\n'.join(r.getMessage() for r in records)
  return splits, truth, log


def _key(ex) -> tuple[int, int]:
  return int(ex['image_index']), int(ex['person_index'])


def test_every_person_lands_in_its_split(built):
  splits, _, _ = built
  assert {_key(ex) for ex in splits['train']} == TRAIN
  assert len(splits['train']) == len(TRAIN)
  assert [_key(ex) for ex in splits['validation']] == VALIDATION
  assert [_key(ex) for ex in splits['test']] == TEST


def test_keypoints_map_back_to_the_annotation(built):
  splits, truth, _ = built
  for split in splits.values():
    for ex in split:
      t = truth[_key(ex)]
      a = ex['crop_to_image'].astype(np.float64)
      back = ex['keypoints'].astype(np.float64) @ a[:, :2].T + a[:, 2]
      np.testing.assert_array_equal(ex['keypoint_status'], t.status)
      ann = t.status > 0
      np.testing.assert_allclose(back[ann], t.keypoints[ann], atol=0.01)
      assert np.all(ex['keypoints'][~ann] == 0)
      # The crop is the square of side 400 x scale around objpos, 384 px.
      if t.objpos is not None:
        np.testing.assert_allclose(ex['objpos'], t.objpos, atol=1e-3)
        assert ex['scale'] == pytest.approx(t.scale, rel=1e-6)
      centre = a @ np.array([383 / 2, 383 / 2, 1.0])
      np.testing.assert_allclose(centre, ex['objpos'], atol=1e-2)
      assert a[0, 0] * 384 == pytest.approx(400 * ex['scale'], rel=1e-5)


def test_person_without_objpos_gets_keypoint_box(built):
  splits, truth, _ = built
  ex = next(e for e in splits['train'] if _key(e) == (2, 0))
  t = truth[2, 0]
  pts = t.keypoints[t.status > 0]
  lo, hi = pts.min(0), pts.max(0)
  np.testing.assert_allclose(ex['objpos'], (lo + hi) / 2, atol=1e-3)
  assert ex['scale'] == pytest.approx(1.25 * max(hi - lo) / 200, rel=1e-6)


def test_other_people_are_in_the_crop_frame(built):
  splits, truth, _ = built
  others_of = {(0, 0): [(0, 1), (0, 3)], (0, 1): [(0, 0), (0, 3)], (0, 3): [(0, 0), (0, 1)],
               (5, 1): [], (2, 0): [], (3, 0): [], (1, 0): [], (4, 0): []}
  for split in splits.values():
    for ex in split:
      expected = others_of[_key(ex)]
      assert ex['other_keypoints'].shape == (len(expected), 16, 2)
      a = ex['crop_to_image'].astype(np.float64)
      for n, key in enumerate(expected):
        t = truth[key]
        np.testing.assert_array_equal(ex['other_keypoint_status'][n], t.status)
        back = ex['other_keypoints'][n].astype(np.float64) @ a[:, :2].T + a[:, 2]
        np.testing.assert_allclose(back[t.status > 0], t.keypoints[t.status > 0], atol=0.01)
        # Their missing joints are stored as 0, never as a mapped placeholder.
        assert np.all(ex['other_keypoints'][n][t.status == 0] == 0)


def test_provenance_head_and_sizes(built):
  splits, truth, _ = built
  single = {(0, 0), (0, 1), (1, 0)}
  for split in splits.values():
    for ex in split:
      key = _key(ex)
      t = truth[key]
      name = ex['image_name'].decode()
      with Image.open(SAMPLE / 'images' / name.replace('twin_', '')) as im:
        assert tuple(ex['original_size']) == (im.height, im.width)
      assert ex['image'].shape == (384, 384, 3)
      assert bool(ex['single_person']) == (key in single)
      if t.head_box is None:
        assert not ex['head_box'].any() and ex['head_size'] == 0
      else:
        np.testing.assert_allclose(ex['head_box'], t.head_box, atol=1e-3)
        x1, y1, x2, y2 = t.head_box
        assert ex['head_size'] == pytest.approx(0.6 * np.hypot(x2 - x1, y2 - y1), rel=1e-5)


def _box_mean_diff(crop: np.ndarray, orig: np.ndarray, a: np.ndarray,
                   offset: tuple[float, float]) -> float:
  """Mean |crop - box mean of the original| over a grid of crop pixels.

  The reference for crop pixel (u, v) is the mean of the original pixels in
  the step x step square around crop_to_image @ [u, v, 1] + offset.
  """
  h, w = orig.shape[:2]
  integral = np.zeros((h + 1, w + 1, 3))
  integral[1:, 1:] = orig.cumsum(0).cumsum(1)
  step = a[0, 0]
  grid = np.arange(0, crop.shape[0], 5)
  diffs = []
  for v in grid:
    for u in grid:
      xx = a[0, 0] * u + a[0, 2] + offset[0]
      yy = a[1, 1] * v + a[1, 2] + offset[1]
      x0, x1 = int(np.ceil(xx - step / 2)), int(np.floor(xx + step / 2)) + 1
      y0, y1 = int(np.ceil(yy - step / 2)), int(np.floor(yy + step / 2)) + 1
      if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        continue
      box = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
      ref = box / ((x1 - x0) * (y1 - y0))
      diffs.append(np.abs(crop[v, u].astype(np.float64) - ref).mean())
  assert len(diffs) > 500
  return float(np.mean(diffs))


def test_crop_pixels_match_the_original_image(built):
  # Independent reference: box means of the original image around the points
  # that crop_to_image names. The stored crop must match them closely, and
  # better than the same reference shifted by half a crop pixel either way.
  splits, _, _ = built
  for ex in splits['validation'] + splits['train'][:2]:
    name = ex['image_name'].decode().replace('twin_', '')
    with Image.open(SAMPLE / 'images' / name) as im:
      orig = np.asarray(im.convert('RGB')).astype(np.float64)
    a = ex['crop_to_image'].astype(np.float64)
    half = a[0, 0] / 2
    here = _box_mean_diff(ex['image'], orig, a, (0.0, 0.0))
    assert here < 6.0, (name, here)
    for offset in [(half, 0.0), (-half, 0.0), (0.0, half), (0.0, -half)]:
      shifted = _box_mean_diff(ex['image'], orig, a, offset)
      assert here < shifted, (name, offset, here, shifted)


def test_bad_input_is_skipped_and_reported(built):
  _, _, log = built
  assert 'corrupt image: 1 (corrupt.jpg#0)' in log
  assert 'missing image: 1 (missing.jpg#0)' in log
  assert 'no objpos/scale: 1 (060754485.jpg#1)' in log
  assert 'annolist[5] (twin_052475643.jpg) person 0' in log
  assert 'annolist[7]: image.name missing' in log


def test_validation_pairs_must_match_the_annotations(fixture_dir, tmp_path):
  root, _ = fixture_dir
  release = mpii_annotations.load_release(root / 'mpii_human_pose_v1_u12_1.mat')
  bad = tmp_path / 'valid.h5'
  with h5py.File(bad, 'w') as f:
    f['index'] = np.array([1.0])
    f['person'] = np.array([0.0])
    f['imgname'] = np.array([b'someone_else.jpg'])
  with pytest.raises(ValueError, match='do not match'):
    mpii_annotations.check_pairs_match(release, mpii_annotations.load_validation_pairs(bad))
  with h5py.File(bad, 'w') as f:
    f['index'] = np.array([40.0])
    f['person'] = np.array([0.0])
  with pytest.raises(ValueError, match='outside annolist'):
    mpii_annotations.check_pairs_match(release, mpii_annotations.load_validation_pairs(bad))


def test_incomplete_manual_dir_fails_at_once(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'mpii_human_pose_v1_u12_1.mat').write_bytes(b'')
  with pytest.raises(FileNotFoundError) as err:
    _build(manual, tmp_path / 'data')
  msg = str(err.value)
  assert 'mpii_human_pose_v1.tar.gz' in msg and 'valid.h5' in msg
  assert 'https://github.com/princeton-vl/pose-hg-train' in msg
  assert 'mpii_human_pose_v1_u12_2.zip' not in msg  # present: not listed
  with pytest.raises(FileNotFoundError, match='does not exist or is empty'):
    _build(tmp_path / 'nowhere', tmp_path / 'data')


def test_draw_crops_for_a_human_look(built, tmp_path):
  """Writes crops with keypoints drawn; set RHPE_MPII_DRAW=<dir> to keep them."""
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  splits, _, _ = built
  out_dir = pathlib.Path(os.environ.get('RHPE_MPII_DRAW', tmp_path))
  picks = [ex for ex in splits['train'] if _key(ex) in {(0, 0), (2, 0)}] + splits['validation']
  canvas = Image.new('RGB', (384 * len(picks), 384))
  for n, ex in enumerate(picks):
    tile = Image.fromarray(ex['image'])
    draw = ImageDraw.Draw(tile)
    for (x, y), s in zip(ex['keypoints'], ex['keypoint_status']):
      if s:
        color = (0, 255, 0) if s == 2 else (255, 0, 0)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=color, width=2)
    for person, status in zip(ex['other_keypoints'], ex['other_keypoint_status']):
      for (x, y), s in zip(person, status):
        if s:
          draw.rectangle([x - 3, y - 3, x + 3, y + 3], outline=(0, 128, 255), width=2)
    canvas.paste(tile, (384 * n, 0))
  out_dir.mkdir(parents=True, exist_ok=True)
  canvas.save(out_dir / 'mpii_crops.png')
  assert (out_dir / 'mpii_crops.png').stat().st_size > 0


def test_manual_dir_with_the_official_archives(fixture_dir, tmp_path):
  # The annotation zip (with its top folder) and the image tar.gz, as
  # downloaded, instead of extracted files.
  import tarfile  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  root, _ = fixture_dir
  manual = tmp_path / 'manual'
  manual.mkdir()
  with zipfile.ZipFile(manual / 'mpii_human_pose_v1_u12_2.zip', 'w') as z:
    z.write(root / 'mpii_human_pose_v1_u12_1.mat',
            'mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat')
  with tarfile.open(manual / 'mpii_human_pose_v1.tar.gz', 'w:gz') as t:
    for path in sorted((root / 'images').iterdir()):
      t.add(path.resolve(), f'images/{path.name}')
  (manual / 'valid.h5').write_bytes((root / 'valid.h5').read_bytes())
  builder = _build(manual, tmp_path / 'data')
  keys = {s: [_key(ex) for ex in tfds.as_numpy(builder.as_dataset(split=s))]
          for s in ('train', 'validation', 'test')}
  assert set(keys['train']) == TRAIN
  assert keys['validation'] == VALIDATION
  assert keys['test'] == TEST
