"""rhpe_jax.inference.video: a synthetic figure moving along a known path
(followed on its true keypoints: the window stays on it in every frame; and
through the whole pipeline), the shared clips in and out (frame count, exact
rate, one JSON line per frame), an interrupted run, a corrupt frame. The
network is the tiny untrained one of tests/conftest.py: these tests check the
video plumbing and the following, not the poses."""
from __future__ import annotations

import fractions
import json

import av
import numpy as np
import pytest

from rhpe_jax.data import synthetic
from rhpe_jax.inference import crop
from rhpe_jax.inference import tracking
from rhpe_jax.inference import video
from tests.conftest import SHARED_DATA, tiny_config

CLIPS = SHARED_DATA / 'video_sample'
NTSC = fractions.Fraction(30000, 1001)
WIDTH, HEIGHT, FRAMES, SPRITE = 240, 160, 24, 96


def figure_path() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """A synthetic figure (no distractors, no occluders), its mask, and where
  it stands in each frame: integer offsets (FRAMES, 2) along a known path
  (4 px right a frame, bobbing 15 px up and down) and its keypoints there."""
  example = synthetic.generate_example(5, SPRITE, options=synthetic.GeneratorOptions(
      max_distractors=0, max_occluders=0))
  t = np.arange(FRAMES)
  offsets = np.stack([10 + 4 * t, np.round(25 + 15 * np.sin(2 * np.pi * t / FRAMES))], -1)
  keypoints = example['keypoints'][None].astype(np.float64) + offsets[:, None, :]
  return example['image'], example['limb_mask'], offsets.astype(int), keypoints


def encode_clip(path) -> np.ndarray:
  """The figure's clip at 29.97 fps, written with PyAV itself; its keypoints."""
  sprite, mask, offsets, keypoints = figure_path()
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=NTSC)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, 'yuv420p'
    for x, y in offsets:
      image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
      image[y:y + SPRITE, x:x + SPRITE][mask] = sprite[mask]
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode(None):
      container.mux(packet)
  return keypoints


def inside(points: np.ndarray, box) -> bool:
  x, y, w, h = box
  return bool(np.all((points[:, 0] >= x) & (points[:, 0] <= x + w)
                     & (points[:, 1] >= y) & (points[:, 1] <= y + h)))


def test_the_window_follows_the_figure_along_its_known_path():
  """The follower fed the true keypoints of frame t (the perfect network)
  puts frame t+1's window over the whole figure, also through three frames
  whose pose collapsed (it waits on the last good box)."""
  *_, keypoints = figure_path()
  first = tracking.keypoint_box(keypoints[0], np.ones(16))
  follower = tracking.Follower([first])
  box_scale = tiny_config('unused').box_scale
  for t in range(FRAMES):
    (track,) = follower.crops()
    (cx, cy), side = crop.box_window(track.box, (HEIGHT, WIDTH, 3), box_scale)
    assert inside(keypoints[t], [cx - side / 2, cy - side / 2, side, side]), t
    assert inside(keypoints[t].mean(0, keepdims=True), track.box), t  # centred on it
    collapsed = 8 <= t < 11
    follower.observe(track, keypoints[t], np.zeros(16) if collapsed else np.ones(16))
    assert track.lost == (t - 7 if collapsed else 0)


@pytest.fixture(scope='module')
def variables(tiny_data_dir, tiny_workdir):
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  return config, checkpoints.restore_variables(config, str(tiny_workdir))[0]


def _read(path) -> tuple[int, fractions.Fraction, tuple[int, int]]:
  """Frame count, rate and size of a video, by PyAV itself."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    count = sum(1 for _ in container.decode(stream))
    return count, stream.average_rate, (stream.width, stream.height)


def _lines(path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_synthetic_clip_through_the_pipeline(variables, tmp_path):
  config, params = variables
  keypoints = encode_clip(tmp_path / 'figure.mp4')
  first = tracking.keypoint_box(keypoints[0], np.ones(16))
  summary = video.predict_video(config, params, 1, str(tmp_path / 'figure.mp4'),
                                tmp_path / 'out.mp4', box=first)
  assert (summary.frames, summary.failed, summary.tracks) == (FRAMES, 0, 1)
  assert _read(tmp_path / 'out.mp4') == (FRAMES, NTSC, (WIDTH, HEIGHT))
  records = _lines(tmp_path / 'out.jsonl')
  assert [r['frame'] for r in records] == list(range(FRAMES))
  np.testing.assert_allclose([r['time'] for r in records], np.arange(FRAMES) * 1001 / 30000,
                             atol=1e-6)
  assert records[0]['persons'][0]['box'] == pytest.approx(first, abs=0.01)
  for record in records:
    (person,) = record['persons']
    assert person['track_id'] == 0 and len(record['keypoint_names']) == 16
    assert np.shape(person['keypoints']) == np.shape(person['keypoints_smoothed']) == (16, 2)
    assert np.shape(person['confidence']) == (16,)
  assert records[0]['persons'][0]['keypoints'] == records[0]['persons'][0]['keypoints_smoothed']
  assert set(summary.stage_seconds) == set(video.STAGES)
  assert summary.frames_per_s > 0


@pytest.mark.parametrize('name, max_frames, count, rate, size', [
    ('posetrack18_000001.mp4', None, 5, fractions.Fraction(30), (1280, 720)),
    ('basketball_300frames.mp4', 30, 30, NTSC, (426, 240))])
def test_the_shared_clips_in_and_out(variables, tmp_path, name, max_frames, count, rate, size):
  if not (CLIPS / name).is_file():
    pytest.skip(f'the shared clip is not at {CLIPS / name}')
  config, params = variables
  summary = video.predict_video(config, params, 1, str(CLIPS / name), tmp_path / 'out',
                                max_frames=max_frames, smooth=video.Smoothing(on=False))
  assert summary.frames == count and summary.video.endswith('out.mp4')
  assert _read(tmp_path / 'out.mp4') == (count, rate, size)
  records = _lines(tmp_path / 'out.jsonl')
  assert [r['frame'] for r in records] == list(range(count))
  assert records[0]['persons'][0]['box'] is None  # the whole first frame
  assert 'keypoints_smoothed' not in records[0]['persons'][0]


def test_a_stopped_run_leaves_a_playable_video_and_whole_lines(variables, tmp_path):
  config, params = variables
  encode_clip(tmp_path / 'figure.mp4')
  written = []
  summary = video.predict_video(config, params, 1, str(tmp_path / 'figure.mp4'),
                                tmp_path / 'out.mp4',
                                stop=lambda: written.append(1) or len(written) >= 7)
  assert summary.interrupted and summary.frames == 7
  assert _read(tmp_path / 'out.mp4')[0] == 7
  assert [r['frame'] for r in _lines(tmp_path / 'out.jsonl')] == list(range(7))


def test_a_corrupt_frame_is_skipped_and_the_rest_go_on(variables, tmp_path):
  source = CLIPS / 'basketball_300frames.mp4'
  if not source.is_file():
    pytest.skip(f'the shared clip is not at {source}')
  data = bytearray(source.read_bytes())
  data[60000:62000] = b'\x55' * 2000  # inside frame 28's packet (tests/data/test_video_io.py)
  (tmp_path / 'corrupt.mp4').write_bytes(bytes(data))
  config, params = variables
  summary = video.predict_video(config, params, 1, str(tmp_path / 'corrupt.mp4'),
                                tmp_path / 'out.mp4', max_frames=32)
  assert (summary.frames, summary.failed) == (31, 1)
  assert [r['frame'] for r in _lines(tmp_path / 'out.jsonl')] == [
      n for n in range(32) if n != 28]
  assert _read(tmp_path / 'out.mp4')[0] == 31


def test_a_bad_source_fails_before_any_output(variables, tmp_path):
  config, params = variables
  (tmp_path / 'notes.mp4').write_text('this is text, not a video\n')
  with pytest.raises(ValueError, match='not a readable video'):
    video.predict_video(config, params, 1, str(tmp_path / 'notes.mp4'), tmp_path / 'out.mp4')
  assert not (tmp_path / 'out.mp4').exists()

