"""experiments/predict.py and rhpe_jax.inference.single: a real MPII image in,
JSON and pictures out; bad input gives a one-line error and a non-zero exit
(as processes where the command line's reporting is what is checked)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SHARED_DATA, library_lines, tiny_config

MPII_NAMES = ['r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
              'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder',
              'l_elbow', 'l_wrist']


def _start(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, '-m', 'experiments.predict', *args], cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _config_flags(data_dir):
  return ['--config=experiments/configs/demo.py', '--config.width=0.0625',
          '--config.input_size=64', '--config.dataset=synthetic_pose/tiny_eval',
          f'--config.data_dir={data_dir}']


def test_predict_on_an_mpii_image_and_bad_input(tiny_data_dir, tiny_workdir, tmp_path):
  sample = SHARED_DATA / 'mpii_sample'
  if not (sample / 'annotations.json').is_file():
    pytest.skip(f'the real MPII sample is not at {sample}')
  record = json.loads((sample / 'annotations.json').read_text())[0]
  image_path = sample / 'images' / record['image']
  centre, scale = record['center'], record['scale']
  base = _config_flags(tiny_data_dir)
  (tmp_path / 'empty_run').mkdir()
  not_an_image = tmp_path / 'notes.jpg'
  not_an_image.write_text('this is text, not a JPEG\n')
  ok = _start(base + [f'--workdir={tiny_workdir}', f'--image={image_path}',
                      '--center', str(centre[0]), str(centre[1]), f'--scale={scale}',
                      f'--output={tmp_path / "person"}', '--heatmaps',
                      '--joints=r_wrist,l_ankle'])
  # Without --config: the workdir's config.json, written by its first save.
  bare = _start([f'--workdir={tiny_workdir}', f'--image={image_path}', '--center',
                 str(centre[0]), str(centre[1]), f'--scale={scale}', f'--output={tmp_path / "b"}'])
  no_checkpoint = _start(base + [f'--workdir={tmp_path / "empty_run"}',
                                 f'--image={image_path}', f'--output={tmp_path / "z"}'])
  usage = _start(base + [f'--image={image_path}', f'--output={tmp_path / "u"}'])
  # The library's errors (the command line prints each as its one line, as
  # it does no_checkpoint's), in-process.
  from rhpe_jax.inference import single  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  for expected, path in (('does not exist', tmp_path / 'missing.jpg'),
                         ('not a readable image', not_an_image)):
    with pytest.raises((ValueError, OSError), match=expected) as error:
      single.predict_image(config, str(tiny_workdir), str(tmp_path / 'x'), image_path=str(path))
    assert '\n' not in str(error.value)
  with pytest.raises(ValueError, match='unknown joints'):
    single.predict_image(config, str(tiny_workdir), str(tmp_path / 'x'),
                         image_path=str(image_path), joints=['l_tail'])
  assert not list(tmp_path.glob('x*'))
  for expected, process, status in (('no checkpoint', no_checkpoint, 1),
                                    ('--workdir is required', usage, 2)):
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == status, (expected, stderr)
    assert 'Traceback' not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and expected in errors[0], stderr
    assert stderr.strip().splitlines()[-1] == errors[0]
  stdout, stderr = ok.communicate(timeout=300)
  assert ok.returncode == 0, stderr[-3000:]
  assert 'Traceback' not in stderr
  assert not library_lines(stdout, stderr), stderr  # the project's lines only

  out = json.loads((tmp_path / 'person.json').read_text())
  assert out['keypoint_names'] == MPII_NAMES
  keypoints = np.array(out['keypoints'])
  confidence = np.array(out['confidence'])
  assert keypoints.shape == (16, 2) and confidence.shape == (16,)
  assert np.all(np.isfinite(keypoints)) and np.all(np.isfinite(confidence))
  # Every prediction lies in the person's window: side = 1.5 * 248/256 * 200 * scale
  # pixels around the centre (the release's crop), whatever the weights.
  side = 1.5 * 248 / 256 * 200 * scale
  assert out['window']['side'] == pytest.approx(side)
  assert np.all(np.abs(keypoints - np.array(centre)) <= side / 2)
  with Image.open(image_path) as original, Image.open(tmp_path / 'person.png') as drawn:
    assert drawn.size == original.size
    difference = np.abs(np.asarray(drawn, np.int32) - np.asarray(original.convert('RGB'),
                                                                 np.int32))
    assert difference.max() > 100  # a skeleton was drawn
  for name in ('person_stages.png', 'person_maps.png'):
    with Image.open(tmp_path / name) as picture:
      assert picture.format == 'PNG'
  with Image.open(tmp_path / 'person_stages.png') as stages:
    assert stages.size[1] < stages.size[0]  # 2 joint rows, 3 stage columns
  _, stderr = bare.communicate(timeout=300)
  assert bare.returncode == 0, stderr[-3000:]
  assert json.loads((tmp_path / 'b.json').read_text())['keypoints'] == out['keypoints']


def test_command_line_helpers(tmp_path):
  from experiments import predict
  from rhpe_jax.data import image_io
  assert predict.join_center_values(['p', '--center', '10', '20.5', '--scale=2']) == [
      'p', '--center=10,20.5', '--scale=2']
  with pytest.raises(FileNotFoundError, match='does not exist'):
    image_io.read_image(str(tmp_path / 'nothing.png'))
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'\x89PNG broken')
  with pytest.raises(ValueError, match='not a readable image'):
    image_io.read_image(str(bad))
  picture = np.zeros((5, 7, 3), np.uint8)
  picture[1, 2] = (10, 20, 30)
  Image.fromarray(picture).convert('L').save(tmp_path / 'grey.png')
  loaded = image_io.read_image(str(tmp_path / 'grey.png'))
  assert loaded.shape == (5, 7, 3)  # grey images come back as RGB


def test_single_image_keypoints_are_in_the_upright_frame(tiny_data_dir, tiny_workdir, tmp_path):
  """A photo stored sideways with EXIF orientation 6 (as phones store portrait
  photos) gives the upright photo's keypoints and an upright picture."""
  from rhpe_jax.inference import single
  from tests.inference.test_batch import LSPET_IMAGE, _stored
  if not LSPET_IMAGE.is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET_IMAGE.parent}')
  with Image.open(LSPET_IMAGE) as image:
    upright = np.asarray(image.convert('RGB'))
  Image.fromarray(upright).save(tmp_path / 'upright.png')
  sideways = Image.fromarray(_stored(upright, 6))
  exif = sideways.getexif()
  exif[0x0112] = 6
  sideways.save(tmp_path / 'sideways.png', exif=exif.tobytes())
  config = tiny_config(tiny_data_dir)
  want = single.predict_image(config, str(tiny_workdir), str(tmp_path / 'a'),
                              image_path=str(tmp_path / 'upright.png'))
  got = single.predict_image(config, str(tiny_workdir), str(tmp_path / 'b'),
                             image_path=str(tmp_path / 'sideways.png'))
  assert got['image_size'] == want['image_size'] == [upright.shape[1], upright.shape[0]]
  np.testing.assert_allclose(got['keypoints'], want['keypoints'], atol=1.0)
  with Image.open(tmp_path / 'a.png') as a, Image.open(tmp_path / 'b.png') as b:
    assert a.size == b.size
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_latest_falls_back_past_an_unreadable_checkpoint(tiny_data_dir, broken_newest_workdir,
                                                         tmp_path):
  """As a user sees it: --checkpoint=latest with step 2 unreadable predicts
  with step 1 after one `warning:` line. (A step asked for by number does not
  fall back: tests/test_checkpoints.py.)"""
  image = tmp_path / 'noise.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 60, 3), np.uint8)).save(image)
  fallback = _start(_config_flags(tiny_data_dir) + [
      f'--image={image}', f'--workdir={broken_newest_workdir}', '--checkpoint=latest',
      f'--output={tmp_path / "fallback"}'])
  stdout, stderr = fallback.communicate(timeout=300)
  assert fallback.returncode == 0, stderr[-3000:]
  lines = stderr.splitlines()
  assert len(lines) == 1, stderr
  latest = broken_newest_workdir / 'checkpoints' / 'latest'
  assert lines[0].startswith(f'warning: checkpoint step 2 cannot be read: {latest}/2/default/d/')
  aside = broken_newest_workdir / 'checkpoints' / 'unreadable' / 'latest_2'
  assert lines[0].endswith(f'(OUT_OF_RANGE); moved to {aside}; using step 1')
  assert stdout.startswith('wrote ')
  assert json.loads((tmp_path / 'fallback.json').read_text())['checkpoint_step'] == 1


def test_boxes_of_a_detector_on_the_coco_sample(tiny_data_dir, tiny_workdir, tmp_path):
  """`predict --boxes` as a user runs it: one COCO result per box above the
  threshold (counted from the detections file here), pictures, and bad input
  as one line: a bad threshold is a usage error (2), a missing detections
  file an expected failure (1)."""
  sample = SHARED_DATA / 'coco_sample'
  detections = sample / 'person_detections.json'
  if not detections.is_file():
    pytest.skip(f'the COCO sample is not at {sample}')
  base = _config_flags(tiny_data_dir) + [f'--workdir={tiny_workdir}',
                                         f'--images={sample / "images"}']
  ok = _start(base + [f'--boxes={detections}', '--box_score_threshold=0.5',
                      f'--annotations={sample / "person_keypoints.json"}',
                      f'--output={tmp_path / "keypoints"}', f'--pictures={tmp_path / "pics"}'])
  bad_threshold = _start(base + [f'--boxes={detections}', '--box_score_threshold=1.5',
                                 f'--output={tmp_path / "a"}'])
  no_file = _start(base + [f'--boxes={tmp_path / "none.json"}', f'--output={tmp_path / "b"}'])
  no_images = _start(_config_flags(tiny_data_dir) + [
      f'--workdir={tiny_workdir}', f'--boxes={detections}', f'--output={tmp_path / "c"}'])
  for expected, process, status in (('must be in [0, 1], got 1.5', bad_threshold, 2),
                                    ('none.json: no such detections file', no_file, 1),
                                    ('--boxes needs --images', no_images, 2)):
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == status, (expected, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:') and expected in lines[0], stderr
  stdout, stderr = ok.communicate(timeout=300)
  assert ok.returncode == 0, stderr[-3000:]
  assert 'Traceback' not in stderr and 'error:' not in stderr, stderr  # stderr: the progress bar
  kept = [d for d in json.loads(detections.read_text()) if d['score'] >= 0.5]
  results = json.loads((tmp_path / 'keypoints.json').read_text())
  assert len(results) == len(kept)
  assert sorted(r['image_id'] for r in results) == sorted(d['image_id'] for d in kept)
  assert f'wrote {tmp_path / "keypoints.json"}: {len(kept)} persons' in stdout
  assert len(os.listdir(tmp_path / 'pics')) == len({d['image_id'] for d in kept})


def _video_frames(path):
  """Frame count and rate of a video, by PyAV itself."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    return sum(1 for _ in container.decode(stream)), stream.average_rate


def test_video_with_two_detected_persons_and_bad_input(tiny_data_dir, tiny_workdir, tmp_path):
  """`predict --video` on the first 30 frames of the shared basketball clip
  with a detector's boxes of its two players in frame 0: OUT.mp4 at the
  clip's exact rate, one JSON line per frame, two tracks. Bad input: one
  `error:` line, exit 1 (a missing, empty, cut or text file) or 2 (usage)."""
  import fractions  # pylint: disable=g-import-not-at-top
  clip = SHARED_DATA / 'video_sample' / 'basketball_300frames.mp4'
  if not clip.is_file():
    pytest.skip(f'the shared clip is not at {clip}')
  players = [[75.0, 118.0, 60.0, 122.0], [220.0, 110.0, 50.0, 124.0]]  # read off frame 0
  detections = tmp_path / 'players.json'
  detections.write_text(json.dumps([{'image_id': 0, 'category_id': 1, 'bbox': b, 'score': s}
                                    for b, s in zip(players, (0.9, 0.8))]))
  data = clip.read_bytes()
  (tmp_path / 'empty.mp4').write_bytes(b'')
  (tmp_path / 'cut.mp4').write_bytes(data[:len(data) // 2])
  (tmp_path / 'notes.mp4').write_text('this is text, not a video\n')
  base = _config_flags(tiny_data_dir) + [f'--workdir={tiny_workdir}']
  ok = _start(base + [f'--video={clip}', f'--boxes={detections}', '--max_frames=30',
                      f'--output={tmp_path / "players.mp4"}'])
  failing = [(_start(base + [f'--video={tmp_path / name}', f'--output={tmp_path / "x.mp4"}']),
              1, expected) for name, expected in (
                  ('missing.mp4', 'missing.mp4: no such video file'),
                  ('empty.mp4', 'empty.mp4: an empty file'),
                  ('cut.mp4', 'cut.mp4: not a readable video'),
                  ('notes.mp4', 'notes.mp4: not a readable video'))]
  failing += [(_start(base + [f'--video={clip}', f'--output={tmp_path / "y.mp4"}'] + extra),
               2, expected) for extra, expected in (
                   (['--box=1,2,3,4', f'--boxes={detections}'], '--box and --boxes'),
                   (['--box=1,2,0,4'], 'positive width and height'),
                   (['--smooth_min_cutoff=0'], '--smooth_min_cutoff must be'))]
  for process, status, expected in failing:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == status, (expected, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:') and expected in lines[0], stderr
  assert not list(tmp_path.glob('[xy].*'))
  stdout, stderr = ok.communicate(timeout=300)
  assert ok.returncode == 0, stderr[-3000:]
  assert 'Traceback' not in stderr and 'error:' not in stderr, stderr  # stderr: the progress bar
  assert 'predicted 30 frames (2 persons followed)' in stdout and 'frames/s' in stdout
  assert _video_frames(tmp_path / 'players.mp4') == (30, fractions.Fraction(30000, 1001))
  records = [json.loads(line) for line in (tmp_path / 'players.jsonl').read_text().splitlines()]
  assert [r['frame'] for r in records] == list(range(30))
  assert [[p['track_id'] for p in r['persons']] for r in records] == [[0, 1]] * 30
  assert [p['box'] for p in records[0]['persons']] == players


def test_an_interrupted_video_run_plays_up_to_its_last_line(tiny_data_dir, tiny_workdir,
                                                            tmp_path):
  """SIGINT part-way through the 300-frame clip: exit 130, a video that
  decodes, and exactly one whole JSON line per frame it holds."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  clip = SHARED_DATA / 'video_sample' / 'basketball_300frames.mp4'
  if not clip.is_file():
    pytest.skip(f'the shared clip is not at {clip}')
  lines = tmp_path / 'run.jsonl'
  process = _start(_config_flags(tiny_data_dir) + [
      f'--workdir={tiny_workdir}', f'--video={clip}', f'--output={tmp_path / "run.mp4"}'])
  deadline = time.monotonic() + 240
  while (not lines.exists() or lines.read_text().count('\n') < 5) and process.poll() is None:
    assert time.monotonic() < deadline, 'no frames written'
    time.sleep(0.05)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 130, stderr[-3000:]
  assert 'interrupted' in stderr and 'Traceback' not in stderr, stderr
  text = lines.read_text()
  assert text.endswith('\n')
  frames = [json.loads(line)['frame'] for line in text.splitlines()]
  assert 5 <= len(frames) < 300 and frames == list(range(len(frames)))
  assert _video_frames(tmp_path / 'run.mp4')[0] == len(frames)
