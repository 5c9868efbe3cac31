r"""Your own COCO-format keypoint data on a CPU: any keypoint set, a small
network, minutes of training (the sizes of lspet_sample.py).

Lay the data out as tfds_builders/coco_keypoints/README.md shows
(annotations/train.json, annotations/validation.json, images/), then:

  tfds build tfds_builders/coco_keypoints --config=custom --manual_dir=MY_DATA \
      --data_dir=MY_DATA/tfds
  python -m experiments.train --config=experiments/configs/own_data.py \
      --config.data_dir=MY_DATA/tfds --workdir=runs/own
  python -m experiments.evaluate --config=experiments/configs/own_data.py \
      --config.data_dir=MY_DATA/tfds --workdir=runs/own --checkpoint=latest

The keypoint names, flip pairs and body parts come from the build's metadata
(keypoint_set 'dataset'); start from another network with
--config.init_from=WORKDIR (heads carried by keypoint name).
"""
from experiments.configs import lspet_sample


def get_config():
  config = lspet_sample.get_config()  # the CPU-sized network and its recipe
  config.dataset = 'coco_keypoints/custom'
  config.keypoint_set = 'dataset'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.max_other_people = 8
  return config
