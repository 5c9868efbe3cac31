"""Which images a prediction run covers: a folder, a glob or a list file.

A list file has one image per line: its path, optionally followed by a
person's centre X Y and scale (MPII's convention: scale = person height /
200 px; the centre in 0-based pixels of the upright image, i.e. MPII's
1-based `objpos` minus 1). Relative paths are taken from the list file's
folder; blank lines and lines starting with '#' are skipped. For example

  photos/a.jpg
  photos/b.jpg 310.5 202 1.8
  # the second person of b.jpg
  photos/b.jpg 590 215 1.6
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
import pathlib
from typing import Sequence

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp',
                  '.ppm', '.pgm', '.pbm', '.jp2', '.jfif')
_GLOB_CHARACTERS = ('*', '?', '[')


@dataclasses.dataclass(frozen=True)
class ImageInput:
  """One image to predict, with the person's window when the list gives it."""
  path: str
  center: tuple[float, float] | None = None
  scale: float | None = None

  @property
  def key(self) -> tuple:
    """What identifies a result in the output (the same image may hold
    several persons)."""
    return (self.path, self.center, self.scale)


def is_image_name(path: str | os.PathLike) -> bool:
  return pathlib.Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(images: str) -> tuple[list[ImageInput], str]:
  """The images `images` names, in a fixed order, and what `images` is ('folder',
  'glob', 'list' or 'image'). Raises FileNotFoundError / ValueError with one
  line when it names nothing usable."""
  path = pathlib.Path(images)
  if path.is_dir():
    names = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p))
    if not names:
      raise FileNotFoundError(f'images {images}: the folder holds no image files '
                              f'({", ".join(IMAGE_SUFFIXES)})')
    return [ImageInput(str(p)) for p in names], 'folder'
  if path.is_file():
    if is_image_name(path):
      return [ImageInput(str(path))], 'image'
    return read_list_file(path), 'list'
  if any(c in images for c in _GLOB_CHARACTERS):
    matches = sorted(p for p in glob.glob(images, recursive=True) if os.path.isfile(p))
    if not matches:
      raise FileNotFoundError(f'images {images}: no file matches the pattern')
    return [ImageInput(p) for p in matches], 'glob'
  raise FileNotFoundError(f'images {images}: no such folder, file or pattern')


def read_list_file(path: str | os.PathLike) -> list[ImageInput]:
  """The entries of a list file (see the module docstring)."""
  path = pathlib.Path(path)
  try:
    text = path.read_text()
  except UnicodeDecodeError:
    raise ValueError(f'images {path}: not a text list of image paths '
                     '(nor an image file with a known suffix)') from None
  base = path.parent
  entries = []
  for number, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    entries.append(_parse_line(line, base, f'{path} line {number}'))
  if not entries:
    raise ValueError(f'images {path}: the list names no images')
  return entries


def _parse_line(line: str, base: pathlib.Path, where: str) -> ImageInput:
  words = line.split()
  numbers = _floats(words[-3:]) if len(words) >= 4 else None
  if numbers is None:
    if len(words) >= 2 and _floats(words[-1:]) is not None:
      raise ValueError(f'{where}: expected "PATH" or "PATH X Y SCALE", got {line!r}')
    name, center, scale = line, None, None
  else:
    name = line.rsplit(None, 3)[0]
    center, scale = (numbers[0], numbers[1]), numbers[2]
    if not all(math.isfinite(v) for v in numbers) or not scale > 0:
      raise ValueError(f'{where}: the centre must be finite and the scale positive, got {line!r}')
  file = pathlib.Path(name)
  if not file.is_absolute():
    file = base / file
  return ImageInput(str(file), center, scale)


def _floats(words: Sequence[str]) -> list[float] | None:
  try:
    return [float(w) for w in words]
  except ValueError:
    return None
