"""MPII Human Pose as person-centred crops, one example per person.

Reads the official `mpii_human_pose_v1_u12_1.mat` (via
`rhpe_jax.data.mpii_annotations`), the images, and Tompson et al.'s `valid.h5`.
Splits: `train` (annotated persons of training images minus validation),
`validation` (the `valid.h5` pairs, in that file's order) and `test` (persons
of test images: position and scale only). Conventions: README.md.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Any, Iterator

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from rhpe_jax.data import image_io
from rhpe_jax.data import lsp_annotations
from rhpe_jax.data import mpii_annotations
from rhpe_jax.data import person_crops
from rhpe_jax.data import pose_features
from rhpe_jax.core import keypoint_sets

ANNOTATIONS_URL = (
    'https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1_u12_2.zip')
IMAGES_URL = 'https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz'
VALID_URL = (
    'https://github.com/princeton-vl/pose-hg-train/raw/master/data/mpii/annot/valid.h5')

MAT_NAME = 'mpii_human_pose_v1_u12_1.mat'
ANNOTATIONS_ZIP = 'mpii_human_pose_v1_u12_2.zip'
IMAGES_TAR = 'mpii_human_pose_v1.tar.gz'
VALID_NAME = 'valid.h5'

# What a manual dir must hold: (what, accepted names, where to get it).
EXPECTED_FILES = (
    ('annotations', f'{ANNOTATIONS_ZIP} or the extracted {MAT_NAME}', ANNOTATIONS_URL),
    ('images', f'{IMAGES_TAR} or the extracted images/ folder', IMAGES_URL),
    ('validation split', VALID_NAME, VALID_URL),
)

_MANUAL_INSTRUCTIONS = '\n'.join(
    ['Place these files in the manual dir (or pass no manual dir to download them):']
    + [f'  * {what}: {names}, from {url}' for what, names, url in EXPECTED_FILES])

_CITATION = """\
@inproceedings{andriluka14cvpr,
  author = {Mykhaylo Andriluka and Leonid Pishchulin and Peter Gehler and Bernt Schiele},
  title = {2D Human Pose Estimation: New Benchmark and State of the Art Analysis},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2014}
}
@inproceedings{tompson15cvpr,
  author = {Jonathan Tompson and Ross Goroshin and Arjun Jain and Yann LeCun and Christoph Bregler},
  title = {Efficient Object Localization Using Convolutional Networks},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2015}
}
"""

_MAX_PEOPLE_PER_IMAGE = 1000  # key = image_index * this + person_index


@dataclasses.dataclass(eq=False)
class MpiiConfig(tfds.core.BuilderConfig):
  """Crop geometry: a square of side crop_side_factor x 200 x scale, resampled.

  The default 2.0 (400 x scale) leaves room for rotation and scale
  augmentation around the release's 300 x scale window.
  """

  resolution: int = 384
  crop_side_factor: float = 2.0

  def __post_init__(self):
    if int(self.resolution) != self.resolution or self.resolution < 1:
      raise ValueError(f'MpiiConfig: resolution must be a positive integer, got {self.resolution}')
    if not self.crop_side_factor > 0:
      raise ValueError(
          f'MpiiConfig: crop_side_factor must be positive, got {self.crop_side_factor}')


# ----------------------------------------------------------------------------
# Small helpers.


def _read_rgb(path: epath.Path) -> np.ndarray:
  """Decodes an image fully (so a truncated file fails here, not later), in
  the stored frame: the annotations are coordinates of the stored pixels
  (see rhpe_jax.data.image_io)."""
  with path.open('rb') as f:
    return image_io.decode_image(f, path.name, apply_orientation=False)


def _train_key(image_index: int, person_index: int) -> int:
  """A fixed pseudo-random integer, so the stored train split is shuffled."""
  digest = hashlib.sha256(f'{image_index}/{person_index}'.encode()).digest()
  return int.from_bytes(digest[:7], 'big')


class _Skips:
  """Counts what a split leaves out, with the first few names per reason."""

  def __init__(self, split: str):
    self.split = split
    self.names = collections.defaultdict(list)

  def add(self, reason: str, name: str) -> None:
    self.names[reason].append(name)

  def report(self) -> None:
    if not self.names:
      return
    parts = [f'{reason}: {len(names)} ({", ".join(names[:5])}'
             f'{", ..." if len(names) > 5 else ""})'
             for reason, names in sorted(self.names.items())]
    total = sum(len(v) for v in self.names.values())
    logging.warning('mpii %s: skipped %d persons; %s', self.split, total, '; '.join(parts))


def _find(root: epath.Path, name: str, is_dir: bool) -> epath.Path | None:
  """`root/name`, else one level down (archives often add a top folder)."""
  candidates = [root / name] + [d / name for d in sorted(root.iterdir()) if d.is_dir()]
  for c in candidates:
    if c.exists() and c.is_dir() == is_dir:
      return c
  return None


def _manual_dir(dl_manager: tfds.download.DownloadManager) -> epath.Path | None:
  """The manual dir if it has content; None when none was given (download)."""
  try:
    return epath.Path(dl_manager.manual_dir)
  except AssertionError:
    given = getattr(dl_manager, '_manual_dir', None)
    default = epath.Path(dl_manager.download_dir) / 'manual'
    if given is not None and epath.Path(given) != default:
      raise FileNotFoundError(
          f'MPII: manual dir {given} does not exist or is empty.\n'
          f'{_MANUAL_INSTRUCTIONS}') from None
    return None


# ----------------------------------------------------------------------------


class Builder(tfds.core.GeneratorBasedBuilder):
  """MPII Human Pose: person-centred crops with keypoints, splits of Tompson et al."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      MpiiConfig(name='crop384', resolution=384, crop_side_factor=2.0,
                 description='384 x 384 crops of side 400 x scale around objpos.'),
      MpiiConfig(name='crop256', resolution=256, crop_side_factor=2.0,
                 description='256 x 256 crops of side 400 x scale around objpos.'),
  ]
  DEFAULT_CONFIG_NAME = 'crop384'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    r = self.builder_config.resolution
    return self.dataset_info_from_configs(
        features=pose_features.pose_features(keypoint_sets.MPII.num_keypoints, (r, r, 3)),
        homepage='http://human-pose.mpi-inf.mpg.de/',
        citation=_CITATION,
        # Validation keeps valid.h5's order; train keys are pseudo-random.
        disable_shuffling=True,
    )

  # -- sources ---------------------------------------------------------------

  def _sources(self, dl_manager: tfds.download.DownloadManager) -> dict[str, epath.Path]:
    """Paths of the .mat, the images folder and valid.h5 (manual dir or download)."""
    manual = _manual_dir(dl_manager)
    if manual is None:
      extracted = dl_manager.download_and_extract(
          {'annotations': ANNOTATIONS_URL, 'images': IMAGES_URL})
      valid = epath.Path(dl_manager.download(VALID_URL))
      mat = _find(epath.Path(extracted['annotations']), MAT_NAME, is_dir=False)
      images = _find(epath.Path(extracted['images']), 'images', is_dir=True)
      if mat is None or images is None:
        raise FileNotFoundError(
            f'MPII: downloaded archives lack {MAT_NAME} or images/: '
            f'{extracted}')
      return {'mat': mat, 'images': images, 'valid': valid}

    mat = _find(manual, MAT_NAME, is_dir=False)
    mat_zip = manual / ANNOTATIONS_ZIP
    images = manual / 'images'
    images_tar = manual / IMAGES_TAR
    valid = manual / VALID_NAME
    found = {
        'annotations': mat is not None or mat_zip.exists(),
        'images': images.is_dir() or images_tar.exists(),
        'validation split': valid.exists(),
    }
    missing = [f'  * {what}: {names}, from {url}'
               for what, names, url in EXPECTED_FILES if not found[what]]
    if missing:
      raise FileNotFoundError(
          f'MPII: manual dir {manual} is incomplete; missing:\n' + '\n'.join(missing))
    if mat is None:
      mat = _find(epath.Path(dl_manager.extract(mat_zip)), MAT_NAME, is_dir=False)
      if mat is None:
        raise FileNotFoundError(f'MPII: {mat_zip} does not contain {MAT_NAME}')
    if not images.is_dir():
      images = _find(epath.Path(dl_manager.extract(images_tar)), 'images', is_dir=True)
      if images is None:
        raise FileNotFoundError(f'MPII: {images_tar} does not contain images/')
    return {'mat': mat, 'images': images, 'valid': valid}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    paths = self._sources(dl_manager)
    release = mpii_annotations.load_release(paths['mat'])
    pairs = mpii_annotations.load_validation_pairs(paths['valid'])
    mpii_annotations.check_pairs_match(release, pairs)
    if release.problems:
      logging.warning('mpii: malformed annotation records skipped: %s',
                      mpii_annotations.summarize_problems(release.problems))
    valid_rows = mpii_annotations.validation_keys(pairs)
    return {
        'train': self._generate_examples(release, paths['images'], 'train', valid_rows),
        'validation': self._generate_examples(
            release, paths['images'], 'validation', valid_rows),
        'test': self._generate_examples(release, paths['images'], 'test', valid_rows),
    }

  # -- examples --------------------------------------------------------------

  def _generate_examples(self, release: mpii_annotations.Release, images_dir: epath.Path,
                         split: str, valid_rows: list[tuple[int, int]]
                         ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (key, example); bad images or records are skipped and reported."""
    skips = _Skips(split)
    by_index = release.by_index()
    cache: dict[str, Any] = {'name': None, 'image': None, 'error': None}
    for key, record, person in self._persons(release, split, valid_rows, skips, by_index):
      label = f'{record.name}#{person.index}'
      if cache['name'] != record.name:
        cache['name'] = record.name
        cache['image'], cache['error'] = None, None
        try:
          cache['image'] = _read_rgb(images_dir / record.name)
        except FileNotFoundError:
          cache['error'] = 'missing image'
        except (OSError, ValueError):  # image_io.ImageReadError is a ValueError
          cache['error'] = 'corrupt image'
      if cache['error']:
        skips.add(cache['error'], label)
        continue
      example = self._example(cache['image'], record, person, skips, label)
      if example is not None:
        yield key, example
    skips.report()

  def _persons(self, release, split, valid_rows, skips, by_index):
    """(key, image record, person) of one split, in storage order."""
    if split == 'validation':
      for row, (i, p) in enumerate(valid_rows):
        record = by_index.get(i)
        person = record.person(p) if record is not None else None
        if person is None:
          skips.add('malformed record', f'annolist[{i}] person {p}')
        elif not person.has_keypoints:
          skips.add('no keypoints', f'{record.name}#{p}')
        else:
          yield row, record, person
      return
    valid_set = set(valid_rows)
    for record in release.images:
      for person in record.people:
        if split == 'train':
          if (record.is_train and person.has_keypoints
              and (record.index, person.index) not in valid_set):
            yield _train_key(record.index, person.index), record, person
        elif not record.is_train:  # test
          yield record.index * _MAX_PEOPLE_PER_IMAGE + person.index, record, person

  def _example(self, image: np.ndarray, record: mpii_annotations.ImageRecord,
               person: mpii_annotations.Person, skips: _Skips,
               label: str) -> dict[str, Any] | None:
    cfg = self.builder_config
    objpos, scale = person.objpos, person.scale
    if objpos is None or scale is None:
      if not person.has_keypoints:
        skips.add('no objpos/scale', label)
        return None
      try:  # documented fallback: box of the annotated joints.
        objpos, scale = lsp_annotations.centre_and_scale_from_keypoints(
            person.keypoints, person.status)
      except ValueError:
        skips.add('no objpos/scale', label)
        return None
    a = person_crops.crop_to_image_transform(objpos, scale, cfg.resolution, cfg.crop_side_factor)

    others = [(p.keypoints, p.status) for p in record.people
              if p.index != person.index and p.has_keypoints]
    return {
        **person_crops.crop_fields(image, a, cfg.resolution, person.keypoints, person.status,
                                   others),
        'objpos': np.asarray(objpos, np.float32),
        'scale': np.float32(scale),
        'head_box': (np.zeros(4) if person.head_box is None
                     else person.head_box).astype(np.float32),
        'head_size': np.float32(person.head_size),
        'original_size': np.array(image.shape[:2], np.int32),
        'image_name': record.name,
        'image_index': np.int32(record.index),
        'person_index': np.int32(person.index),
        'single_person': person.index in record.single_person,
    }
