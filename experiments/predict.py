r"""Single-person pose on any image with a trained checkpoint.

  python -m experiments.predict --config=experiments/configs/mpii.py --workdir=runs/mpii \
      --image=photo.jpg [--center X Y --scale S] --output=out/photo \
      [--heatmaps] [--joints=r_wrist,l_ankle] [--checkpoint=best|latest|STEP]

  # many images in one run: a folder, a glob or a list file (PATH [X Y SCALE] per line)
  python -m experiments.predict --config=... --workdir=... --images=photos/ \
      --output=out/photos.jsonl [--pictures=out/pictures] [--batch_size=8] [--overwrite]

  # every person a detector found: its boxes (COCO results format) on a folder of images
  python -m experiments.predict --config=... --workdir=... --boxes=detections.json \
      --images=photos/ --output=out/keypoints.json [--box_score_threshold=0.3] \
      [--annotations=person_keypoints.json] [--pictures=out/pictures]

  # a video file or a webcam (--video=0): OUT.mp4 with the skeletons, OUT.jsonl per frame
  python -m experiments.predict --config=... --workdir=... --video=clip.mp4 \
      --output=out/clip.mp4 [--box=X,Y,W,H | --boxes=detections.json] [--max_frames=N] \
      [--smooth_min_cutoff=HZ --smooth_beta=B | --nosmooth]

  # the demo: the image of a dataset example instead of a file
  python -m experiments.predict --config=experiments/configs/demo.py --workdir=runs/demo \
      --from_split=validation --index=0 --output=runs/demo/predict_0 --heatmaps

Writes OUT.json (keypoints in 0-based upright-image pixels), OUT.png and with
--heatmaps the paper's figures (rhpe_jax.inference.single); with --images one
resumable JSON Lines file, exit status 1 if an image failed
(rhpe_jax.inference.batch); with --boxes a COCO keypoint results file and its
resumable per-box progress OUT.jsonl (rhpe_jax.inference.boxes); with --video
the drawn video and one JSON line per frame (rhpe_jax.inference.video).
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import app, flags

from rhpe_jax import cli
from rhpe_jax.inference import smoothing

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags (defined on demand: other scripts of the project define --config too)."""
  cli.define_checkpoint_flags()
  flags.DEFINE_string('image', None, 'Image file (JPEG, PNG, ...).')
  flags.DEFINE_string('images', None, 'A folder, a glob (quoted) or a list file of images.')
  flags.DEFINE_string('pictures', None, 'With --images: draw each skeleton into this folder.')
  flags.DEFINE_integer('batch_size', 8, 'With --images: images per network step.')
  flags.DEFINE_bool('overwrite', False, 'With --images: replace OUT instead of resuming it.')
  flags.DEFINE_string('boxes', None, 'With --images: person boxes (COCO results JSON) to '
                      'predict; OUT is then a COCO keypoint results file.')
  flags.DEFINE_float('box_score_threshold', 0.3, 'With --boxes: the least box score predicted.')
  flags.DEFINE_string('annotations', None, 'With --boxes: a COCO annotation file whose images '
                      'give the image ids (default: the number a file name ends in).')
  flags.DEFINE_string('video', None, 'A video file, or a webcam number (0).')
  flags.DEFINE_list('box', None, "With --video: the first frame's person box X,Y,W,H.")
  flags.DEFINE_integer('max_frames', None, 'With --video: only the first N frames.')
  flags.DEFINE_bool('smooth', True, 'With --video: One-Euro smoothing (--nosmooth: raw only).')
  flags.DEFINE_float('smooth_min_cutoff', smoothing.MIN_CUTOFF,
                     "With --video: the filter's least cutoff (Hz).")
  flags.DEFINE_float('smooth_beta', smoothing.BETA,
                     'With --video: its cutoff rise per pixel/s of speed.')
  flags.DEFINE_list('center', None, 'Person centre X,Y in image pixels (or --center X Y).')
  flags.DEFINE_float('scale', None, 'Person height / 200 px (MPII scale); needs --center.')
  flags.DEFINE_string('output', None, 'Output prefix: writes OUT.json, OUT.png, ...')
  flags.DEFINE_bool('heatmaps', False, 'Also draw the heat-map figures.')
  flags.DEFINE_list('joints', ['r_wrist', 'l_ankle', 'head_top'], 'Joints of OUT_stages.png.')
  flags.DEFINE_string('from_split', None, 'Take the image of a dataset example of this split.')
  flags.DEFINE_integer('index', 0, 'Example index within --from_split.')


def join_center_values(argv: Sequence[str]) -> list[str]:
  """Accepts `--center X Y` (two words) as absl's `--center=X,Y`."""
  out, i, argv = [], 0, list(argv)
  while i < len(argv):
    if argv[i] in ('--center', '-center') and i + 2 < len(argv):
      out.append(f'--center={argv[i + 1]},{argv[i + 2]}')
      i += 3
    else:
      out.append(argv[i])
      i += 1
  return out


# Library arguments whose flags are named otherwise (cli.as_flags).
RENAMED = {'source': 'video', 'min_cutoff': 'smooth_min_cutoff', 'beta': 'smooth_beta'}

# The flags of each way to run, beyond --config, --workdir, --output and
# --checkpoint; any other flag given is a usage error naming both.
MODES = {
    'video': ('video', 'box', 'boxes', 'box_score_threshold', 'max_frames', 'smooth',
              'smooth_min_cutoff', 'smooth_beta', 'batch_size', 'overwrite'),
    'boxes': ('images', 'boxes', 'box_score_threshold', 'annotations', 'pictures',
              'batch_size', 'overwrite'),
    'images': ('images', 'pictures', 'batch_size', 'overwrite'),
    'image': ('image', 'center', 'scale', 'heatmaps', 'joints', 'from_split', 'index'),
}


def mode_of_flags() -> str:
  """The way to run the flags ask for; raises app.UsageError for flags of another."""
  mode = ('video' if FLAGS.video is not None else 'boxes' if FLAGS.boxes is not None
          else 'images' if FLAGS.images is not None else 'image')
  given = {name for names in MODES.values() for name in names if FLAGS[name].present}
  stray = sorted(given - set(MODES[mode]))
  if stray:
    which = {'video': '--video', 'boxes': '--boxes', 'images': '--images',
             'image': 'one image (--image or --from_split)'}[mode]
    raise app.UsageError(f'{which} does not go with {", ".join("--" + n for n in stray)}')
  if mode == 'video' and FLAGS.box is not None and FLAGS.boxes is not None:
    raise app.UsageError('--video takes --box or --boxes, not --box and --boxes together')
  if mode == 'boxes' and FLAGS.images is None:
    raise app.UsageError('--boxes needs --images (the folder of the images)')
  return mode


def main(argv: Sequence[str]) -> int:
  cli.check_usage(argv, required=('workdir', 'output'))
  mode = mode_of_flags()
  if mode == 'video':
    from rhpe_jax.inference import tracking, video  # pylint: disable=g-import-not-at-top
    try:
      if FLAGS.box is not None:
        tracking.parse_box(FLAGS.box)
      smoothing.check_parameters(FLAGS.smooth_min_cutoff, FLAGS.smooth_beta)
    except ValueError as error:
      raise app.UsageError(cli.as_flags(str(error), ['box'], RENAMED)) from None
    return video.run_video(
        FLAGS.config, FLAGS.workdir, FLAGS.video, FLAGS.output, box=FLAGS.box, boxes=FLAGS.boxes,
        box_score_threshold=FLAGS.box_score_threshold, max_frames=FLAGS.max_frames,
        smooth=video.Smoothing(FLAGS.smooth, FLAGS.smooth_min_cutoff, FLAGS.smooth_beta),
        batch_size=FLAGS.batch_size, overwrite=FLAGS.overwrite, checkpoint=FLAGS.checkpoint)
  if mode == 'boxes':
    from rhpe_jax.inference import boxes  # pylint: disable=g-import-not-at-top
    try:
      boxes.check_score_threshold(FLAGS.box_score_threshold)
    except ValueError as error:
      raise app.UsageError(f'--{error}') from None
    return boxes.predict_boxes(
        FLAGS.config, FLAGS.workdir, FLAGS.boxes, FLAGS.images, FLAGS.output,
        annotations=FLAGS.annotations, box_score_threshold=FLAGS.box_score_threshold,
        pictures=FLAGS.pictures, batch_size=FLAGS.batch_size, overwrite=FLAGS.overwrite,
        checkpoint=FLAGS.checkpoint)
  if mode == 'images':
    from rhpe_jax.inference import batch  # pylint: disable=g-import-not-at-top
    return batch.predict_folder(FLAGS.config, FLAGS.workdir, FLAGS.images, FLAGS.output,
                                pictures=FLAGS.pictures, batch_size=FLAGS.batch_size,
                                overwrite=FLAGS.overwrite, checkpoint=FLAGS.checkpoint)
  try:
    center = None if FLAGS.center is None else [float(v) for v in FLAGS.center]
  except ValueError:
    raise ValueError(f'--center needs two numbers, got {FLAGS.center}') from None
  if (center is None) != (FLAGS.scale is None):
    raise app.UsageError('--center and --scale go together (the person window)')
  from rhpe_jax.inference import single  # pylint: disable=g-import-not-at-top
  record = single.predict_image(
      FLAGS.config, FLAGS.workdir, FLAGS.output, image_path=FLAGS.image, center=center,
      scale=FLAGS.scale, heatmaps=FLAGS.heatmaps, joints=FLAGS.joints,
      from_split=FLAGS.from_split, index=FLAGS.index, checkpoint=FLAGS.checkpoint)
  print(f'wrote {", ".join(record["files"].values())}')
  return 0


if __name__ == '__main__':
  define_flags()
  cli.run(main, argv=join_center_values(sys.argv), compilation_cache=True, renamed=RENAMED)
