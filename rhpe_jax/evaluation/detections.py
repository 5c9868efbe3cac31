"""COCO keypoint AP with a person detector's boxes (top-down evaluation):
every detection box of an image of the split becomes a crop, the network's
keypoints in it become a COCO result scored box score x mean peak, and
COCOeval scores them against the split's ground truth. The detector's boxes
of every category the ground truth holds are used, each result in its box's
category (the species of a merged keypoint set, such as AP-10K's, score
apart as COCOeval does).

The persons are predicted as every prediction from boxes is
(rhpe_jax.inference.estimator.PoseEstimator: the window of `box_scale` x the
box's longer side around its centre), in the ORIGINAL images (a
COCO-format build stores person crops only), which are read from a folder
by each example's `image_name`, in their stored frame (COCO's coordinates
are those of the stored pixels, so no EXIF rotation).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import ml_collections
import numpy as np

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import coco_results
from rhpe_jax.data import datasets
from rhpe_jax.data import image_io
from rhpe_jax.data import input_pipeline
from rhpe_jax.evaluation import coco_eval
from rhpe_jax.inference import estimator as estimator_lib


def split_ground_truth(config: ml_collections.ConfigDict, split: str
                       ) -> tuple[dict[str, Any], dict[int, str]]:
  """The COCO ground truth of a split of a COCO-format build, read from its
  examples (keypoints through `crop_to_image` into original pixels, the
  regions COCOeval ignores), and the file name of each image id."""
  ds = input_pipeline.load_split(config.dataset, split, datasets.data_dir(config),
                                 shard_for_process=False)
  if 'coco_image_id' not in ds.element_spec:
    raise ValueError(f'{config.dataset} has no COCO image ids (coco_image_id): evaluating '
                     'with detection boxes needs a COCO-format build')
  keys = (('keypoints', 'keypoint_status', 'crop_to_image', 'image_name')
          + coco_eval.PERSON_FIELDS + input_pipeline.CROWD_KEYS)
  ds = ds.map(lambda ex: {k: ex[k] for k in keys if k in ex})
  rows: dict[str, list] = {k: [] for k in ('image_id', 'annotation_id', 'category_id',
                                           'keypoints', 'status', 'bbox', 'area')}
  regions: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {
      kind: {} for kind in input_pipeline.REGION_KINDS}
  names: dict[int, str] = {}
  for ex in ds.as_numpy_iterator():
    image_id = int(ex['coco_image_id'])
    affine = np.asarray(ex['crop_to_image'], np.float64)
    rows['image_id'].append(image_id)
    rows['annotation_id'].append(int(ex['coco_annotation_id']))
    # A build before categories were kept (1.0.0) holds persons only.
    rows['category_id'].append(int(ex.get('coco_category_id', coco_results.PERSON_CATEGORY_ID)))
    rows['keypoints'].append(ex['keypoints'] @ affine[:, :2].T + affine[:, 2])
    rows['status'].append(ex['keypoint_status'])
    rows['bbox'].append(ex['bbox'])
    rows['area'].append(float(ex['area']))
    name = ex['image_name']
    names[image_id] = name.decode() if isinstance(name, bytes) else str(name)
    for kind, found in regions.items():
      if f'{kind}_boxes' in ex and len(ex[f'{kind}_boxes']):
        found[image_id] = (ex[f'{kind}_boxes'], ex[f'{kind}_areas'])
  keypoint_set = keypoint_sets.of_config(config)
  if not rows['image_id']:
    raise ValueError(f'{config.dataset} {split}: no persons')
  ground_truth = coco_eval.ground_truth(
      rows['image_id'], rows['annotation_id'], np.stack(rows['keypoints']),
      np.stack(rows['status']), np.stack(rows['bbox']), np.array(rows['area']),
      keypoint_names=keypoint_set.keypoint_names, crowd=regions['crowd'],
      unlabelled=regions['unlabelled'], category_id=rows['category_id'])
  return ground_truth, names


def restrict_to_images(ground_truth: Mapping[str, Any], image_ids) -> dict[str, Any]:
  """A COCO dict cut to `image_ids` (each must be one of its images)."""
  wanted = set(int(i) for i in image_ids)
  images = [image for image in ground_truth['images'] if int(image['id']) in wanted]
  lacking = wanted - {int(image['id']) for image in images}
  if lacking:
    raise ValueError(f'the annotation file has no image {min(lacking)} of the split')
  return dict(ground_truth, images=images, annotations=[
      a for a in ground_truth['annotations'] if int(a['image_id']) in wanted])


def box_results(estimator: estimator_lib.PoseEstimator,
                boxes: Mapping[int, list[dict[str, Any]]], image_paths: Mapping[int, str]
                ) -> list[dict[str, Any]]:
  """COCO keypoint results of `estimator` in every box of `boxes` (image id
  -> [{'bbox', 'score', 'category_id'}], `coco_results.read_detections`) on the images of
  `image_paths` (image id -> file, read in their stored frame); boxes of
  other images are left out."""
  records: list[dict[str, Any]] = []
  for image_id in sorted(image_paths):
    if image_id not in boxes:
      continue
    image = image_io.read_image(image_paths[image_id], apply_orientation=False)
    poses = estimator.predict(image, [box['bbox'] for box in boxes[image_id]])
    for box, keypoints, scores in zip(boxes[image_id], poses.keypoints, poses.scores):
      records.append(coco_results.keypoint_result(image_id, keypoints, scores,
                                                  category_id=box['category_id'],
                                                  box_score=box['score']))
  return records


def evaluate_boxes(config: ml_collections.ConfigDict, variables: Mapping[str, Any], split: str,
                   boxes_path: str, image_dir: str, *, score_threshold: float = 0.0,
                   flip: bool = False, batch_size: int = 8, annotations: str | None = None
                   ) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, Any]]:
  """(COCO scores, results, counts) of the network in a detector's boxes
  (`boxes_path`, COCO results format, boxes scoring below `score_threshold`
  dropped) on the images of a split, against the split's ground truth: the
  one its examples give or, with `annotations`, that COCO file's on the
  split's images (its unlabelled persons too, as the official evaluation)."""
  ground_truth, names = split_ground_truth(config, split)
  if annotations:
    ground_truth = restrict_to_images(coco_eval.load_ground_truth(annotations), names)
  # The detector's boxes of the categories the ground truth scores (a
  # merged keypoint set's species, or persons).
  categories = {int(a['category_id']) for a in ground_truth['annotations']}
  boxes = coco_results.read_detections(boxes_path, score_threshold=score_threshold,
                                       category_ids=categories)
  paths = {}
  for image_id, name in names.items():
    path = os.path.join(image_dir, name)
    if image_id in boxes and not os.path.exists(path):
      raise FileNotFoundError(f'image {path} of COCO image {image_id} does not exist '
                              '(image_dir names the folder of the original images)')
    paths[image_id] = path
  used = {i: b for i, b in boxes.items() if i in names}
  if not used:
    raise ValueError(f'{boxes_path}: no box scoring at least {score_threshold} on an image of '
                     f'{config.dataset} {split}')
  estimator = estimator_lib.PoseEstimator.from_variables(config, variables, flip=flip,
                                                         batch_size=batch_size)
  results = box_results(estimator, used, paths)
  sigmas, _ = coco_eval.sigmas_of(config)
  scores = coco_eval.keypoint_ap(ground_truth, results, sigmas, source=boxes_path)
  counts = {'boxes_scored': int(sum(len(b) for b in used.values())), 'images': len(names),
            'images_with_boxes': len(used),
            'boxes_on_other_images': int(sum(len(b) for i, b in boxes.items()
                                             if i not in names))}
  return scores, results, counts
