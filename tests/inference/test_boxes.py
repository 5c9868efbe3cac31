"""Every person a detector found (rhpe_jax.inference.boxes, `predict --boxes`):
the real COCO sample's detections on its four images with the tiny untrained
network. Counts, ids and windows are computed here from the detections file
itself; a box's keypoints are those of the one-image path on the window
computed by hand."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from rhpe_jax.inference import batch as batch_predict
from rhpe_jax.inference import boxes
from tests.conftest import SHARED_DATA
from tests.inference.test_batch import restored  # pylint: disable=unused-import  # the fixture

COCO_SAMPLE = SHARED_DATA / 'coco_sample'
DETECTIONS = COCO_SAMPLE / 'person_detections.json'
ANNOTATIONS = COCO_SAMPLE / 'person_keypoints.json'
THRESHOLD = 0.3


def _sample():
  if not DETECTIONS.is_file():
    pytest.skip(f'the COCO sample is not at {COCO_SAMPLE}')


def _expected_boxes(threshold: float = THRESHOLD) -> list[dict]:
  """The person boxes at or above `threshold`, in the order the results
  list them: by file name, then best score first."""
  names = {i['id']: i['file_name'] for i in json.loads(ANNOTATIONS.read_text())['images']}
  kept = [d for d in json.loads(DETECTIONS.read_text())
          if d.get('category_id', 1) == 1 and d['score'] >= threshold
          and d['bbox'][2] > 0 and d['bbox'][3] > 0]
  return sorted(kept, key=lambda d: (names[d['image_id']], -d['score']))


def _by_hand(bbox, box_scale: float) -> tuple[np.ndarray, float]:
  """The window of a box: its centre, and box_scale x its longer side
  (box_scale x 200 x scale, with scale = longer side / 200)."""
  x, y, w, h = bbox
  return np.array([x + w / 2, y + h / 2]), box_scale * max(w, h)


def test_every_box_of_the_coco_sample(restored, tiny_workdir, tmp_path):
  _sample()
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import image_io  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import single  # pylint: disable=g-import-not-at-top
  config, variables, _ = restored
  workdir = str(tiny_workdir)
  out = tmp_path / 'keypoints.json'
  status = boxes.predict_boxes(config, workdir, str(DETECTIONS), str(COCO_SAMPLE / 'images'),
                               str(out), annotations=str(ANNOTATIONS),
                               box_score_threshold=THRESHOLD, pictures=str(tmp_path / 'pics'),
                               batch_size=8)
  assert status == 0
  expected = _expected_boxes()
  results = json.loads(out.read_text())
  assert len(results) == len(expected) == 33
  assert [r['image_id'] for r in results] == [d['image_id'] for d in expected]
  progress = [json.loads(line) for line in (tmp_path / 'keypoints.jsonl').read_text().splitlines()]
  assert len(progress) == len(expected)
  for result, box, record in zip(results, expected, progress):
    assert result['category_id'] == 1
    triples = np.array(result['keypoints']).reshape(-1, 3)
    assert triples.shape == (16, 3) and np.all(triples[:, 2] == 1)
    centre, side = _by_hand(box['bbox'], config.box_scale)
    assert np.all(np.abs(triples[:, :2] - centre) <= side / 2 + 1e-3), box
    assert record['box']['bbox'] == box['bbox']
    assert result['score'] == pytest.approx(box['score'] * np.mean(record['confidence']))
  # COCO's own tools take the file.
  coco = COCO(str(ANNOTATIONS))
  loaded = coco.loadRes(str(out))
  assert len(loaded.getAnnIds()) == len(expected)
  # One picture per image, every person drawn on it.
  pictures = sorted(os.listdir(tmp_path / 'pics'))
  assert pictures == sorted(os.path.splitext(f)[0] + '.png'
                            for f in os.listdir(COCO_SAMPLE / 'images'))
  for name in pictures:
    with Image.open(tmp_path / 'pics' / name) as drawn, \
        Image.open(COCO_SAMPLE / 'images' / name.replace('.png', '.jpg')) as original:
      assert drawn.size == original.size
      difference = np.abs(np.asarray(drawn, np.int32) - np.asarray(original.convert('RGB'),
                                                                   np.int32))
      assert difference.max() > 100
  # A box's keypoints are those of the one-image path on its window.
  first = expected[0]
  image = image_io.read_image(str(COCO_SAMPLE / 'images' / '000000000785.jpg'))
  assert first['image_id'] == 785
  centre, side = _by_hand(first['bbox'], config.box_scale)
  single_result = single.infer(config, variables, image, centre, side)
  np.testing.assert_allclose(progress[0]['keypoints'], single_result['keypoints'], atol=0.02)
  np.testing.assert_allclose(progress[0]['confidence'], single_result['confidence'], atol=1e-3)


def test_interrupted_run_resumes(restored, tiny_workdir, tmp_path, monkeypatch, capsys):
  _sample()
  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  config, _, _ = restored
  workdir = str(tiny_workdir)
  real_predict_fn = predictor.predict_fn
  calls = []

  def interrupted_after_one_batch(cfg, **kwargs):
    step_fn = real_predict_fn(cfg, **kwargs)

    def run(variables, images):
      if calls:
        raise KeyboardInterrupt
      calls.append(len(images))
      return step_fn(variables, images)
    return run

  out = tmp_path / 'keypoints.json'
  args = (config, workdir, str(DETECTIONS), str(COCO_SAMPLE / 'images'), str(out))
  monkeypatch.setattr(predictor, 'predict_fn', interrupted_after_one_batch)
  assert boxes.predict_boxes(*args, batch_size=8) == 130
  monkeypatch.setattr(predictor, 'predict_fn', real_predict_fn)
  progress = tmp_path / 'keypoints.jsonl'
  first = progress.read_text().splitlines()
  assert len(first) == 8 and not out.exists()  # one batch kept; no results file yet
  assert boxes.predict_boxes(*args, batch_size=8) == 0
  lines = progress.read_text().splitlines()
  expected = _expected_boxes()
  assert lines[:8] == first and len(lines) == len(expected)  # nothing lost, nothing twice
  # Ids from the file names (no --annotations): the same results.
  results = json.loads(out.read_text())
  assert [r['image_id'] for r in results] == [d['image_id'] for d in expected]
  # A lower threshold on the same output predicts only the boxes it adds.
  lower = 0.2
  capsys.readouterr()
  assert boxes.predict_boxes(*args, box_score_threshold=lower, batch_size=8) == 0
  more = _expected_boxes(lower)
  assert f'predicted {len(more) - len(expected)} persons' in capsys.readouterr().out
  assert len(json.loads(out.read_text())) == len(more)


def test_bad_input_gives_one_line(restored, tiny_workdir, tmp_path, capsys):
  _sample()
  config, _, _ = restored
  workdir = str(tiny_workdir)
  images = str(COCO_SAMPLE / 'images')
  out = str(tmp_path / 'k.json')
  not_json = tmp_path / 'not.json'
  not_json.write_text('[{"image_id": 1,')
  (tmp_path / 'other').mkdir()
  Image.new('RGB', (20, 20)).save(tmp_path / 'other' / '000000000001.jpg')
  cases = [
      ((str(tmp_path / 'none.json'), images), {}, 'no such detections file'),
      ((str(not_json), images), {}, 'not a JSON file'),
      ((str(DETECTIONS), str(tmp_path / 'other')), {}, 'none of the 4 images with boxes'),
      ((str(DETECTIONS), images), {'box_score_threshold': 1.5}, r'must be in \[0, 1\]'),
      ((str(DETECTIONS), images), {'box_score_threshold': -0.1}, r'must be in \[0, 1\]'),
      ((str(DETECTIONS), images), {'annotations': str(not_json)}, 'not a JSON file'),
      ((str(DETECTIONS), images), {'annotations': str(DETECTIONS)}, 'a COCO annotation file'),
  ]
  for (detections, folder), kwargs, words in cases:
    with pytest.raises(ValueError, match=words) as error:
      boxes.predict_boxes(config, workdir, detections, folder, out, **kwargs)
    assert '\n' not in str(error.value), words
  with pytest.raises(ValueError, match='COCO results file'):
    boxes.predict_boxes(config, workdir, str(DETECTIONS), images, str(tmp_path / 'k.jsonl'))
  assert not (tmp_path / 'k.json').exists()

  # A corrupt image and two images missing: counted and named; the rest go on.
  folder = tmp_path / 'some'
  folder.mkdir()
  shutil.copy(COCO_SAMPLE / 'images' / '000000040083.jpg', folder)
  data = (COCO_SAMPLE / 'images' / '000000000785.jpg').read_bytes()
  (folder / '000000000785.jpg').write_bytes(data[:len(data) // 3])
  capsys.readouterr()
  status = boxes.predict_boxes(config, workdir, str(DETECTIONS), str(folder), out)
  captured = capsys.readouterr()
  assert status == 1
  err = [line.split('\r')[-1].strip() for line in captured.err.splitlines() if line.strip()]
  warnings = [line for line in err if line.startswith('warning:')]
  assert len(warnings) == 1 and '2 of the 4 images' in warnings[0]
  assert '196141' in warnings[0] and '197388' in warnings[0]
  assert any(line.startswith('skipped') and '000000000785.jpg' in line for line in err)
  assert err[-1].startswith('error: 1 of 2 images failed'), captured.err
  results = json.loads((tmp_path / 'k.json').read_text())
  wanted = [d for d in _expected_boxes() if d['image_id'] == 40083]
  assert len(results) == len(wanted) and {r['image_id'] for r in results} == {40083}


def test_image_ids_and_pictures_of_several_persons(tmp_path):
  assert boxes.id_from_name('a/000000000785.jpg') == 785
  assert boxes.id_from_name('COCO_val2014_000000040083.jpg') == 40083
  assert boxes.id_from_name('holiday.jpg') is None
  with pytest.raises(ValueError, match='two image files have image id 7'):
    boxes.image_files(['x/7.jpg', 'y/0007.png'])
  assert boxes.image_files(['x/7.jpg', 'x/a.jpg']) == {7: 'x/7.jpg'}
  box = batch_predict.PersonBox.of('p.jpg', 7, [10, 20, 30, 60], 0.9)
  assert box.center == (25.0, 50.0) and box.scale == pytest.approx(0.3)
  other = batch_predict.PersonBox.of('p.jpg', 7, [-5, 20, 60, 60], 0.8)  # same centre and side
  assert other.center == box.center and other.scale == box.scale and other.key != box.key
  # draw_people: each person in its own colour, boxes outlined.
  from rhpe_jax.core import keypoint_sets, visualize  # pylint: disable=g-import-not-at-top
  image = np.zeros((400, 400, 3), np.uint8)
  people = [np.full((16, 2), 100.0), np.full((16, 2), 300.0)]
  picture = visualize.draw_people(image, people, keypoint_sets.MPII, [None, [250, 250, 100, 100]])
  assert np.argmax(picture[100, 100]) == 0  # the first in red (a left joint: lighter)
  assert np.argmax(picture[300, 300]) == 2  # the second in blue
  assert tuple(picture[275, 250]) == visualize.PERSON_COLOURS[1]  # its box's left edge
  assert not picture[200, 200].any()
  with pytest.raises(ValueError, match='2 persons but 1 boxes'):
    visualize.draw_people(image, people, keypoint_sets.MPII, [None])
