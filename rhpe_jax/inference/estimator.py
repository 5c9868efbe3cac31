"""A trained network in one call: `PoseEstimator`.

    est = PoseEstimator.from_workdir('runs/own')   # JAX; checkpoint='best'
    est = PoseEstimator.from_export('export_dir')  # onnxruntime; no JAX, no TF
    poses = est.predict(image, boxes=None)         # keypoints, scores, boxes

Both run the one top-down path (rhpe_jax.inference.topdown) and differ only
in what turns crops into heat maps: the JAX predictor of a workdir's
checkpoint, or an export's model.onnx in onnxruntime. The pre- and
post-processing an export needs (input size, stride, box scale,
normalisation, keypoint names, edges and flip pairs) is written into its
manifest by rhpe_jax.deploy from `processing` here.

This module imports numpy, Pillow and the project's numpy modules only; JAX
(from_workdir) and onnxruntime (from_export) are imported when asked for.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from rhpe_jax.core import keypoint_sets
from rhpe_jax.inference import crop as crop_lib
from rhpe_jax.inference import topdown

ImageLike = Union[str, os.PathLike, np.ndarray, Any]  # Any: a PIL image
MANIFEST = 'manifest.json'
ONNX_FILE = 'model.onnx'
PROCESSING = 'processing'  # the manifest's section read by from_export
PROCESSING_VERSION = 1
# Spinning threads wait for work by busy-looping: on cores shared with other
# processes they take the cores those need (docs/performance.md, ONNX).
ONNX_NO_SPINNING = {'session.intra_op.allow_spinning': '0',
                    'session.inter_op.allow_spinning': '0'}


def onnx_session_options(threads: int | None = None) -> Any:
  """onnxruntime SessionOptions for the CPU provider, as the README
  recommends: `threads` intra-op threads (None: one per core this process
  may use), one inter-op thread (the graph is one chain), spinning off, all
  graph optimisations."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
  options.inter_op_num_threads = 1
  options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
  options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
  for key, value in ONNX_NO_SPINNING.items():
    options.add_session_config_entry(key, value)
  return options


@dataclasses.dataclass(frozen=True)
class Poses:
  """The persons of one image: keypoints (P, K, 2) float32 [x, y] in image
  pixels, scores (P, K) float32 (the heat maps' peaks), boxes (P, 4) float32
  [x, y, w, h], the K keypoint names and the edges to draw (index pairs)."""
  keypoints: np.ndarray
  scores: np.ndarray
  boxes: np.ndarray
  keypoint_names: tuple[str, ...]
  skeleton: tuple[tuple[int, int], ...]

  def __len__(self) -> int:
    return len(self.keypoints)

  def draw(self, image: ImageLike, min_side: int = 0) -> np.ndarray:
    """`image` (as `predict` takes it) with every person's skeleton and box
    drawn, as an (H, W, 3) uint8 array (enlarged to `min_side` if smaller)."""
    from rhpe_jax.core import visualize  # pylint: disable=g-import-not-at-top
    edges = keypoint_sets.KeypointSet('poses', self.keypoint_names, (), self.skeleton)
    return visualize.draw_people(as_image(image), list(self.keypoints), edges,
                                 [list(b) for b in self.boxes], min_side=min_side)

  def to_records(self) -> list[dict[str, Any]]:
    """One JSON-ready dict per person: keypoints, scores, box."""
    return [{'keypoints': k.tolist(), 'scores': s.tolist(), 'box': b.tolist()}
            for k, s, b in zip(self.keypoints, self.scores, self.boxes)]


def as_image(image: ImageLike) -> np.ndarray:
  """(H, W, 3) uint8 RGB of a path, a PIL image (both upright by their EXIF
  orientation) or such an array; one-line ValueError for anything else."""
  from rhpe_jax.data import image_io  # pylint: disable=g-import-not-at-top
  if isinstance(image, (str, os.PathLike)):
    return image_io.read_image(image)
  if isinstance(image, np.ndarray):
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      raise ValueError(f'image must be an H x W x 3 uint8 RGB array, got {image.dtype} of shape '
                       f'{image.shape}')
    if image.shape[0] < 1 or image.shape[1] < 1:
      raise ValueError(f'image is empty: shape {image.shape}')
    return image
  if hasattr(image, 'getexif') and hasattr(image, 'mode'):  # a PIL image
    return image_io.orient(image_io.to_rgb8(image), image_io.exif_orientation(image))
  raise ValueError(f'image must be a path, a PIL image or an H x W x 3 uint8 array, got '
                   f'{type(image).__name__}')


def check_boxes(boxes: Any, image_shape: tuple[int, ...]) -> np.ndarray:
  """(P, 4) float64 person boxes [x, y, w, h]; None: the whole image as one
  (its window is the image padded to a square, crop.window)."""
  if boxes is None:
    return np.array([[0.0, 0.0, image_shape[1], image_shape[0]]])
  try:
    array = np.asarray(boxes, np.float64)
  except (TypeError, ValueError):
    raise ValueError('boxes must be numbers [x, y, w, h] per person') from None
  if array.ndim == 1 and array.shape == (4,):
    array = array[None]
  if array.size == 0:
    return np.zeros((0, 4))
  if array.ndim != 2 or array.shape[1] != 4:
    raise ValueError(f'boxes must have shape (P, 4), [x, y, w, h] per person, got {array.shape}')
  bad = ~(np.all(np.isfinite(array), axis=1) & (array[:, 2] > 0) & (array[:, 3] > 0))
  if np.any(bad):
    index = int(np.argmax(bad))
    raise ValueError(f'boxes[{index}] = {array[index].tolist()}: a box [x, y, w, h] needs a '
                     'positive width and height (inverted or empty box?)')
  return array


def processing(keypoint_set: keypoint_sets.KeypointSet, *, input_size: int, stride: int,
               box_scale: float, pixel_mean: float, pixel_scale: float) -> dict[str, Any]:
  """The manifest section from_export reads: everything around the network."""
  return {
      'version': PROCESSING_VERSION,
      'input_size': int(input_size),
      'stride': int(stride),
      'box_scale': float(box_scale),
      'window': 'a box [x, y, w, h]: the square of side box_scale x max(w, h) around its '
                'centre; no box: the whole image padded to a square; bilinear, zeros outside',
      'normalisation': {'mean': float(pixel_mean), 'scale': float(pixel_scale),
                        'formula': '(pixel - mean) / scale', 'inside_model': True},
      'keypoint_names': list(keypoint_set.keypoint_names),
      'skeleton': [list(p) for p in keypoint_set.part_pairs],
      'flip_pairs': [list(p) for p in keypoint_set.flip_pairs],
      'keypoint_set': keypoint_set.to_dict(),
  }


class PoseEstimator:
  """Keypoints of the persons of an image, from a trained network.

  Options of from_workdir and from_export: `flip` (average with the mirrored
  image), `scales` (box scales whose heat maps are averaged; 1.0 among
  them), `batch_size` (crops per network call) and `box_scale` (the window's
  side over a box's longer side; default the network's training value);
  `predict` can override flip and scales.
  """

  def __init__(self, heatmap_fn: topdown.HeatmapFn, keypoint_set: keypoint_sets.KeypointSet, *,
               input_size: int, stride: int, box_scale: float, flip: bool = False,
               scales: Sequence[float] = (1.0,), batch_size: int = 8, step: int | None = None,
               source: str = ''):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    self._heatmap_fn = heatmap_fn
    self.keypoint_set = keypoint_set
    self.input_size, self.stride, self.box_scale = int(input_size), int(stride), float(box_scale)
    self.flip, self.scales = bool(flip), topdown.check_scales(scales)
    self.batch_size, self.step, self.source = int(batch_size), step, source

  def __repr__(self) -> str:
    return (f'PoseEstimator({self.source!r}, {self.keypoint_set.name}: '
            f'{len(self.keypoint_names)} keypoints, {self.input_size} px input)')

  @property
  def keypoint_names(self) -> tuple[str, ...]:
    return tuple(self.keypoint_set.keypoint_names)

  @property
  def skeleton(self) -> tuple[tuple[int, int], ...]:
    """The edges to draw, as pairs of keypoint indices."""
    return tuple(tuple(p) for p in self.keypoint_set.part_pairs)

  @classmethod
  def from_workdir(cls, workdir: str | os.PathLike, *, checkpoint: str = 'best',
                   config: Any = None, **options: Any) -> PoseEstimator:
    """The network of a training run (JAX): its checkpoint `checkpoint`
    ('best', 'latest' or a step) and the config it wrote beside it
    (`config=` a ConfigDict or a config file for runs made before that)."""
    from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
    from rhpe_jax.core import runtime  # pylint: disable=g-import-not-at-top
    runtime.setup()
    workdir = str(workdir)
    config = checkpoints.config_of_workdir(workdir, config)
    checkpoints.find_checkpoint(workdir, checkpoint)
    variables, step = checkpoints.restore_variables(config, workdir, checkpoint)
    return cls.from_variables(config, variables, step=step, source=workdir, **options)

  @classmethod
  def from_variables(cls, config: Any, variables: Mapping[str, Any], *, step: int | None = None,
                     source: str = '', **options: Any) -> PoseEstimator:
    """The network of `config` with `variables` ({'params', 'batch_stats'})."""
    import jax  # pylint: disable=g-import-not-at-top
    from rhpe_jax import model as model_lib  # pylint: disable=g-import-not-at-top
    from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
    on_device = jax.device_put(variables)
    fn = predictor.predict_fn(config, outputs=('heatmaps',))

    def heatmap_fn(crops: np.ndarray) -> np.ndarray:
      return np.asarray(jax.device_get(fn(on_device, crops)['heatmaps']))

    options.setdefault('box_scale', config.box_scale)
    return cls(heatmap_fn, keypoint_sets.of_config(config), input_size=config.input_size,
               stride=model_lib.STRIDE, step=step, source=source, **options)

  @classmethod
  def from_export(cls, export_dir: str | os.PathLike, *, threads: int | None = None,
                  **options: Any) -> PoseEstimator:
    """An export's model.onnx in onnxruntime (CPU), with the pre- and
    post-processing its manifest describes; needs numpy, Pillow and
    onnxruntime only."""
    folder = pathlib.Path(export_dir)
    manifest_path, model_path = folder / MANIFEST, folder / ONNX_FILE
    if not manifest_path.is_file():
      raise FileNotFoundError(f'{manifest_path} does not exist: export_dir is the folder '
                              'python -m experiments.export wrote')
    try:
      manifest = json.loads(manifest_path.read_text())
    except ValueError as error:
      raise ValueError(f'{manifest_path} is not JSON ({error})') from None
    section = manifest.get(PROCESSING) if isinstance(manifest, dict) else None
    if not isinstance(section, dict) or section.get('version') != PROCESSING_VERSION:
      raise ValueError(f'{folder} was exported before PoseEstimator.from_export existed (its '
                       'manifest lacks the processing section): export it again')
    if not model_path.is_file():
      raise FileNotFoundError(f"{model_path} does not exist: export with formats=['onnx']")
    try:
      import onnxruntime  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError('PoseEstimator.from_export needs onnxruntime: pip install '
                        'onnxruntime') from None
    session = onnxruntime.InferenceSession(str(model_path), onnx_session_options(threads),
                                           providers=['CPUExecutionProvider'])
    fixed = session.get_inputs()[0].shape[0]
    fixed = fixed if isinstance(fixed, int) else None
    heatmap_fn = _onnx_heatmap_fn(session, fixed)
    keypoint_set = keypoint_sets.KeypointSet.from_dict(section['keypoint_set'])
    options.setdefault('box_scale', section['box_scale'])
    return cls(heatmap_fn, keypoint_set, input_size=section['input_size'],
               stride=section['stride'], step=manifest.get('checkpoint_step'),
               source=str(folder), **options)

  def predict(self, image: ImageLike, boxes: Any = None, *, flip: bool | None = None,
              scales: Sequence[float] | None = None) -> Poses:
    """The persons in `boxes` (P, 4) [x, y, w, h] pixels of `image` (a
    path, a PIL image or an H x W x 3 uint8 RGB array; paths and PIL images
    upright by EXIF), or the whole image as one person for None."""
    return self.predict_batch([image], [boxes], flip=flip, scales=scales)[0]

  def predict_batch(self, images: Sequence[ImageLike], boxes: Sequence[Any] | None = None, *,
                    flip: bool | None = None, scales: Sequence[float] | None = None
                    ) -> list[Poses]:
    """`predict` of every image (with its boxes, when given), the persons of
    all of them through the network together, in batches of `batch_size`
    (the images are held in memory: give a long list in chunks)."""
    if boxes is not None and len(boxes) != len(images):
      raise ValueError(f'{len(images)} images but boxes for {len(boxes)}')
    scales = topdown.check_scales(self.scales if scales is None else scales)
    flip = self.flip if flip is None else flip
    crops, matrices, checked = [], [], []
    for image, given in zip(images, boxes if boxes is not None else [None] * len(images)):
      pixels = as_image(image)
      box_array = check_boxes(given, pixels.shape)
      windows = [crop_lib.box_window(None if given is None else box, pixels.shape,
                                     self.box_scale) for box in box_array]
      image_crops, image_matrices = topdown.crop_windows(pixels, windows, self.input_size, scales)
      crops.append(image_crops)
      matrices.append(image_matrices)
      checked.append(box_array)
    count = len(self.keypoint_names)
    keypoints, scores = np.zeros((0, count, 2)), np.zeros((0, count))
    if sum(len(b) for b in checked):
      keypoints, scores = topdown.predict_crops(
          self._heatmap_fn, np.concatenate(crops, axis=1), np.concatenate(matrices, axis=1),
          stride=self.stride, batch_size=self.batch_size,
          flip_permutation=self.keypoint_set.flip_permutation if flip else None)
    ends = np.cumsum([len(b) for b in checked])
    return [self._poses(keypoints[end - len(b):end], scores[end - len(b):end], b)
            for b, end in zip(checked, ends)]

  def predict_crops(self, crops: np.ndarray, input_to_image: np.ndarray, *,
                    flip: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in image pixels and scores (N, K) of crops
    already cut (N, S, S, 3) uint8 with their (N, 3, 3) input-to-image
    matrices (crop.crop): the command lines cut them in threads ahead."""
    flip = self.flip if flip is None else flip
    return topdown.predict_crops(
        self._heatmap_fn, np.asarray(crops)[None], np.asarray(input_to_image)[None],
        stride=self.stride, batch_size=self.batch_size,
        flip_permutation=self.keypoint_set.flip_permutation if flip else None)

  def _poses(self, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray) -> Poses:
    return Poses(np.asarray(keypoints, np.float32), np.asarray(scores, np.float32),
                 np.asarray(boxes, np.float32), self.keypoint_names, self.skeleton)


def _onnx_heatmap_fn(session: Any, fixed_batch: int | None) -> Callable[[np.ndarray], np.ndarray]:
  """crops -> the model's heat maps; a model of fixed batch size gets its
  batches padded or split to that size."""
  def run(crops: np.ndarray) -> np.ndarray:
    if fixed_batch is None:
      return session.run(['heatmaps'], {'images': crops})[0]
    out = []
    for first in range(0, len(crops), fixed_batch):
      chunk = crops[first:first + fixed_batch]
      padded = np.zeros((fixed_batch,) + crops.shape[1:], np.uint8)
      padded[:len(chunk)] = chunk
      out.append(session.run(['heatmaps'], {'images': padded})[0][:len(chunk)])
    return np.concatenate(out)
  return run
