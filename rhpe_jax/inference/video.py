"""Pose through a video or a webcam (`predict --video`): OUT.mp4 with the
skeletons drawn, OUT.jsonl with one line per frame.

Frames are decoded one at a time (rhpe_jax.data.video_io: PyAV, streaming, so
a long video is never held whole) by a thread that decodes a few frames
ahead of the network. Each person is followed (rhpe_jax.inference.tracking):
frame t+1's window comes from frame t's keypoints, so the frames of one
track cannot go through the network together; the persons of a frame do, as
one batch of the one top-down path (`PoseEstimator.predict_crops`,
rhpe_jax.inference.topdown: padded to a power of two up to batch_size, so a
run compiles the network once or a few times). Keypoints
are smoothed over time by a One-Euro filter per track
(rhpe_jax.inference.smoothing) with the frames' time stamps; each line keeps
the raw and the smoothed keypoints, the video shows the smoothed ones.

Frames that fail to decode are counted and skipped (no line, a gap in the
output's time line). A first SIGINT or SIGTERM stops after the frame in
flight: the video is closed properly (it plays) and the JSON Lines end with
that frame. The run's end line gives frames/s after the first frame
(compilation excluded) and the share of time in decoding, cropping, the
network, drawing and encoding.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import queue
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from rhpe_jax.core import progress
from rhpe_jax.data import video_io
from rhpe_jax.inference import crop as crop_lib
from rhpe_jax.inference import smoothing
from rhpe_jax.inference import tracking

STAGES = ('decode', 'crop', 'network', 'draw', 'encode')
LOOKAHEAD = 8  # frames decoded ahead of the network


@dataclasses.dataclass(frozen=True)
class Smoothing:
  """The One-Euro filter's parameters; `on=False` keeps the raw keypoints only."""
  on: bool = True
  min_cutoff: float = smoothing.MIN_CUTOFF
  beta: float = smoothing.BETA


@dataclasses.dataclass
class VideoSummary:
  frames: int  # frames predicted and written
  failed: int  # frames that did not decode
  tracks: int  # persons followed, over the whole video
  seconds: float
  frames_per_s: float | None  # after the first frame (compilation excluded)
  stage_seconds: dict[str, float]  # after the first frame, as frames_per_s
  video: str
  lines: str
  interrupted: bool = False

  def shares(self) -> dict[str, float]:
    """Each stage's share of the time spent in all of them (decoding runs in
    its own thread, beside the rest)."""
    total = sum(self.stage_seconds.values())
    return {k: (v / total if total else 0.0) for k, v in self.stage_seconds.items()}


def output_paths(output: str) -> tuple[pathlib.Path, pathlib.Path]:
  """The output video (.mp4 added without a suffix) and its JSON Lines beside it."""
  video = video_io.output_path(output)
  return video, video.with_suffix('.jsonl')


class _Decoded:
  """Frames of a reader decoded `lookahead` ahead in a thread, with the time
  spent decoding; `close` stops the thread before the reader is closed."""

  _END = object()

  def __init__(self, reader: video_io.VideoReader, max_frames: int | None, lookahead: int):
    self.reader, self.max_frames = reader, max_frames
    self.seconds = 0.0
    self._queue: queue.Queue = queue.Queue(maxsize=max(1, lookahead))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, name='video-decode', daemon=True)
    self._thread.start()

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self) -> None:
    try:
      frames = self.reader.frames()
      while not self._stop.is_set():
        started = time.perf_counter()
        frame = next(frames, None)
        self.seconds += time.perf_counter() - started
        if frame is None or (self.max_frames is not None and frame.index >= self.max_frames):
          break
        if not self._put(frame):
          return
    except Exception as error:  # pylint: disable=broad-except
      self._put(error)  # raised in the reading thread
      return
    self._put(self._END)

  def __iter__(self) -> Iterator[video_io.Frame]:
    while True:
      item = self._queue.get()
      if item is self._END:
        return
      if isinstance(item, Exception):
        raise item
      yield item

  def close(self) -> None:
    self._stop.set()
    self._thread.join()


def predict_video(config, variables, step_number: int, source: str, output: str | os.PathLike,
                  *, box: tracking.Box | None = None,
                  detections: dict[int, list[dict[str, Any]]] | None = None,
                  smooth: Smoothing = Smoothing(), max_frames: int | None = None,
                  batch_size: int = 8, follower: tracking.Follower | None = None,
                  stop: Callable[[], bool] = lambda: False, progress_stream=None
                  ) -> VideoSummary:
  """Predicts every frame of `source` (a file, or a camera number) with the
  network's `variables` of checkpoint step `step_number`, into the video
  `output` and its JSON Lines (output_paths); replaces both. The first
  frame's person is `box` (None: the whole frame), or the persons of
  `detections` (image id = 0-based frame index); `stop()` true ends the run
  after the frame in flight."""
  from rhpe_jax.core import visualize  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import topdown  # pylint: disable=g-import-not-at-top
  started = time.monotonic()
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  if max_frames is not None and max_frames < 1:
    raise ValueError(f'max_frames must be >= 1, got {max_frames}')
  if smooth.on:
    smoothing.check_parameters(smooth.min_cutoff, smooth.beta)
  video_path, lines_path = output_paths(str(output))
  if not video_path.parent.is_dir():
    raise FileNotFoundError(f'output directory {video_path.parent} does not exist')
  if follower is None:
    follower = tracking.Follower([] if detections is not None else [box])
  estimator = estimator_lib.PoseEstimator.from_variables(config, variables, step=step_number,
                                                         batch_size=batch_size)
  keypoint_set = estimator.keypoint_set
  keypoint_names = list(estimator.keypoint_names)
  filters: dict[int, smoothing.OneEuroFilter] = {}
  stages = dict.fromkeys(STAGES, 0.0)
  track_ids: set[int] = set()

  reader = video_io.VideoReader(source)
  total = reader.frame_count
  if max_frames is not None:
    total = min(total, max_frames) if total else max_frames
  bar = progress.Progress(total or None, unit='frames', stream=progress_stream)
  frames_in = _Decoded(reader, max_frames, LOOKAHEAD)
  writer = None
  written, interrupted, decoded_first = 0, False, 0.0
  try:
    writer = video_io.VideoWriter(video_path, reader.width, reader.height, reader.rate)
    with lines_path.open('w') as lines:
      for frame in frames_in:  # the bar starts after the first frame: TF's start-up lines

        tracks = follower.crops(_frame_boxes(detections, frame.index))
        clock = time.perf_counter()
        windows = [crop_lib.box_window(t.box, frame.image.shape, estimator.box_scale)
                   for t in tracks]
        crops, matrices = topdown.crop_windows(frame.image, windows, estimator.input_size)
        stages['crop'] += time.perf_counter() - clock
        persons = []
        if tracks:
          clock = time.perf_counter()
          all_keypoints, all_confidence = estimator.predict_crops(crops[0], matrices[0])
          stages['network'] += time.perf_counter() - clock
          for track, keypoints, confidence in zip(tracks, all_keypoints, all_confidence):
            person = {'track_id': track.track_id,
                      'box': None if track.box is None else [round(v, 2) for v in track.box],
                      'keypoints': np.round(keypoints, 3).tolist(),
                      'confidence': np.round(confidence, 5).tolist()}
            shown = keypoints
            if smooth.on:
              one_euro = filters.setdefault(track.track_id, smoothing.OneEuroFilter(
                  smooth.min_cutoff, smooth.beta))
              shown = one_euro(keypoints, frame.time)
              person['keypoints_smoothed'] = np.round(shown, 3).tolist()
            persons.append((person, shown, track.box))
            follower.observe(track, keypoints, confidence)
            track_ids.add(track.track_id)
        clock = time.perf_counter()
        picture = visualize.draw_people(frame.image, [p[1] for p in persons], keypoint_set,
                                        [p[2] for p in persons], min_side=0)
        stages['draw'] += time.perf_counter() - clock
        clock = time.perf_counter()
        writer.write(picture, frame.index)
        stages['encode'] += time.perf_counter() - clock
        lines.write(json.dumps({'frame': frame.index, 'time': round(frame.time, 6),
                                'persons': [p[0] for p in persons],
                                'keypoint_names': keypoint_names,
                                'checkpoint_step': step_number}) + '\n')
        lines.flush()
        written += 1
        bar.update(written, reader.failed)
        if written == 1:
          bar.start_rate()  # from here: the first frame paid for the compilation
          decoded_first = frames_in.seconds
          stages = dict.fromkeys(STAGES, 0.0)  # and for TensorFlow's and JAX's start
        if stop():
          interrupted = True
          break
  finally:
    frames_in.close()
    try:
      if writer is not None:
        clock = time.perf_counter()
        writer.close()
        stages['encode'] += time.perf_counter() - clock
    finally:
      reader.close()
      bar.close()
  stages['decode'] = frames_in.seconds - decoded_first
  return VideoSummary(written, reader.failed, len(track_ids), time.monotonic() - started,
                      bar.rate(), stages, str(video_path), str(lines_path), interrupted)


def _frame_boxes(detections: dict[int, list[dict[str, Any]]] | None, index: int
                 ) -> list[list[float]] | None:
  """The detected boxes of frame `index`, None when the detections do not
  name it (nothing to match, no track ends)."""
  if detections is None or index not in detections:
    return None
  return [d['bbox'] for d in detections[index]]


def run_video(config: Any, workdir: str, video: str, output: str, *,
              box: Sequence[str] | None = None, boxes: str | None = None,
              box_score_threshold: float = 0.3, smooth: Smoothing = Smoothing(),
              max_frames: int | None = None, batch_size: int = 8, overwrite: bool = False,
              checkpoint: str = 'best') -> int:
  """`predict --video`: checks the inputs, restores the checkpoint, predicts
  (predict_video), stops cleanly on SIGINT or SIGTERM, prints what it did;
  returns the exit status (0; 1 if frames failed to decode; 130 when
  interrupted, with a playable video up to the last frame written)."""
  import signal  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import coco_results  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import boxes as boxes_lib  # pylint: disable=g-import-not-at-top
  first_box = tracking.parse_box(box) if box is not None else None
  if smooth.on:
    smoothing.check_parameters(smooth.min_cutoff, smooth.beta)
  video_path, lines_path = output_paths(output)
  if not video_path.parent.is_dir():
    raise FileNotFoundError(f'output directory {video_path.parent} does not exist')
  existing = [str(p) for p in (video_path, lines_path) if p.exists()]
  if existing and not overwrite:
    raise ValueError(f'{" and ".join(existing)} exist: pass overwrite=True to replace them')
  detections = None
  if boxes is not None:
    threshold = boxes_lib.check_score_threshold(box_score_threshold)
    detections = coco_results.read_detections(boxes, score_threshold=threshold)
    if not detections:
      raise ValueError(f'{boxes}: no person box scores at least {threshold}')
  with video_io.VideoReader(video) as probe:  # bad input fails before the restore
    what = (f'{video}: {probe.width}x{probe.height} at {float(probe.rate):.3f} fps'
            + (f', {probe.frame_count} frames' if probe.frame_count else ''))
  config = checkpoints.config_of_workdir(workdir, config)
  checkpoints.find_checkpoint(workdir, checkpoint)
  variables, step = checkpoints.restore_variables(config, workdir, checkpoint)
  who = (f'the persons of {boxes}' if boxes else
         f'the person in box {first_box}' if first_box else 'one person (whole first frame)')
  print(f'{what}; following {who}; checkpoint step {step}; the first frame compiles',
        flush=True)

  requests = []

  def ask_to_stop(signum, frame):  # pylint: disable=unused-argument
    if requests:
      raise KeyboardInterrupt  # a second signal: stop at once (the video is still closed)
    requests.append(signum)
  previous = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    summary = predict_video(config, variables, step, video, output, box=first_box,
                            detections=detections, smooth=smooth, max_frames=max_frames,
                            batch_size=batch_size, stop=lambda: bool(requests))
  except KeyboardInterrupt:
    print(f'interrupted: {video_path} and {lines_path} hold the frames written so far',
          file=sys.stderr)
    return 130
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  rate = f', {summary.frames_per_s:.2f} frames/s' if summary.frames_per_s else ''
  shares = ', '.join(f'{name} {100 * share:.0f} %' for name, share in summary.shares().items())
  persons = f'{summary.tracks} person{"s" * (summary.tracks != 1)} followed'
  print(f'predicted {summary.frames} frames ({persons}) in '
        f'{summary.seconds:.1f} s{rate}; time in {shares}; wrote {summary.video} and '
        f'{summary.lines}', flush=True)
  if summary.interrupted:
    print(f'interrupted: {summary.video} and {summary.lines} hold the first '
          f'{summary.frames} frames', file=sys.stderr)
    return 130
  if summary.failed:
    print(f'error: {summary.failed} frames of {video} did not decode (skipped: not in the '
          'outputs)', file=sys.stderr)
    return 1
  return 0
