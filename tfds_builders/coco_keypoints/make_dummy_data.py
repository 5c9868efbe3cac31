"""Writes dummy_data/: tiny made-up COCO-format files for the three configs.

coco2017: annotations/person_keypoints_{train,val}2017.json (17 COCO
keypoints) with train2017/ and val2017/; custom: annotations/train.json and
annotations/validation.json (5 made-up keypoints, no skeleton) with images/;
wholebody: annotations/coco_wholebody_val_v1.0.json (COCO-WholeBody's five
keypoint fields, scores for face and hands, part boxes) with val2017/.
Each file has a person without keypoints and a crowd region besides the
persons that become examples (coco2017: train 2, validation 1; custom: 2, 2;
wholebody: validation 2).
Run from the repository root:

  python tfds_builders/coco_keypoints/make_dummy_data.py
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent / 'dummy_data'

COCO_NAMES = [
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
    'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle']
CUSTOM_NAMES = ['head', 'left_hand', 'right_hand', 'left_foot', 'right_foot']


def _person(rng, ann_id, image_id, w, h, k, labelled=True):
  x, y = float(rng.uniform(0, w / 3)), float(rng.uniform(0, h / 3))
  bw, bh = float(rng.uniform(w / 4, w / 2)), float(rng.uniform(h / 4, h / 2))
  kp = []
  for _ in range(k):
    v = int(rng.integers(0, 3)) if labelled else 0
    kp += ([round(float(rng.uniform(x, x + bw)), 2), round(float(rng.uniform(y, y + bh)), 2), v]
           if v else [0, 0, 0])
  if labelled and not any(kp[2::3]):
    kp[2] = 2
  return {'id': ann_id, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
          'keypoints': kp, 'num_keypoints': sum(1 for v in kp[2::3] if v),
          'bbox': [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
          'area': round(bw * bh * 0.6, 2)}


def _wholebody_parts(rng, ann, valid):
  """COCO-WholeBody's fields (its data_format.md) added to a COCO person:
  feet (v 0/1/2), face and hands (scores in (0, 1]), their boxes; all zeros
  and `*_valid` false where not `valid`."""
  x, y, w, h = ann['bbox']
  for part, count in (('foot', 6), ('face', 68), ('lefthand', 21), ('righthand', 21)):
    box = [round(x + w / 4, 2), round(y + h / 4, 2), round(w / 4, 2), round(h / 4, 2)]
    kp = []
    for _ in range(count):
      v = int(rng.integers(0, 3)) if part == 'foot' else round(float(rng.uniform(0, 1)), 3)
      kp += ([round(float(rng.uniform(box[0], box[0] + box[2])), 2),
              round(float(rng.uniform(box[1], box[1] + box[3])), 2), v] if v else [0, 0, 0])
    ann[f'{part}_kpts'] = kp if valid else [0] * (3 * count)
    ann[f'{part}_valid'] = valid
    if part != 'foot':
      ann[f'{part}_box'] = box if valid else [0, 0, 0, 0]


def _write(rng, ann_path, image_dir, names, persons_per_image, first_id, wholebody=False):
  image_dir.mkdir(parents=True, exist_ok=True)
  images, annotations, ann_id = [], [], first_id
  for i, count in enumerate(persons_per_image):
    w, h = int(rng.integers(60, 120)), int(rng.integers(80, 140))
    image_id = first_id + i
    name = f'{image_id:012d}.jpg'
    smooth = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
    Image.fromarray(smooth).resize((w, h), Image.BILINEAR).save(image_dir / name)
    images.append({'id': image_id, 'file_name': name, 'width': w, 'height': h})
    for _ in range(count):
      annotations.append(_person(rng, ann_id, image_id, w, h, len(names)))
      ann_id += 1
    if i == 0:  # a person without keypoints and a crowd region
      annotations.append(_person(rng, ann_id, image_id, w, h, len(names), labelled=False))
      crowd = _person(rng, ann_id + 1, image_id, w, h, len(names), labelled=False)
      crowd['iscrowd'] = 1
      annotations.append(crowd)
      ann_id += 2
  if wholebody:  # the persons with body keypoints; the others' parts invalid (zeros)
    for ann in annotations:
      _wholebody_parts(rng, ann, valid=ann['num_keypoints'] > 0 and not ann['iscrowd'])
  category = {'id': 1, 'name': 'person', 'supercategory': 'person', 'keypoints': names}
  ann_path.parent.mkdir(parents=True, exist_ok=True)
  ann_path.write_text(json.dumps({'images': images, 'annotations': annotations,
                                  'categories': [category]}, indent=1))


def main() -> None:
  rng = np.random.default_rng(0)
  ann = OUT / 'annotations'
  _write(rng, ann / 'person_keypoints_train2017.json', OUT / 'train2017', COCO_NAMES,
         [1, 1], 100)
  _write(rng, ann / 'person_keypoints_val2017.json', OUT / 'val2017', COCO_NAMES, [1], 200)
  _write(rng, ann / 'train.json', OUT / 'images', CUSTOM_NAMES, [2], 300)
  _write(rng, ann / 'validation.json', OUT / 'images', CUSTOM_NAMES, [1, 1], 400)
  _write(rng, ann / 'coco_wholebody_val_v1.0.json', OUT / 'val2017', COCO_NAMES, [2], 500,
         wholebody=True)


if __name__ == '__main__':
  main()
