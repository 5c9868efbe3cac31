"""COCO AP through the evaluation pass: a small TFDS dataset with the COCO
features of a COCO-format build (tfds_builders/coco_keypoints' contract),
made here from ../shared/data/coco_sample; the evaluation pipeline's COCO
fields, and `evaluate_checkpoint` of an untrained 1/8-width network at 64 px
with ground-truth and detector boxes, scored against pycocotools directly."""
from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA

SAMPLE = SHARED_DATA / 'coco_sample'
pytestmark = pytest.mark.skipif(not (SAMPLE / 'person_keypoints.json').exists(),
                                reason=f'{SAMPLE} (shared test data) is absent')
STORED = 128  # each image letterboxed to 128 x 128: crop_to_image a similarity
# An iscrowd region added to image 40083 (the sample has none).
CROWD = {'id': 900000001, 'image_id': 40083, 'category_id': 1, 'iscrowd': 1,
         'bbox': [380.0, 20.0, 110.0, 150.0], 'area': 12000.0, 'num_keypoints': 0,
         'keypoints': [0] * 51}


def _annotations():
  data = json.loads((SAMPLE / 'person_keypoints.json').read_text())
  data['annotations'].append(dict(CROWD))
  return data


def _features():
  """The coco_keypoints builder's features at this test's sizes."""
  from rhpe_jax.data import pose_features
  return pose_features.pose_features(17, (STORED, STORED, 3), extra=pose_features.coco_features())


def _examples(data):
  """One example per person with a box and labelled keypoints (the contract)."""
  from rhpe_jax.data import coco_annotations
  examples = []
  for image_index, image in enumerate(data['images']):
    with Image.open(SAMPLE / 'images' / image['file_name']) as f:
      pixels = np.asarray(f.convert('RGB'))
    height, width = pixels.shape[:2]
    s = max(width, height) / STORED
    small = np.asarray(Image.fromarray(pixels).resize((round(width / s), round(height / s))))
    stored = np.zeros((STORED, STORED, 3), np.uint8)
    stored[:small.shape[0], :small.shape[1]] = small
    crowd = [a for a in data['annotations'] if a['image_id'] == image['id'] and a['iscrowd']]
    persons = [a for a in data['annotations'] if a['image_id'] == image['id']
               and not a['iscrowd'] and a['num_keypoints'] > 0]
    unlabelled = [a for a in data['annotations'] if a['image_id'] == image['id']
                  and not a['iscrowd'] and a['num_keypoints'] == 0]
    for person_index, a in enumerate(persons):
      triples = np.array(a['keypoints'], np.float64).reshape(17, 3)
      status = triples[:, 2].astype(np.int32)
      stored_xy = np.where(status[:, None] > 0, (triples[:, :2] + 0.5) / s - 0.5, 0.0)
      objpos, scale = coco_annotations.box_center_scale(a['bbox'])
      examples.append({
          'image': stored, 'keypoints': stored_xy.astype(np.float32), 'keypoint_status': status,
          'other_keypoints': np.zeros((0, 17, 2), np.float32),
          'other_keypoint_status': np.zeros((0, 17), np.int32),
          'crop_to_image': np.array([[s, 0, (s - 1) / 2], [0, s, (s - 1) / 2]], np.float32),
          'objpos': objpos, 'scale': np.float32(scale),
          'head_box': np.zeros(4, np.float32), 'head_size': np.float32(0),
          'original_size': np.array([height, width], np.int32),
          'image_name': image['file_name'], 'image_index': image_index,
          'person_index': person_index, 'single_person': False,
          'coco_image_id': image['id'], 'coco_annotation_id': a['id'],
          'coco_category_id': a['category_id'],
          'bbox': np.array(a['bbox'], np.float32), 'area': np.float32(a['area']),
          'crowd_boxes': np.array([c['bbox'] for c in crowd], np.float32).reshape(-1, 4),
          'crowd_areas': np.array([c['area'] for c in crowd], np.float32),
          'unlabelled_boxes': np.array([u['bbox'] for u in unlabelled],
                                       np.float32).reshape(-1, 4),
          'unlabelled_areas': np.array([u['area'] for u in unlabelled], np.float32),
      })
  return examples


@pytest.fixture(scope='module')
def coco_data_dir(tmp_path_factory):
  import tensorflow_datasets as tfds
  data_dir = tmp_path_factory.mktemp('coco_pose')
  examples = _examples(_annotations())
  tfds.dataset_builders.store_as_tfds_dataset(
      name='rhpe_coco_pose', version='1.0.0', data_dir=data_dir, features=_features(),
      split_datasets={'validation': list(enumerate(examples[::-1]))})  # out of order
  return data_dir


def _config(data_dir):
  from experiments.configs import demo
  config = demo.get_config()
  config.dataset = 'rhpe_coco_pose'
  config.data_dir = str(data_dir)
  config.eval_split = 'validation'
  config.keypoint_set = 'coco'
  config.torso_definition = 'lsp_diagonal'
  config.width = 0.125
  config.input_size = 64
  config.batch_size = 4
  return config


@pytest.fixture(scope='module')
def coco_workdir(coco_data_dir, tmp_path_factory):
  """An untrained COCO-keypoint network saved as training saves it."""
  import jax
  from rhpe_jax import checkpoints
  from rhpe_jax.training import steps as train_step
  workdir = tmp_path_factory.mktemp('coco_run')
  config = _config(coco_data_dir)
  state = train_step.create_train_state(config, jax.random.key(0), steps_per_epoch=2)
  manager = checkpoints.CheckpointManager(str(workdir), config)
  manager.save(1, state.replace(step=1), metric=0.0, force=True)
  manager.wait()
  manager.close()
  return workdir


def _pycocotools(annotations, records):
  """pycocotools alone on a COCO dict written as a file would be read."""
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = copy.deepcopy(annotations)
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(copy.deepcopy(records)), iouType='keypoints')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return list(ev.stats)


def test_evaluation_pipeline_carries_the_coco_fields(coco_data_dir):
  from rhpe_jax.data import datasets
  from rhpe_jax.evaluation import coco_eval
  data = _annotations()
  batches = list(datasets.eval_dataset(_config(coco_data_dir), 'validation', 4)
                 .as_numpy_iterator())
  flat = {k: np.concatenate([b[k].reshape((-1,) + b[k].shape[2:]) for b in batches])
          for k in batches[0]}
  keep = flat.pop('valid').astype(bool)
  flat = {k: v[keep] for k, v in flat.items()}
  affine = flat['input_to_image'].astype(np.float64)
  flat['gt_image'] = np.einsum('nij,nkj->nki', affine[:, :, :2], flat['keypoints']) \
      + affine[:, None, :, 2]
  by_id = {a['id']: a for a in data['annotations']}
  assert len(flat['coco_annotation_id']) == 12  # 14 persons, 2 without keypoints
  for i, annotation_id in enumerate(flat['coco_annotation_id']):
    a = by_id[int(annotation_id)]
    assert flat['coco_image_id'][i] == a['image_id']
    np.testing.assert_allclose(flat['bbox'][i], a['bbox'], rtol=1e-6)
    assert flat['area'][i] == pytest.approx(a['area'], rel=1e-6)
    triples = np.array(a['keypoints'], np.float64).reshape(17, 3)
    np.testing.assert_array_equal(flat['keypoint_status'][i], triples[:, 2])
    labelled = triples[:, 2] > 0
    np.testing.assert_allclose(flat['gt_image'][i][labelled], triples[labelled, :2], atol=2e-3)
    expected_crowd = 1 if a['image_id'] == CROWD['image_id'] else 0
    assert flat['crowd_count'][i] == expected_crowd
    if expected_crowd:
      np.testing.assert_allclose(flat['crowd_boxes'][i][0], CROWD['bbox'])
      assert flat['crowd_areas'][i][0] == CROWD['area']
  gt = coco_eval.ground_truth_from_predictions(flat, [f'k{j}' for j in range(17)])
  assert sum(a['iscrowd'] for a in gt['annotations']) == 1
  records = coco_eval.results_from_predictions(dict(flat, confidence=np.ones((12, 17))),
                                               pred_key='gt_image')
  assert _pycocotools(data, records) == [1.0] * 10  # the JSON's ground truth itself


def test_evaluate_checkpoint_scores_coco_beside_pck(coco_data_dir, coco_workdir, tmp_path,
                                                     capsys):
  from pycocotools.coco import COCO
  from rhpe_jax.core import keypoint_sets
  from rhpe_jax.evaluation import report
  config = _config(coco_data_dir)
  out = tmp_path / 'gt_boxes'
  results = report.evaluate_checkpoint(config, str(coco_workdir), output_dir=str(out))
  printed = capsys.readouterr().out
  assert 'COCO keypoints, ground-truth boxes (12 persons, 4 images' in printed
  written = json.loads((out / 'results.json').read_text())
  assert written['coco']['sigmas'] == list(keypoint_sets.COCO.sigmas)
  assert "keypoint set 'coco'" in written['coco']['sigma_rule']
  assert set(written['coco']['scores']) == {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50',
                                            'AR75', 'ARm', 'ARl'}
  assert list(written['table']) == ['Nose', 'Eye', 'Ear', 'Shoulder', 'Elbow', 'Wrist', 'Hip',
                                    'Knee', 'Ankle', 'Total']
  records = json.loads((out / 'coco_results.json').read_text())
  assert len(records) == 12 and all(len(r['keypoints']) == 51 for r in records)
  with contextlib.redirect_stdout(io.StringIO()):
    official = COCO(str(SAMPLE / 'person_keypoints.json'))
    official.loadRes(str(out / 'coco_results.json'))
  # With ground-truth boxes no result falls on an unlabelled person: the
  # official file (and the crowd region) give the same numbers.
  data = _annotations()
  np.testing.assert_allclose(_pycocotools(data, records),
                             [written['coco']['scores'][n] for n in written['coco']['scores']],
                             atol=1e-12)
  # PCK: persons whose torso (left shoulder, right hip) is labelled.
  without = sum(1 for a in data['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']
                and (a['keypoints'][5 * 3 + 2] == 0 or a['keypoints'][12 * 3 + 2] == 0))
  assert results['persons']['left_out'].get(
      'no torso to normalise by (a shoulder or hip missing)', 0) == without

  # A detector's boxes (score >= 0.3), crops cut from the original images.
  out = tmp_path / 'detections'
  boxes = SAMPLE / 'person_detections.json'
  results = report.evaluate_checkpoint(config, str(coco_workdir), output_dir=str(out),
                                       boxes=str(boxes), box_score_threshold=0.3,
                                       image_dir=str(SAMPLE / 'images'), verbose=False)
  detections = [d for d in json.loads(boxes.read_text()) if d['score'] >= 0.3]
  records = json.loads((out / 'coco_results.json').read_text())
  assert results['coco_detections']['boxes'] == str(boxes)
  assert len(records) == results['coco_detections']['boxes_scored'] == len(detections)
  # The split's ground truth is the whole file: its persons, its crowd
  # region and, as regions to ignore, its persons without keypoints (a
  # detection on one is no false positive); scored by pycocotools directly.
  assert any(a['num_keypoints'] == 0 and not a['iscrowd'] for a in data['annotations'])
  np.testing.assert_allclose(
      _pycocotools(data, records),
      [results['coco_detections']['scores'][n] for n in results['coco_detections']['scores']],
      atol=1e-12)
  # Each record is the network in its box's window (images by id, boxes best
  # first): keypoints inside the square of side box_scale x the box's longer
  # side around its centre, score = box score x a mean peak in [0, 1].
  ordered = sorted(detections, key=lambda d: (d['image_id'], -d['score']))
  for record, box in zip(records, ordered):
    x, y, w, h = box['bbox']
    half = config.box_scale * max(w, h) / 2
    points = np.array(record['keypoints']).reshape(17, 3)[:, :2]
    assert record['image_id'] == box['image_id']
    assert np.all(np.abs(points - [x + w / 2, y + h / 2]) <= half + 1e-3)
    assert 0 <= record['score'] <= box['score']


def test_detections_on_other_images_are_ignored_and_bad_files_named(coco_data_dir, coco_workdir,
                                                                    tmp_path):
  from rhpe_jax.evaluation import report
  config = _config(coco_data_dir)
  # Against the full annotation file (its num_keypoints-0 persons too):
  # pycocotools on that file.
  data = _annotations()
  annotations = tmp_path / 'annotations.json'
  annotations.write_text(json.dumps(data))
  out = tmp_path / 'full'
  results = report.evaluate_checkpoint(
      config, str(coco_workdir), output_dir=str(out), boxes=str(SAMPLE / 'person_detections.json'),
      box_score_threshold=0.5, image_dir=str(SAMPLE / 'images'), annotations=str(annotations),
      verbose=False)
  records = json.loads((out / 'coco_results.json').read_text())
  scores = results['coco_detections']['scores']
  assert results['coco_detections']['ground_truth'] == str(annotations)
  np.testing.assert_allclose(_pycocotools(data, records), [scores[n] for n in scores], atol=1e-12)
  boxes = tmp_path / 'boxes.json'
  boxes.write_text(json.dumps([{'image_id': 785, 'category_id': 1, 'score': 0.9,
                                'bbox': [280.79, 44.73, 218.7, 346.68]},
                               {'image_id': 12345, 'category_id': 1, 'score': 0.9,
                                'bbox': [0, 0, 50, 80]}]))
  results = report.evaluate_checkpoint(config, str(coco_workdir), output_dir=str(tmp_path / 'o'),
                                       boxes=str(boxes), image_dir=str(SAMPLE / 'images'),
                                       verbose=False)
  assert results['coco_detections']['boxes_scored'] == 1
  assert results['coco_detections']['boxes_on_other_images'] == 1
  boxes.write_text(json.dumps([{'image_id': 785, 'bbox': [1, 2, 3], 'score': 0.5}]))
  with pytest.raises(ValueError, match=r'boxes.json: record 0: bbox must be'):
    report.evaluate_checkpoint(config, str(coco_workdir), output_dir=str(tmp_path / 'o'),
                               boxes=str(boxes), image_dir=str(SAMPLE / 'images'), verbose=False)
  with pytest.raises(ValueError, match='boxes needs image_dir'):
    report.evaluate_checkpoint(config, str(coco_workdir), boxes=str(boxes))


def _two_categories(data):
  """`data` with its labelled persons alternating between categories 1 and 2,
  both naming the same keypoints (a merged keypoint set, as AP-10K's
  species): a copy."""
  data = copy.deepcopy(data)
  persons = [a for a in data['annotations'] if not a['iscrowd'] and a['num_keypoints'] > 0]
  for n, a in enumerate(persons):
    a['category_id'] = 1 + n % 2
  data['categories'].append(dict(data['categories'][0], id=2, name='other'))
  return data


def _iou(a, b):
  x0, y0 = max(a[0], b[0]), max(a[1], b[1])
  x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
  inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
  return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_detections_of_every_category_of_a_merged_set_score_in_their_category(
    coco_workdir, tmp_path):
  """A build whose persons belong to two categories (one keypoint set): the
  detector's boxes of both are predicted, each result keeps its box's
  category, and the scores are pycocotools' on the same two-category file."""
  import tensorflow_datasets as tfds
  from rhpe_jax.evaluation import report
  data = _two_categories(_annotations())
  data_dir = tmp_path / 'data'
  tfds.dataset_builders.store_as_tfds_dataset(
      name='rhpe_coco_pose', version='1.0.0', data_dir=data_dir, features=_features(),
      split_datasets={'validation': list(enumerate(_examples(data)))})
  # Each detection in the category of the labelled person it covers best.
  persons = [a for a in data['annotations'] if not a['iscrowd'] and a['num_keypoints'] > 0]
  detections = []
  for box in json.loads((SAMPLE / 'person_detections.json').read_text()):
    if box['score'] >= 0.3:
      overlaps = [(_iou(box['bbox'], a['bbox']), a['category_id']) for a in persons
                  if a['image_id'] == box['image_id']]
      detections.append(dict(box, category_id=max(overlaps, default=(0, 1))[1]))
  assert {d['category_id'] for d in detections} == {1, 2}
  boxes = tmp_path / 'boxes.json'
  boxes.write_text(json.dumps(detections + [dict(detections[0], category_id=3)]))  # a car
  out = tmp_path / 'out'
  results = report.evaluate_checkpoint(_config(data_dir), str(coco_workdir), output_dir=str(out),
                                       boxes=str(boxes), image_dir=str(SAMPLE / 'images'),
                                       verbose=False)
  records = json.loads((out / 'coco_results.json').read_text())
  assert results['coco_detections']['boxes_scored'] == len(records) == len(detections)
  ordered = sorted(detections, key=lambda d: (d['image_id'], -d['score']))
  assert [r['category_id'] for r in records] == [d['category_id'] for d in ordered]
  scores = results['coco_detections']['scores']
  np.testing.assert_allclose(_pycocotools(data, records), [scores[n] for n in scores],
                             atol=1e-12)


def test_a_whole_body_set_gets_a_row_per_group(tmp_path, capsys):
  """The report's COCO table of a set with groups (COCO-WholeBody): one row
  per group and the whole body, COCOeval's numbers of each as
  coco_eval.group_scores gives them (that they are the dataset's own
  evaluation's: tests/evaluation/test_coco_eval.py)."""
  import ml_collections
  from rhpe_jax.data import coco_annotations
  from rhpe_jax.evaluation import coco_eval
  from rhpe_jax.evaluation import report
  from tests import keypoint_formats
  data = keypoint_formats.wholebody(json.loads((SAMPLE / 'person_keypoints.json').read_text()))
  read = coco_annotations.parse(data, 'wholebody.json',
                                set_file=coco_annotations.built_in_set_file('coco_wholebody'))
  pairs = list(read.examples())
  gt = np.stack([p.keypoints for _, p in pairs]).astype(np.float64)
  moved = gt.copy()
  moved[:, 91:112] += [3.0, -2.0]  # the left hand
  predictions = {
      'coco_image_id': np.array([i.image_id for i, _ in pairs]),
      'coco_annotation_id': np.array([p.annotation_id for _, p in pairs]),
      'coco_category_id': np.array([p.category_id for _, p in pairs]),
      'gt_image': gt, 'pred_image': moved, 'confidence': np.ones(gt.shape[:2]),
      'keypoint_status': np.stack([p.status for _, p in pairs]),
      'bbox': np.stack([p.bbox for _, p in pairs]), 'area': np.array([p.area for _, p in pairs])}
  config = ml_collections.ConfigDict({'keypoint_set': 'coco_wholebody',
                                      'dataset_keypoint_set': None, 'keypoint_sigmas': ()})
  results = {'files': {}}
  report._coco_scores(config, None, 'validation', predictions, tmp_path, results, flip=False,
                      boxes=None, box_score_threshold=0.0, image_dir=None, batch_size=1,
                      annotations=None, verbose=True)
  groups = results['coco']['group_scores']
  assert list(groups) == ['body', 'foot', 'face', 'lefthand', 'righthand', 'wholebody']
  assert groups['body']['AP'] == 1.0 and groups['lefthand']['AP'] < 1.0
  assert groups['wholebody'] == results['coco']['scores']  # one number for all keypoints
  printed = capsys.readouterr().out.splitlines()
  for name, scores in groups.items():
    assert coco_eval.format_scores(scores, name).splitlines()[1] in printed
  records = json.loads((tmp_path / 'coco_results.json').read_text())
  assert len(records[0]['keypoints']) == 3 * 133
