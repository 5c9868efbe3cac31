"""The TFDS feature schema shared by every pose dataset of this project.

MPII, LSP/LSPET and synthetic_pose emit the same features (only the number of
joints and the image shape differ), so one input pipeline serves them all.
Conventions (0-based pixel centres, joint status codes) are those of
docs/conventions.md.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

# Values of the features, for readers of the code:
#   image                  the stored picture: a person-centred crop (MPII,
#                          synthetic_pose) or the whole image (LSP).
#   keypoints              (J, 2) [x, y] of the active person in `image` pixels.
#   keypoint_status        (J,) 0 missing, 1 occluded, 2 visible.
#   other_keypoints        (P, J, 2) every other annotated person in the image,
#                          same frame; other_keypoint_status (P, J).
#   crop_to_image          (2, 3) affine: `image` pixels -> original image pixels
#                          (identity when `image` is the original).
#   objpos, scale          the person's rough centre (original pixels) and
#                          height / 200 px, MPII's definition.
#   head_box               (4,) x1 y1 x2 y2 in original pixels (zeros if unknown).
#   head_size              PCKh normaliser, 0.6 x head-box diagonal (0 if unknown).
#   original_size          (2,) height, width of the original image.
#   image_name, image_index, person_index, single_person: provenance.
# COCO-format datasets add (coco_features):
#   coco_image_id, coco_annotation_id, coco_category_id   the file's image,
#                          annotation and category ids.
#   <part box>             (4,) x, y, w, h of a part box the keypoint-set file
#                          names (COCO-WholeBody's face_box, lefthand_box,
#                          righthand_box); zeros where the person has none.
#   bbox, area             the person's box x, y, w, h and area (original pixels).
#   crowd_boxes, crowd_areas  (C, 4), (C,): the image's iscrowd regions.


def pose_features(num_keypoints: int, image_shape: tuple,
                  extra: Mapping[str, tfds.features.FeatureConnector] | None = None
                  ) -> tfds.features.FeaturesDict:
  """Feature dict for examples with `num_keypoints` joints and images of `image_shape`;
  `extra` adds a source's own features (e.g. coco_features()) to the shared ones."""
  shared = {
      'image': tfds.features.Image(shape=image_shape, encoding_format='jpeg'),
      'keypoints': tfds.features.Tensor(shape=(num_keypoints, 2), dtype=np.float32),
      'keypoint_status': tfds.features.Tensor(shape=(num_keypoints,), dtype=np.int32),
      'other_keypoints': tfds.features.Tensor(
          shape=(None, num_keypoints, 2), dtype=np.float32),
      'other_keypoint_status': tfds.features.Tensor(
          shape=(None, num_keypoints), dtype=np.int32),
      'crop_to_image': tfds.features.Tensor(shape=(2, 3), dtype=np.float32),
      'objpos': tfds.features.Tensor(shape=(2,), dtype=np.float32),
      'scale': tfds.features.Scalar(dtype=np.float32),
      'head_box': tfds.features.Tensor(shape=(4,), dtype=np.float32),
      'head_size': tfds.features.Scalar(dtype=np.float32),
      'original_size': tfds.features.Tensor(shape=(2,), dtype=np.int32),
      'image_name': tfds.features.Text(),
      'image_index': tfds.features.Scalar(dtype=np.int32),
      'person_index': tfds.features.Scalar(dtype=np.int32),
      'single_person': tfds.features.Scalar(dtype=np.bool_),
  }
  clash = sorted(set(shared) & set(extra or {}))
  if clash:
    raise ValueError(f'pose_features: extra features {clash} would replace shared ones')
  return tfds.features.FeaturesDict({**shared, **(extra or {})})


def coco_features(part_boxes: Sequence[str] = ()) -> dict[str, tfds.features.FeatureConnector]:
  """What a COCO-format source adds: its ids, the person's box and area, and
  the image's regions COCOeval ignores: its crowd regions and the boxes of
  its persons annotated without keypoints (not examples themselves); and
  the person's `part_boxes` (pose_features(..., extra=coco_features()))."""
  features = {
      'coco_image_id': tfds.features.Scalar(dtype=np.int64),
      'coco_annotation_id': tfds.features.Scalar(dtype=np.int64),
      'coco_category_id': tfds.features.Scalar(dtype=np.int64),
      'bbox': tfds.features.Tensor(shape=(4,), dtype=np.float32),
      'area': tfds.features.Scalar(dtype=np.float32),
      'crowd_boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
      'crowd_areas': tfds.features.Tensor(shape=(None,), dtype=np.float32),
      'unlabelled_boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
      'unlabelled_areas': tfds.features.Tensor(shape=(None,), dtype=np.float32),
  }
  clash = sorted(set(part_boxes) & set(features))
  if clash:
    raise ValueError(f'coco_features: part boxes {clash} would replace COCO features')
  return {**features,
          **{name: tfds.features.Tensor(shape=(4,), dtype=np.float32) for name in part_boxes}}
