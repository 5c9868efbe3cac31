"""Video files and webcams in and out, frame by frame (PyAV).

PyAV (`av`) is FFmpeg's library bound to Python: its wheels bundle FFmpeg
(H.264 and every common container, no system install), it decodes and
encodes as a stream (a long video is never held whole: one frame at a time),
and it gives frame rates and time stamps as exact fractions (29.97 fps is
30000/1001, so the output keeps the input's rate and each frame's time).

Bad input is one line naming the file: a missing file (FileNotFoundError),
an empty file, a file that is not a video or one cut short before its index
(ValueError). A frame that fails to decode is counted (`VideoReader.failed`)
and skipped; the frames after it still come.
"""
from __future__ import annotations

import dataclasses
import fractions
import os
import pathlib
import sys
from typing import Any, Iterator

import numpy as np

# Output containers by file suffix; H.264 in each (yuv420p, what players expect).
CONTAINERS = {'.mp4': 'mp4', '.mov': 'mov', '.mkv': 'matroska'}
DEFAULT_RATE = fractions.Fraction(30)  # a webcam that does not say its rate


@dataclasses.dataclass(frozen=True)
class Frame:
  """A decoded frame: its number in the video (from its time stamp at the
  nominal rate, so that frames skipped before it keep the numbering), its
  time stamp in seconds from the first frame, and its RGB pixels (H, W, 3)."""
  index: int
  time: float
  image: np.ndarray


def is_webcam(source: str) -> bool:
  """`source` '0': a camera number rather than a file."""
  return source.isdigit()


def _webcam(source: str) -> tuple[str, str]:
  """The FFmpeg device and input format of camera number `source`."""
  if sys.platform.startswith('linux'):
    device = f'/dev/video{source}'
    if not os.path.exists(device):
      raise FileNotFoundError(f'source {source}: no webcam ({device} does not exist)')
    return device, 'v4l2'
  if sys.platform == 'darwin':
    return source, 'avfoundation'
  raise ValueError(f'source {source}: webcams are read on Linux (v4l2) and macOS '
                   '(avfoundation); give a video file')


class VideoReader:
  """The frames of a video file or a webcam, decoded one at a time.

  `rate` is the nominal frame rate (a Fraction), `frame_count` the number
  of frames the container announces (None when it does not: a webcam, some
  files), `failed` the frames that did not decode so far.
  """

  def __init__(self, source: str):
    import av  # pylint: disable=g-import-not-at-top
    self.source = str(source)
    try:
      if is_webcam(self.source):
        device, form = _webcam(self.source)
        self._container = av.open(device, format=form)
      else:
        path = pathlib.Path(self.source)
        if not path.is_file():
          raise FileNotFoundError(f'{self.source}: no such video file')
        if path.stat().st_size == 0:
          raise ValueError(f'{self.source}: an empty file, not a video')
        self._container = av.open(self.source)
    except av.error.FFmpegError as error:
      raise ValueError(f'{self.source}: not a readable video ({_reason(error)})') from None
    if not self._container.streams.video:
      self._container.close()
      raise ValueError(f'{self.source}: holds no video stream')
    self._stream = self._container.streams.video[0]
    self._stream.thread_type = 'AUTO'  # frame and slice threads in FFmpeg's decoder
    rate = self._stream.average_rate or self._stream.guessed_rate
    self.rate = fractions.Fraction(rate) if rate else DEFAULT_RATE
    self.width, self.height = int(self._stream.width), int(self._stream.height)
    if not self.width or not self.height:
      self.close()
      raise ValueError(f'{self.source}: a video stream without a frame size')
    self.frame_count = int(self._stream.frames) or None
    self.failed = 0

  def frames(self) -> Iterator[Frame]:
    """Every frame that decodes, in order; a packet that does not decode is
    counted in `failed` and the next one is read."""
    import av  # pylint: disable=g-import-not-at-top
    time_base = self._stream.time_base
    start, last = None, -1
    packets = self._container.demux(self._stream)
    while True:
      try:
        packet = next(packets)
      except StopIteration:
        return
      except av.error.FFmpegError:  # the demuxer cannot read on (cut short): the end
        self.failed += 1
        return
      try:
        decoded = packet.decode()  # an empty packet (the end) flushes the decoder
      except av.error.FFmpegError:
        self.failed += 1
        continue
      for frame in decoded:
        if frame.pts is None or time_base is None:
          index, seconds = last + 1, (last + 1) / float(self.rate)
        else:
          start = frame.pts if start is None else start
          seconds = float((frame.pts - start) * time_base)
          index = max(last + 1, round(seconds * self.rate))
        last = index
        yield Frame(index, seconds, frame.to_ndarray(format='rgb24'))

  def close(self) -> None:
    self._container.close()

  def __enter__(self) -> VideoReader:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def _reason(error: Exception) -> str:
  """FFmpeg's message without the errno and the file name it repeats."""
  text = getattr(error, 'strerror', None) or str(error)
  return ' '.join(str(text).split())


def output_path(output: str) -> pathlib.Path:
  """The video file of `output` (.mp4 added without a suffix); its
  container must be one of CONTAINERS."""
  out = pathlib.Path(output)
  if not out.suffix:
    out = out.with_suffix('.mp4')
  if out.suffix.lower() not in CONTAINERS:
    raise ValueError(f'output {output}: a video file ({", ".join(CONTAINERS)})')
  return out


class VideoWriter:
  """H.264 frames into a file at an exact rate. Each frame is placed at its
  own frame number (`write(image, index)`), so frames skipped in the input
  leave a gap in time rather than moving the rest earlier. `close` (also on
  an exception, as a context manager) flushes the encoder and writes the
  container's index: the file plays however the run ended."""

  def __init__(self, path: str | os.PathLike, width: int, height: int,
               rate: fractions.Fraction, *, crf: int = 20, preset: str = 'veryfast'):
    import av  # pylint: disable=g-import-not-at-top
    self.path = pathlib.Path(path)
    form = CONTAINERS.get(self.path.suffix.lower())
    if form is None:
      raise ValueError(f'{path}: a video file ({", ".join(CONTAINERS)})')
    # yuv420p halves the chroma: H.264 needs an even width and height.
    self.width, self.height = width + width % 2, height + height % 2
    self.rate = fractions.Fraction(rate)
    self._container = av.open(str(self.path), mode='w', format=form)
    self._stream = self._container.add_stream('libx264', rate=self.rate,
                                              options={'crf': str(crf), 'preset': preset})
    self._stream.width, self._stream.height = self.width, self.height
    self._stream.pix_fmt = 'yuv420p'
    self._stream.codec_context.time_base = 1 / self.rate
    self._last = -1
    self.written = 0
    self._closed = False

  def write(self, image: np.ndarray, index: int | None = None) -> None:
    """One RGB frame (H, W, 3) uint8 at frame number `index` (the next one
    by default; never before the last written)."""
    import av  # pylint: disable=g-import-not-at-top
    image = np.asarray(image, np.uint8)
    pad = ((0, self.height - image.shape[0]), (0, self.width - image.shape[1]), (0, 0))
    if any(p[1] for p in pad):
      image = np.pad(image, pad, mode='edge')
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format='rgb24')
    index = self._last + 1 if index is None else max(int(index), self._last + 1)
    frame.pts, frame.time_base = index, 1 / self.rate
    for packet in self._stream.encode(frame):
      self._container.mux(packet)
    self._last = index
    self.written += 1

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    try:
      for packet in self._stream.encode(None):
        self._container.mux(packet)
    finally:
      self._container.close()

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
