"""coco_keypoints on the public keypoint formats beyond COCO's: COCO-WholeBody
(`wholebody`), Halpe-FullBody with a keypoint-set file, AP-10K's species
merged, Human-Art's `keypoints_21`; files written from each format's docs
over the shared images (tests/keypoint_formats.py). Expected values are read
from the written JSON here, field by field."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import coco_annotations
from rhpe_jax.data import datasets
from tests import keypoint_formats
from tests.conftest import COCO_FORMAT_CONFIG as CONFIG
from tests.conftest import COCO_FORMAT_SAMPLES as SAMPLES
from tests.conftest import coco_format_build as _build
from tests.conftest import coco_format_examples as _examples

RESOLUTION = 32


def _sample(name: str) -> tuple[dict, pathlib.Path]:
  annotations, images = SAMPLES[name]
  if not annotations.exists():
    pytest.skip(f'real data not found at {annotations} (../shared/data is absent)')
  return json.loads(annotations.read_text()), images


def _manual(root: pathlib.Path, data: dict, images: pathlib.Path,
            keypoint_set: dict | None = None) -> pathlib.Path:
  """A `custom` manual dir: annotations/validation.json, images/, and the
  keypoint-set file where given."""
  (root / 'annotations').mkdir(parents=True)
  (root / 'annotations' / 'validation.json').write_text(json.dumps(data))
  if keypoint_set is not None:
    (root / 'annotations' / coco_annotations.SET_FILE).write_text(json.dumps(keypoint_set))
  (root / 'images').symlink_to(images.resolve())
  return root


def _back(points: np.ndarray, a: np.ndarray) -> np.ndarray:
  a = a.astype(np.float64)
  return points.astype(np.float64) @ a[:, :2].T + a[:, 2]


def _check_keypoints(example: dict, triples: np.ndarray, status: np.ndarray) -> None:
  """The example's keypoints, back in original pixels, are the file's."""
  np.testing.assert_array_equal(example['keypoint_status'], status)
  labelled = status > 0
  np.testing.assert_allclose(_back(example['keypoints'], example['crop_to_image'])[labelled],
                             triples[labelled, :2], atol=2e-3)
  assert not example['keypoints'][~labelled].any()


def _build_and_check(manual: pathlib.Path, data_dir: pathlib.Path, data: dict, field: str,
                     **config) -> tuple[list[dict], dict]:
  """Builds `manual`; every example's keypoints are its annotation's `field`
  (v as status): the examples and the build's keypoint set."""
  examples = _examples(_build(manual, data_dir, resolution=RESOLUTION, **config))
  anns = {a['id']: a for a in data['annotations']}
  for ex in examples:
    triples = np.reshape(anns[int(ex['coco_annotation_id'])][field], (-1, 3))
    _check_keypoints(ex, triples, triples[:, 2].astype(np.int32))
  return examples, datasets.dataset_keypoint_set(f'coco_keypoints/{CONFIG}', str(data_dir))


def test_wholebody_joins_five_fields_in_the_documented_order(wholebody_build):
  data, examples, data_dir = wholebody_build
  anns = {a['id']: a for a in data['annotations']}
  assert len(examples) == 12  # the sample's persons with keypoints
  fractional = 0
  for ex in examples:
    a = anns[int(ex['coco_annotation_id'])]
    triples = np.concatenate([np.reshape(a[f], (-1, 3)) for f in keypoint_formats.WHOLEBODY_FIELDS])
    assert triples.shape == (133, 3)
    v = triples[:, 2]
    # COCO's 0/1/2 as they are; a face or hand score in (0, 1] is labelled: 1.
    status = np.where((v > 0) & (v <= 1), 1, v).astype(np.int32)
    fractional += int(np.sum((v > 0) & (v < 1)))
    _check_keypoints(ex, triples, status)
    for box in keypoint_formats.WHOLEBODY_BOXES:
      np.testing.assert_allclose(ex[box], a[box], atol=1e-4)
    assert ex['coco_category_id'] == 1
  assert fractional > 100
  assert any(not ex['face_box'].any() for ex in examples)  # an invalid face: zeros
  values = datasets.dataset_keypoint_set(f'coco_keypoints/{CONFIG}', str(data_dir))
  wholebody = keypoint_sets.built_in('coco_wholebody')
  assert keypoint_sets.KeypointSet.from_dict(values) == wholebody
  assert values['groups'] == {'body': [0, 17], 'foot': [17, 23], 'face': [23, 91],
                              'lefthand': [91, 112], 'righthand': [112, 133]}
  # Part maps: the body's 19 edges, not the hundreds of face and hand ones.
  assert len(values['part_pairs']) == 19


def test_halpe_needs_and_takes_a_keypoint_set_file(tmp_path):
  coco, images = _sample('coco')
  data = keypoint_formats.halpe(coco)
  manual = _manual(tmp_path / 'bare', data, images)
  with pytest.raises(coco_annotations.CocoFormatError) as info:
    _build(manual, tmp_path / 'none', resolution=RESOLUTION)
  assert 'no category has keypoints' in str(info.value)
  assert 'keypoint_set.json' in str(info.value) and '\n' not in str(info.value)
  # The file a user writes: the shipped Halpe set, with its sigmas and flips.
  halpe = keypoint_sets.built_in('halpe').to_dict()
  manual = _manual(tmp_path / 'manual', data, images, keypoint_set=halpe)
  _, values = _build_and_check(manual, tmp_path / 'data', data, 'keypoints')
  assert len(values['keypoint_names']) == 136
  assert values['keypoint_names'][17:20] == ['head', 'neck', 'hip']
  assert values['sigmas'] == halpe['sigmas'] and values['flip_pairs'] == halpe['flip_pairs']
  # Or no file, the config naming the shipped set.
  _, shipped = _build_and_check(_manual(tmp_path / 'bare2', data, images), tmp_path / 'shipped',
                                data, 'keypoints', keypoint_set='halpe')
  assert shipped == values
  # A config override still wins over the file.
  builder = _build(manual, tmp_path / 'override', resolution=RESOLUTION,
                   part_pairs=[[17, 18], [18, 19]])
  values = datasets.dataset_keypoint_set(f'coco_keypoints/{CONFIG}', str(tmp_path / 'override'))
  assert values['part_pairs'] == [[17, 18], [18, 19]]


def test_two_species_merge_into_one_set_and_keep_their_categories(tmp_path):
  crowdpose, images = _sample('crowdpose')
  data = keypoint_formats.two_species(crowdpose)
  manual = _manual(tmp_path / 'manual', data, images)
  examples, _ = _build_and_check(manual, tmp_path / 'data', data, 'keypoints')
  anns = {a['id']: a for a in data['annotations']}
  assert sorted(int(e['coco_annotation_id']) for e in examples) == sorted(anns)
  assert {int(e['coco_category_id']) for e in examples} == {1, 2}
  for ex in examples:
    assert ex['coco_category_id'] == anns[int(ex['coco_annotation_id'])]['category_id']
  metadata = json.loads((tmp_path / 'data' / 'coco_keypoints' / CONFIG / '1.1.0' /
                         'metadata.json').read_text())
  assert metadata['category_ids'] == [1, 2]
  values = metadata['keypoint_set']
  assert values['name'] == 'Bovidae' and values['keypoint_names'] == keypoint_formats.AP10K_NAMES
  assert [values['keypoint_names'][i] for i in values['part_pairs'][4]] == ['neck',
                                                                            'root_of_tail']
  # category_id still picks one species.
  builder = _build(manual, tmp_path / 'one', resolution=RESOLUTION, category_id=2)
  assert {int(e['coco_category_id']) for e in _examples(builder)} == {2}


def test_human_art_keypoints_21_through_the_set_files_field(tmp_path):
  coco, images = _sample('coco')
  data = keypoint_formats.human_art(coco)
  names = coco['categories'][0]['keypoints']
  manual = _manual(tmp_path / 'manual', data, images,
                   keypoint_set=keypoint_formats.human_art_set(names))
  _, values = _build_and_check(manual, tmp_path / 'data', data, 'keypoints_21')
  assert len(values['keypoint_names']) == 21
  assert values['name'] == 'humanart21' and values['keypoint_names'][17:] == [
      'left_finger', 'right_finger', 'left_toe', 'right_toe']
  # Flip pairs from the names (COCO's eight and finger, toe); parts by name.
  assert values['flip_pairs'][-2:] == [[17, 18], [19, 20]] and len(values['flip_pairs']) == 10
  assert values['part_pairs'][4:6] == [[15, 19], [16, 20]]


@pytest.mark.parametrize('case, needle', [
    ('field', 'annotation 2: keypoints_21 is missing, expected a list of x, y, v'),
    ('length', 'annotation 2: keypoints + foot_kpts has 63 values, expected 3 x 23'),
    ('score', 'annotation 2: visibility flags must be 0, 1, 2 or a fraction in (0, 1), '
              'got [1.5]'),
    ('box', 'annotation 2: face_box has 3 values, expected x, y, w, h'),
    ('set_key', "keypoint_set.json: unknown keys ['flip_pair']"),
    ('set_name', "keypoint_set.json: keypoint set 'toy': flip pair names 'l_ear'"),
])
def test_bad_input_names_file_and_annotation_in_one_line(tmp_path, case, needle):
  """The formats' own mistakes: a missing field, a short one, a score above
  1 that is not COCO's 2, a malformed part box, a mistyped set file."""
  names = [f'k{i}' for i in range(23)]
  set_file = {'name': 'toy', 'keypoint_names': names, 'field': ['keypoints', 'foot_kpts'],
              'boxes': ['face_box']}
  person = {'id': 2, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'bbox': [1, 1, 8, 8],
            'area': 64.0, 'keypoints': [2, 2, 2] * 17, 'foot_kpts': [3, 3, 0.5] * 6,
            'face_box': [1, 1, 4, 4]}
  if case == 'field':
    set_file['field'] = 'keypoints_21'
  elif case == 'length':
    person['foot_kpts'] = person['foot_kpts'][:-6]
  elif case == 'score':
    person['foot_kpts'][2] = 1.5
  elif case == 'box':
    person['face_box'] = [1, 1, 4]
  elif case == 'set_key':
    set_file['flip_pair'] = [[0, 1]]
  elif case == 'set_name':
    set_file['flip_pairs'] = [['k0', 'l_ear']]
  root = tmp_path / 'manual'
  (root / 'annotations').mkdir(parents=True)
  (root / 'images').mkdir()
  (root / 'annotations' / 'train.json').write_text(json.dumps({
      'images': [{'id': 1, 'file_name': 'a.jpg'}], 'annotations': [person],
      'categories': [{'id': 1, 'name': 'person'}]}))
  (root / 'annotations' / coco_annotations.SET_FILE).write_text(json.dumps(set_file))
  with pytest.raises(coco_annotations.CocoFormatError) as info:
    _build(root, tmp_path / 'data', resolution=RESOLUTION)
  message = str(info.value)
  assert needle in message and '\n' not in message
  assert ('keypoint_set.json' if case.startswith('set') else 'train.json') in message
  assert not (tmp_path / 'data' / 'coco_keypoints').exists()
