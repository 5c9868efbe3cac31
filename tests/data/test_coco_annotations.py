"""COCO person-keypoint reader against hand-made files and the real samples.

Expected values are written out by hand (statuses, pairs, the CrowdPose
fallback parts) or read from the JSON directly in the test.
"""
from __future__ import annotations

import json
import logging
import pathlib

import numpy as np
import pytest

from rhpe_jax.data import coco_annotations as ca
from tests.conftest import SHARED_DATA

NAMES = ['nose', 'left_eye', 'right_eye', 'l_wrist', 'r_wrist']


def _need(path: pathlib.Path) -> None:
  if not path.exists():
    pytest.skip(f'real data not found at {path} (../shared/data is absent)')


def _ann(ann_id, image_id, keypoints, bbox=(10, 20, 30, 40), **extra):
  out = {'id': ann_id, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
         'keypoints': keypoints, 'bbox': list(bbox) if bbox is not None else None}
  out.update(extra)
  return out


def _file(tmp_path, annotations, categories=None, images=None, name='ann.json'):
  data = {'images': images or [{'id': 7, 'file_name': 'a.jpg'}, {'id': 9, 'file_name': 'b.jpg'}],
          'annotations': annotations,
          'categories': categories or [{'id': 1, 'name': 'person', 'keypoints': NAMES,
                                        'skeleton': [[1, 2], [1, 3], [4, 5]]}]}
  path = tmp_path / name
  path.write_text(json.dumps(data))
  return path


KP = [5, 6, 2, 7, 8, 1, 99, 98, 0, 11, 12, 2, 0, 0, 0]  # v: 2 1 0 2 0


def test_keypoints_status_boxes_and_skips(tmp_path):
  path = _file(tmp_path, [
      _ann(1, 7, KP, area=500.0),
      _ann(2, 7, [0] * 15),                                  # no labelled keypoint
      _ann(3, 9, KP, bbox=None),                             # no box
      _ann(4, 9, KP, bbox=(1, 1, 0, 5)),                     # zero-size box
      _ann(5, 9, [0] * 15, bbox=(0, 0, 50, 60), iscrowd=1, area=1234.0),
      _ann(6, 9, KP, bbox=(2, 3, 4, 5)),                     # no area: w x h
      {**_ann(8, 7, KP), 'category_id': 2},                  # not a person
  ], categories=[{'id': 1, 'name': 'person', 'keypoints': NAMES},
                 {'id': 2, 'name': 'dog'}])
  got = ca.load(path)
  assert [(i.image_id, p.annotation_id) for i, p in got.examples()] == [(7, 1), (9, 6)]
  assert got.skipped == {'no labelled keypoint': 1, 'no box': 1, 'zero-size box': 1,
                         'other category': 1}
  image7, image9 = got.images
  p = image7.persons[0]
  np.testing.assert_array_equal(p.status, [2, 1, 0, 2, 0])
  np.testing.assert_array_equal(p.keypoints, [[5, 6], [7, 8], [0, 0], [11, 12], [0, 0]])
  assert p.keypoints.dtype == np.float32 and p.area == 500.0
  np.testing.assert_array_equal(p.bbox, [10, 20, 30, 40])
  # Persons are indexed among their image's annotations; crowd counts too.
  assert [q.index for q in image9.persons] == [0, 1, 3]
  assert image9.persons[2].area == 20.0
  assert [(c.annotation_id, c.area) for c in image9.crowd] == [(5, 1234.0)]
  np.testing.assert_array_equal(image9.crowd[0].bbox, [0, 0, 50, 60])
  # Other persons: with a labelled keypoint, a box not needed.
  assert [q.annotation_id for q in image9.others(image9.persons[2])] == [3, 4]
  assert image7.others(p) == []
  assert (image7.index, image9.index, image7.file_name) == (0, 1, 'a.jpg')


def test_keypoint_set_from_the_category(tmp_path):
  got = ca.load(_file(tmp_path, [_ann(1, 7, KP)]))
  keypoint_set = got.keypoint_set
  assert keypoint_set.keypoint_names == tuple(NAMES)
  assert keypoint_set.part_pairs == ((0, 1), (0, 2), (3, 4))  # 1-based in the file
  assert keypoint_set.flip_pairs == ((1, 2), (3, 4))  # left/right_eye, l/r_wrist
  assert keypoint_set.name == 'person' and got.category_ids == (1,)
  over = ca.load(_file(tmp_path, [_ann(1, 7, KP)]), name='mine', flip_pairs=[[1, 2]],
                 part_pairs=[[0, 4]])
  assert (over.keypoint_set.name, over.keypoint_set.flip_pairs,
          over.keypoint_set.part_pairs) == ('mine', ((1, 2),), ((0, 4),))


def test_bad_or_absent_skeleton_falls_back_to_parts_by_name(tmp_path, caplog):
  names = ['Left Shoulder', 'left_elbow', 'right_shoulder', 'neck', 'head_top', 'nose']
  cats = [{'id': 1, 'name': 'person', 'keypoints': names, 'skeleton': [[1, 2], [6, 7]]}]
  kp = [1, 1, 2] * 6
  with caplog.at_level(logging.WARNING):
    got = ca.load(_file(tmp_path, [_ann(1, 7, kp)], categories=cats, name='bad.json'))
  # By hand from FALLBACK_PART_NAMES: l-shoulder/elbow, shoulders, neck-shoulders,
  # neck-head_top, neck-nose.
  expected = ((0, 1), (0, 2), (3, 0), (3, 2), (3, 4), (3, 5))
  assert got.keypoint_set.part_pairs == expected
  lines = [r.getMessage() for r in caplog.records if 'skeleton edge' in r.getMessage()]
  assert len(lines) == 1 and 'bad.json' in lines[0] and '[6, 7]' in lines[0]
  assert '\n' not in lines[0]
  del cats[0]['skeleton']
  assert ca.load(_file(tmp_path, [_ann(1, 7, kp)], categories=cats)).keypoint_set.part_pairs \
      == expected


def test_category_choice(tmp_path):
  cats = [{'id': 1, 'name': 'person', 'keypoints': NAMES},
          {'id': 3, 'name': 'robot', 'keypoints': ['a', 'b']}]
  path = _file(tmp_path, [_ann(1, 7, KP), {**_ann(2, 7, [1, 2, 2, 3, 4, 2]), 'category_id': 3}],
               categories=cats)
  with pytest.raises(ca.CocoFormatError, match='pick one with category_id'):
    ca.load(path)
  got = ca.load(path, category_id=3)
  assert got.keypoint_set.keypoint_names == ('a', 'b') and got.keypoint_set.name == 'robot'
  assert [p.annotation_id for _, p in got.examples()] == [2]


@pytest.mark.parametrize('case, needle', [
    ('length', 'annotation 4: keypoints has 12 values, expected 3 x 5'),
    ('unknown_image', 'annotation 4: image_id 55 is not in images'),
    ('no_keypoints', 'no category has keypoints'),
    ('chosen_without_keypoints', 'category 2 (\'dog\') has no keypoints'),
    ('json', 'malformed JSON (line 1'),
    ('flag', 'annotation 4: visibility flags must be 0, 1, 2 or a fraction in (0, 1), got [3.0]'),
])
def test_bad_input_is_one_line_naming_file_and_annotation(tmp_path, case, needle):
  anns = [_ann(1, 7, KP), _ann(4, 9, KP)]
  cats, category_id = None, None
  if case == 'length':
    anns[1]['keypoints'] = KP[:12]
  elif case == 'unknown_image':
    anns[1]['image_id'] = 55
  elif case == 'no_keypoints':
    cats = [{'id': 1, 'name': 'person'}]
  elif case == 'chosen_without_keypoints':
    cats, category_id = [{'id': 1, 'name': 'person', 'keypoints': NAMES},
                         {'id': 2, 'name': 'dog'}], 2
  elif case == 'flag':
    anns[1]['keypoints'] = KP[:-1] + [3]
  path = _file(tmp_path, anns, categories=cats, name=f'{case}.json')
  if case == 'json':
    path.write_text('{"images": [}')
  with pytest.raises(ca.CocoFormatError) as info:
    ca.load(path, category_id=category_id)
  message = str(info.value)
  assert needle in message and str(path) in message and '\n' not in message


# ---------------------------------------------------------------------------
# The real samples.

COCO_FLIPS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def test_real_files_keypoint_sets(caplog):
  coco = SHARED_DATA / 'coco_sample' / 'person_keypoints.json'
  crowdpose = SHARED_DATA / 'crowdpose_sample' / 'annotations.json'
  lspet = SHARED_DATA / 'lspet_sample' / 'coco_keypoints.json'
  for path in (coco, crowdpose, lspet):
    _need(path)
  assert ca.load(coco).keypoint_set.flip_pairs == COCO_FLIPS
  # LSP order: r_ankle r_knee r_hip l_hip l_knee l_ankle r_wrist r_elbow
  # r_shoulder l_shoulder l_elbow l_wrist neck head_top.
  lsp = ca.load(lspet).keypoint_set
  assert lsp.flip_pairs == ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9))
  assert lsp.part_pairs[:3] == ((0, 1), (1, 2), (3, 4))  # its own 14 edges, 0-based
  assert len(lsp.part_pairs) == 14
  with caplog.at_level(logging.WARNING):
    crowd = ca.load(crowdpose).keypoint_set
  # 0 l_shoulder 1 r_shoulder 2 l_elbow 3 r_elbow 4 l_wrist 5 r_wrist 6 l_hip
  # 7 r_hip 8 l_knee 9 r_knee 10 l_ankle 11 r_ankle 12 head 13 neck; its
  # skeleton is COCO's (edges up to 17), so parts come by name.
  assert crowd.flip_pairs == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))
  assert crowd.part_pairs == ((0, 2), (2, 4), (1, 3), (3, 5), (6, 8), (8, 10), (7, 9),
                              (9, 11), (0, 6), (1, 7), (0, 1), (6, 7), (13, 0), (13, 1),
                              (13, 12))
  assert any('annotations.json' in r.getMessage() and '[16, 14]' in r.getMessage()
             for r in caplog.records)


def test_real_coco_sample_persons_match_the_json():
  path = SHARED_DATA / 'coco_sample' / 'person_keypoints.json'
  _need(path)
  data = json.loads(path.read_text())
  got = ca.load(path)
  expected = [a['id'] for a in data['annotations']
              if not a['iscrowd'] and a['bbox'][2] > 0 and a['bbox'][3] > 0
              and any(v > 0 for v in a['keypoints'][2::3])]
  by_image = {i: [a['id'] for a in data['annotations'] if a['image_id'] == i]
              for i in [im['id'] for im in data['images']]}
  assert sorted(p.annotation_id for _, p in got.examples()) == sorted(expected)
  assert got.skipped == {'no labelled keypoint': len(data['annotations']) - len(expected)}
  anns = {a['id']: a for a in data['annotations']}
  for image, p in got.examples():
    a = anns[p.annotation_id]
    v = np.array(a['keypoints'][2::3])
    np.testing.assert_array_equal(p.status, v)
    xy = np.array(a['keypoints']).reshape(-1, 3)[:, :2]
    np.testing.assert_allclose(p.keypoints[v > 0], xy[v > 0])
    assert by_image[image.image_id][p.index] == p.annotation_id
