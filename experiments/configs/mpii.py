"""The paper's MPII setting: 2 iterations, keypoints and body parts, include mode."""
from experiments.configs import default


def get_config():
  return default.get_config()
