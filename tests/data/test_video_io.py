"""rhpe_jax.data.video_io: the shared clips read frame by frame with their
exact rates, frames written and read back at their own numbers, and each bad
input (a missing, empty, cut or non-video file, a corrupt frame)."""
from __future__ import annotations

import fractions
import os
import sys

import av
import numpy as np
import pytest

from rhpe_jax.data import video_io
from tests.conftest import SHARED_DATA

CLIPS = SHARED_DATA / 'video_sample'
BASKETBALL = CLIPS / 'basketball_300frames.mp4'
POSETRACK = CLIPS / 'posetrack18_000001.mp4'
NTSC = fractions.Fraction(30000, 1001)


def _need(path):
  if not path.is_file():
    pytest.skip(f'the shared clip is not at {path}')


def test_the_shared_clips_frame_by_frame():
  _need(BASKETBALL)
  with video_io.VideoReader(str(POSETRACK)) as reader:
    frames = list(reader.frames())
    assert (reader.width, reader.height, reader.rate) == (1280, 720, 30)
  assert [f.index for f in frames] == [0, 1, 2, 3, 4]
  assert frames[0].image.shape == (720, 1280, 3) and frames[0].image.dtype == np.uint8
  with video_io.VideoReader(str(BASKETBALL)) as reader:
    assert (reader.width, reader.height, reader.rate, reader.frame_count) == (426, 240, NTSC, 300)
    times = [(f.index, f.time) for f in reader.frames()]
  assert [i for i, _ in times] == list(range(300))
  np.testing.assert_allclose([t for _, t in times], np.arange(300) * 1001 / 30000, atol=1e-9)


def test_frames_written_at_their_numbers_read_back(tmp_path):
  """An odd frame size is padded to even (H.264's 4:2:0); a skipped frame
  number leaves a gap in time; the rate is kept exactly."""
  path = tmp_path / 'out.mp4'
  rng = np.random.default_rng(0)
  images = [np.full((41, 63, 3), 40 * k, np.uint8) for k in range(5)]
  images[0] = rng.integers(0, 255, (41, 63, 3), dtype=np.uint8)
  with video_io.VideoWriter(path, 63, 41, NTSC) as writer:
    for number, image in zip([0, 1, 2, 4, 5], images):
      writer.write(image, number)
  with av.open(str(path)) as container:  # PyAV itself as the reference reader
    stream = container.streams.video[0]
    assert (stream.width, stream.height, stream.average_rate) == (64, 42, NTSC)
    decoded = list(container.decode(stream))
  assert [round(float(f.time) * 30000 / 1001) for f in decoded] == [0, 1, 2, 4, 5]
  flat = decoded[3].to_ndarray(format='rgb24')[:41, :63].astype(int)
  assert np.abs(flat - 120).max() <= 3  # a flat grey survives the encoding
  with video_io.VideoReader(str(path)) as reader:
    assert [f.index for f in reader.frames()] == [0, 1, 2, 4, 5]


def test_bad_files_are_one_line_naming_them(tmp_path):
  _need(BASKETBALL)
  data = BASKETBALL.read_bytes()
  (tmp_path / 'empty.mp4').write_bytes(b'')
  (tmp_path / 'cut.mp4').write_bytes(data[:len(data) // 2])  # its index is at the end
  (tmp_path / 'notes.mp4').write_text('this is text, not a video\n')
  cases = [('missing.mp4', FileNotFoundError, 'no such video file'),
           ('empty.mp4', ValueError, 'an empty file'),
           ('cut.mp4', ValueError, 'not a readable video'),
           ('notes.mp4', ValueError, 'not a readable video')]
  for name, kind, message in cases:
    with pytest.raises(kind, match=message) as error:
      video_io.VideoReader(str(tmp_path / name))
    assert str(tmp_path / name) in str(error.value) and '\n' not in str(error.value)
  with pytest.raises(ValueError, match='^output .*out.gif: a video file'):
    video_io.output_path(str(tmp_path / 'out.gif'))
  assert video_io.output_path(str(tmp_path / 'out')).suffix == '.mp4'


def test_a_corrupt_frame_is_counted_and_skipped(tmp_path):
  _need(BASKETBALL)
  data = bytearray(BASKETBALL.read_bytes())
  data[60000:62000] = b'\x55' * 2000  # inside frame 28's packet
  (tmp_path / 'corrupt.mp4').write_bytes(bytes(data))
  with video_io.VideoReader(str(tmp_path / 'corrupt.mp4')) as reader:
    numbers = [f.index for f in reader.frames()]
    assert reader.failed == 1
  assert numbers == [n for n in range(300) if n != 28]


def test_a_webcam_that_is_not_there():
  if not sys.platform.startswith('linux') or os.path.exists('/dev/video0'):
    pytest.skip('a Linux machine without a webcam is what this checks')
  assert video_io.is_webcam('0') and not video_io.is_webcam('0.mp4')
  with pytest.raises((FileNotFoundError, ValueError), match='^source 0: '):
    video_io.VideoReader('0')
