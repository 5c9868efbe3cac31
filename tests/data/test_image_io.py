"""rhpe_jax.data.image_io on variants of a real LSPET image: each EXIF orientation,
16-bit and other high-depth greys, CMYK, palette, alpha. Each variant is made
here from the plain RGB original by the definition of its format (index
formulas of the EXIF orientations, NumPy colour arithmetic), and read back:
the pixels must match the original, and the annotated joints must be found
at the same place (template matching, within 1 px)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
from PIL import Image

from rhpe_jax.data import image_io
from tests.conftest import SHARED_DATA

LSPET = SHARED_DATA / 'lspet_sample'
INDEX = 1  # im00002.jpg: 194 x 265, all 14 joints visible, not square


@pytest.fixture(scope='module')
def original():
  """(RGB pixels, visible joints (K, 2) as 0-based pixel centres)."""
  path = LSPET / 'images' / f'im{INDEX + 1:05d}.jpg'
  if not path.is_file():
    pytest.skip(f'the LSPET sample is not at {LSPET}')
  with Image.open(path) as image:
    assert image.mode == 'RGB'
    pixels = np.asarray(image).copy()
  joints = scipy.io.loadmat(LSPET / 'joints.mat')['joints'][:, :, INDEX]
  visible = joints[:, 2] == 1
  return pixels, joints[visible, :2] - 1.0  # MATLAB's 1-based pixels


def stored_from_upright(upright: np.ndarray, orientation: int) -> np.ndarray:
  """The pixels a camera stores with EXIF `orientation` for a picture that
  looks like `upright` (H x W): S[r, c] written out per the tag's definition
  (where the stored row 0 and column 0 lie in the shown picture)."""
  h, w = upright.shape[:2]
  rows, cols = ((h, w) if orientation <= 4 else (w, h))
  r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing='ij')
  source = {  # (upright row, upright column) of stored pixel (r, c)
      1: (r, c), 2: (r, w - 1 - c), 3: (h - 1 - r, w - 1 - c), 4: (h - 1 - r, c),
      5: (c, r), 6: (c, w - 1 - r), 7: (h - 1 - c, w - 1 - r), 8: (h - 1 - c, r),
  }[orientation]
  return upright[source]


def stored_point(point: np.ndarray, size: tuple[int, int], orientation: int) -> np.ndarray:
  """Upright (x, y) to stored (x, y), the inverse of `stored_from_upright`'s map."""
  h, w = size
  x, y = point
  return np.array({1: (x, y), 2: (w - 1 - x, y), 3: (w - 1 - x, h - 1 - y), 4: (x, h - 1 - y),
                   5: (y, x), 6: (y, w - 1 - x), 7: (h - 1 - y, w - 1 - x),
                   8: (h - 1 - y, x)}[orientation])


def found_at(reference: np.ndarray, image: np.ndarray, point: np.ndarray,
             radius: int = 7, search: int = 6) -> np.ndarray:
  """Where the reference patch around `point` best matches `image` (sum of
  squared differences over a +-`search` px neighbourhood), as (x, y)."""
  x, y = np.round(point).astype(int)
  patch = reference[y - radius:y + radius + 1, x - radius:x + radius + 1].astype(np.float64)
  best, where = np.inf, None
  for dy in range(-search, search + 1):
    for dx in range(-search, search + 1):
      y0, x0 = y + dy - radius, x + dx - radius
      if y0 < 0 or x0 < 0 or y0 + patch.shape[0] > image.shape[0] or x0 + patch.shape[1] > image.shape[1]:
        continue
      window = image[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]].astype(np.float64)
      cost = np.sum((window - patch) ** 2)
      if cost < best:
        best, where = cost, np.array([x + dx, y + dy], np.float64)
  return where


def inner_joints(pixels: np.ndarray, joints: np.ndarray, margin: int = 14) -> np.ndarray:
  h, w = pixels.shape[:2]
  keep = ((joints[:, 0] >= margin) & (joints[:, 0] < w - margin)
          & (joints[:, 1] >= margin) & (joints[:, 1] < h - margin))
  return joints[keep]


def assert_same_joints(reference, read, joints, tolerance=1.0):
  joints = inner_joints(reference, joints)
  assert len(joints) >= 8
  for point in joints:
    target = np.round(point)
    assert np.max(np.abs(found_at(reference, read, target) - target)) <= tolerance, point


def save(tmp_path, name, image: Image.Image, **kwargs):
  path = tmp_path / name
  image.save(path, **kwargs)
  return path


def with_orientation(pixels: np.ndarray, orientation: int) -> Image.Image:
  image = Image.fromarray(pixels)
  exif = image.getexif()
  exif[image_io.ORIENTATION_TAG] = orientation
  image.info['exif'] = exif.tobytes()
  return image


def grey_of(pixels: np.ndarray) -> np.ndarray:
  """ITU-R 601 luma in 0-255, float."""
  return pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_gives_the_upright_picture(original, tmp_path, orientation):
  pixels, joints = original
  stored = stored_from_upright(pixels, orientation)
  # The test's own map agrees with itself: the joint's pixel is where the map says.
  for point in joints:
    xs, ys = stored_point(np.round(point).astype(int), pixels.shape[:2], orientation)
    x, y = np.round(point).astype(int)
    np.testing.assert_array_equal(stored[ys, xs], pixels[y, x])
  image = with_orientation(stored, orientation)
  path = save(tmp_path, 'o.png', image, exif=image.info['exif'])
  read = image_io.read_image(path)
  np.testing.assert_array_equal(read, pixels)
  assert_same_joints(pixels, read, joints, tolerance=0)
  np.testing.assert_array_equal(image_io.read_image(path, apply_orientation=False), stored)


@pytest.mark.parametrize('orientation', (3, 6, 8))
def test_phone_jpeg_with_orientation(original, tmp_path, orientation):
  """JPEG (lossy): the upright picture within JPEG noise, joints within 1 px."""
  pixels, joints = original
  image = with_orientation(stored_from_upright(pixels, orientation), orientation)
  path = save(tmp_path, 'phone.jpg', image, exif=image.info['exif'], quality=95)
  read = image_io.read_image(path)
  assert read.shape == pixels.shape and read.dtype == np.uint8
  assert np.mean(np.abs(read.astype(int) - pixels)) < 3.0
  assert_same_joints(pixels, read, joints)


def test_16_bit_and_other_deep_greys_are_scaled(original, tmp_path):
  pixels, joints = original
  grey8 = np.round(grey_of(pixels)).astype(np.uint8)
  grey16 = grey8.astype(np.uint16) * 257  # 0-255 exactly onto 0-65535
  variants = {
      'g16.png': Image.fromarray(grey16),             # I;16
      'g16.tif': Image.fromarray(grey16),             # I;16, BitsPerSample 16
      'g32.tif': Image.fromarray(grey16.astype(np.int32)),  # I, 32-bit, values of 16 bits
      'f.tif': Image.fromarray((grey8 / 255.0).astype(np.float32)),  # F in [0, 1]
      'g8.png': Image.fromarray(grey8),               # L
  }
  expected = np.repeat(grey8[..., None], 3, axis=-1)
  modes = set()
  for name, image in variants.items():
    path = save(tmp_path, name, image)
    with Image.open(path) as reopened:
      modes.add(reopened.mode)
    read = image_io.read_image(path)
    np.testing.assert_array_equal(read, expected, err_msg=name)
    assert_same_joints(expected, read, joints, tolerance=0)
  assert {'I;16', 'I', 'F', 'L'} <= modes
  # Values between the 8-bit levels round to the nearest level (not clipped,
  # not truncated): a 16-bit ramp against round(v / 257).
  ramp = np.arange(0, 65536, 61, dtype=np.uint16).reshape(1, -1)
  read = image_io.read_image(save(tmp_path, 'ramp.png', Image.fromarray(ramp)))
  np.testing.assert_array_equal(read[0, :, 0], np.floor(ramp[0] / 257.0 + 0.5).astype(np.uint8))


def test_16_bit_grey_is_the_original_grey(original, tmp_path):
  """A 16-bit grey of full precision reads back within one level of the
  original's 8-bit grey, and the joints are found where they were."""
  pixels, joints = original
  grey = grey_of(pixels)
  grey16 = np.round(grey * (65535 / 255)).astype(np.uint16)
  read = image_io.read_image(save(tmp_path, 'g.png', Image.fromarray(grey16)))
  expected = np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=-1)
  assert np.max(np.abs(read.astype(int) - expected)) <= 1
  assert_same_joints(expected, read, joints)


def cmyk_of(pixels: np.ndarray) -> np.ndarray:
  """The usual naive CMYK: K = 1 - max(R, G, B), C = (1 - R - K) / (1 - K), ..."""
  rgb = pixels.astype(np.float64) / 255.0
  k = 1.0 - rgb.max(axis=-1)
  denominator = np.where(k < 1.0, 1.0 - k, 1.0)
  cmy = (1.0 - rgb - k[..., None]) / denominator[..., None]
  return np.round(255.0 * np.concatenate([cmy, k[..., None]], axis=-1)).astype(np.uint8)


def test_cmyk(original, tmp_path):
  pixels, joints = original
  cmyk = Image.frombytes('CMYK', (pixels.shape[1], pixels.shape[0]), cmyk_of(pixels).tobytes())
  read = image_io.read_image(save(tmp_path, 'c.tif', cmyk))
  assert np.max(np.abs(read.astype(int) - pixels)) <= 2  # rounding of C, M, Y and K
  assert_same_joints(pixels, read, joints)
  read = image_io.read_image(save(tmp_path, 'c.jpg', cmyk, quality=95))  # Adobe CMYK JPEG
  assert np.mean(np.abs(read.astype(int) - pixels)) < 4.0
  assert_same_joints(pixels, read, joints)


def test_palette(original, tmp_path):
  pixels, joints = original
  palette_image = Image.fromarray(pixels).quantize(colors=256, dither=Image.Dither.NONE)
  table = np.array(palette_image.getpalette(), np.uint8).reshape(-1, 3)
  expected = table[np.asarray(palette_image)]  # the colours the indices name
  read = image_io.read_image(save(tmp_path, 'p.png', palette_image))
  np.testing.assert_array_equal(read, expected)
  assert np.mean(np.abs(read.astype(int) - pixels)) < 6.0
  assert_same_joints(pixels, read, joints)
  # One transparent palette entry: its pixels show white.
  index = int(np.asarray(palette_image)[0, 0])
  path = save(tmp_path, 'pt.png', palette_image, transparency=index)
  read = image_io.read_image(path)
  transparent = np.asarray(palette_image) == index
  assert np.all(read[transparent] == 255)
  np.testing.assert_array_equal(read[~transparent], expected[~transparent])


def test_alpha_is_composited_over_white(original, tmp_path):
  pixels, joints = original
  h, w = pixels.shape[:2]
  opaque = np.concatenate([pixels, np.full((h, w, 1), 255, np.uint8)], axis=-1)
  read = image_io.read_image(save(tmp_path, 'a.png', Image.fromarray(opaque, 'RGBA')))
  np.testing.assert_array_equal(read, pixels)
  assert_same_joints(pixels, read, joints, tolerance=0)
  alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
  rgba = np.concatenate([pixels, alpha[..., None]], axis=-1)
  read = image_io.read_image(save(tmp_path, 'b.png', Image.fromarray(rgba, 'RGBA')))
  a = alpha[..., None] / 255.0
  np.testing.assert_array_equal(read, np.round(pixels * a + 255 * (1 - a)).astype(np.uint8))
  grey = np.round(grey_of(pixels)).astype(np.uint8)
  la = Image.fromarray(np.stack([grey, alpha], axis=-1), 'LA')
  read = image_io.read_image(save(tmp_path, 'la.png', la))
  expected = np.round(grey[..., None] * a + 255 * (1 - a)).astype(np.uint8)
  np.testing.assert_array_equal(read, np.repeat(expected, 3, axis=-1))


def test_bad_files_give_one_line_errors(original, tmp_path):
  pixels, _ = original
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG')
  (tmp_path / 'half.jpg').write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  (tmp_path / 'empty.jpg').write_bytes(b'')
  (tmp_path / 'notes.jpg').write_text('this is text, not a JPEG\n')
  (tmp_path / 'folder.jpg').mkdir()
  cases = {
      'missing.jpg': (FileNotFoundError, 'does not exist'),
      'empty.jpg': (image_io.ImageReadError, 'empty'),
      'half.jpg': (image_io.ImageReadError, 'truncated'),
      'notes.jpg': (image_io.ImageReadError, 'not a readable image'),
      'folder.jpg': (image_io.ImageReadError, 'not a file'),
  }
  for name, (kind, words) in cases.items():
    with pytest.raises(kind) as error:
      image_io.read_image(tmp_path / name)
    message = str(error.value)
    assert words in message and name in message and '\n' not in message, message


def test_bilevel_and_a_hand_rotation(tmp_path):
  """A 1-bit image, and orientation 6 worked out by hand."""
  bits = np.zeros((4, 6), bool)
  bits[1, 2] = True
  read = image_io.read_image(save(tmp_path, 'b.png', Image.fromarray(bits)))
  np.testing.assert_array_equal(read[..., 0], np.where(bits, 255, 0))
  assert image_io.orient(np.arange(6).reshape(2, 3), 6).tolist() == [[3, 0], [4, 1], [5, 2]]
  with pytest.raises(ValueError, match='1-8'):
    image_io.orient(np.zeros((2, 2)), 9)
