"""Pictures: skeletons on images, heat maps over images (the paper's figures)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from rhpe_jax import skeleton as skeleton_lib


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray | None,
                  joints: skeleton_lib.Skeleton, color=(230, 30, 30),
                  radius: float | None = None) -> np.ndarray:
  """`image` (H, W, 3) uint8 with the limbs (part pairs) and joints drawn.

  Joints where `mask` is False (unannotated) are left out; left limbs are
  drawn lighter than right ones so that a swap is visible.
  """
  picture = Image.fromarray(np.asarray(image, np.uint8))
  draw = ImageDraw.Draw(picture)
  size = max(picture.size)
  radius = radius or max(1.5, size / 120)
  shown = np.ones(len(keypoints), bool) if mask is None else np.asarray(mask, bool)
  light = tuple(int(c + (255 - c) * 0.55) for c in color)
  for a, b in joints.part_pairs:
    if shown[a] and shown[b]:
      left = joints.joint_names[a].startswith('l_') or joints.joint_names[b].startswith('l_')
      draw.line([tuple(keypoints[a]), tuple(keypoints[b])], fill=light if left else color,
                width=max(1, int(radius * 0.8)))
  for j, (x, y) in enumerate(keypoints):
    if shown[j]:
      fill = light if joints.joint_names[j].startswith('l_') else color
      draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill,
                   outline=(0, 0, 0))
  return np.asarray(picture)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6) -> np.ndarray:
  """A heat map (h, w), resized to the image, blended over it in a hot colour map."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  height, width = image.shape[:2]
  peak = max(float(np.max(heatmap)), 1e-6)
  resized = Image.fromarray(np.clip(heatmap / peak * 255, 0, 255).astype(np.uint8)).resize(
      (width, height), Image.BILINEAR)
  values = np.asarray(resized, np.float32) / 255.0
  colours = matplotlib.colormaps['inferno'](values)[..., :3] * 255
  weight = (alpha * values)[..., None]
  blended = image.astype(np.float32) * (1 - weight) + colours * weight
  return blended.clip(0, 255).astype(np.uint8)
