r"""The paper's network on COCO 2017's 17 person keypoints (one example per
annotated person, cropped around its box; tfds_builders/coco_keypoints).

  tfds build tfds_builders/coco_keypoints --config=coco2017 --manual_dir=COCO
  python -m experiments.train --config=experiments/configs/coco.py --workdir=runs/coco
  python -m experiments.evaluate --config=experiments/configs/coco.py --workdir=runs/coco

`evaluate` reports COCO's keypoint AP (pycocotools, COCO's sigmas) with the
ground-truth boxes, or a detector's with --boxes; PCK@0.2 beside it. The
first half of the paper's best MPII system (Table I row 7): fine-tune the
result on MPII with experiments/configs/mpii_from_coco.py.
"""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'coco_keypoints/coco2017'
  config.keypoint_set = 'coco'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.box_scale = 1.25  # a COCO box is tight around the person: a quarter of margin
  config.max_other_people = 8
  # Training's periodic score: PCK@0.2 with the left shoulder to right hip
  # as torso (COCO has no head box); evaluate adds COCO's AP.
  config.eval_metric = 'pck'
  config.eval_pck_threshold = 0.2
  config.torso_definition = 'lsp_diagonal'
  config.num_eval_examples = 2000  # of 6352 validation persons, for the periodic score
  config.num_epochs = 20  # 149813 training persons: about 150k steps of 20
  config.lr_boundaries_epochs = (15, 18)
  return config
