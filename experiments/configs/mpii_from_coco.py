r"""Fine-tuning on MPII from a network trained on COCO (paper Table I row 7,
Table II: "trained on MSCOCO and fine-tuned on MPII").

  python -m experiments.train --config=experiments/configs/mpii_from_coco.py \
      --config.init_from=runs/coco --workdir=runs/mpii_from_coco

The trunk and fusion layers come from the COCO run; the keypoint heads are
carried by name (COCO's 12 limb keypoints are MPII's ankles ... wrists) and
MPII's pelvis, thorax, upper neck and head top start fresh, as do the part
maps COCO's skeleton lacks (one line at the start says which).
"""
from experiments.configs import default


def get_config():
  config = default.get_config()
  config.init_from = ''  # the COCO run's workdir: --config.init_from=runs/coco
  config.init_from_checkpoint = 'best'
  # Fine-tuning: fewer epochs than from scratch (the release's last two
  # learning-rate stages).
  config.num_epochs = 10
  config.lr_boundaries_epochs = (5, 8)
  return config
