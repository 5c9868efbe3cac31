"""Pose on many images in one run, into one JSON Lines file that can be resumed.

An item is an image, optionally with a person's window (a listed centre and
scale, or a detector's box: `PersonBox`); an image may have several items.
Images are read once for all their items (rhpe_jax.data.image_io: upright,
RGB), each item cut to the network's window (rhpe_jax.inference.crop) and
batched through the predictor's compiled function
(rhpe_jax.inference.predictor; the last batch is padded, so the step compiles
once); reading and cropping run in threads ahead of the network. Each result
is one line of the output, written and flushed batch by batch, so an
interrupted run loses at most the batch in flight; a run on an existing
output skips the items already in it (a torn last line is cut off and its
item predicted again). An image that cannot be read is reported by name and
skipped; the run goes on. With pictures, an image's picture (every person of
it, `visualize.draw_people`) is drawn when its last item is predicted.
Crops go through the network and back into image pixels as every prediction
does (`PoseEstimator.predict_crops`, rhpe_jax.inference.topdown).
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import re
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import person_crops
from rhpe_jax.data import image_io
from rhpe_jax.data import image_inputs
from rhpe_jax.inference import crop as crop_lib


@dataclasses.dataclass(frozen=True)
class PersonBox(image_inputs.ImageInput):
  """A detector's person box of an image, cropped as the MPII window of the
  box's centre and scale (person_crops.box_center_scale)."""
  image_id: int = 0
  bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # COCO's [x, y, w, h]
  box_score: float = 1.0

  @classmethod
  def of(cls, path: str, image_id: int, bbox: Sequence[float], box_score: float) -> PersonBox:
    center, scale = person_crops.box_center_scale(bbox)
    return cls(path, (float(center[0]), float(center[1])), float(scale), int(image_id),
               tuple(float(v) for v in bbox), float(box_score))

  @property
  def key(self) -> tuple:
    """Two boxes may share a centre and longer side: the box tells them apart."""
    return super().key + (self.bbox,)


@dataclasses.dataclass
class Prepared:
  """An input read and cropped, or the reason it could not be."""
  item: image_inputs.ImageInput
  crop: np.ndarray | None = None
  input_to_image: np.ndarray | None = None
  image_size: tuple[int, int] | None = None  # (width, height), upright
  window: tuple[tuple[float, float], float] | None = None
  image: np.ndarray | None = None  # kept only when pictures are drawn
  error: str | None = None


def by_image(items: Iterable[image_inputs.ImageInput]) -> list[list[image_inputs.ImageInput]]:
  """Consecutive items of one image, grouped: each group is read once."""
  groups: list[list[image_inputs.ImageInput]] = []
  for item in items:
    if groups and groups[-1][0].path == item.path:
      groups[-1].append(item)
    else:
      groups.append([item])
  return groups


def _one_line(error: Exception, path: str) -> str:
  message = ' '.join(str(error).split())
  return message if path in message else f'{path}: {message}'


def prepare_image(items: Sequence[image_inputs.ImageInput], box_scale: float, input_size: int,
                  keep_image: bool = False) -> list[Prepared]:
  """Every item of one image (all of `items` name it), read once and cropped."""
  path = items[0].path
  try:
    image = image_io.read_image(path)
  except (OSError, ValueError) as e:  # image_io's errors name the file
    return [Prepared(item, error=_one_line(e, path)) for item in items]
  size = (int(image.shape[1]), int(image.shape[0]))
  prepared = []
  for item in items:
    try:
      centre, side = crop_lib.window(image.shape, item.center, item.scale, box_scale)
      pixels, matrix = crop_lib.crop(image, centre, side, input_size)
    except ValueError as e:
      prepared.append(Prepared(item, error=_one_line(e, path)))
      continue
    prepared.append(Prepared(item, pixels, matrix, size, (centre, side),
                             image if keep_image else None))
  return prepared


def prepared_in_order(groups: Sequence[Sequence[image_inputs.ImageInput]], prepare_fn: Callable,
                      workers: int, lookahead: int) -> Iterator[Prepared]:
  """prepare_fn(group) for every group of items, in order, `lookahead` groups
  ahead in threads; yields each group's Prepared one by one."""
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    pending: collections.deque = collections.deque()
    queue = iter(groups)
    for group in queue:
      pending.append(pool.submit(prepare_fn, group))
      if len(pending) >= lookahead:
        break
    while pending:
      results = pending.popleft().result()
      following = next(queue, None)
      if following is not None:
        pending.append(pool.submit(prepare_fn, following))
      yield from results


def batches(prepared: Iterable[Prepared], batch_size: int
            ) -> Iterator[tuple[list[Prepared], list[Prepared]]]:
  """(readable, failed) groups: each readable group is one network batch."""
  ready, failed = [], []
  for p in prepared:
    (failed if p.error else ready).append(p)
    if len(ready) == batch_size:
      yield ready, failed
      ready, failed = [], []
  if ready or failed:
    yield ready, failed


# --------------------------------------------------------------------------
# The output file.

def record_key(record: dict) -> tuple:
  """The key (ImageInput.key, PersonBox.key) of the item a record holds."""
  person = record.get('person') or {}
  center = person.get('center')
  key = (record['image'], tuple(center) if center is not None else None, person.get('scale'))
  if 'box' in record:
    key += (tuple(record['box']['bbox']),)
  return key


def keypoint_names_of(record: dict) -> list[str] | None:
  """The keypoint names a record was written with ('joint_names' in files
  written before the keypoint set had one name)."""
  return record.get('keypoint_names', record.get('joint_names'))


def read_existing(path: pathlib.Path) -> list[dict]:
  """The complete records of an output file; a torn last line (no newline,
  or not JSON: the run was killed while writing it) is cut off the file."""
  if not path.exists():
    return []
  data = path.read_bytes()
  records, end = [], 0
  lines = data.split(b'\n')
  for number, line in enumerate(lines[:-1], 1):  # the last piece has no newline
    try:
      record = json.loads(line)
      record_key(record)
    except (ValueError, KeyError, TypeError, AttributeError):
      if number == len(lines) - 1 and not lines[-1]:
        break  # the last line: torn
      raise ValueError(f'{path} line {number} is not a prediction record; '
                       'is it the output of another program? (overwrite=True replaces it)'
                       ) from None
    records.append(record)
    end += len(line) + 1
  if end < len(data):
    with path.open('r+b') as f:
      f.truncate(end)
  return records


def picture_names(items: Sequence[image_inputs.ImageInput]) -> dict[str, str]:
  """A PNG name per image path, from its path under the inputs' common folder
  ('a/b.jpg' -> 'a__b.png'; numbered where two paths give one name)."""
  paths = list(dict.fromkeys(i.path for i in items))
  if not paths:
    return {}
  absolute = [os.path.abspath(p) for p in paths]
  root = os.path.commonpath([os.path.dirname(p) for p in absolute])
  names, seen = {}, collections.Counter()
  for path, full in zip(paths, absolute):
    stem = os.path.splitext(os.path.relpath(full, root))[0]
    stem = re.sub(r'[^\w.-]+', '_', stem.replace(os.sep, '__'))
    seen[stem] += 1
    names[path] = stem + (f'_{seen[stem]}' if seen[stem] > 1 else '') + '.png'
  return names


def _person(record: dict) -> tuple[np.ndarray, list[float] | None]:
  """What a picture draws of a record: its keypoints and its box, if any."""
  return np.asarray(record['keypoints'], np.float64), (record.get('box') or {}).get('bbox')


def draw_picture(path: pathlib.Path, image: np.ndarray, records: Sequence[dict],
                 keypoint_set: keypoint_sets.KeypointSet) -> None:
  """The picture of one image: every person its records hold."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import visualize  # pylint: disable=g-import-not-at-top
  people, boxes = zip(*[_person(r) for r in records]) if records else ((), ())
  Image.fromarray(visualize.draw_people(image, people, keypoint_set, boxes)).save(path)


@dataclasses.dataclass
class Summary:
  total: int
  predicted: int
  skipped_done: int
  failed: list[str]
  output: str
  seconds: float
  images_per_s: float | None  # after the first batch (compilation excluded)


def predict_images(config, variables, step_number: int, items: Sequence[image_inputs.ImageInput],
                   output: str | os.PathLike, *, batch_size: int = 8,
                   pictures: str | os.PathLike | None = None, overwrite: bool = False,
                   workers: int = 2, progress_stream=None,
                   report: Callable[[str], None] | None = None) -> Summary:
  """Predicts every item not already in `output`, appending one JSON line each,
  with the network's `variables` ({'params', 'batch_stats'}) of checkpoint
  step `step_number`."""
  from rhpe_jax.core import progress  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  started = time.monotonic()
  output = pathlib.Path(output)
  if not output.parent.is_dir():
    raise FileNotFoundError(f'output directory {output.parent} does not exist')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  picture_dir = pathlib.Path(pictures) if pictures else None
  if picture_dir is not None:
    picture_dir.mkdir(parents=True, exist_ok=True)
  if overwrite and output.exists():
    output.unlink()
  existing = read_existing(output)
  steps = {r.get('checkpoint_step') for r in existing}
  if existing and steps != {step_number}:
    raise ValueError(f'{output} holds predictions of checkpoint step {sorted(steps, key=str)}, '
                     f'this run uses step {step_number}: pass overwrite=True or another output')
  unique = list(dict.fromkeys(items))
  done = {record_key(r) for r in existing}
  todo = [i for i in unique if i.key not in done]
  skipped_done = len(unique) - len(todo)
  names = picture_names(unique) if picture_dir is not None else {}
  # Each image's records, to draw its picture once the last of its items is in.
  wanted = {i.key for i in unique}
  expected = collections.Counter(i.path for i in unique)
  drawn: dict[str, list[dict]] = collections.defaultdict(list)
  for r in existing:
    if record_key(r) in wanted:
      drawn[r['image']].append(r)
  estimator = estimator_lib.PoseEstimator.from_variables(config, variables, step=step_number,
                                                         batch_size=batch_size)
  keypoint_set = estimator.keypoint_set
  keypoint_names = list(estimator.keypoint_names)
  size = estimator.input_size
  bar = progress.Progress(len(todo), stream=progress_stream)
  note = report or bar.note
  failed: list[str] = []
  predicted = 0
  prepare_fn = functools.partial(prepare_image, box_scale=config.box_scale, input_size=size,
                                 keep_image=picture_dir is not None)
  stream = prepared_in_order(by_image(todo), prepare_fn, workers, lookahead=2 * batch_size)
  rate_started = False
  bar.update(0, force=True)
  with output.open('a') as out, _closing(bar):
    for group, bad in batches(stream, batch_size):
      for p in bad:
        failed.append(p.item.path)
        note(f'skipped {p.error}')
      if group:
        all_keypoints, all_scores = estimator.predict_crops(
            np.stack([p.crop for p in group]), np.stack([p.input_to_image for p in group]))
        for p, keypoints, scores in zip(group, all_keypoints, all_scores):
          record = {
              'image': p.item.path,
              'image_size': list(p.image_size),
              'keypoints': np.round(keypoints, 3).tolist(),
              'confidence': np.round(scores, 5).tolist(),
              'keypoint_names': keypoint_names,
              'window': {'center': [float(c) for c in p.window[0]], 'side': float(p.window[1])},
              'checkpoint_step': step_number,
          }
          if p.item.center is not None:
            record['person'] = {'center': list(p.item.center), 'scale': p.item.scale}
          if isinstance(p.item, PersonBox):
            record['box'] = {'image_id': p.item.image_id, 'bbox': list(p.item.bbox),
                             'score': p.item.box_score}
          if picture_dir is not None:
            picture = picture_dir / names[p.item.path]
            record['picture'] = str(picture)
            drawn[p.item.path].append(record)
            if len(drawn[p.item.path]) == expected[p.item.path]:
              draw_picture(picture, p.image, drawn.pop(p.item.path), keypoint_set)
          out.write(json.dumps(record) + '\n')
        out.flush()
        os.fsync(out.fileno())
        predicted += len(group)
      bar.update(predicted + len(failed), len(failed))
      if not rate_started and predicted:
        bar.start_rate()  # from here: the first batch paid for the compilation
        rate_started = True
  return Summary(len(unique), predicted, skipped_done, failed, str(output),
                 time.monotonic() - started, bar.rate())


@contextlib.contextmanager
def _closing(bar):
  """Ends the progress line however the run ends (Ctrl-C included)."""
  try:
    yield bar
  finally:
    bar.close()


def predict_folder(config: Any, workdir: str, images: str, output: str, *,
                   pictures: str | None = None, batch_size: int = 8, overwrite: bool = False,
                   checkpoint: str = 'best') -> int:
  """`predict --images`: every image `images` names (a folder, a glob or a list
  file) into the JSON Lines file `output` (.jsonl added without a suffix),
  with a checkpoint of `workdir` (`config` None: the one the run wrote);
  prints what it does and returns the exit status: 1 if any image failed,
  130 when interrupted (SIGINT or SIGTERM; the same call resumes)."""
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = checkpoints.config_of_workdir(workdir, config)
  items, kind = image_inputs.list_images(images)
  out = pathlib.Path(output)
  if not out.suffix:
    out = out.with_suffix('.jsonl')
  status, _ = run_items(config, workdir, items, out, f'{len(items)} images ({kind} {images})',
                        pictures=pictures, batch_size=batch_size, overwrite=overwrite,
                        checkpoint=checkpoint, unit='images')
  return status


def run_items(config, workdir: str, items: Sequence[image_inputs.ImageInput],
              out: pathlib.Path, what: str, *, pictures: str | None, batch_size: int,
              overwrite: bool, checkpoint: str, unit: str,
              finish: Callable[[Summary], None] | None = None) -> tuple[int, Summary | None]:
  """What a command line does around `predict_images`: restores the
  checkpoint, says what it predicts (`what`), stops cleanly on SIGINT or
  SIGTERM, reports the run (`finish(summary)` first, e.g. to write another
  file from the output); returns the exit status (0, 1 if an image failed,
  130 when interrupted) and the summary (None when interrupted)."""
  import signal  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  checkpoints.find_checkpoint(workdir, checkpoint)
  if not out.parent.is_dir():
    raise FileNotFoundError(f'output directory {out.parent} does not exist')
  variables, step = checkpoints.restore_variables(config, workdir, checkpoint)
  print(f'{what}, checkpoint step {step}, batches of {batch_size}', flush=True)

  def stop(signum, frame):  # pylint: disable=unused-argument
    raise KeyboardInterrupt
  previous = signal.signal(signal.SIGTERM, stop)
  try:
    summary = predict_images(config, variables, step, items, out, batch_size=batch_size,
                             pictures=pictures, overwrite=overwrite)
  except KeyboardInterrupt:
    kept = len(read_existing(out))
    print(f'interrupted: {out} keeps {kept} results; the same command resumes', file=sys.stderr)
    return 130, None
  finally:
    signal.signal(signal.SIGTERM, previous)
  rate = f', {summary.images_per_s:.2f} {unit}/s' if summary.images_per_s else ''
  print(f'predicted {summary.predicted} {unit} in {summary.seconds:.1f} s{rate}'
        + (f'; {summary.skipped_done} already in {out}' if summary.skipped_done else '')
        + f'; wrote {out}', flush=True)
  if finish is not None:
    finish(summary)
  if summary.failed:
    failed = set(summary.failed)
    images = len({i.path for i in items})
    print(f'error: {len(failed)} of {images} images failed (reported above as "skipped"); '
          'they are not in the output', file=sys.stderr)
    return 1, summary
  return 0, summary
