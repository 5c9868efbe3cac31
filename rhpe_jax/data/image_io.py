"""Image files to (H, W, 3) uint8 RGB arrays, as an image viewer shows them.

Every place of the project that reads an image file goes through
`read_image`, so that every command sees the same pixels:

- EXIF orientation (tag 274, values 2-8: mirrored and/or rotated, as phones
  store portrait photos) is applied, so keypoints, crops and pictures are in
  the upright frame every viewer shows. The dataset builders pass
  `apply_orientation=False`: the datasets' annotations are coordinates of the
  stored pixels (the tools they were made and are evaluated with, MATLAB's
  imread among them, ignore the tag).
- High bit depths are scaled to 8 bits, not clipped: 16-bit values v become
  round(v * 255 / 65535); 32-bit integer images by their declared depth
  (TIFF BitsPerSample up to 16 bits, 16 for PNG), or else by the smallest of
  8 and 16 bits that holds every value, or else stretched from their minimum
  to their maximum; floating point images in [0, 1] are scaled by 255,
  others stretched the same way.
- Every Pillow mode becomes RGB: grey (1, L, I;16*, I, F) is repeated over
  the three channels, CMYK and YCbCr by Pillow's conversions, palettes (P,
  PA) through their colour table; an alpha channel (LA, PA, RGBA, La, RGBa,
  P with a transparent colour) is composited over white, as a web page shows
  a transparent image.
- A file that cannot be read (missing, empty, truncated, not an image, too
  large for Pillow's decompression-bomb limit) raises `ImageReadError` (a
  ValueError; FileNotFoundError for a missing file) with a one-line message
  that names the file.
"""
from __future__ import annotations

import io
import os
import pathlib
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

PathLike = Union[str, os.PathLike]

ORIENTATION_TAG = 0x0112  # EXIF "Orientation"
BITS_PER_SAMPLE_TAG = 258  # TIFF "BitsPerSample"

# The 16-bit modes Pillow reads (grey, native/little/big endian).
_GREY16_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')
_ALPHA_MODES = ('LA', 'La', 'PA', 'RGBA', 'RGBa')
_PILLOW_CONVERTS = ('CMYK', 'YCbCr', 'RGBX')


class ImageReadError(ValueError):
  """An image file that cannot be read; the message names the file."""


def read_image(path: PathLike, *, apply_orientation: bool = True) -> np.ndarray:
  """(H, W, 3) uint8 RGB of an image file, upright unless told otherwise."""
  file = pathlib.Path(path)
  if not file.exists():
    raise FileNotFoundError(f'image {path} does not exist')
  if not file.is_file():
    raise ImageReadError(f'image {path} is not a file')
  if file.stat().st_size == 0:
    raise ImageReadError(f'image {path} is empty (0 bytes)')
  with file.open('rb') as f:
    return decode_image(f, str(path), apply_orientation=apply_orientation)


def decode_image(source: Union[bytes, BinaryIO], name: str, *,
                 apply_orientation: bool = True) -> np.ndarray:
  """`read_image` for encoded bytes or an open binary file; `name` is the
  file's name in error messages."""
  if isinstance(source, (bytes, bytearray)):
    if not source:
      raise ImageReadError(f'image {name} is empty (0 bytes)')
    source = io.BytesIO(source)
  try:
    with Image.open(source) as image:
      image.load()  # decodes now: a truncated file fails here
      orientation = exif_orientation(image) if apply_orientation else 1
      rgb = to_rgb8(image)
  except UnidentifiedImageError:
    raise ImageReadError(f'{name} is not a readable image (unknown format)') from None
  except Image.DecompressionBombError as e:
    raise ImageReadError(f'{name} is too large to decode ({e})') from None
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    if isinstance(e, ImageReadError):
      raise ImageReadError(f'{name}: {e}') from None
    reason = ' '.join(str(e).split()) or type(e).__name__
    if 'truncated' in reason or isinstance(e, EOFError):
      reason = f'truncated or corrupt ({reason})'
    raise ImageReadError(f'{name} is not a readable image: {reason}') from None
  return orient(rgb, orientation)


def is_plain_jpeg(data: bytes) -> bool:
  """Whether encoded bytes are a JPEG that TensorFlow's decoder reads as this
  module does (RGB or grey, stored frame): such bytes can be kept as they are."""
  try:
    with Image.open(io.BytesIO(data)) as image:  # the header only
      return image.format == 'JPEG' and image.mode in ('RGB', 'L')
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
    return False


def exif_orientation(image: Image.Image) -> int:
  """The EXIF orientation (1-8) of an opened image; 1 without (or with a bad) tag."""
  try:
    value = image.getexif().get(ORIENTATION_TAG, 1)
  except Exception:  # pylint: disable=broad-except  # malformed EXIF: as stored
    return 1
  try:
    value = int(value)
  except (TypeError, ValueError):
    return 1
  return value if 1 <= value <= 8 else 1


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
  """Stored pixels (H, W, ...) to the upright frame of EXIF `orientation`.

  The tag says where the stored rows and columns go: 2 mirrored left-right,
  3 rotated 180 degrees, 4 mirrored top-bottom, 5 transposed, 6 to be turned
  90 degrees clockwise, 7 transposed across the other diagonal, 8 to be
  turned 90 degrees anticlockwise.
  """
  if orientation == 1:
    return pixels
  ops = {
      2: lambda a: a[:, ::-1],
      3: lambda a: a[::-1, ::-1],
      4: lambda a: a[::-1],
      5: lambda a: np.swapaxes(a, 0, 1),
      6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
      7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
      8: lambda a: np.swapaxes(a, 0, 1)[::-1],
  }
  if orientation not in ops:
    raise ValueError(f'EXIF orientation must be 1-8, got {orientation}')
  return np.ascontiguousarray(ops[orientation](pixels))


def to_rgb8(image: Image.Image) -> np.ndarray:
  """(H, W, 3) uint8 RGB of a decoded Pillow image of any mode."""
  mode = image.mode
  if mode == 'RGB':
    return np.asarray(image, np.uint8)
  if mode in ('1', 'L'):
    return _grey_to_rgb(np.asarray(image.convert('L'), np.uint8))
  if mode in _GREY16_MODES:
    return _grey_to_rgb(_scale_to_8_bits(np.asarray(image), 16))
  if mode == 'I':
    values = np.asarray(image, np.int64)
    return _grey_to_rgb(_scale_to_8_bits(values, _declared_bits(image, values)))
  if mode == 'F':
    return _grey_to_rgb(_float_to_8_bits(np.asarray(image, np.float64)))
  if mode == 'P':
    has_alpha = 'transparency' in image.info or image.palette.mode == 'RGBA'
    return _over_white(image.convert('RGBA')) if has_alpha else np.asarray(image.convert('RGB'))
  if mode in _ALPHA_MODES:
    return _over_white(image.convert('RGBA'))
  if mode in _PILLOW_CONVERTS:
    return np.asarray(image.convert('RGB'), np.uint8)
  raise ImageReadError(f'unsupported colour mode {mode!r}')


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
  return np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=-1)


def _scale_to_8_bits(values: np.ndarray, bits: int | None) -> np.ndarray:
  """Integers of `bits` bits to 0-255 (rounded); without a depth, min-max."""
  values = np.asarray(values, np.float64)
  if bits is None:
    return _stretch(values)
  top = float(2 ** bits - 1)
  return np.round(np.clip(values, 0.0, top) * (255.0 / top)).astype(np.uint8)


def _float_to_8_bits(values: np.ndarray) -> np.ndarray:
  finite = values[np.isfinite(values)]
  values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
  if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
    return np.round(values * 255.0).astype(np.uint8)
  return _stretch(values)


def _stretch(values: np.ndarray) -> np.ndarray:
  """Minimum to 0, maximum to 255 (a constant image: 0)."""
  low, high = float(values.min()), float(values.max())
  if high <= low:
    return np.zeros(values.shape, np.uint8)
  return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _declared_bits(image: Image.Image, values: np.ndarray) -> int | None:
  """The bit depth a 32-bit integer ('I') image's values are on: a TIFF's
  BitsPerSample up to 16, 16 for PNG; otherwise the smallest of 8 and 16 bits
  that holds every value (32-bit containers usually hold sensor values of a
  few bits); None (stretch) for values beyond 16 bits or negative."""
  if values.size == 0 or values.min() < 0:
    return None
  tags = getattr(image, 'tag_v2', None)
  if tags is not None and BITS_PER_SAMPLE_TAG in tags:
    bits = tags[BITS_PER_SAMPLE_TAG]
    bits = bits[0] if isinstance(bits, tuple) else bits
    if isinstance(bits, int) and 8 <= bits <= 16 and values.max() < 2 ** bits:
      return bits
  if image.format == 'PNG' and values.max() < 2 ** 16:
    return 16
  for bits in (8, 16):
    if values.max() < 2 ** bits:
      return bits
  return None


def _over_white(rgba: Image.Image) -> np.ndarray:
  """RGBA composited over a white background, rounded to uint8."""
  pixels = np.asarray(rgba, np.float64)
  alpha = pixels[..., 3:] / 255.0
  out = pixels[..., :3] * alpha + 255.0 * (1.0 - alpha)
  return np.round(out).astype(np.uint8)

