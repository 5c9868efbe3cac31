"""Pictures: skeletons on images, heat maps over images (the paper's figures)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from rhpe_jax.core import keypoint_sets


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray | None,
                  keypoint_set: keypoint_sets.KeypointSet, color=(230, 30, 30),
                  radius: float | None = None) -> np.ndarray:
  """`image` (H, W, 3) uint8 with the limbs (part pairs) and keypoint_set drawn.

  Joints where `mask` is False (unannotated) are left out; left limbs are
  drawn lighter than right ones so that a swap is visible.
  """
  picture = Image.fromarray(np.asarray(image, np.uint8))
  draw = ImageDraw.Draw(picture)
  size = max(picture.size)
  radius = radius or max(1.5, size / 120)
  shown = np.ones(len(keypoints), bool) if mask is None else np.asarray(mask, bool)
  light = tuple(int(c + (255 - c) * 0.55) for c in color)
  for a, b in keypoint_set.part_pairs:
    if shown[a] and shown[b]:
      names = keypoint_set.keypoint_names
      left = names[a].startswith('l_') or names[b].startswith('l_')
      draw.line([tuple(keypoints[a]), tuple(keypoints[b])], fill=light if left else color,
                width=max(1, int(radius * 0.8)))
  for j, (x, y) in enumerate(keypoints):
    if shown[j]:
      fill = light if keypoint_set.keypoint_names[j].startswith('l_') else color
      draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill,
                   outline=(0, 0, 0))
  return np.asarray(picture)


# One colour per person of a picture (the first is draw_skeleton's own).
PERSON_COLOURS = ((230, 30, 30), (30, 110, 230), (30, 170, 60), (230, 150, 0),
                  (170, 40, 200), (0, 170, 180), (200, 60, 120), (120, 120, 120))


def draw_people(image: np.ndarray, people: Sequence[np.ndarray],
                keypoint_set: keypoint_sets.KeypointSet,
                boxes: Sequence[Sequence[float] | None] | None = None,
                min_side: int = 384) -> np.ndarray:
  """Every person of an image in one picture: each skeleton (`draw_skeleton`)
  and, where given, its box [x, y, width, height], in a colour of its own,
  on the image enlarged as `enlarge` enlarges it (keypoints and boxes in
  0-based pixels of `image`)."""
  boxes = list(boxes) if boxes is not None else [None] * len(people)
  if len(boxes) != len(people):
    raise ValueError(f'{len(people)} persons but {len(boxes)} boxes')
  people = [np.asarray(k, np.float64).reshape(-1, 2) for k in people]
  corners = [np.array([[b[0], b[1]], [b[0] + b[2], b[1] + b[3]]], np.float64)
             if b is not None else np.zeros((0, 2)) for b in boxes]
  blocks = people + corners
  picture, points = enlarge(image, np.concatenate(blocks) if blocks else np.zeros((0, 2)),
                            min_side)
  placed = np.split(points, np.cumsum([len(b) for b in blocks])[:-1]) if blocks else []
  size = max(picture.shape[:2])
  for k, keypoints in enumerate(placed[:len(people)]):
    colour = PERSON_COLOURS[k % len(PERSON_COLOURS)]
    picture = draw_skeleton(picture, keypoints, None, keypoint_set, color=colour)
    corner = placed[len(people) + k]
    if len(corner):
      canvas = Image.fromarray(picture)
      ImageDraw.Draw(canvas).rectangle([tuple(corner[0]), tuple(corner[1])], outline=colour,
                                       width=max(1, int(size / 300)))
      picture = np.asarray(canvas)
  return picture


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6,
                    peak: float | None = None) -> np.ndarray:
  """A heat map (h, w), resized to the image, blended over it in a hot colour map.

  Values are divided by `peak` (default: the map's own maximum) and clipped.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  height, width = image.shape[:2]
  heatmap = np.maximum(np.asarray(heatmap, np.float32), 0.0)
  peak = max(float(np.max(heatmap)) if peak is None else float(peak), 1e-6)
  resized = Image.fromarray(np.clip(heatmap / peak * 255, 0, 255).astype(np.uint8)).resize(
      (width, height), Image.BILINEAR)
  values = np.asarray(resized, np.float32) / 255.0
  colours = matplotlib.colormaps['inferno'](values)[..., :3] * 255
  weight = (alpha * values)[..., None]
  blended = image.astype(np.float32) * (1 - weight) + colours * weight
  return blended.clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------
# Figures written to files. They use matplotlib's object API with the Agg
# canvas, so no global backend is set and they work in scripts and notebooks.


def _new_figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(figure)
  return figure


def _save(figure, path) -> None:
  figure.savefig(str(path), dpi=figure.dpi, bbox_inches='tight')


def enlarge(image: np.ndarray, keypoints: np.ndarray | None = None, min_side: int = 384
            ) -> tuple[np.ndarray, np.ndarray | None]:
  """Small images scaled up by an integer factor (nearest) for legible drawings;
  keypoints (0-based pixel centres) follow: x' = f (x + 0.5) - 0.5."""
  image = np.asarray(image, np.uint8)
  factor = max(1, int(np.ceil(min_side / max(image.shape[:2]))))
  if factor == 1:
    return image, keypoints
  big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
  if keypoints is not None:
    keypoints = factor * (np.asarray(keypoints, np.float64) + 0.5) - 0.5
  return big, keypoints


def save_pck_curves(path, thresholds: np.ndarray, curves: dict[str, np.ndarray],
                    metric: str = 'PCKh', title: str = '') -> None:
  """Accuracy against the normalised distance threshold, one line per group."""
  figure = _new_figure(6.0, 4.2)
  axes = figure.add_subplot(1, 1, 1)
  for name, values in curves.items():
    bold = name == 'Total'
    axes.plot(thresholds, values, label=name, linewidth=2.8 if bold else 1.4,
              color='black' if bold else None)
  axes.set_xlabel(f'normalised distance threshold ({metric})')
  axes.set_ylabel('detection rate (%)')
  axes.set_xlim(float(thresholds[0]), float(thresholds[-1]))
  axes.set_ylim(0, 100)
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right', fontsize=8)
  axes.set_title(title or f'{metric} per joint group')
  _save(figure, path)


def save_precision_recall(path, precision: np.ndarray, recall: np.ndarray, ap: float,
                          title: str = 'Keypoint visibility (heat-map maximum)') -> None:
  """The paper's Fig. 7: precision-recall of the heat-map maximum as a
  visibility score, positives = visible keypoint_set."""
  figure = _new_figure(5.0, 4.2)
  axes = figure.add_subplot(1, 1, 1)
  axes.step(np.r_[0.0, recall], np.r_[precision[:1], precision], where='pre',
            linewidth=2, label=f'AP = {100 * ap:.1f} %')
  axes.set_xlabel('recall')
  axes.set_ylabel('precision')
  axes.set_xlim(0, 1)
  axes.set_ylim(0, 1.02)
  axes.grid(alpha=0.3)
  axes.legend(loc='lower left')
  axes.set_title(title)
  _save(figure, path)


def save_stage_figure(path, crop: np.ndarray, stage_maps: np.ndarray,
                      joint_ids: list[int], keypoint_names: list[str],
                      stage_names: list[str] | None = None) -> None:
  """The paper's Fig. 2: rows = chosen keypoint_set, columns = output stages, each a
  heat map over the network input. Maps are normalised per joint over all
  stages, so a sharpening peak also shows as a brighter one."""
  stage_maps = np.asarray(stage_maps, np.float32)  # (S, h, w, J)
  num_stages = stage_maps.shape[0]
  stage_names = stage_names or [f'stage {s}' for s in range(num_stages)]
  figure = _new_figure(2.0 * num_stages + 0.2, 2.0 * len(joint_ids) + 0.3)
  for row, joint in enumerate(joint_ids):
    peak = max(float(stage_maps[..., joint].max()), 1e-6)
    for col in range(num_stages):
      axes = figure.add_subplot(len(joint_ids), num_stages, row * num_stages + col + 1)
      picture = heatmap_overlay(crop, stage_maps[col, ..., joint], alpha=0.75, peak=peak)
      axes.imshow(picture)
      axes.set_xticks([])
      axes.set_yticks([])
      if row == 0:
        axes.set_title(stage_names[col], fontsize=9)
      if col == 0:
        axes.set_ylabel(keypoint_names[row], fontsize=9)
  figure.subplots_adjust(wspace=0.04, hspace=0.04)
  _save(figure, path)


def save_maps_figure(path, crop: np.ndarray, keypoint_maps: np.ndarray,
                     part_maps: np.ndarray | None) -> None:
  """The paper's Fig. 1: all keypoint maps superimposed (their maximum), and all
  body-part maps superimposed, over the network input."""
  panels = [('input', crop)]
  panels.append(('keypoint maps', heatmap_overlay(crop, np.max(keypoint_maps, axis=-1))))
  if part_maps is not None and part_maps.shape[-1]:
    panels.append(('body-part maps', heatmap_overlay(crop, np.max(part_maps, axis=-1))))
  figure = _new_figure(3.0 * len(panels), 3.2)
  for i, (title, picture) in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), i + 1)
    axes.imshow(picture)
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
  _save(figure, path)
