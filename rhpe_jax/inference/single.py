"""Pose on one image (`predict --image`, `--from_split`): OUT.json, OUT.png and
the heat-map figures.

The image is read upright (rhpe_jax.data.image_io), cut to its window and
mapped back as every prediction is (rhpe_jax.inference.topdown), through the
predictor's compiled function (rhpe_jax.inference.predictor) with every
stage's maps, for the paper's figures (Fig. 1: every keypoint and body-part
map; Fig. 2: the stages).
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

import numpy as np

from rhpe_jax.inference import crop as crop_lib
from rhpe_jax.inference import topdown

FIGURE_OUTPUTS = ('stages', 'part_maps')


def dataset_image(config, split: str, index: int) -> dict[str, Any]:
  """The stored image, window and ground truth of example `index` of a split."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  data_dir = config.data_dir or None
  ds = input_pipeline.load_split(config.dataset, split, data_dir, shard_for_process=False)
  if index < 0:
    raise ValueError(f'index must be >= 0, got {index}')
  examples = list(ds.skip(index).take(1).as_numpy_iterator())
  if not examples:
    raise ValueError(f'{config.dataset} {split} has no example {index}')
  ex = examples[0]
  image = input_pipeline.decode_image(tf.constant(ex['image'])).numpy()
  centre, side = augment.person_window(
      ex['crop_to_image'], ex['objpos'], ex['scale'], config.box_scale,
      tf.constant(image.shape[:2]), ex['keypoints'], ex['keypoint_status'])
  return {'image': image, 'centre': centre.numpy(), 'side': float(side.numpy()),
          'crop_to_image': np.asarray(ex['crop_to_image'], np.float64),
          'keypoints': np.asarray(ex['keypoints']), 'status': np.asarray(ex['keypoint_status'])}


def infer(config, variables, image: np.ndarray, centre: Sequence[float], side: float
          ) -> dict[str, Any]:
  """Network outputs for the square window (`centre`, `side`) of `image`.

  Returns the crop, `input_to_image` (3, 3), every stage's keypoint maps
  (S, h, w, J), the last stage's part maps, keypoints in image pixels and
  confidences.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from rhpe_jax import model  # pylint: disable=g-import-not-at-top
  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  crops, matrices = topdown.crop_windows(image, [(centre, side)], config.input_size)
  out = jax.device_get(predictor.predict_fn(config, outputs=FIGURE_OUTPUTS)(
      variables, crops[0]))
  keypoints, confidence = topdown.poses_in_input([out['stages'][-1]], matrices, model.STRIDE)
  return {'crop': crops[0, 0], 'input_to_image': matrices[0, 0], 'stages': out['stages'][:, 0],
          'parts': out['part_maps'][0], 'keypoints': topdown.to_image(keypoints, matrices[0])[0],
          'confidence': confidence[0]}


def predict_image(config: Any, workdir: str, output: str, *, image_path: str | None = None,
                  center: Sequence[float] | None = None, scale: float | None = None,
                  heatmaps: bool = False,
                  joints: Sequence[str] = ('r_wrist', 'l_ankle', 'head_top'),
                  from_split: str | None = None, index: int = 0,
                  checkpoint: str = 'best') -> dict[str, Any]:
  """Predicts with a checkpoint of `workdir` (`config` None: the config the
  run wrote), writes OUT.json and the pictures; returns the JSON's contents."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import keypoint_sets  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import visualize  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import image_io  # pylint: disable=g-import-not-at-top
  config = checkpoints.config_of_workdir(workdir, config)
  keypoint_set = keypoint_sets.of_config(config)
  unknown = [j for j in joints if j not in keypoint_set.keypoint_names]
  if unknown:
    raise ValueError(f'unknown joints {unknown}; {keypoint_set.name} has '
                     f'{list(keypoint_set.keypoint_names)}')
  if (image_path is None) == (from_split is None):
    raise ValueError('give exactly one of image_path and from_split')
  out = pathlib.Path(output)
  if out.suffix.lower() in ('.json', '.png'):
    out = out.with_suffix('')
  if not out.parent.is_dir():
    raise FileNotFoundError(f'output directory {out.parent} does not exist')
  checkpoints.find_checkpoint(workdir, checkpoint)
  example = None
  if from_split is not None:
    if center is not None or scale is not None:
      raise ValueError('center and scale do not apply to from_split (the example has its own)')
    example = dataset_image(config, from_split, index)
    image, centre, side = example['image'], example['centre'], example['side']
  else:
    image = image_io.read_image(image_path)
    centre, side = crop_lib.window(image.shape, center, scale, config.box_scale)

  variables, step = checkpoints.restore_variables(config, workdir, checkpoint)
  result = infer(config, variables, image, centre, side)
  record: dict[str, Any] = {
      'image': str(image_path) if image_path else f'{config.dataset} {from_split}[{index}]',
      'image_size': [int(image.shape[1]), int(image.shape[0])],
      'checkpoint_step': step,
      'keypoint_names': list(keypoint_set.keypoint_names),
      'keypoints': np.round(result['keypoints'], 3).tolist(),
      'confidence': np.round(result['confidence'], 5).tolist(),
      'window': {'center': [float(c) for c in centre], 'side': float(side)},
      'coordinates': '0-based pixel centres of the upright image (add 1 for MATLAB)',
      'files': {},
  }
  if example is not None:
    c2i = example['crop_to_image']
    record['keypoints_original_image'] = np.round(
        result['keypoints'] @ c2i[:, :2].T + c2i[:, 2], 3).tolist()
    record['ground_truth'] = {'keypoints': example['keypoints'].tolist(),
                              'status': example['status'].tolist()}

  picture, points = visualize.enlarge(image, result['keypoints'])
  picture = visualize.draw_skeleton(picture, points, None, keypoint_set)
  png = out.parent / (out.name + '.png')
  Image.fromarray(picture).save(png)
  record['files']['skeleton'] = str(png)
  if heatmaps:
    crop, _ = visualize.enlarge(result['crop'], None, min_side=256)
    ids = [keypoint_set.keypoint_index(j) for j in joints]
    names = ['feed-forward'] + [f'pass {k}' for k in range(1, result['stages'].shape[0])]
    stages_png = out.parent / (out.name + '_stages.png')
    visualize.save_stage_figure(stages_png, crop, result['stages'], ids, list(joints), names)
    maps_png = out.parent / (out.name + '_maps.png')
    visualize.save_maps_figure(maps_png, crop, result['stages'][-1], result['parts'])
    record['files']['stages'] = str(stages_png)
    record['files']['maps'] = str(maps_png)
  json_path = out.parent / (out.name + '.json')
  record['files']['json'] = str(json_path)
  json_path.write_text(json.dumps(record, indent=1) + '\n')
  return record
