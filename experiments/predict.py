r"""Single-person pose on any image with a trained checkpoint.

  python -m experiments.predict --config=experiments/configs/mpii.py --workdir=runs/mpii \
      --image=photo.jpg [--center X Y --scale S] --output=out/photo \
      [--heatmaps] [--joints=r_wrist,l_ankle] [--checkpoint=best|latest|STEP]

  # many images in one run: a folder, a glob or a list file (PATH [X Y SCALE] per line)
  python -m experiments.predict --config=... --workdir=... --images=photos/ \
      --output=out/photos.jsonl [--pictures=out/pictures] [--batch_size=8] [--overwrite]

  # the demo: the image of a dataset example instead of a file
  python -m experiments.predict --config=experiments/configs/demo.py --workdir=runs/demo \
      --from_split=validation --index=0 --output=runs/demo/predict_0 --heatmaps

Without --center/--scale the whole image, padded to a square, is the network
input; with them the person-centred window of MPII's convention (centre in
0-based pixels, scale = person height / 200 px; the window side is
config.box_scale x 200 x scale). Writes
  OUT.json         keypoints in the image's pixels (0-based), per-joint
                   confidence (heat-map maximum), joint names, the crop
  OUT.png          the skeleton on the image (left limbs lighter)
  OUT_stages.png   (--heatmaps) every output stage's heat maps for --joints,
                   the paper's Fig. 2
  OUT_maps.png     (--heatmaps) all keypoint maps and all body-part maps
                   superimposed over the input, the paper's Fig. 1

With --images, every image (a folder's image files, sorted; the files a glob
matches; or the paths of a list file, each optionally with a person's centre
X Y and scale, see rhpe_jax/data/image_inputs.py) goes through one compiled step in
batches of --batch_size, with a progress bar and ETA on stderr. OUT is one
JSON Lines file: a line per image (keypoints, confidence, joint names, window,
checkpoint step; `picture` with --pictures=DIR, where a skeleton PNG per image
is drawn). An image that cannot be read is reported by name and skipped; the
run ends with the count of failures and exit status 1 if any failed. Lines are
written batch by batch: after an interruption, the same command resumes,
skipping the images already in OUT (--overwrite starts afresh).

Images are read upright (their EXIF orientation applied), 16-bit images
scaled to 8 bits, every colour mode to RGB (rhpe_jax/data/image_io.py): keypoints
and pictures are in the frame an image viewer shows.

Library logging is hidden; --verbosity=0 shows it.
"""
from __future__ import annotations

import functools
import json
import pathlib
import sys
from typing import Any, Sequence

from absl import flags

from rhpe_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined on demand, so that importing this module
  next to other scripts of the project does not clash over --config)."""
  cli.define_checkpoint_flags()
  flags.DEFINE_string('image', None, 'Image file (JPEG, PNG, ...).')
  flags.DEFINE_string('images', None, 'Many images: a folder, a glob (quote it) or a text '
                      'file of paths, each optionally followed by centre X Y and scale.')
  flags.DEFINE_string('pictures', None, 'With --images: draw each skeleton into this folder.')
  flags.DEFINE_integer('batch_size', 8, 'With --images: images per network step.')
  flags.DEFINE_bool('overwrite', False, 'With --images: replace OUT instead of resuming it.')
  flags.DEFINE_list('center', None, 'Person centre X,Y in image pixels (or --center X Y).')
  flags.DEFINE_float('scale', None, 'Person height / 200 px (MPII scale); needs --center.')
  flags.DEFINE_string('output', None, 'Output prefix: writes OUT.json, OUT.png, ...')
  flags.DEFINE_bool('heatmaps', False, 'Also draw the heat-map figures.')
  flags.DEFINE_list('joints', ['r_wrist', 'l_ankle', 'head_top'],
                    'Joints shown in OUT_stages.png.')
  flags.DEFINE_string('from_split', None, 'Take the image of a dataset example of this split.')
  flags.DEFINE_integer('index', 0, 'Example index within --from_split.')


def load_image(path: str):
  """(H, W, 3) uint8 RGB of an image file, upright (rhpe_jax.data.image_io);
  one-line errors for bad files."""
  from rhpe_jax.data import image_io  # pylint: disable=g-import-not-at-top
  return image_io.read_image(path)


def dataset_image(config, split: str, index: int) -> dict[str, Any]:
  """The stored image, window and ground truth of example `index` of a split."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import augment  # pylint: disable=g-import-not-at-top
  from rhpe_jax.data import input_pipeline
  data_dir = config.data_dir or None
  ds = input_pipeline.load_split(config.dataset, split, data_dir, shard_for_process=False)
  if index < 0:
    raise ValueError(f'--index must be >= 0, got {index}')
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


def window(image_shape: tuple[int, ...], center: Sequence[float] | None,
           scale: float | None, box_scale: float) -> tuple[tuple[float, float], float]:
  """Centre and side (pixels) of the square the network sees."""
  from rhpe_jax.inference import batch as batch_predict  # pylint: disable=g-import-not-at-top
  return batch_predict.window(image_shape, center, scale, box_scale)


def infer(config, state, image, centre, side) -> dict[str, Any]:
  """Network outputs for the square window (`centre`, `side`) of `image`.

  Returns the crop, `input_to_image` (3, 3), every stage's keypoint maps
  (S, h, w, J), the last stage's part maps, keypoints in image pixels and
  confidences.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from rhpe_jax.data import augment
  from rhpe_jax.codec import decode
  from rhpe_jax.model import network as model_lib
  size = config.input_size
  matrix = augment.input_to_stored_matrix(tf.constant(centre, tf.float64), side, size,
                                          augment.identity_params())
  crop = augment.warp_image(tf.constant(image), matrix, size).numpy()
  keypoint_maps, part_maps = _network(json.dumps(config.to_dict(), sort_keys=True, default=str))(
      {'params': state.params, 'batch_stats': state.batch_stats},
      model_lib.normalize_images(crop[None]))
  stages = np.asarray(keypoint_maps, np.float32)[:, 0]
  coords, confidence = decode.heatmaps_to_keypoints(stages[-1])
  matrix = matrix.numpy()
  keypoints = np.asarray(decode.transform_points(decode.grid_to_input(coords), matrix[:2]))
  return {'crop': crop, 'input_to_image': matrix, 'stages': stages,
          'parts': np.asarray(part_maps, np.float32)[-1, 0], 'keypoints': keypoints,
          'confidence': np.asarray(confidence)}


@functools.lru_cache(maxsize=4)
def _network(config_json: str):
  """The jitted inference network of a config, compiled once per process."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import steps as train_step  # pylint: disable=g-import-not-at-top
  net = model_lib.create_model(ml_collections.ConfigDict(json.loads(config_json)))
  return jax.jit(lambda v, x: net.apply(v, x, train=False))


def run(config, workdir: str, output: str, *, image_path: str | None = None,
        center: Sequence[float] | None = None, scale: float | None = None,
        heatmaps: bool = False, joints: Sequence[str] = ('r_wrist', 'l_ankle', 'head_top'),
        from_split: str | None = None, index: int = 0,
        checkpoint: str = 'best') -> dict[str, Any]:
  """Predicts, writes OUT.json and the pictures; returns the JSON's contents."""
  from rhpe_jax.evaluation import evaluator as evaluation  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import skeleton
  skel = skeleton.get_skeleton(config.skeleton)
  unknown = [j for j in joints if j not in skel.joint_names]
  if unknown:
    raise ValueError(f'unknown joints {unknown}; {skel.name} has {list(skel.joint_names)}')
  if (image_path is None) == (from_split is None):
    raise ValueError('give exactly one of --image, --images and --from_split')
  out = pathlib.Path(output)
  if out.suffix.lower() in ('.json', '.png'):
    out = out.with_suffix('')
  if not out.parent.is_dir():
    raise FileNotFoundError(f'output directory {out.parent} does not exist')
  evaluation.find_checkpoint(workdir, checkpoint)
  example = None
  if from_split is not None:
    if center is not None or scale is not None:
      raise ValueError('--center/--scale do not apply to --from_split (the example has its own)')
    example = dataset_image(config, from_split, index)
    image, centre, side = example['image'], example['centre'], example['side']
  else:
    image = load_image(image_path)
    centre, side = window(image.shape, center, scale, config.box_scale)

  import numpy as np  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import visualize  # pylint: disable=g-import-not-at-top
  state, step = evaluation.restore_state(config, workdir, checkpoint)
  result = infer(config, state, image, centre, side)
  record: dict[str, Any] = {
      'image': str(image_path) if image_path else f'{config.dataset} {from_split}[{index}]',
      'image_size': [int(image.shape[1]), int(image.shape[0])],
      'checkpoint_step': step,
      'joint_names': list(skel.joint_names),
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
  picture = visualize.draw_skeleton(picture, points, None, skel)
  png = out.parent / (out.name + '.png')
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(picture).save(png)
  record['files']['skeleton'] = str(png)
  if heatmaps:
    crop, _ = visualize.enlarge(result['crop'], None, min_side=256)
    ids = [skel.joint_index(j) for j in joints]
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


def run_many(config, workdir: str, images: str, output: str, *,
             pictures: str | None = None, batch_size: int = 8, overwrite: bool = False,
             checkpoint: str = 'best') -> int:
  """Predicts every image `images` names into the JSON Lines file `output`;
  returns the exit status (1 if any image failed)."""
  import signal  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from rhpe_jax.inference import batch as batch_predict
  from rhpe_jax.evaluation import evaluator as evaluation
  from rhpe_jax.data import image_inputs
  from rhpe_jax.core import runtime
  if batch_size < 1:
    raise ValueError(f'--batch_size must be >= 1, got {batch_size}')
  items, kind = image_inputs.list_images(images)
  runtime.enable_compilation_cache()
  out = pathlib.Path(output)
  if not out.suffix:
    out = out.with_suffix('.jsonl')
  evaluation.find_checkpoint(workdir, checkpoint)
  if not out.parent.is_dir():
    raise FileNotFoundError(f'output directory {out.parent} does not exist')
  state, step = evaluation.restore_state(config, workdir, checkpoint)
  print(f'{len(items)} images ({kind} {images}), checkpoint step {step}, '
        f'batches of {batch_size}', flush=True)

  def stop(signum, frame):  # pylint: disable=unused-argument
    raise KeyboardInterrupt
  previous = signal.signal(signal.SIGTERM, stop)
  try:
    summary = batch_predict.predict_images(
        config, state, step, items, out, batch_size=batch_size, pictures=pictures,
        overwrite=overwrite)
  except KeyboardInterrupt:
    kept = len(batch_predict.read_existing(out))
    print(f'interrupted: {out} keeps {kept} results; the same command resumes', file=sys.stderr)
    return 130
  finally:
    signal.signal(signal.SIGTERM, previous)
  rate = f', {summary.images_per_s:.2f} images/s' if summary.images_per_s else ''
  print(f'predicted {summary.predicted} images in {summary.seconds:.1f} s{rate}'
        + (f'; {summary.skipped_done} already in {out}' if summary.skipped_done else '')
        + f'; wrote {out}', flush=True)
  if summary.failed:
    print(f'error: {len(summary.failed)} of {summary.total} images failed (reported above '
          'as "skipped"); they are not in the output', file=sys.stderr)
    return 1
  return 0


def join_center_values(argv: Sequence[str]) -> list[str]:
  """Accepts `--center X Y` (two words) as absl's `--center=X,Y`."""
  out, i = [], 0
  argv = list(argv)
  while i < len(argv):
    if argv[i] in ('--center', '-center') and i + 2 < len(argv):
      out.append(f'--center={argv[i + 1]},{argv[i + 2]}')
      i += 3
    else:
      out.append(argv[i])
      i += 1
  return out


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    return cli.error_status(ValueError(f'unexpected arguments: {" ".join(argv[1:])}'))
  try:
    for name in ('config', 'workdir', 'output'):
      if getattr(FLAGS, name) is None:
        raise ValueError(f'--{name} is required')
    center = None
    if FLAGS.center is not None:
      try:
        center = [float(v) for v in FLAGS.center]
      except ValueError:
        raise ValueError(f'--center needs two numbers, got {FLAGS.center}') from None
    if FLAGS.images is not None:
      clashing = [f'--{name}' for name in ('image', 'from_split', 'center', 'scale')
                  if getattr(FLAGS, name) is not None] + ['--heatmaps'] * FLAGS.heatmaps
      if clashing:
        raise ValueError(f'--images does not go with {", ".join(clashing)} (a list file '
                         'gives a centre and scale per image)')
      return run_many(FLAGS.config, FLAGS.workdir, FLAGS.images, FLAGS.output,
                      pictures=FLAGS.pictures, batch_size=FLAGS.batch_size,
                      overwrite=FLAGS.overwrite, checkpoint=FLAGS.checkpoint)
    record = run(FLAGS.config, FLAGS.workdir, FLAGS.output, image_path=FLAGS.image,
                 center=center, scale=FLAGS.scale, heatmaps=FLAGS.heatmaps,
                 joints=FLAGS.joints, from_split=FLAGS.from_split, index=FLAGS.index,
                 checkpoint=FLAGS.checkpoint)
    print(f'wrote {", ".join(record["files"].values())}')
  except (ValueError, OSError) as e:  # bad input, missing or unreadable files
    return cli.error_status(e)
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run(main, argv=join_center_values(sys.argv))
