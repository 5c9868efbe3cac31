"""The Table I ablations of the paper, chosen with a config string.

  --config=experiments/configs/ablation.py:exclude        keypoints only, exclude occluded
  --config=experiments/configs/ablation.py:ignore         keypoints only, ignore occluded
  --config=experiments/configs/ablation.py:include        keypoints only, include occluded
  --config=experiments/configs/ablation.py:iter1          + 1 iteration
  --config=experiments/configs/ablation.py:iter2          + 2 iterations
  --config=experiments/configs/ablation.py:iter2_parts    + body parts (= mpii.py)
"""
from experiments.configs import default

# name -> (occlusion_mode, num_iterations, use_parts)
VARIANTS = {
    'exclude': ('exclude', 0, False),
    'ignore': ('ignore', 0, False),
    'include': ('include', 0, False),
    'iter1': ('include', 1, False),
    'iter2': ('include', 2, False),
    'iter2_parts': ('include', 2, True),
    'iter1_parts': ('include', 1, True),
}


def get_config(variant: str = 'include'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown ablation {variant!r}; expected one of {sorted(VARIANTS)}')
  config = default.get_config()
  config.occlusion_mode, config.num_iterations, config.use_parts = VARIANTS[variant]
  return config
