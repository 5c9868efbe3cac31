"""coco_keypoints builder on the real COCO, CrowdPose and LSPET samples and
on hand-made bad input.

Each real file is built as a `custom` dataset from a temporary manual dir of
symlinks (annotations/validation.json and images/). Expected values are read
from the JSON directly here: which persons become examples, their keypoints
(mapped back through crop_to_image), statuses, ids, boxes, other persons.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from rhpe_jax.data import coco_annotations
from rhpe_jax.data import datasets
from tests.conftest import COCO_FORMAT_CONFIG as CONFIG
from tests.conftest import COCO_FORMAT_RESOLUTION as RESOLUTION
from tests.conftest import COCO_FORMAT_SAMPLES as SAMPLES
from tests.conftest import coco_format_build as _build
from tests.conftest import coco_format_builder as _builder
from tests.conftest import coco_format_examples as _examples
from tests.conftest import coco_format_manual as _manual

REPO = pathlib.Path(__file__).resolve().parents[2]
def _expected_ids(data: dict) -> set[int]:
  return {a['id'] for a in data['annotations']
          if not a.get('iscrowd') and a.get('bbox') and a['bbox'][2] > 0 and a['bbox'][3] > 0
          and any(v > 0 for v in a['keypoints'][2::3])}


def _back(points: np.ndarray, a: np.ndarray) -> np.ndarray:
  a = a.astype(np.float64)
  return points.astype(np.float64) @ a[:, :2].T + a[:, 2]


@pytest.mark.parametrize('name', list(SAMPLES))
def test_persons_keypoints_and_ids_equal_the_json(coco_format_builds, name):
  data, examples, _ = coco_format_builds[name]
  assert sorted(int(e['coco_annotation_id']) for e in examples) == sorted(_expected_ids(data))
  anns = {a['id']: a for a in data['annotations']}
  images = {im['id']: (i, im) for i, im in enumerate(data['images'])}
  for ex in examples:
    a = anns[int(ex['coco_annotation_id'])]
    index, image = images[a['image_id']]
    assert int(ex['coco_image_id']) == a['image_id']
    assert ex['image_name'].decode() == image['file_name'] and ex['image_index'] == index
    same_image = [b['id'] for b in data['annotations'] if b['image_id'] == a['image_id']]
    assert ex['person_index'] == same_image.index(a['id'])
    triples = np.array(a['keypoints'], np.float64).reshape(-1, 3)
    v = triples[:, 2].astype(int)
    np.testing.assert_array_equal(ex['keypoint_status'], v)
    np.testing.assert_allclose(_back(ex['keypoints'], ex['crop_to_image'])[v > 0],
                               triples[v > 0, :2], atol=1e-3)
    assert np.all(ex['keypoints'][v == 0] == 0)
    np.testing.assert_allclose(ex['bbox'], a['bbox'], atol=1e-4)
    x, y, w, h = a['bbox']
    assert ex['area'] == pytest.approx(a.get('area', w * h), rel=1e-5)
    np.testing.assert_allclose(ex['objpos'], [x + w / 2, y + h / 2], atol=1e-3)
    assert ex['scale'] == pytest.approx(max(w, h) / 200, rel=1e-5)
    assert tuple(ex['original_size']) == (image['height'], image['width'])
    assert ex['image'].shape == (RESOLUTION, RESOLUTION, 3)
    assert ex['single_person'] == (len(same_image) == 1)
    assert ex['head_size'] == 0 and not ex['head_box'].any()


@pytest.mark.parametrize('name', list(SAMPLES))
def test_other_persons_are_in_the_crop_frame(coco_format_builds, name):
  data, examples, _ = coco_format_builds[name]
  for ex in examples:
    ann_id = int(ex['coco_annotation_id'])
    image_id = int(ex['coco_image_id'])
    others = [b for b in data['annotations'] if b['image_id'] == image_id and b['id'] != ann_id
              and not b.get('iscrowd') and any(v > 0 for v in b['keypoints'][2::3])]
    assert ex['other_keypoints'].shape[0] == len(others)
    for n, b in enumerate(others):
      triples = np.array(b['keypoints'], np.float64).reshape(-1, 3)
      v = triples[:, 2].astype(int)
      np.testing.assert_array_equal(ex['other_keypoint_status'][n], v)
      np.testing.assert_allclose(_back(ex['other_keypoints'][n], ex['crop_to_image'])[v > 0],
                                 triples[v > 0, :2], atol=1e-3)


def test_coco_sample_has_unannotated_persons_that_are_skipped_and_counted(coco_format_builds):
  data, examples, data_dir = coco_format_builds['coco']
  unannotated = [a for a in data['annotations'] if a['num_keypoints'] == 0]
  assert len(unannotated) == 2 and len(examples) == len(data['annotations']) - 2
  metadata = json.loads((data_dir / 'coco_keypoints' / CONFIG / '1.1.0' /
                         'metadata.json').read_text())
  assert metadata['skipped'] == {'validation': {'no labelled keypoint': 2}}
  assert metadata['category_ids'] == [1]
  # Their boxes stay with every example of their image, as regions COCOeval
  # ignores (for scoring a detector's boxes against the build).
  for example in examples:
    want = [u['bbox'] for u in unannotated if u['image_id'] == example['coco_image_id']]
    np.testing.assert_allclose(example['unlabelled_boxes'], np.reshape(want, (-1, 4)))
    np.testing.assert_allclose(example['unlabelled_areas'],
                               [u['area'] for u in unannotated
                                if u['image_id'] == example['coco_image_id']])


def test_metadata_is_read_back_without_the_manual_dir(coco_format_builds):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  expected_flips = {
      'coco': [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]],
      'crowdpose': [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]],
      'lspet': [[0, 5], [1, 4], [2, 3], [6, 11], [7, 10], [8, 9]],
  }
  for name, (data, examples, data_dir) in coco_format_builds.items():
    values = datasets.dataset_keypoint_set(f'coco_keypoints/{CONFIG}', str(data_dir))
    assert values['keypoint_names'] == data['categories'][0]['keypoints']
    assert values['flip_pairs'] == expected_flips[name]
    # The registered builder (no manual dir) and tfds.load restore the features.
    builder = tfds.builder(f'coco_keypoints/{CONFIG}', data_dir=str(data_dir))
    k = len(data['categories'][0]['keypoints'])
    assert builder.info.features['keypoints'].shape == (k, 2)
    ds = tfds.load(f'coco_keypoints/{CONFIG}', split='validation', data_dir=str(data_dir))
    assert sum(1 for _ in ds) == len(examples)
  crowd = datasets.dataset_keypoint_set(f'coco_keypoints/{CONFIG}', str(coco_format_builds['crowdpose'][2]))
  # CrowdPose's skeleton is COCO's (edges up to 17): parts come by name.
  assert crowd['part_pairs'] == [[0, 2], [2, 4], [1, 3], [3, 5], [6, 8], [8, 10], [7, 9],
                                 [9, 11], [0, 6], [1, 7], [0, 1], [6, 7], [13, 0], [13, 1],
                                 [13, 12]]


# ---------------------------------------------------------------------------
# Hand-made files: crowd regions, the command line, bad input.

NAMES = ['head', 'left_hand', 'right_hand']


def _tiny(root: pathlib.Path, annotations: list[dict], split: str = 'train',
          sizes: dict | None = None) -> pathlib.Path:
  sizes = sizes or {'a.jpg': (40, 60), 'b.jpg': (50, 30)}
  (root / 'images').mkdir(parents=True)
  (root / 'annotations').mkdir()
  images = []
  for i, (name, (h, w)) in enumerate(sizes.items()):
    Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(root / 'images' / name)
    images.append({'id': i + 1, 'file_name': name, 'height': h, 'width': w})
  (root / 'annotations' / f'{split}.json').write_text(json.dumps({
      'images': images, 'annotations': annotations,
      'categories': [{'id': 1, 'name': 'toy', 'keypoints': NAMES}]}))
  return root


def _person(ann_id, image_id, kp=(5, 6, 2, 7, 8, 1, 0, 0, 0), bbox=(2, 3, 20, 30), **extra):
  return {'id': ann_id, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
          'keypoints': list(kp), 'bbox': list(bbox), 'area': 100.0, **extra}


def test_crowd_regions_single_person_and_overrides(tmp_path):
  manual = _tiny(tmp_path / 'manual', [
      _person(1, 1), _person(2, 1, iscrowd=1, bbox=(0, 0, 10, 12), area=77.0),
      _person(3, 2), _person(4, 2, kp=[0] * 9)])
  builder = _build(manual, tmp_path / 'data', resolution=32, flip_pairs=[[1, 2]],
                   part_pairs=[[0, 1], [0, 2]], keypoint_set_name='toyset')
  examples = {int(e['coco_annotation_id']): e for e in _examples(builder, 'train')}
  values = datasets.dataset_keypoint_set(f'coco_keypoints/{CONFIG}', str(tmp_path / 'data'))
  assert values['name'] == 'toyset' and values['flip_pairs'] == [[1, 2]]
  assert values['part_pairs'] == [[0, 1], [0, 2]] and values['keypoint_names'] == NAMES
  assert sorted(examples) == [1, 3]
  np.testing.assert_array_equal(examples[1]['crowd_boxes'], [[0, 0, 10, 12]])
  np.testing.assert_array_equal(examples[1]['crowd_areas'], [77.0])
  assert examples[3]['crowd_boxes'].shape == (0, 4) and examples[3]['crowd_areas'].shape == (0,)
  # Image 1 has a crowd, image 2 an unannotated second person: neither is single.
  assert not examples[1]['single_person'] and not examples[3]['single_person']
  assert examples[3]['other_keypoints'].shape == (0, 3, 2)
  np.testing.assert_array_equal(examples[1]['keypoint_status'], [2, 1, 0])


def test_command_line_build_reads_back_through_the_registered_builder(tmp_path):
  """`tfds build --config=custom` gives the manual dir only to
  download_and_prepare: the features' keypoint count is read from the files
  then; the registered builder, without a manual dir, restores them."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tfds_builders.coco_keypoints import coco_keypoints_dataset_builder as cb  # pylint: disable=g-import-not-at-top
  manual = _tiny(tmp_path / 'manual', [_person(1, 1), _person(2, 2)], split='test')
  tfds_cli = pathlib.Path(sys.executable).parent / 'tfds'
  cmd = ([str(tfds_cli)] if tfds_cli.exists() else
         [sys.executable, '-m', 'tensorflow_datasets.scripts.cli.main'])
  cmd += ['build', str(REPO / 'tfds_builders' / 'coco_keypoints'), '--config=custom',
          f'--manual_dir={manual}', f'--data_dir={tmp_path / "data"}']
  # The checkout under test, whichever rhpe_jax the environment installed.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  builder = tfds.builder('coco_keypoints/custom', data_dir=str(tmp_path / 'data'))
  assert isinstance(builder, cb.Builder)
  assert builder.info.features['keypoints'].shape == (3, 2)
  assert builder.info.features['image'].shape == (384, 384, 3)
  values = datasets.dataset_keypoint_set('coco_keypoints/custom', str(tmp_path / 'data'))
  assert values['name'] == 'toy' and values['keypoint_names'] == NAMES
  assert values['flip_pairs'] == [[1, 2]] and values['part_pairs'] == []
  ds = tfds.load('coco_keypoints/custom', split='test', data_dir=str(tmp_path / 'data'))
  assert sorted(int(e['coco_annotation_id']) for e in tfds.as_numpy(ds)) == [1, 2]


def _left_behind(data_dir: pathlib.Path) -> list[str]:
  if not data_dir.exists():
    return []
  return [str(p) for p in data_dir.rglob('*') if 'coco_keypoints' in str(p)]


@pytest.mark.parametrize('case, needle', [
    ('length', 'annotation 2: keypoints has 6 values, expected 3 x 3'),
    ('unknown_image', 'annotation 2: image_id 9 is not in images'),
    ('no_keypoints', 'no category has keypoints'),
    ('json', 'malformed JSON'),
    ('missing_image', 'b.jpg: image file missing (annotation 2'),
    ('corrupt_image', 'b.jpg: image unreadable (annotation 2'),
])
def test_bad_input_fails_in_one_line_and_leaves_no_dataset(tmp_path, case, needle):
  anns = [_person(1, 1), _person(2, 2)]
  if case == 'length':
    anns[1]['keypoints'] = anns[1]['keypoints'][:6]
  elif case == 'unknown_image':
    anns[1]['image_id'] = 9
  manual = _tiny(tmp_path / 'manual', anns)
  path = manual / 'annotations' / 'train.json'
  if case == 'no_keypoints':
    data = json.loads(path.read_text())
    del data['categories'][0]['keypoints']
    path.write_text(json.dumps(data))
  elif case == 'json':
    path.write_text(path.read_text()[:-5])
  elif case == 'missing_image':
    (manual / 'images' / 'b.jpg').unlink()
  elif case == 'corrupt_image':
    raw = (manual / 'images' / 'b.jpg').read_bytes()
    (manual / 'images' / 'b.jpg').write_bytes(raw[:len(raw) // 3])
  with pytest.raises(coco_annotations.CocoFormatError) as info:
    _build(manual, tmp_path / 'data')
  message = str(info.value)
  assert needle in message and '\n' not in message
  named = 'b.jpg' if 'image' in case and case != 'unknown_image' else 'train.json'
  assert named in message
  assert _left_behind(tmp_path / 'data') == []
