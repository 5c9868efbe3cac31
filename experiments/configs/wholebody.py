r"""COCO-WholeBody's 133 keypoints (body, feet, face, hands), fine-tuned from a
COCO-17 run: the paper's network and COCO's recipe on the `wholebody` build.

  tfds build tfds_builders/coco_keypoints --config=wholebody --manual_dir=COCO_WB
  python -m experiments.train --config=experiments/configs/wholebody.py \
      --config.init_from=runs/coco --workdir=runs/wholebody
  python -m experiments.evaluate --config=experiments/configs/wholebody.py \
      --workdir=runs/wholebody

The COCO run (experiments/configs/coco.py) gives the trunk, the fusion layers
and the body's 17 keypoint and 19 part heads by name; the feet, face and
hands start fresh. `evaluate` reports COCO AP with the dataset's sigmas for
the body, foot, face, left and right hand and the whole body, as the
dataset's own evaluation computes them.

Faces and hands are small in a person crop: at 248 px a face spans about 6
heat-map cells and a hand about 5 (tfds_builders/coco_keypoints/README.md,
"Faces and hands"); --config.input_size=496 doubles that at four times the
cost.
"""
from experiments.configs import coco


def get_config():
  config = coco.get_config()  # the paper's network, COCO's crop and schedule
  config.dataset = 'coco_keypoints/wholebody'
  config.keypoint_set = 'dataset'  # the build's 133 keypoints, its sigmas and groups
  config.init_from = ''  # a COCO-17 run's workdir: --config.init_from=runs/coco
  config.init_from_checkpoint = 'best'
  return config
