"""Pose of every person a detector found (`predict --boxes`): top-down
prediction in the wild.

A detector's person boxes (a COCO results file, rhpe_jax.data.coco_results)
become `batch.PersonBox` items, each cropped as the MPII window of its box
(coco_annotations.box_center_scale) and run through batch.py's one loop, so
the per-box JSON Lines progress (OUT.jsonl) resumes after an interruption
as `predict --images` does. At the end the COCO keypoint results file OUT is
written whole from it (score = box score x mean heat-map peak).

Image ids: a COCO annotation file's `images` map file names to ids; without
one, the id is the number a COCO file name ends in (000000000785.jpg and
COCO_val2014_000000000785.jpg are image 785).
"""
from __future__ import annotations

import os
import pathlib
import re
import sys
from typing import Any, Sequence

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import coco_results
from rhpe_jax.data import image_inputs
from rhpe_jax.inference import batch

_TRAILING_NUMBER = re.compile(r'(\d+)$')
_NAMED = 10  # ids named in a warning line before "and N more"


def check_score_threshold(threshold: float) -> float:
  """A box score threshold: detectors' scores are in [0, 1]."""
  if not 0.0 <= threshold <= 1.0:
    raise ValueError(f'box_score_threshold must be in [0, 1], got {threshold}')
  return float(threshold)


def id_from_name(path: str) -> int | None:
  """The COCO image id in a file name: the number its stem ends in."""
  match = _TRAILING_NUMBER.search(pathlib.Path(path).stem)
  return int(match.group(1)) if match else None


def ids_from_annotations(path: str) -> dict[str, int]:
  """File name (its last component) -> image id, from a COCO annotation
  file's `images`; one-line ValueError when the file is not one."""
  data = coco_results.load_json(path, 'annotation file', dict)
  images = data.get('images')
  if not isinstance(images, list):
    raise ValueError(f'annotations {path}: a COCO annotation file is a JSON object with a '
                     'list "images"')
  ids: dict[str, int] = {}
  for number, image in enumerate(images):
    if (not isinstance(image, dict) or not isinstance(image.get('file_name'), str)
        or not isinstance(image.get('id'), int)):
      raise ValueError(f'annotations {path}: images[{number}] needs an integer id and a '
                       'file_name')
    ids[os.path.basename(image['file_name'])] = image['id']
  return ids


def image_files(paths: Sequence[str], annotations: str | None = None) -> dict[int, str]:
  """Image id -> file of the image files `paths`, by `annotations` or by
  name (module docstring); files without an id are left out."""
  names = ids_from_annotations(annotations) if annotations else None
  files: dict[int, str] = {}
  for path in paths:
    image_id = names.get(os.path.basename(path)) if names is not None else id_from_name(path)
    if image_id is None:
      continue
    if image_id in files:
      raise ValueError(f'two image files have image id {image_id}: {files[image_id]} and {path}')
    files[image_id] = path
  return files


def _named(ids: Sequence[int]) -> str:
  shown = ', '.join(str(i) for i in ids[:_NAMED])
  return shown + (f' and {len(ids) - _NAMED} more' if len(ids) > _NAMED else '')


def box_items(detections: dict[int, list[dict[str, Any]]], files: dict[int, str]
              ) -> tuple[list[batch.PersonBox], list[int]]:
  """The PersonBox items of every detected image that has a file (in the
  files' order, each image's boxes best first), and the detected ids that
  have none."""
  items = [batch.PersonBox.of(path, image_id, box['bbox'], box['score'])
           for image_id, path in files.items() for box in detections.get(image_id, ())]
  missing = sorted(set(detections) - set(files))
  return items, missing


def results(items: Sequence[batch.PersonBox], records: Sequence[dict],
            keypoint_set: keypoint_sets.KeypointSet) -> list[dict[str, Any]]:
  """The COCO keypoint results of `items` whose records are in (the output
  may hold boxes of an earlier run with another threshold: left out)."""
  by_key = {batch.record_key(r): r for r in records}
  out = []
  for item in items:
    record = by_key.get(item.key)
    if record is not None:
      if batch.keypoint_names_of(record) != list(keypoint_set.keypoint_names):
        raise ValueError(f'the progress file holds another keypoint set than '
                         f"{keypoint_set.name}, the config's: pass overwrite=True or another "
                         'output')
      out.append(coco_results.keypoint_result(item.image_id, record['keypoints'],
                                              record['confidence'], box_score=item.box_score))
  return out


def output_paths(output: str) -> tuple[pathlib.Path, pathlib.Path]:
  """The COCO results file (.json added without a suffix) and its per-box
  progress file beside it (the same name, .jsonl)."""
  out = pathlib.Path(output)
  if not out.suffix:
    out = out.with_suffix('.json')
  if out.suffix.lower() == '.jsonl':
    raise ValueError(f'output {output}: with boxes it is the COCO results file (.json); '
                     'the per-box progress goes beside it as .jsonl')
  return out, out.with_suffix('.jsonl')


def predict_boxes(config: Any, workdir: str, boxes: str, images: str, output: str, *,
                  annotations: str | None = None, box_score_threshold: float = 0.3,
                  pictures: str | None = None, batch_size: int = 8, overwrite: bool = False,
                  checkpoint: str = 'best') -> int:
  """`predict --boxes`: every person box of `boxes` scoring at least
  `box_score_threshold`, on the images of `images` (a folder or a glob),
  into the COCO results file `output`; prints what it does and returns the
  exit status (1 if an image failed, 130 when interrupted: the same call
  resumes)."""
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = checkpoints.config_of_workdir(workdir, config)
  threshold = check_score_threshold(box_score_threshold)
  out, progress = output_paths(output)
  detections = coco_results.read_detections(boxes, score_threshold=threshold)
  if not detections:
    raise ValueError(f'{boxes}: no person box scores at least {threshold}')
  listed, kind = image_inputs.list_images(images)
  if kind == 'list':
    raise ValueError(f'images {images}: with boxes, a folder or a glob of images (the '
                     'boxes give the persons)')
  files = image_files([i.path for i in listed], annotations)
  items, missing = box_items(detections, files)
  if not items:
    how = f'the file names of {annotations}' if annotations else 'the numbers their names end in'
    raise ValueError(f'images {images}: none of the {len(detections)} images with boxes in '
                     f'{boxes} is there (image ids from {how}: {_named(sorted(files))})')
  if missing:
    print(f'warning: {len(missing)} of the {len(detections)} images with boxes in {boxes} have '
          f'no image in {images}: ids {_named(missing)}', file=sys.stderr, flush=True)
  with_boxes = len({i.path for i in items})

  def write(summary: batch.Summary) -> None:  # pylint: disable=unused-argument
    found = results(items, batch.read_existing(progress), keypoint_sets.of_config(config))
    coco_results.write_results(str(out), found)
    print(f'wrote {out}: {len(found)} persons in COCO results format', flush=True)

  status, _ = batch.run_items(
      config, workdir, items, progress,
      f'{len(items)} persons in {with_boxes} images (boxes of {boxes} scoring >= {threshold})',
      pictures=pictures, batch_size=batch_size, overwrite=overwrite, checkpoint=checkpoint,
      unit='persons', finish=write)
  return status
