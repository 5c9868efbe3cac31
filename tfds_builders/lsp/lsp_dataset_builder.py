"""Leeds Sports Pose (LSP) and its extended training set (LSPET), whole images.

Config `original`: lsp_dataset.zip, joints (3, 14, N), third row 1 = occluded;
train = first half (images 1-1000 of 2000), test = second half.
Config `extended`: lspet_dataset.zip, joints (14, 3, N), third column
1 = visible, 0 = no location (MISSING); train only. The layouts are read by `rhpe_jax.data.lsp_annotations`;
conventions in README.md.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Iterator

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from rhpe_jax.data import image_io
from rhpe_jax.data import lsp_annotations
from rhpe_jax.data import pose_features
from rhpe_jax.core import keypoint_sets

URLS = {
    'original': 'http://sam.johnson.io/research/lsp_dataset.zip',
    'extended': 'http://sam.johnson.io/research/lspet_dataset.zip',
}
ARCHIVES = {'original': 'lsp_dataset.zip', 'extended': 'lspet_dataset.zip'}
# Image i (0-based) of joints.mat is images/im<i+1>.jpg, zero-padded to:
NAME_DIGITS = {'original': 4, 'extended': 5}

_MANUAL_INSTRUCTIONS = """\
Place in the manual dir (or pass no manual dir to download), per config:
  * original: lsp_dataset.zip, or its extracted content (joints.mat and
    images/, at the top or in lsp_dataset/), from
    http://sam.johnson.io/research/lsp_dataset.zip
  * extended: lspet_dataset.zip, or its extracted content (joints.mat and
    images/, at the top or in lspet_dataset/), from
    http://sam.johnson.io/research/lspet_dataset.zip
"""

_CITATION = """\
@inproceedings{johnson10bmvc,
  author = {Sam Johnson and Mark Everingham},
  title = {Clustered Pose and Nonlinear Appearance Models for Human Pose Estimation},
  booktitle = {British Machine Vision Conference (BMVC)},
  year = {2010}
}
@inproceedings{johnson11cvpr,
  author = {Sam Johnson and Mark Everingham},
  title = {Learning Effective Human Pose Estimation from Inaccurate Annotation},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2011}
}
"""

_IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float32)


@dataclasses.dataclass(eq=False)
class LspConfig(tfds.core.BuilderConfig):
  """`layout` selects the release: 'original' (LSP) or 'extended' (LSPET)."""

  layout: str = 'original'


def image_name(index: int, layout: str) -> str:
  """File name of 0-based image `index` of a release ('im0001.jpg', 'im00001.jpg')."""
  return f'im{index + 1:0{NAME_DIGITS[layout]}d}.jpg'


def _is_release_dir(path: epath.Path) -> bool:
  return (path / 'joints.mat').exists() and (path / 'images').is_dir()


def _release_dir(root: epath.Path, layout: str) -> epath.Path | None:
  """The folder holding joints.mat and images/: root, its named or only subfolder."""
  stem = ARCHIVES[layout][:-len('.zip')]
  candidates = [root / stem, root]
  subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name != 'images']
  candidates += subdirs if len(subdirs) == 1 else []
  for c in candidates:
    if c.is_dir() and _is_release_dir(c):
      return c
  return None


class Builder(tfds.core.GeneratorBasedBuilder):
  """LSP / LSPET: whole person-centric images with 14 keypoints and status."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': ('LSPET: joints with flag 0 are MISSING (status 0, coordinates '
                '0), not OCCLUDED at their placeholder coordinates; objpos and '
                'scale come from the visible joints only. LSP original unchanged.'),
  }
  BUILDER_CONFIGS = [
      LspConfig(name='original', layout='original',
                description='LSP, 2000 images: train = first 1000, test = last 1000.'),
      LspConfig(name='extended', layout='extended',
                description='LSPET, 10000 training images.'),
  ]
  DEFAULT_CONFIG_NAME = 'original'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=pose_features.pose_features(keypoint_sets.LSP.num_keypoints, (None, None, 3)),
        homepage='http://sam.johnson.io/research/lsp.html',
        citation=_CITATION,
    )

  def _source_dir(self, dl_manager: tfds.download.DownloadManager) -> epath.Path:
    """Folder with joints.mat and images/ (manual dir, else download)."""
    layout = self.builder_config.layout
    archive = ARCHIVES[layout]
    try:
      manual = epath.Path(dl_manager.manual_dir)
    except AssertionError:
      given = getattr(dl_manager, '_manual_dir', None)
      if given is not None and epath.Path(given) != epath.Path(dl_manager.download_dir) / 'manual':
        raise FileNotFoundError(
            f'LSP: manual dir {given} does not exist or is empty.\n'
            f'{_MANUAL_INSTRUCTIONS}') from None
      manual = None
    if manual is None:
      root = epath.Path(dl_manager.download_and_extract(URLS[layout]))
    elif (manual / archive).exists() and _release_dir(manual, layout) is None:
      root = epath.Path(dl_manager.extract(manual / archive))
    else:
      root = manual
    found = _release_dir(root, layout)
    if found is None:
      raise FileNotFoundError(
          f'LSP {layout}: {root} holds neither {archive} nor joints.mat with '
          f'images/ (at the top or in {archive[:-4]}/); get it from {URLS[layout]}')
    return found

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    layout = self.builder_config.layout
    root = self._source_dir(dl_manager)
    joints = lsp_annotations.load_joints(root / 'joints.mat', layout)
    n = joints.num_images
    if layout == 'original':
      return {
          'train': self._generate_examples(root, joints, range(0, n // 2), 'train'),
          'test': self._generate_examples(root, joints, range(n // 2, n), 'test'),
      }
    return {'train': self._generate_examples(root, joints, range(n), 'train')}

  def _generate_examples(self, root: epath.Path, joints: lsp_annotations.LspJoints,
                         indices: range, split: str
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (image name, example); bad images or records are skipped and reported."""
    layout = self.builder_config.layout
    skipped = collections.defaultdict(list)
    for i in indices:
      name = image_name(i, layout)
      if not joints.valid[i]:
        skipped['malformed record'].append(name)
        continue
      try:
        data = (root / 'images' / name).read_bytes()
        # The stored frame: the annotations are coordinates of the stored
        # pixels (see rhpe_jax.data.image_io).
        pixels = image_io.decode_image(data, name, apply_orientation=False)
        size = pixels.shape[:2]
        # JPEG bytes are stored as they are (no second lossy encoding);
        # anything else as the RGB pixels image_io makes of it.
        if not image_io.is_plain_jpeg(data):
          data = pixels
      except FileNotFoundError:
        skipped['missing image'].append(name)
        continue
      except (OSError, ValueError):  # image_io.ImageReadError is a ValueError
        skipped['corrupt image'].append(name)
        continue
      keypoints, status = joints.keypoints[i], joints.status[i]
      try:
        objpos, scale = lsp_annotations.centre_and_scale_from_keypoints(keypoints, status)
      except ValueError:
        skipped['malformed record'].append(name)
        continue
      yield name, {
          'image': data,
          'keypoints': keypoints.astype(np.float32),
          'keypoint_status': status.astype(np.int32),
          'other_keypoints': np.zeros((0, keypoint_sets.LSP.num_keypoints, 2), np.float32),
          'other_keypoint_status': np.zeros((0, keypoint_sets.LSP.num_keypoints), np.int32),
          'crop_to_image': _IDENTITY,
          'objpos': objpos.astype(np.float32),
          'scale': np.float32(scale),
          'head_box': np.zeros(4, np.float32),
          'head_size': np.float32(0.0),
          'original_size': np.array(size, np.int32),
          'image_name': name,
          'image_index': np.int32(i),
          'person_index': np.int32(0),
          'single_person': True,
      }
    if skipped:
      total = sum(len(v) for v in skipped.values())
      parts = [f'{reason}: {len(names)} ({", ".join(names[:5])}'
               f'{", ..." if len(names) > 5 else ""})'
               for reason, names in sorted(skipped.items())]
      logging.warning('lsp %s %s: skipped %d images; %s', layout, split, total,
                      '; '.join(parts))
