"""Procedural pose images: articulated figures with MPII-style annotations.

The project's embedded dataset (`tfds_builders/synthetic_pose`) is made here,
so that training, evaluation and tests can run without MPII. It is pure NumPy +
PIL (no TensorFlow) and deterministic: an example depends only on its integer
seed and resolution, so any example can be regenerated alone.

Each image is a person-centred crop in the project's MPII convention: the
active figure (height H = 200 x scale, about half the image side) is centred,
other figures (distractors, 0-2) stand partly in frame behind or in front of
it, and textured occluders are drawn over it. Figures are seen from the front:
the person's right side is on the image left when upright, and right limbs are
drawn in a darker shade than left limbs so that the two sides can be told
apart (and traced when limbs cross). A joint is OCCLUDED when the pixel under it
is covered by an occluder or a figure drawn in front (or lies outside the
image), VISIBLE otherwise; coverage is read from the drawn masks.

Shapes are rasterised here with NumPy (a pixel belongs to a shape when its
centre does), so the masks returned for tests are exactly the painted pixels.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rhpe_jax.core import keypoint_sets

MPII = keypoint_sets.MPII
NUM_JOINTS = MPII.num_keypoints

# MPII joint ids used below.
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE = 0, 1, 2, 3, 4, 5
PELVIS, THORAX, UPPER_NECK, HEAD_TOP = 6, 7, 8, 9
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST = 10, 11, 12, 13, 14, 15

# Segment lengths as fractions of the figure's height H (head top to ankle when
# standing straight): head + neck + torso + thigh + shin = 1. Adult proportions:
# thigh ~ shin, upper arm a little longer than forearm (wrist, not fingertip).
SEGMENT_FRACTIONS = {
    'head': 0.13,  # upper neck -> head top
    'neck': 0.05,  # thorax -> upper neck
    'torso': 0.30,  # pelvis -> thorax
    'thigh': 0.26,
    'shin': 0.26,
    'upper_arm': 0.19,
    'forearm': 0.15,
    'shoulder_half': 0.11,  # thorax -> shoulder, across the torso
    'hip_half': 0.07,  # pelvis -> hip, across the torso
}
# Each figure multiplies every length by U(1 - j, 1 + j) (left and right
# alike), then rescales so that the standing chain still sums to H.
LENGTH_JITTER = 0.07
_CHAIN = ('head', 'neck', 'torso', 'thigh', 'shin')

# Joint-angle ranges in degrees. 'rotation': torso axis against the image
# vertical. 'neck', 'head': against the parent segment. 'shoulder', 'hip':
# upper arm / thigh against the torso's downward axis, positive away from the
# body's midline. 'elbow', 'knee': flexion, the forearm / shin turning from the
# upper arm / thigh direction towards the body's midline (they bend one way).
ANGLE_LIMITS = {
    'rotation': (-45.0, 45.0),
    'neck': (-20.0, 20.0),
    'head': (-15.0, 15.0),
    'shoulder': (-30.0, 170.0),
    'elbow': (0.0, 150.0),
    'hip': (-20.0, 80.0),
    'knee': (0.0, 120.0),
}

# Body parts of a figure, as ids in `part_map`; 'r_'/'l_' parts are shaded by
# side (right darker, left lighter).
PART_NAMES = (
    'r_thigh', 'r_shin', 'r_foot', 'l_thigh', 'l_shin', 'l_foot', 'torso',
    'neck', 'head', 'r_upper_arm', 'r_forearm', 'r_hand', 'l_upper_arm',
    'l_forearm', 'l_hand')
_PART_ID = {name: i for i, name in enumerate(PART_NAMES)}

# The features of `rhpe_jax.data.pose_features.pose_features`; `generate_example`
# returns these plus the test masks in `MASK_KEYS`.
FEATURE_KEYS = (
    'image', 'keypoints', 'keypoint_status', 'other_keypoints',
    'other_keypoint_status', 'crop_to_image', 'objpos', 'scale', 'head_box',
    'head_size', 'original_size', 'image_name', 'image_index', 'person_index',
    'single_person')
MASK_KEYS = ('limb_mask', 'part_map', 'occluder_mask', 'front_mask')

MIN_RESOLUTION = 32
# A distractor shows at least this many joints in the image (it is placed
# again, up to _PLACEMENT_TRIES times, until it does).
MIN_DISTRACTOR_JOINTS_IN_FRAME = 4
_PLACEMENT_TRIES = 20


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
  """Knobs of the scene; the defaults make the embedded dataset."""

  height_fraction: float = 0.5  # figure height / image side (MPII crop: 0.5)
  height_jitter: float = 0.2  # height varies by +-20 %
  centre_jitter: float = 0.04  # figure centre moves by up to 4 % of the side
  max_distractors: int = 2
  distractor_front_prob: float = 0.35
  max_occluders: int = 3
  occluder_prob: float = 0.7  # probability of at least one occluder

  def __post_init__(self):
    if not 0.1 <= self.height_fraction <= 0.9:
      raise ValueError(f'height_fraction must be in [0.1, 0.9], got {self.height_fraction}')
    if not 0.0 <= self.height_jitter < 1.0:
      raise ValueError(f'height_jitter must be in [0, 1), got {self.height_jitter}')
    if self.max_distractors < 0 or self.max_occluders < 0:
      raise ValueError('max_distractors and max_occluders must be >= 0')
    for name in ('distractor_front_prob', 'occluder_prob'):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'{name} must be a probability, got {value}')


# ----------------------------------------------------------------- seeding


def example_seed(base_seed: int, split: str, index: int) -> int:
  """The seed of example `index` of `split`: any example can be made alone."""
  if not isinstance(split, str) or not split:
    raise ValueError(f'split must be a non-empty string, got {split!r}')
  if int(index) < 0 or int(base_seed) < 0:
    raise ValueError(f'base_seed and index must be >= 0, got {base_seed}, {index}')
  # crc32 of the name is stable across processes (unlike hash()).
  seq = np.random.SeedSequence([int(base_seed), zlib.crc32(split.encode()), int(index)])
  return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# ------------------------------------------------------------- rasterising


@dataclasses.dataclass
class _Shape:
  """A boolean mask of the pixels whose centres a shape covers, in a box."""

  y0: int
  x0: int
  mask: np.ndarray

  @property
  def region(self) -> tuple[slice, slice]:
    h, w = self.mask.shape
    return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def _grid(lo: np.ndarray, hi: np.ndarray, size: int):
  """Pixel-centre coordinates of the box [lo, hi], clipped to the image."""
  x0 = max(int(np.floor(lo[0])), 0)
  y0 = max(int(np.floor(lo[1])), 0)
  x1 = min(int(np.ceil(hi[0])) + 1, size)
  y1 = min(int(np.ceil(hi[1])) + 1, size)
  if x1 <= x0 or y1 <= y0:
    return None
  xs = np.arange(x0, x1, dtype=np.float64)[None, :]
  ys = np.arange(y0, y1, dtype=np.float64)[:, None]
  return y0, x0, xs, ys


def _capsule(p: np.ndarray, q: np.ndarray, radius: float, size: int) -> _Shape | None:
  """Pixels within `radius` of the segment pq: a limb with rounded ends."""
  g = _grid(np.minimum(p, q) - radius, np.maximum(p, q) + radius, size)
  if g is None:
    return None
  y0, x0, xs, ys = g
  d = q - p
  length2 = float(d @ d)
  if length2 > 0:
    t = np.clip(((xs - p[0]) * d[0] + (ys - p[1]) * d[1]) / length2, 0.0, 1.0)
  else:
    t = 0.0
  dx = xs - (p[0] + t * d[0])
  dy = ys - (p[1] + t * d[1])
  return _Shape(y0, x0, dx * dx + dy * dy <= radius * radius)


def _ellipse(centre: np.ndarray, axis: np.ndarray, a: float, b: float,
             size: int) -> _Shape | None:
  """Pixels inside the ellipse with semi-axis `a` along unit `axis`, `b` across."""
  ext = np.array([np.hypot(a * axis[0], b * axis[1]), np.hypot(a * axis[1], b * axis[0])])
  g = _grid(centre - ext, centre + ext, size)
  if g is None:
    return None
  y0, x0, xs, ys = g
  dx, dy = xs - centre[0], ys - centre[1]
  u = (dx * axis[0] + dy * axis[1]) / a
  v = (-dx * axis[1] + dy * axis[0]) / b
  return _Shape(y0, x0, u * u + v * v <= 1.0)


def _polygon(vertices: np.ndarray, size: int) -> _Shape | None:
  """Pixels inside a convex polygon (vertices in either order)."""
  g = _grid(vertices.min(0), vertices.max(0), size)
  if g is None:
    return None
  y0, x0, xs, ys = g
  nxt = np.roll(vertices, -1, axis=0)
  area2 = np.sum(vertices[:, 0] * nxt[:, 1] - nxt[:, 0] * vertices[:, 1])
  sign = 1.0 if area2 >= 0 else -1.0
  inside = np.ones(np.broadcast_shapes(xs.shape, ys.shape), bool)
  for (px, py), (qx, qy) in zip(vertices, nxt):
    cross = (qx - px) * (ys - py) - (qy - py) * (xs - px)
    inside &= sign * cross >= 0
  return _Shape(y0, x0, inside)


def _unit(angle_deg: float) -> np.ndarray:
  """Unit vector at `angle_deg` in image axes (0 = +x, 90 = down, y points down)."""
  a = np.deg2rad(angle_deg)
  return np.array([np.cos(a), np.sin(a)])


# ---------------------------------------------------------------- textures


def _random_colour(rng: np.random.Generator) -> np.ndarray:
  """A saturated or muted colour, uniformly spread over hues."""
  hue = rng.uniform(0, 1)
  sat = rng.uniform(0.2, 1.0)
  val = rng.uniform(0.25, 1.0)
  k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
  rgb = val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)
  return rgb * 255.0


_SKIN_TONES = np.array([
    [255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66],
    [141, 85, 36], [92, 56, 30]], np.float64)
_HAIR_TONES = np.array([
    [20, 15, 12], [60, 40, 25], [110, 75, 40], [200, 170, 110], [140, 140, 140]],
    np.float64)


def _texture(rng: np.random.Generator, size: int, colour: np.ndarray,
             kinds: tuple[str, ...] = ('plain', 'stripes', 'noise', 'checker')
             ) -> np.ndarray:
  """A (size, size, 3) float image: `colour` plain, striped, mottled or checked."""
  kind = kinds[rng.integers(len(kinds))]
  colour = np.asarray(colour, np.float64)
  if kind == 'plain':
    out = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
  elif kind == 'noise':
    k = int(rng.integers(3, 10))
    small = colour + rng.normal(0, 40, (k, k, 3))
    small = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))
    out = np.asarray(small.resize((size, size), Image.BILINEAR), np.float32)
  else:
    other = _random_colour(rng)
    period = max(rng.uniform(0.03, 0.12) * size, 4.0)  # JPEG keeps >= 4 px periods
    angle = rng.uniform(0, np.pi)
    xs = np.arange(size, dtype=np.float32)
    u = (xs[None, :] * np.cos(angle) + xs[:, None] * np.sin(angle)) / period
    if kind == 'stripes':
      duty = rng.uniform(0.3, 0.7)
      pick = (u % 1.0) < duty
    else:
      v = (-xs[None, :] * np.sin(angle) + xs[:, None] * np.cos(angle)) / period
      pick = (np.floor(u) + np.floor(v)) % 2 == 0
    out = np.where(pick[..., None], colour, other).astype(np.float32)
  grain = rng.uniform(0, 8)
  if grain > 1:
    out = out + rng.normal(0, grain, (size, size, 1)).astype(np.float32)
  return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """Clutter: a textured or gradient base with random shapes and bars on it."""
  if rng.uniform() < 0.3:
    c0, c1 = _random_colour(rng), _random_colour(rng)
    angle = rng.uniform(0, 2 * np.pi)
    xs = np.arange(size, dtype=np.float64) / max(size - 1, 1)
    t = xs[None, :] * np.cos(angle) + xs[:, None] * np.sin(angle)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    base = c0 * (1 - t[..., None]) + c1 * t[..., None]
  else:
    base = _texture(rng, size, _random_colour(rng))
  img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(img)
  for _ in range(int(rng.integers(3, 13))):
    fill = tuple(int(c) for c in _random_colour(rng))
    kind = rng.integers(4)
    cx, cy = rng.uniform(-0.1, 1.1, 2) * size
    w, h = rng.uniform(0.03, 0.35, 2) * size
    if kind == 0:
      draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)
    elif kind == 1:
      draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)
    elif kind == 2:
      pts = [(cx + rng.uniform(-w, w), cy + rng.uniform(-h, h)) for _ in range(3)]
      draw.polygon(pts, fill=fill)
    else:  # limb-like bars, so that a thick segment alone is no person
      angle = rng.uniform(0, 2 * np.pi)
      length = rng.uniform(0.08, 0.3) * size
      end = (cx + length * np.cos(angle), cy + length * np.sin(angle))
      draw.line([(cx, cy), end], fill=fill, width=max(1, int(rng.uniform(0.01, 0.05) * size)))
  return np.asarray(img, np.float32)


# ----------------------------------------------------------------- figures


@dataclasses.dataclass
class _Figure:
  """A posed figure: its joints (16, 2) and the shapes to paint, in order."""

  keypoints: np.ndarray
  height: float
  head_centre: np.ndarray
  head_axis: np.ndarray
  head_a: float
  head_b: float
  parts: list  # (part name, shape kind, shape args), in paint order


def _sample_lengths(rng: np.random.Generator, height: float) -> dict[str, float]:
  lengths = {k: v * rng.uniform(1 - LENGTH_JITTER, 1 + LENGTH_JITTER)
             for k, v in SEGMENT_FRACTIONS.items()}
  norm = sum(lengths[k] for k in _CHAIN)
  return {k: v / norm * height for k, v in lengths.items()}


def _sample_pose(rng: np.random.Generator, height: float) -> tuple[np.ndarray, dict]:
  """Joints (16, 2) of a frontal figure with its pelvis at the origin."""
  seg = _sample_lengths(rng, height)
  lim = ANGLE_LIMITS
  kp = np.zeros((NUM_JOINTS, 2))
  up = -90.0 + rng.uniform(*lim['rotation'])  # torso axis, pelvis -> thorax
  down = up + 180.0
  right = up - 90.0  # the person's right: image left when upright
  kp[PELVIS] = 0.0
  kp[THORAX] = seg['torso'] * _unit(up)
  kp[R_HIP] = seg['hip_half'] * _unit(right)
  kp[L_HIP] = -kp[R_HIP]
  kp[R_SHOULDER] = kp[THORAX] + seg['shoulder_half'] * _unit(right)
  kp[L_SHOULDER] = kp[THORAX] - seg['shoulder_half'] * _unit(right)
  neck_dir = up + rng.uniform(*lim['neck'])
  kp[UPPER_NECK] = kp[THORAX] + seg['neck'] * _unit(neck_dir)
  head_dir = neck_dir + rng.uniform(*lim['head'])
  kp[HEAD_TOP] = kp[UPPER_NECK] + seg['head'] * _unit(head_dir)

  # Right limbs turn away from the body towards the image left (+ angles from
  # 'down' are clockwise on screen for the right side); flexion turns back
  # towards the midline. The left side mirrors the signs.
  angles = {}
  for side, sign in (('r', 1.0), ('l', -1.0)):
    shoulder = rng.uniform(*lim['shoulder'])
    elbow = lim['elbow'][1] * rng.uniform() ** 1.5
    if rng.uniform() < 0.75:
      hip = rng.uniform(lim['hip'][0], 35.0)
    else:
      hip = rng.uniform(*lim['hip'])
    knee = lim['knee'][1] * rng.uniform() ** 2
    s_id, e_id, w_id = ((R_SHOULDER, R_ELBOW, R_WRIST) if side == 'r'
                        else (L_SHOULDER, L_ELBOW, L_WRIST))
    h_id, k_id, a_id = (R_HIP, R_KNEE, R_ANKLE) if side == 'r' else (L_HIP, L_KNEE, L_ANKLE)
    upper_dir = down + sign * shoulder
    fore_dir = upper_dir - sign * elbow
    kp[e_id] = kp[s_id] + seg['upper_arm'] * _unit(upper_dir)
    kp[w_id] = kp[e_id] + seg['forearm'] * _unit(fore_dir)
    thigh_dir = down + sign * hip
    shin_dir = thigh_dir - sign * knee
    kp[k_id] = kp[h_id] + seg['thigh'] * _unit(thigh_dir)
    kp[a_id] = kp[k_id] + seg['shin'] * _unit(shin_dir)
    angles[f'{side}_fore_dir'] = fore_dir
    angles[f'{side}_shin_dir'] = shin_dir
    # Feet point outwards from the shin; hands continue the forearm.
    angles[f'{side}_foot_dir'] = shin_dir + sign * rng.uniform(40.0, 90.0)
  angles['up'] = up
  angles['right'] = right
  return kp, angles


def _make_figure(rng: np.random.Generator, height: float) -> _Figure:
  kp, ang = _sample_pose(rng, height)
  h = height
  parts = []

  def radius(fraction):  # at least one pixel, so that joints stay inside
    return max(fraction * h, 1.0)

  def cap(name, p, q, r):
    parts.append((name, 'capsule', (p, q, r)))

  legs = []
  for side in ('r', 'l'):
    hip, knee, ankle = ((R_HIP, R_KNEE, R_ANKLE) if side == 'r' else (L_HIP, L_KNEE, L_ANKLE))
    foot_end = kp[ankle] + 0.07 * h * _unit(ang[f'{side}_foot_dir'])
    legs.append([(f'{side}_thigh', kp[hip], kp[knee], radius(0.05)),
                 (f'{side}_shin', kp[knee], kp[ankle], radius(0.035)),
                 (f'{side}_foot', kp[ankle], foot_end, radius(0.025))])
  if rng.uniform() < 0.5:
    legs.reverse()
  for leg in legs:
    for part in leg:
      cap(*part)

  right = _unit(ang['right'])
  up = _unit(ang['up'])
  torso = np.stack([
      kp[R_SHOULDER] + 0.035 * h * right + 0.01 * h * up,
      kp[L_SHOULDER] - 0.035 * h * right + 0.01 * h * up,
      kp[L_HIP] - 0.04 * h * right - 0.03 * h * up,
      kp[R_HIP] + 0.04 * h * right - 0.03 * h * up])
  parts.append(('torso', 'polygon', (torso,)))
  cap('neck', kp[THORAX], kp[UPPER_NECK], radius(0.03))

  head_len = float(np.linalg.norm(kp[HEAD_TOP] - kp[UPPER_NECK]))
  axis = (kp[HEAD_TOP] - kp[UPPER_NECK]) / max(head_len, 1e-6)
  head_centre = (kp[HEAD_TOP] + kp[UPPER_NECK]) / 2
  head_a, head_b = 0.5 * head_len + 0.5, max(0.38 * head_len, 1.0)
  parts.append(('head', 'ellipse', (head_centre, axis, head_a, head_b)))

  arms = []
  for side in ('r', 'l'):
    sh, el, wr = ((R_SHOULDER, R_ELBOW, R_WRIST) if side == 'r' else (L_SHOULDER, L_ELBOW, L_WRIST))
    hand_end = kp[wr] + 0.045 * h * _unit(ang[f'{side}_fore_dir'])
    arms.append([(f'{side}_upper_arm', kp[sh], kp[el], radius(0.032)),
                 (f'{side}_forearm', kp[el], kp[wr], radius(0.026)),
                 (f'{side}_hand', kp[wr], hand_end, radius(0.028))])
  if rng.uniform() < 0.5:
    arms.reverse()
  for arm in arms:
    for part in arm:
      cap(*part)
  return _Figure(kp, height, head_centre, axis, head_a, head_b, parts)


def _rasterise(kind: str, args: tuple, size: int) -> _Shape | None:
  if kind == 'capsule':
    return _capsule(*args, size)
  if kind == 'ellipse':
    return _ellipse(*args, size)
  return _polygon(*args, size)


def _translate(figure: _Figure, offset: np.ndarray) -> _Figure:
  """The figure moved by `offset` pixels."""
  parts = []
  for name, kind, args in figure.parts:
    if kind == 'capsule':
      args = (args[0] + offset, args[1] + offset, args[2])
    elif kind == 'ellipse':
      args = (args[0] + offset,) + tuple(args[1:])
    else:
      args = (args[0] + offset,)
    parts.append((name, kind, args))
  return dataclasses.replace(
      figure, keypoints=figure.keypoints + offset,
      head_centre=figure.head_centre + offset, parts=parts)


def _figure_centre(kp: np.ndarray) -> np.ndarray:
  """Centre of the joints' bounding box: the figure's objpos."""
  return (kp.min(0) + kp.max(0)) / 2


class _Canvas:
  """The image being painted, plus which layer covers each pixel."""

  def __init__(self, image: np.ndarray):
    self.image = image
    self.size = image.shape[0]
    self.masks: list[np.ndarray] = []  # one silhouette per painted layer

  def new_layer(self) -> np.ndarray:
    mask = np.zeros((self.size, self.size), bool)
    self.masks.append(mask)
    return mask

  def covered_after(self, layer: int) -> np.ndarray:
    """Pixels painted by any layer after `layer` (drawn over it)."""
    out = np.zeros((self.size, self.size), bool)
    for mask in self.masks[layer + 1:]:
      out |= mask
    return out


def _shade(colour: np.ndarray, side: str) -> np.ndarray:
  """Right parts darker, left parts lighter: a cue that tells the sides apart."""
  if side == 'r':
    return colour * 0.6
  if side == 'l':
    return colour * 0.7 + 0.3 * 255.0
  return colour


def _paint_figure(rng: np.random.Generator, canvas: _Canvas, figure: _Figure,
                  part_map: np.ndarray | None = None) -> np.ndarray:
  """Paints a clothed figure; returns its silhouette mask (a new layer)."""
  size = canvas.size
  silhouette = canvas.new_layer()
  skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3)
  hair = _HAIR_TONES[rng.integers(len(_HAIR_TONES))] + rng.normal(0, 8, 3)
  shirt = _texture(rng, size, _random_colour(rng))
  trousers = _texture(rng, size, _random_colour(rng))
  shoes = _random_colour(rng) * 0.4
  short_sleeves = rng.uniform() < 0.4
  shorts = rng.uniform() < 0.25
  materials = {
      'thigh': trousers, 'shin': skin if shorts else trousers, 'foot': shoes,
      'torso': shirt, 'neck': skin, 'head': skin, 'upper_arm': shirt,
      'forearm': skin if short_sleeves else shirt, 'hand': skin}
  for name, kind, args in figure.parts:
    shape = _rasterise(kind, args, size)
    if shape is None:
      continue
    side, _, base = name.partition('_') if name[:2] in ('r_', 'l_') else ('', '', name)
    material = materials[base]
    ys, xs = shape.region
    m = shape.mask
    if material.ndim == 1:
      colour = np.clip(_shade(material, side), 0, 255)
      canvas.image[ys, xs][m] = colour
    else:
      canvas.image[ys, xs][m] = _shade(material[ys, xs][m], side)
    silhouette[ys, xs] |= m
    if part_map is not None:
      part_map[ys, xs][m] = _PART_ID[name]
    if name == 'head':
      _paint_face(canvas, figure, hair, silhouette, part_map)
  return silhouette


def _paint_face(canvas: _Canvas, figure: _Figure, hair: np.ndarray,
                silhouette: np.ndarray, part_map: np.ndarray | None) -> None:
  """Hair on top of the head and two eyes: the figure faces the camera."""
  size = canvas.size
  axis, a, b = figure.head_axis, figure.head_a, figure.head_b
  across = np.array([-axis[1], axis[0]])
  hair_shape = _ellipse(figure.head_centre + 0.35 * a * axis, axis, 0.7 * a, 1.05 * b, size)
  top = _capsule(figure.keypoints[HEAD_TOP], figure.keypoints[HEAD_TOP], 1.0, size)
  for shape in (hair_shape, top):
    if shape is not None:
      ys, xs = shape.region
      canvas.image[ys, xs][shape.mask] = np.clip(hair, 0, 255)
      silhouette[ys, xs] |= shape.mask
      if part_map is not None:
        part_map[ys, xs][shape.mask] = _PART_ID['head']
  if a >= 3.5:  # eyes only where the head is big enough to show them
    eye_r = max(0.12 * a, 0.5)
    for s in (-1.0, 1.0):
      eye = _capsule(*(2 * [figure.head_centre - 0.05 * a * axis + s * 0.45 * b * across]),
                     eye_r, size)
      if eye is not None:
        ys, xs = eye.region
        canvas.image[ys, xs][eye.mask & silhouette[ys, xs]] = (25.0, 20.0, 20.0)


def _paint_occluder(rng: np.random.Generator, canvas: _Canvas, target: np.ndarray,
                    height: float) -> np.ndarray:
  """A textured box or blob near `target`; returns its mask (a new layer)."""
  size = canvas.size
  mask = canvas.new_layer()
  centre = target + rng.normal(0, 0.08 * height, 2)
  tex = _texture(rng, size, _random_colour(rng))
  shapes = []
  if rng.uniform() < 0.5:  # a rotated box
    w, h = rng.uniform(0.1, 0.35) * height, rng.uniform(0.1, 0.5) * height
    u = _unit(rng.uniform(0, 180))
    v = np.array([-u[1], u[0]])
    corners = np.stack([centre + sx * w / 2 * u + sy * h / 2 * v
                        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    shapes.append(_polygon(corners, size))
  else:  # a blob of overlapping ellipses
    for _ in range(int(rng.integers(1, 4))):
      c = centre + rng.normal(0, 0.06 * height, 2)
      a, b = rng.uniform(0.05, 0.18, 2) * height
      shapes.append(_ellipse(c, _unit(rng.uniform(0, 180)), max(a, 1.0), max(b, 1.0), size))
  for shape in shapes:
    if shape is None:
      continue
    ys, xs = shape.region
    canvas.image[ys, xs][shape.mask] = tex[ys, xs][shape.mask]
    mask[ys, xs] |= shape.mask
  return mask


# ------------------------------------------------------------------ labels


def _in_frame(kp: np.ndarray, size: int) -> np.ndarray:
  """Joints whose nearest pixel centre lies in the image."""
  ij = np.floor(kp + 0.5)
  return np.all((ij >= 0) & (ij <= size - 1), axis=-1)


def _status(kp: np.ndarray, covered: np.ndarray) -> np.ndarray:
  """VISIBLE unless out of frame or under a pixel of `covered`."""
  size = covered.shape[0]
  status = np.full(kp.shape[0], keypoint_sets.OCCLUDED, np.int32)
  inside = _in_frame(kp, size)
  ij = np.floor(kp[inside] + 0.5).astype(int)
  status[inside] = np.where(covered[ij[:, 1], ij[:, 0]], keypoint_sets.OCCLUDED,
                            keypoint_sets.VISIBLE)
  return status


def _head_box(figure: _Figure) -> np.ndarray:
  """Axis-aligned box (x1, y1, x2, y2) around the drawn head ellipse."""
  ax, a, b = figure.head_axis, figure.head_a, figure.head_b
  ext = np.array([np.hypot(a * ax[0], b * ax[1]), np.hypot(a * ax[1], b * ax[0])])
  return np.concatenate([figure.head_centre - ext, figure.head_centre + ext])


# -------------------------------------------------------------------- API


def _check_resolution(resolution) -> int:
  if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
    raise ValueError(f'resolution must be an integer, got {resolution!r}')
  if resolution < MIN_RESOLUTION:
    raise ValueError(f'resolution must be >= {MIN_RESOLUTION} pixels, got {resolution}')
  return int(resolution)


def generate_example(seed: int, resolution: int = 128, *,
                     image_name: str = 'synthetic', image_index: int = 0,
                     options: GeneratorOptions | None = None) -> dict:
  """One person-centred image with its annotations and the drawn masks.

  Returns every feature of `pose_features(16, (R, R, 3))` as NumPy values
  (see FEATURE_KEYS) plus, for tests, `limb_mask` (the active figure's body
  before anything was drawn over it), `part_map` (its top-most part id per
  pixel, -1 outside; ids index PART_NAMES), `occluder_mask` and `front_mask`
  (distractor figures drawn in front of it).
  """
  size = _check_resolution(resolution)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
  opts = options or GeneratorOptions()
  rng = np.random.default_rng(int(seed))

  height = opts.height_fraction * size * rng.uniform(1 - opts.height_jitter, 1 + opts.height_jitter)
  active = _make_figure(rng, height)
  target = np.full(2, (size - 1) / 2) + rng.uniform(-1, 1, 2) * opts.centre_jitter * size
  active = _translate(active, target - _figure_centre(active.keypoints))

  others = []
  for _ in range(int(rng.integers(0, opts.max_distractors + 1))):
    fig = _make_figure(rng, height * rng.uniform(0.75, 1.25))
    # Off-centre, partly in frame: retry until a few of its joints are inside.
    for _ in range(_PLACEMENT_TRIES):
      direction = _unit(rng.uniform(0, 360))
      centre = (size - 1) / 2 + rng.uniform(0.3, 0.55) * size * direction
      placed = _translate(fig, centre - _figure_centre(fig.keypoints))
      if _in_frame(placed.keypoints, size).sum() >= MIN_DISTRACTOR_JOINTS_IN_FRAME:
        break
    others.append((placed, rng.uniform() < opts.distractor_front_prob))
  num_occluders = 0
  if opts.max_occluders > 0 and rng.uniform() < opts.occluder_prob:
    num_occluders = int(rng.integers(1, opts.max_occluders + 1))

  canvas = _Canvas(_background(rng, size))
  layers = []  # (figure or None, layer index)
  for fig, front in others:
    if not front:
      _paint_figure(rng, canvas, fig)
      layers.append((fig, len(canvas.masks) - 1))
  part_map = np.full((size, size), -1, np.int8)
  limb_mask = _paint_figure(rng, canvas, active, part_map).copy()
  active_layer = len(canvas.masks) - 1
  front_mask = np.zeros((size, size), bool)
  for fig, front in others:
    if front:
      front_mask |= _paint_figure(rng, canvas, fig)
      layers.append((fig, len(canvas.masks) - 1))
  occluder_mask = np.zeros((size, size), bool)
  for _ in range(num_occluders):
    joint = active.keypoints[rng.integers(NUM_JOINTS)]
    occluder_mask |= _paint_occluder(rng, canvas, joint, height)

  # Photometric noise: contrast, brightness, blur and grain.
  image = (canvas.image - 128.0) * rng.uniform(0.8, 1.15) + 128.0 + rng.uniform(-15, 15)
  image = np.clip(image, 0, 255).astype(np.uint8)
  if rng.uniform() < 0.5:
    image = np.asarray(Image.fromarray(image).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8))))
  grain = rng.uniform(0, 5)
  image = np.clip(image + rng.normal(0, grain, image.shape), 0, 255).astype(np.uint8)

  status = _status(active.keypoints, canvas.covered_after(active_layer))
  others_in_order = [fig for fig, _ in others]
  layer_of = {id(fig): layer for fig, layer in layers}
  other_kp = np.zeros((len(others), NUM_JOINTS, 2), np.float32)
  other_status = np.zeros((len(others), NUM_JOINTS), np.int32)
  for k, fig in enumerate(others_in_order):
    other_kp[k] = fig.keypoints
    other_status[k] = _status(fig.keypoints, canvas.covered_after(layer_of[id(fig)]))

  head_box = _head_box(active)
  diag = float(np.hypot(head_box[2] - head_box[0], head_box[3] - head_box[1]))
  return {
      'image': image,
      'keypoints': active.keypoints.astype(np.float32),
      'keypoint_status': status,
      'other_keypoints': other_kp,
      'other_keypoint_status': other_status,
      'crop_to_image': np.array([[1, 0, 0], [0, 1, 0]], np.float32),
      'objpos': _figure_centre(active.keypoints).astype(np.float32),
      'scale': np.float32(height / 200.0),
      'head_box': head_box.astype(np.float32),
      'head_size': np.float32(0.6 * diag),
      'original_size': np.array([size, size], np.int32),
      'image_name': str(image_name),
      'image_index': np.int32(image_index),
      'person_index': np.int32(0),
      'single_person': np.bool_(True),
      'limb_mask': limb_mask,
      'part_map': part_map,
      'occluder_mask': occluder_mask,
      'front_mask': front_mask,
  }


def example_name(split: str, index: int) -> str:
  """The provenance name of an example, e.g. 'synthetic_train_000123'."""
  return f'synthetic_{split}_{index:06d}'


def generate_split(split: str, num_examples: int, resolution: int = 128,
                   base_seed: int = 0, *, start: int = 0,
                   options: GeneratorOptions | None = None,
                   with_masks: bool = False) -> Iterator[tuple[str, dict]]:
  """Yields (key, example) for examples start .. num_examples - 1 of `split`.

  Example i uses `example_seed(base_seed, split, i)`, so a split is the same
  whichever part of it is generated; the key is its `example_name`.
  """
  _check_resolution(resolution)
  if int(num_examples) < 0 or int(start) < 0:
    raise ValueError(f'num_examples and start must be >= 0, got {num_examples}, {start}')
  for i in range(int(start), int(num_examples)):
    name = example_name(split, i)
    example = generate_example(example_seed(base_seed, split, i), resolution,
                               image_name=name, image_index=i, options=options)
    if not with_masks:
      example = {k: example[k] for k in FEATURE_KEYS}
    yield name, example
