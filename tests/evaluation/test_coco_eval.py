"""rhpe_jax.evaluation.coco_eval against pycocotools run directly on the COCO
files of ../shared/data/coco_sample (COCO(json) + loadRes + COCOeval)."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings

import ml_collections
import numpy as np
import pytest

from rhpe_jax.core import keypoint_sets
from rhpe_jax.evaluation import coco_eval
from tests.conftest import SHARED_DATA

KEYPOINTS_JSON = SHARED_DATA / 'coco_sample' / 'person_keypoints.json'
needs_sample = pytest.mark.skipif(not KEYPOINTS_JSON.exists(),
                                  reason=f'{KEYPOINTS_JSON} (shared test data) is absent')


def _pycocotools(path, records, sigmas=None):
  """The reference: pycocotools on the file, default (COCO) sigmas unless given."""
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(str(path))
    dt = gt.loadRes(copy.deepcopy(records))
    ev = COCOeval(gt, dt, iouType='keypoints')
    if sigmas is not None:
      ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return list(ev.stats)


def _arrays(data):
  """The file's persons as the arrays a COCO-format split carries (every
  non-crowd annotation, labelled keypoints or not) and its crowd regions."""
  persons = [a for a in data['annotations'] if not a['iscrowd']]
  triples = np.array([a['keypoints'] for a in persons], np.float64).reshape(len(persons), -1, 3)
  crowd = {}
  for a in data['annotations']:
    if a['iscrowd']:
      boxes, areas = crowd.get(a['image_id'], (np.zeros((0, 4)), np.zeros(0)))
      crowd[a['image_id']] = (np.vstack([boxes, a['bbox']]), np.append(areas, a['area']))
  return {
      'coco_image_id': np.array([a['image_id'] for a in persons]),
      'coco_annotation_id': np.array([a['id'] for a in persons]),
      'gt_image': triples[..., :2], 'keypoint_status': triples[..., 2].astype(np.int32),
      'bbox': np.array([a['bbox'] for a in persons]),
      'area': np.array([a['area'] for a in persons]),
  }, crowd


def _ground_truth(data):
  arrays, crowd = _arrays(data)
  names = data['categories'][0]['keypoints']
  return coco_eval.ground_truth(
      arrays['coco_image_id'], arrays['coco_annotation_id'], arrays['gt_image'],
      arrays['keypoint_status'], arrays['bbox'], arrays['area'], keypoint_names=names,
      crowd=crowd), arrays


def _coco_config(**overrides):
  config = ml_collections.ConfigDict({'keypoint_set': 'coco', 'dataset_keypoint_set': None,
                                      'keypoint_sigmas': ()})
  config.update(overrides)
  return config


def _perturbed(arrays, rng):
  """Predictions of the labelled persons: some keypoints shifted by known
  pixels, one person dropped, a false positive, scores spread."""
  labelled = np.flatnonzero(np.any(arrays['keypoint_status'] > 0, axis=1))
  pred = arrays['gt_image'][labelled].copy()
  pred[0, :5] += [4.0, -3.0]       # head points 5 px off
  pred[1, 5:11] += [12.0, 0.0]     # arms 12 px off
  pred[2] += [30.0, 25.0]          # the whole person far off
  pred[3, 9] = [0.0, 0.0]          # one wrist at the image corner
  predictions = {'coco_image_id': arrays['coco_image_id'][labelled], 'pred_image': pred,
                 'confidence': rng.uniform(0.2, 1.0, pred.shape[:2])}
  keep = np.arange(len(labelled)) != 4  # person 4 not predicted
  predictions = {k: v[keep] for k, v in predictions.items()}
  ghost = predictions['pred_image'][:1] + [150.0, 40.0]  # nobody there
  predictions = {
      'coco_image_id': np.append(predictions['coco_image_id'], predictions['coco_image_id'][0]),
      'pred_image': np.concatenate([predictions['pred_image'], ghost]),
      'confidence': np.concatenate([predictions['confidence'], np.full((1, 17), 0.9)])}
  return predictions


@needs_sample
def test_ground_truth_as_predictions_scores_one():
  data = json.loads(KEYPOINTS_JSON.read_text())
  gt, arrays = _ground_truth(data)
  labelled = np.any(arrays['keypoint_status'] > 0, axis=1)
  predictions = {'coco_image_id': arrays['coco_image_id'][labelled],
                 'pred_image': arrays['gt_image'][labelled],
                 'confidence': np.ones((labelled.sum(), 17))}
  results = coco_eval.results_from_predictions(predictions)
  sigmas, _ = coco_eval.sigmas_of(_coco_config())
  scores = coco_eval.keypoint_ap(gt, results, sigmas)
  assert list(scores) == list(coco_eval.STAT_NAMES)
  assert scores == {name: 1.0 for name in coco_eval.STAT_NAMES}
  # The same records on the original file, pycocotools alone.
  assert _pycocotools(KEYPOINTS_JSON, results) == [1.0] * 10


@needs_sample
def test_perturbed_predictions_score_as_pycocotools_on_the_file():
  data = json.loads(KEYPOINTS_JSON.read_text())
  gt, arrays = _ground_truth(data)
  predictions = _perturbed(arrays, np.random.default_rng(0))
  results = coco_eval.results_from_predictions(predictions, box_scores=np.linspace(
      1.0, 0.5, len(predictions['pred_image'])))
  sigmas, _ = coco_eval.sigmas_of(_coco_config())
  ours = coco_eval.keypoint_ap(gt, results, sigmas)
  reference = _pycocotools(KEYPOINTS_JSON, results)  # pycocotools' own COCO sigmas
  np.testing.assert_allclose([ours[n] for n in coco_eval.STAT_NAMES], reference, rtol=0, atol=1e-12)
  assert 0.2 < ours['AP'] < 0.95 and ours['AR'] < 1.0  # the perturbation shows
  # Other sigmas (a keypoint set's own): still pycocotools' numbers.
  wide = np.full(17, 0.12)
  ours = coco_eval.keypoint_ap(gt, results, wide)
  np.testing.assert_allclose([ours[n] for n in coco_eval.STAT_NAMES],
                             _pycocotools(KEYPOINTS_JSON, results, wide), rtol=0, atol=1e-12)


@needs_sample
def test_crowd_regions_and_persons_without_keypoints_as_pycocotools(tmp_path):
  """A crowd region added to the file and the sample's num_keypoints-0
  persons: results on them are ignored by COCOeval, here as there."""
  data = json.loads(KEYPOINTS_JSON.read_text())
  data['annotations'].append({
      'id': 900000001, 'image_id': 40083, 'category_id': 1, 'iscrowd': 1,
      'bbox': [380.0, 20.0, 110.0, 150.0], 'area': 12000.0, 'num_keypoints': 0,
      'keypoints': [0] * 51, 'segmentation': {'counts': [0], 'size': [333, 500]}})
  path = tmp_path / 'with_crowd.json'
  path.write_text(json.dumps(data))
  gt, arrays = _ground_truth(data)
  assert [a['iscrowd'] for a in gt['annotations']].count(1) == 1
  assert sorted(a['num_keypoints'] for a in gt['annotations'])[:3] == [0, 0, 0]
  predictions = _perturbed(arrays, np.random.default_rng(1))
  base = coco_eval.results_from_predictions(predictions)
  extra = []
  # Inside the crowd region, twice (a crowd region takes any number), and on
  # the num_keypoints-0 person 1202706 of the same image (its box).
  for image_id, (x, y, w, h) in ((40083, (385, 25, 100, 140)), (40083, (390, 30, 90, 130)),
                                 (40083, (275.17, 126.5, 10.69, 68.26))):
    points = np.stack([np.linspace(x + 1, x + w - 1, 17), np.linspace(y + 1, y + h - 1, 17)], 1)
    extra.append({'image_id': image_id, 'category_id': 1, 'score': 0.95,
                  'keypoints': np.concatenate([points, np.ones((17, 1))], 1).ravel().tolist()})
  sigmas, _ = coco_eval.sigmas_of(_coco_config())
  ours = coco_eval.keypoint_ap(gt, base + extra, sigmas)
  reference = _pycocotools(path, base + extra)
  np.testing.assert_allclose([ours[n] for n in coco_eval.STAT_NAMES], reference, rtol=0, atol=1e-12)
  # pycocotools ignores them: the same numbers as without them.
  np.testing.assert_allclose(reference, _pycocotools(path, base), rtol=0, atol=1e-12)
  # Without the regions they would be false positives: the crowd matters.
  no_crowd = coco_eval.ground_truth(
      arrays['coco_image_id'], arrays['coco_annotation_id'], arrays['gt_image'],
      arrays['keypoint_status'], arrays['bbox'], arrays['area'],
      keypoint_names=keypoint_sets.COCO.keypoint_names)
  assert coco_eval.keypoint_ap(no_crowd, base + extra, sigmas)['AP'] < ours['AP']


def test_sigmas_rule():
  sigmas, rule = coco_eval.sigmas_of(_coco_config())
  assert sigmas == keypoint_sets.COCO.sigmas and 'coco' in rule
  crowdpose = keypoint_sets.KeypointSet(
      name='crowdpose', keypoint_names=('left_shoulder', 'right_shoulder', 'head', 'neck'),
      flip_pairs=((0, 1),), part_pairs=((0, 1), (2, 3)))
  sigmas, rule = coco_eval.sigmas_of(_coco_config(keypoint_set='dataset',
                                                  dataset_keypoint_set=crowdpose.to_dict()))
  assert sigmas == (0.079, 0.079, 0.079, 0.079) and 'by keypoint name' in rule
  lsp_named = crowdpose.to_dict() | {'keypoint_names': ['left_wrist', 'right_wrist', 'nose',
                                                         'neck']}
  sigmas, _ = coco_eval.sigmas_of(_coco_config(keypoint_set='dataset',
                                               dataset_keypoint_set=lsp_named))
  assert sigmas == (0.062, 0.062, 0.026, 0.079)
  given = tuple(np.linspace(0.03, 0.1, 17))
  assert coco_eval.sigmas_of(_coco_config(keypoint_sigmas=given)) == (
      given, 'config.keypoint_sigmas')
  with pytest.raises(ValueError, match='has 3 sigmas; the keypoint set .coco. has 17'):
    coco_eval.sigmas_of(_coco_config(keypoint_sigmas=(0.1, 0.1, 0.1)))


@needs_sample
def test_bad_results_get_one_line_naming_the_record(tmp_path):
  data = json.loads(KEYPOINTS_JSON.read_text())
  gt, _ = _ground_truth(data)
  good = {'image_id': 785, 'category_id': 1, 'keypoints': [1.0] * 51, 'score': 0.5}
  sigmas = keypoint_sets.COCO.sigmas
  cases = [
      ([], 'out.json: no results to score'),
      ([good, dict(good, keypoints=[1.0] * 42)],
       'out.json: record 1: 42 keypoint values; the ground truth has 17 keypoints'),
      ([dict(good, image_id=123)], 'out.json: record 0: image id 123 is not an image'),
      ([dict(good, score=float('nan'))], 'out.json: record 0: score must be a finite number'),
      ([{'image_id': 785}], 'out.json: record 0: a keypoint result needs'),
  ]
  for records, message in cases:
    with pytest.raises(ValueError) as error:
      coco_eval.keypoint_ap(gt, records, sigmas, source='out.json')
    assert str(error.value).startswith(message) and '\n' not in str(error.value)
  with pytest.raises(ValueError, match='17 OKS sigmas|3 OKS sigmas for 17'):
    coco_eval.keypoint_ap(gt, [good], (0.1, 0.1, 0.1))
  broken = tmp_path / 'broken.json'
  broken.write_text('[{"image_id": 785,')
  with pytest.raises(ValueError, match=r'broken.json: not a JSON file'):
    coco_eval.read_results(str(broken))
  broken.write_text('{"image_id": 785}')
  with pytest.raises(ValueError, match=r'broken.json: a COCO results file is a JSON list'):
    coco_eval.read_results(str(broken))
  with pytest.raises(ValueError, match=r'missing.json: no such annotation file'):
    coco_eval.load_ground_truth(str(tmp_path / 'missing.json'))
  # A results file read back is scored as the records were.
  path = tmp_path / 'ok.json'
  path.write_text(json.dumps([good]))
  assert coco_eval.read_results(str(path)) == [good]


# ---------------------------------------------------------------------------
# Keypoint files of other formats (tests/keypoint_formats.py), read by the
# project's reader, scored here and by the reference library on the file.

CROWDPOSE_JSON = SHARED_DATA / 'crowdpose_sample' / 'annotations.json'


def _file_ground_truth(keypoint_file):
  """coco_eval.ground_truth of a reader's KeypointFile: each person with a
  box and keypoints, its category; the crowd regions and unlabelled boxes."""
  from rhpe_jax.data import coco_annotations  # pylint: disable=g-import-not-at-top
  persons = [p for _, p in keypoint_file.examples()]
  images = {p.annotation_id: i.image_id for i, p in keypoint_file.examples()}
  crowd = {i.image_id: (np.array([c.bbox for c in i.crowd]), np.array([c.area for c in i.crowd]))
           for i in keypoint_file.images if i.crowd}
  unlabelled = {}
  for image in keypoint_file.images:
    boxes = [p for p in image.persons if p.has_box and not p.has_keypoints]
    if boxes:
      unlabelled[image.image_id] = (np.array([p.bbox for p in boxes]),
                                    np.array([p.area for p in boxes]))
  assert isinstance(keypoint_file, coco_annotations.KeypointFile)
  return coco_eval.ground_truth(
      [images[p.annotation_id] for p in persons], [p.annotation_id for p in persons],
      np.stack([p.keypoints for p in persons]), np.stack([p.status for p in persons]),
      np.stack([p.bbox for p in persons]), np.array([p.area for p in persons]),
      keypoint_names=keypoint_file.keypoint_set.keypoint_names, crowd=crowd, unlabelled=unlabelled,
      category_id=[p.category_id for p in persons])


@needs_sample
def test_wholebody_group_ap_is_xtcocotools_on_the_file(tmp_path):
  """A prediction with its left hand moved 3 px: per-group AP as
  COCO-WholeBody's authors compute it, equal to xtcocotools' COCOeval
  ('keypoints_<group>', the dataset's sigmas) run on the original file."""
  from rhpe_jax.data import coco_annotations  # pylint: disable=g-import-not-at-top
  from tests import keypoint_formats  # pylint: disable=g-import-not-at-top
  data = keypoint_formats.wholebody(json.loads(KEYPOINTS_JSON.read_text()))
  path = tmp_path / 'coco_wholebody_val_v1.0.json'
  path.write_text(json.dumps(data))
  read = coco_annotations.load(path, set_file=coco_annotations.built_in_set_file('coco_wholebody'))
  keypoint_set = read.keypoint_set
  results = keypoint_formats.wholebody_results(data, {'lefthand_kpts': (3.0, -2.0)})
  ours = coco_eval.group_scores(_file_ground_truth(read),
                                keypoint_formats.joined_results(results), keypoint_set.sigmas,
                                keypoint_set.groups)
  assert list(ours) == ['body', 'foot', 'face', 'lefthand', 'righthand', 'wholebody']
  # By hand: only the left hand moved.
  for name in ('body', 'foot', 'face', 'righthand'):
    assert ours[name]['AP'] == ours[name]['AR'] == pytest.approx(1.0)
  assert ours['lefthand']['AP'] < 0.9 and ours['wholebody']['AP'] < 1.0
  try:
    from xtcocotools.coco import COCO  # pylint: disable=g-import-not-at-top
    from xtcocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  except ImportError as error:  # no wheel for numpy 2 (see the builder's README)
    pytest.skip(f'xtcocotools, the reference, is not importable: {error}')
  with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)  # no per-part scores: it uses `score`
    gt = COCO(str(path))
    dt = gt.loadRes(copy.deepcopy(results))
    for name, start, end in keypoint_set.groups + ((coco_eval.WHOLE_GROUP, 0, 133),):
      kind = 'keypoints' if name == 'body' else f'keypoints_{name}'
      ev = COCOeval(gt, dt, kind, np.array(keypoint_set.sigmas[start:end]), use_area=True)
      ev.evaluate()
      ev.accumulate()
      ev.summarize()
      np.testing.assert_allclose([ours[name][n] for n in coco_eval.STAT_NAMES], ev.stats,
                                 rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.skipif(not CROWDPOSE_JSON.exists(), reason=f'{CROWDPOSE_JSON} is absent')
def test_two_species_are_scored_together_and_keep_their_categories():
  """AP-10K's way (class-agnostic): the file's two species are one set; the
  reference is pycocotools on the file with its categories made one."""
  from rhpe_jax.data import coco_annotations  # pylint: disable=g-import-not-at-top
  from tests import keypoint_formats  # pylint: disable=g-import-not-at-top
  data = keypoint_formats.two_species(json.loads(CROWDPOSE_JSON.read_text()))
  read = coco_annotations.parse(data, 'animals.json')
  assert read.category_ids == (1, 2) and read.keypoint_set.name == 'Bovidae'
  persons = [p for _, p in read.examples()]
  rng = np.random.default_rng(3)
  predictions = {'coco_image_id': np.array([i.image_id for i, _ in read.examples()]),
                 'coco_category_id': np.array([p.category_id for p in persons]),
                 'pred_image': np.stack([p.keypoints for p in persons]) + rng.normal(
                     0, 4, (len(persons), 17, 2)),
                 'confidence': rng.uniform(0.3, 1.0, (len(persons), 17))}
  results = coco_eval.results_from_predictions(predictions)
  assert [r['category_id'] for r in results] == [a['category_id'] for a in data['annotations']]
  gt = _file_ground_truth(read)
  assert sorted({a['category_id'] for a in gt['annotations']}) == [1, 2]
  sigmas = keypoint_sets.oks_sigmas(read.keypoint_set)
  ours = coco_eval.keypoint_ap(gt, results, sigmas)
  one = copy.deepcopy(data)
  one['categories'] = one['categories'][:1]
  for record in one['annotations']:
    record['category_id'] = 1
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top
  with contextlib.redirect_stdout(io.StringIO()):
    reference = COCO()
    reference.dataset = one
    reference.createIndex()
    dt = reference.loadRes([dict(r, category_id=1) for r in copy.deepcopy(results)])
    ev = COCOeval(reference, dt, iouType='keypoints')
    ev.params.kpt_oks_sigmas = np.array(sigmas)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  np.testing.assert_allclose([ours[n] for n in coco_eval.STAT_NAMES], ev.stats, rtol=0,
                             atol=1e-12)
  assert 0.1 < ours['AP'] < 1.0
