"""Many images in one run (rhpe_jax.inference.batch, `predict --images`): a real
LSPET image and its variants (every EXIF orientation, 16-bit, CMYK, palette,
RGBA) give the original's keypoints; bad files are reported and skipped;
an interrupted run resumes without losing or repeating a line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rhpe_jax.inference import batch as batch_predict
from rhpe_jax.data import image_inputs
from tests.conftest import REPO, SHARED_DATA, tiny_config

LSPET_IMAGE = SHARED_DATA / 'lspet_sample' / 'images' / 'im00002.jpg'


def _stored(upright: np.ndarray, orientation: int) -> np.ndarray:
  """What a camera stores for `upright` with EXIF `orientation` (the tag's
  definition, index by index: see tests/data/test_image_io.py)."""
  h, w = upright.shape[:2]
  rows, cols = (h, w) if orientation <= 4 else (w, h)
  r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing='ij')
  return upright[{1: (r, c), 2: (r, w - 1 - c), 3: (h - 1 - r, w - 1 - c), 4: (h - 1 - r, c),
                  5: (c, r), 6: (c, w - 1 - r), 7: (h - 1 - c, w - 1 - r),
                  8: (h - 1 - c, r)}[orientation]]


def _variants(folder) -> dict[str, str]:
  """Writes the original (PNG) and its variants; {variant file: reference file}
  where the reference holds the RGB pixels the variant stands for."""
  if not LSPET_IMAGE.is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET_IMAGE.parent}')
  folder.mkdir()
  with Image.open(LSPET_IMAGE) as image:
    pixels = np.asarray(image.convert('RGB'))
  Image.fromarray(pixels).save(folder / 'original.png')
  pairs = {}
  for orientation in range(2, 9):
    picture = Image.fromarray(_stored(pixels, orientation))
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.save(folder / f'exif{orientation}.png', exif=exif.tobytes())
    pairs[f'exif{orientation}.png'] = 'original.png'
  grey = np.round(pixels @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
  Image.fromarray(grey.astype(np.uint16) * 257).save(folder / 'grey16.png')
  Image.fromarray(grey).save(folder / 'grey8.png')
  pairs['grey16.png'] = 'grey8.png'
  cmyk = np.concatenate([255 - pixels, np.zeros(pixels.shape[:2] + (1,), np.uint8)], axis=-1)
  Image.frombytes('CMYK', (pixels.shape[1], pixels.shape[0]), cmyk.tobytes()).save(
      folder / 'cmyk.tif')
  pairs['cmyk.tif'] = 'original.png'
  palette = Image.fromarray(pixels).quantize(colors=64, dither=Image.Dither.NONE)
  palette.save(folder / 'palette.png')
  table = np.array(palette.getpalette(), np.uint8).reshape(-1, 3)
  Image.fromarray(table[np.asarray(palette)]).save(folder / 'palette_rgb.png')
  pairs['palette.png'] = 'palette_rgb.png'
  alpha = np.full(pixels.shape[:2] + (1,), 255, np.uint8)
  Image.fromarray(np.concatenate([pixels, alpha], axis=-1), 'RGBA').save(folder / 'rgba.png')
  pairs['rgba.png'] = 'original.png'
  return pairs


def _records(path) -> dict[str, dict]:
  lines = path.read_text().splitlines()
  records = [json.loads(line) for line in lines]
  by_name = {os.path.basename(r['image']): r for r in records}
  assert len(by_name) == len(records)  # no image twice
  return by_name


@pytest.fixture(scope='module')
def restored(tiny_data_dir, tiny_workdir):
  from rhpe_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = tiny_config(tiny_data_dir)
  variables, step = checkpoints.restore_variables(config, str(tiny_workdir))
  return config, variables, step


def test_variants_give_the_originals_keypoints_and_bad_files_are_skipped(restored, tmp_path):
  config, variables, step = restored
  folder = tmp_path / 'images'
  pairs = _variants(folder)
  (folder / 'broken.jpg').write_bytes((folder / 'original.png').read_bytes()[:300])
  (folder / 'notes.jpg').write_text('not an image\n')
  (folder / 'readme.txt').write_text('not listed: no image suffix\n')
  items, kind = image_inputs.list_images(str(folder))
  assert kind == 'folder' and len(items) == len(pairs) + 3 + 2  # 3 references, 2 bad
  notes = []
  out = tmp_path / 'out.jsonl'
  summary = batch_predict.predict_images(config, variables, step, items, out, batch_size=4,
                                         pictures=tmp_path / 'pictures', report=notes.append)
  assert sorted(os.path.basename(p) for p in summary.failed) == ['broken.jpg', 'notes.jpg']
  assert len(notes) == 2 and all(n.startswith('skipped ') for n in notes)
  assert 'broken.jpg' in notes[0] + notes[1] and 'notes.jpg' in notes[0] + notes[1]
  records = _records(out)
  assert summary.predicted == len(records) == len(items) - 2
  with Image.open(folder / 'original.png') as original:
    width, height = original.size
  for variant, reference in pairs.items():
    got, want = records[variant], records[reference]
    assert got['image_size'] == [width, height], variant  # upright
    np.testing.assert_allclose(got['keypoints'], want['keypoints'], atol=1.0, err_msg=variant)
    with Image.open(got['picture']) as picture:
      assert picture.size[0] / picture.size[1] == pytest.approx(width / height, rel=0.02)
  record = records['original.png']
  assert record['checkpoint_step'] == step and len(record['keypoint_names']) == 16
  keypoints = np.array(record['keypoints'])
  side = max(width, height)  # the whole image, padded to a square
  assert record['window']['side'] == side
  assert np.all(np.abs(keypoints - [(width - 1) / 2, (height - 1) / 2]) <= side / 2)


def test_list_file_windows_interruption_and_resume(restored, tmp_path, monkeypatch):
  config, variables, step = restored
  if not LSPET_IMAGE.is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET_IMAGE.parent}')
  folder = tmp_path / 'photos'
  folder.mkdir()
  for k in range(7):
    (folder / f'p{k}.jpg').write_bytes(LSPET_IMAGE.read_bytes())
  listing = tmp_path / 'list.txt'
  listing.write_text('# name [centre x y, scale]\n'
                     + ''.join(f'photos/p{k}.jpg\n' for k in range(6))
                     + '\nphotos/p6.jpg 96.5 130 0.6\nphotos/p6.jpg 50 60 0.25\n')
  items = image_inputs.read_list_file(listing)
  assert len(items) == 8 and items[6] == image_inputs.ImageInput(
      str(folder / 'p6.jpg'), (96.5, 130.0), 0.6)

  from rhpe_jax.inference import predictor  # pylint: disable=g-import-not-at-top
  real_predict_fn = predictor.predict_fn
  calls = []

  def interrupted_after_two_batches(cfg, **kwargs):
    step_fn = real_predict_fn(cfg, **kwargs)

    def run(variables, images):
      if len(calls) == 2:
        raise KeyboardInterrupt
      calls.append(len(images))
      return step_fn(variables, images)
    return run

  out = tmp_path / 'out.jsonl'
  monkeypatch.setattr(predictor, 'predict_fn', interrupted_after_two_batches)
  with pytest.raises(KeyboardInterrupt):
    batch_predict.predict_images(config, variables, step, items, out, batch_size=3,
                                 report=lambda line: None)
  monkeypatch.setattr(predictor, 'predict_fn', real_predict_fn)
  first = out.read_text().splitlines()
  assert len(first) == 6  # two whole batches, nothing of the third
  with out.open('a') as f:
    f.write(first[-1][:40])  # a line torn by a kill during the write
  summary = batch_predict.predict_images(config, variables, step, items, out, batch_size=3,
                                         report=lambda line: None)
  assert summary.skipped_done == 6 and summary.predicted == 2 and not summary.failed
  lines = out.read_text().splitlines()
  assert lines[:6] == first
  records = [json.loads(line) for line in lines]
  assert [batch_predict.record_key(r) for r in records] == [i.key for i in items]
  person = records[6]
  assert person['person'] == {'center': [96.5, 130.0], 'scale': 0.6}
  side = config.box_scale * 200 * 0.6  # MPII's window
  assert person['window'] == {'center': [96.5, 130.0], 'side': pytest.approx(side)}
  assert np.all(np.abs(np.array(person['keypoints']) - [96.5, 130.0]) <= side / 2)
  # A third run finds everything done; another checkpoint step is refused.
  again = batch_predict.predict_images(config, variables, step, items, out, batch_size=3)
  assert again.predicted == 0 and again.skipped_done == 8
  with pytest.raises(ValueError, match='pass overwrite=True or another output'):
    batch_predict.predict_images(config, variables, step + 1, items, out)


def test_list_file_and_folder_parsing(tmp_path):
  (tmp_path / 'a b.jpg').write_bytes(b'')
  listing = tmp_path / 'l.txt'
  listing.write_text(f'a b.jpg 1 2 1.5\n  {tmp_path}/c.png\n#x 1 2 3\n\n')
  items = image_inputs.read_list_file(listing)
  assert items == [image_inputs.ImageInput(str(tmp_path / 'a b.jpg'), (1.0, 2.0), 1.5),
                   image_inputs.ImageInput(f'{tmp_path}/c.png')]
  for text, words in (('x.jpg 1 2 0\n', 'line 1: the centre'), ('x.jpg\ny.jpg 3\n', 'line 2'),
                      ('# only\n', 'names no images')):
    listing.write_text(text)
    with pytest.raises(ValueError, match=words):
      image_inputs.read_list_file(listing)
  (tmp_path / 'd').mkdir()
  with pytest.raises(FileNotFoundError, match='no image files'):
    image_inputs.list_images(str(tmp_path / 'd'))
  for name in ('b.PNG', 'a.jpg', 'c.txt'):
    (tmp_path / 'd' / name).write_bytes(b'')
  items, kind = image_inputs.list_images(str(tmp_path / 'd'))
  assert kind == 'folder' and [os.path.basename(i.path) for i in items] == ['a.jpg', 'b.PNG']
  items, kind = image_inputs.list_images(str(tmp_path / 'd' / '*.jpg'))
  assert kind == 'glob' and len(items) == 1
  with pytest.raises(FileNotFoundError, match='no file matches'):
    image_inputs.list_images(str(tmp_path / '*.gif'))
  with pytest.raises(FileNotFoundError, match='no such folder'):
    image_inputs.list_images(str(tmp_path / 'nowhere'))
  names = batch_predict.picture_names([image_inputs.ImageInput('/x/a/p.jpg'),
                                       image_inputs.ImageInput('/x/b/p.jpg'),
                                       image_inputs.ImageInput('/x/b/p.jpg', (1, 2), 3.0),
                                       image_inputs.ImageInput('/x/b/p q.jpg'),
                                       image_inputs.ImageInput('/x/b/p_q.jpg')])
  # One picture per image (every person of it drawn); two paths, one name: numbered.
  assert names == {'/x/a/p.jpg': 'a__p.png', '/x/b/p.jpg': 'b__p.png',
                   '/x/b/p q.jpg': 'b__p_q.png', '/x/b/p_q.jpg': 'b__p_q_2.png'}


def test_progress_eta_by_hand():
  import io
  from rhpe_jax.core import progress
  now = [100.0]
  stream = io.StringIO()
  bar = progress.Progress(50, stream=stream, clock=lambda: now[0], min_interval=0)
  bar.update(0)
  assert '0/50' in stream.getvalue() and '?img/s' in stream.getvalue()
  now[0] = 130.0  # the first batch of 10, with compilation: 30 s
  bar.update(10)
  bar.start_rate()
  now[0] = 134.0  # 8 more in 4 s: 2 images/s, 32 left: 16 s (not 30 s / 10 images' 1:36)
  bar.update(18, failed=1)
  last = stream.getvalue().split('\r')[-1]
  assert '18/50' in last and '2.00img/s' in last and '<00:16' in last, last
  assert '1 failed' in last
  assert bar.rate() == 2.0
  bar.note('skipped x.jpg: broken')
  assert 'skipped x.jpg: broken\n' in stream.getvalue()
  bar.close()
  webcam = progress.Progress(None, unit='frames', stream=stream, min_interval=0)
  webcam.update(3)
  assert '3frames' in stream.getvalue().split('\r')[-1]


def test_command_line_runs_a_folder_and_reports_failures(tiny_data_dir, tiny_workdir, tmp_path):
  if not LSPET_IMAGE.is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET_IMAGE.parent}')
  folder = tmp_path / 'in'
  folder.mkdir()
  for k in range(3):
    (folder / f'p{k}.jpg').write_bytes(LSPET_IMAGE.read_bytes())
  (folder / 'empty.jpg').write_bytes(b'')
  args = [sys.executable, '-m', 'experiments.predict', '--config=experiments/configs/demo.py',
          '--config.width=0.0625', '--config.input_size=64',
          '--config.dataset=synthetic_pose/tiny_eval', f'--config.data_dir={tiny_data_dir}',
          f'--workdir={tiny_workdir}', f'--images={folder}', f'--output={tmp_path / "out"}',
          '--batch_size=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu', RHPE_JAX_CACHE_DIR='')
  start = lambda extra: subprocess.Popen(args + extra, cwd=REPO, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  run, clash = start([]), start(['--image=x.jpg'])  # side by side
  _, clash_stderr = clash.communicate(timeout=300)
  assert clash.returncode == 2 and clash_stderr.strip().splitlines()[-1].startswith(
      'error: --images does not go with --image')  # a usage error
  done = subprocess.CompletedProcess(args, 0, *run.communicate(timeout=300))
  done.returncode = run.returncode
  assert done.returncode == 1, done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  err = [line.split('\r')[-1].strip() for line in done.stderr.splitlines()]
  assert any(line.startswith('skipped') and 'empty.jpg' in line and 'empty' in line
             for line in err), done.stderr
  assert err[-1].startswith('error: 1 of 4 images failed'), done.stderr
  assert 'predicted 3 images' in done.stdout
  assert len((tmp_path / 'out.jsonl').read_text().splitlines()) == 3
