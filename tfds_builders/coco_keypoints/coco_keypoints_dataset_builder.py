"""COCO-format person keypoints as person-centred crops, one example per person.

Config `coco2017`: the official COCO 2017 person keypoints (17 keypoints,
`rhpe_jax.core.keypoint_sets.COCO`), splits train and validation. Config `custom`:
a user's own COCO-format files, `annotations/<split>.json` for any of train,
validation and test, their keypoint set read from `annotations/keypoint_set.json`
where there is one, else from the files' `categories`. Config `wholebody`:
COCO-WholeBody v1.0, its five keypoint fields joined into 133 keypoints (the
shipped keypoint-set file `coco_wholebody`), its face and hand boxes kept.
The files are read and checked by `rhpe_jax.data.coco_annotations`; the crop
is MPII's (`rhpe_jax.data.person_crops`) around `box_center_scale(bbox)`.
Conventions: README.md.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import coco_annotations
from rhpe_jax.data import datasets
from rhpe_jax.data import image_io
from rhpe_jax.data import person_crops
from rhpe_jax.data import pose_features

# config source -> split -> (annotation file, images folder), in the manual dir.
COCO2017_FILES = {
    'train': ('annotations/person_keypoints_train2017.json', 'train2017'),
    'validation': ('annotations/person_keypoints_val2017.json', 'val2017'),
}
WHOLEBODY_FILES = {
    'train': ('annotations/coco_wholebody_train_v1.0.json', 'train2017'),
    'validation': ('annotations/coco_wholebody_val_v1.0.json', 'val2017'),
}
CUSTOM_SPLITS = ('train', 'validation', 'test')
CUSTOM_IMAGES = 'images'
COCO2017_URL = 'https://cocodataset.org/#download'
WHOLEBODY_URL = 'https://github.com/jin-s13/COCO-WholeBody'
SOURCES = ('coco2017', 'custom', 'wholebody')

_MANUAL_INSTRUCTIONS = f"""\
Config coco2017: place in the manual dir, extracted from the official zips
({COCO2017_URL}: annotations_trainval2017.zip, train2017.zip, val2017.zip):
  annotations/person_keypoints_train2017.json
  annotations/person_keypoints_val2017.json
  train2017/  val2017/   (the images)
Config custom: your own COCO person-keypoint files, one per split:
  annotations/train.json, annotations/validation.json, annotations/test.json
  (any of them; the splits are the files present)
  images/                 (every `file_name` is relative to it)
  annotations/keypoint_set.json  (optional: the keypoints' names, pairs, sigmas,
  the annotation field holding them; wins over the files' categories)
Config wholebody: COCO-WholeBody v1.0 ({WHOLEBODY_URL}) as for custom, or as
released beside COCO 2017's images:
  annotations/coco_wholebody_train_v1.0.json, annotations/coco_wholebody_val_v1.0.json
  train2017/  val2017/
"""

_CITATION = """\
@inproceedings{lin14eccv,
  author = {Tsung-Yi Lin and Michael Maire and Serge Belongie and James Hays and Pietro Perona
            and Deva Ramanan and Piotr Doll{\\'a}r and C. Lawrence Zitnick},
  title = {Microsoft {COCO}: Common Objects in Context},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year = {2014}
}
"""

# The ids of the categories merged into the examples (each example keeps its
# own in coco_category_id).
CATEGORY_IDS_KEY = 'category_ids'
SKIPPED_KEY = 'skipped'


@dataclasses.dataclass(eq=False)
class CocoKeypointsConfig(tfds.core.BuilderConfig):
  """Where the data is (`source`), the crop geometry (as MPII's: a square of
  side crop_side_factor x 200 x scale, resampled to resolution), the
  keypoint-set file of a built-in set to read the files with
  (`keypoint_set`, keypoint_sets.BUILT_IN_NAMES; the manual dir's
  annotations/keypoint_set.json wins), and what overrides the keypoint set:
  `category_id` (one category only, where several have keypoints),
  `keypoint_set_name`, `flip_pairs` and `part_pairs` (0-based index pairs;
  None: the set file's, or inferred from the names / the file's skeleton)."""

  source: str = 'custom'
  keypoint_set: str | None = None
  resolution: int = 384
  crop_side_factor: float = 2.0
  category_id: int | None = None
  keypoint_set_name: str | None = None
  flip_pairs: Sequence[Sequence[int]] | None = None
  part_pairs: Sequence[Sequence[int]] | None = None

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f'CocoKeypointsConfig: source must be one of {", ".join(SOURCES)}, '
                       f'got {self.source!r}')
    if self.keypoint_set is not None and self.keypoint_set not in keypoint_sets.BUILT_IN_NAMES:
      raise ValueError(f'CocoKeypointsConfig: keypoint_set must be one of '
                       f'{", ".join(keypoint_sets.BUILT_IN_NAMES)}, got {self.keypoint_set!r}')
    if int(self.resolution) != self.resolution or self.resolution < 1:
      raise ValueError(f'CocoKeypointsConfig: resolution must be a positive integer, '
                       f'got {self.resolution}')
    if not self.crop_side_factor > 0:
      raise ValueError(f'CocoKeypointsConfig: crop_side_factor must be positive, '
                       f'got {self.crop_side_factor}')


@dataclasses.dataclass(frozen=True)
class _Source:
  """One split's checked annotation file and its images folder."""

  annotations: coco_annotations.KeypointFile
  images: epath.Path


def _manual_dir(dl_manager: tfds.download.DownloadManager) -> epath.Path:
  try:
    return epath.Path(dl_manager.manual_dir)
  except AssertionError:
    raise FileNotFoundError(
        f'coco_keypoints: no manual dir (or an empty one) was given.\n{_MANUAL_INSTRUCTIONS}'
    ) from None


class Builder(tfds.core.GeneratorBasedBuilder):
  """COCO-format person keypoints: person-centred crops, the file's ids and boxes.

  `manual_dir` may be given here as well as in the DownloadConfig: for the
  `custom` config it lets `info.features` (their keypoint count comes from
  the files) be known before `download_and_prepare`. Without it they are
  known once the manual dir is read, and a built dataset restores them from
  its files.
  """

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release.',
      '1.1.0': 'coco_category_id per example (categories sharing a keypoint set are merged); '
               'annotations/keypoint_set.json; config wholebody with its part boxes.',
  }
  BUILDER_CONFIGS = [
      CocoKeypointsConfig(
          name='coco2017', source='coco2017',
          description='COCO 2017 person keypoints: 384 x 384 crops of side 2 x the box.'),
      CocoKeypointsConfig(
          name='custom', source='custom',
          description="A user's COCO-format keypoint files: 384 x 384 crops of side 2 x the box."),
      CocoKeypointsConfig(
          name='wholebody', source='wholebody', keypoint_set='coco_wholebody',
          description='COCO-WholeBody v1.0: 133 keypoints, face and hand boxes; 384 x 384 crops '
                      'of side 2 x the box.'),
  ]
  DEFAULT_CONFIG_NAME = 'coco2017'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS

  def __init__(self, *, manual_dir: epath.PathLike | None = None, **kwargs):
    self._given_manual_dir = epath.Path(manual_dir) if manual_dir else None
    self._sources: dict[str, _Source] | None = None
    self._sources_of: epath.Path | None = None
    super().__init__(**kwargs)

  # -- info ------------------------------------------------------------------

  def _config_set_file(self) -> coco_annotations.KeypointSetFile | None:
    """The keypoint set before reading the files: COCO's for coco2017, the
    files' where the manual dir was given to __init__, else unknown."""
    cfg = self.builder_config
    if cfg.source == 'coco2017':
      overrides = {}
      if cfg.flip_pairs is not None:
        overrides['flip_pairs'] = tuple(tuple(p) for p in cfg.flip_pairs)
      if cfg.part_pairs is not None:
        overrides['part_pairs'] = tuple(tuple(p) for p in cfg.part_pairs)
      if cfg.keypoint_set_name:
        overrides['name'] = cfg.keypoint_set_name
      return coco_annotations.KeypointSetFile(dataclasses.replace(keypoint_sets.COCO, **overrides))
    if self._given_manual_dir is not None:
      return self._read_sources(self._given_manual_dir)[0]
    return None

  def _features(self, set_file: coco_annotations.KeypointSetFile
                ) -> tfds.features.FeaturesDict:
    r = self.builder_config.resolution
    return pose_features.pose_features(set_file.keypoint_set.num_keypoints, (r, r, 3),
                                       extra=pose_features.coco_features(set_file.boxes))

  def _info(self) -> tfds.core.DatasetInfo:
    set_file = self._config_set_file()
    metadata = tfds.core.MetadataDict()
    if set_file is not None:
      metadata[datasets.KEYPOINT_SET_KEY] = set_file.keypoint_set.to_dict()
    return self.dataset_info_from_configs(
        # None for `custom` and `wholebody` until the files are read; a built
        # dataset's features.json then provides them
        # (DatasetInfo.read_from_directory).
        features=None if set_file is None else self._features(set_file),
        metadata=metadata,
        homepage='https://cocodataset.org/#keypoints-2017',
        citation=_CITATION,
    )

  # -- sources ---------------------------------------------------------------

  def _split_files(self, manual: epath.Path) -> dict[str, tuple[epath.Path, epath.Path]]:
    """split -> (annotation file, images folder); a missing piece fails at once."""
    source = self.builder_config.source
    # The released layout: all of COCO 2017's; those of COCO-WholeBody's files present.
    released = {'coco2017': COCO2017_FILES, 'wholebody': WHOLEBODY_FILES}.get(source, {})
    official = {split: (manual / ann, manual / images) for split, (ann, images) in
                released.items() if source == 'coco2017' or (manual / ann).exists()}
    if official:
      missing = [str(p.relative_to(manual)) for pair in official.values() for p in pair
                 if not p.exists()]
      if missing:
        raise FileNotFoundError(f'coco_keypoints/{source}: manual dir {manual} lacks '
                                f'{", ".join(missing)}.\n{_MANUAL_INSTRUCTIONS}')
      return official
    files = {split: (manual / 'annotations' / f'{split}.json', manual / CUSTOM_IMAGES)
             for split in CUSTOM_SPLITS}
    files = {split: pair for split, pair in files.items() if pair[0].exists()}
    if not files or not (manual / CUSTOM_IMAGES).is_dir():
      raise FileNotFoundError(
          f'coco_keypoints/{source}: manual dir {manual} needs annotations/<split>.json for at '
          f'least one of {", ".join(CUSTOM_SPLITS)} and an {CUSTOM_IMAGES}/ folder.\n'
          f'{_MANUAL_INSTRUCTIONS}')
    return files

  def _manual_set_file(self, manual: epath.Path) -> coco_annotations.KeypointSetFile | None:
    """The manual dir's annotations/keypoint_set.json, else the config's
    built-in set's file, else None (the files' categories name the keypoints)."""
    path = manual / 'annotations' / coco_annotations.SET_FILE
    if path.exists():
      return coco_annotations.read_keypoint_set_file(path)
    keypoint_set = self.builder_config.keypoint_set
    return None if keypoint_set is None else coco_annotations.built_in_set_file(keypoint_set)

  def _read_sources(self, manual: epath.Path
                    ) -> tuple[coco_annotations.KeypointSetFile, dict[str, _Source]]:
    """Reads and checks every split's file once (images must exist), so that
    bad input fails before anything is written."""
    if self._sources is None or self._sources_of != manual:
      cfg = self.builder_config
      set_file = None if cfg.source == 'coco2017' else self._manual_set_file(manual)
      sources, keypoint_set = {}, None
      for split, (ann_path, images) in self._split_files(manual).items():
        ann = coco_annotations.load(
            ann_path, category_id=cfg.category_id,
            name=cfg.keypoint_set_name or ('coco' if cfg.source == 'coco2017' else None),
            flip_pairs=cfg.flip_pairs, part_pairs=cfg.part_pairs, set_file=set_file)
        if keypoint_set is None:
          keypoint_set = ann.keypoint_set
        elif ann.keypoint_set.keypoint_names != keypoint_set.keypoint_names:
          raise coco_annotations.CocoFormatError(
              f'{ann_path}: keypoints {list(ann.keypoint_set.keypoint_names)} differ from those '
              f'of the other splits\' files {list(keypoint_set.keypoint_names)}')
        for image, person in ann.examples():
          if not (images / image.file_name).is_file():
            raise coco_annotations.CocoFormatError(
                f'{images / image.file_name}: image file missing (annotation '
                f'{person.annotation_id}, image {image.image_id} of {ann_path})')
        sources[split] = _Source(ann, images)
      if cfg.source == 'coco2017':
        if keypoint_set.keypoint_names != keypoint_sets.COCO.keypoint_names:
          raise coco_annotations.CocoFormatError(
              f'{manual}: coco2017 expects COCO\'s 17 keypoints, the files have '
              f'{list(keypoint_set.keypoint_names)} (use the custom config)')
        chosen = self._config_set_file()  # COCO's sigmas and parts
      else:
        boxes = next(iter(sources.values())).annotations.part_boxes
        chosen = coco_annotations.KeypointSetFile(keypoint_set, boxes=boxes)
      self._sources, self._sources_of = (chosen, sources), manual
    return self._sources

  def download_and_prepare(self, *, download_config: tfds.download.DownloadConfig | None = None,
                           **kwargs) -> None:
    """As TFDS's, with the manual dir given to __init__ as the default, and
    the files checked before TFDS creates any folder."""
    download_config = download_config or tfds.download.DownloadConfig()
    if download_config.manual_dir is None and self._given_manual_dir is not None:
      download_config = dataclasses.replace(download_config, manual_dir=self._given_manual_dir)
    if download_config.manual_dir is not None and not self.is_prepared():
      self._read_sources(epath.Path(download_config.manual_dir))
    # An image that fails to decode stops generation: TFDS removes its
    # incomplete folder, and the folders this call created go too.
    created = [d for d in (self.data_path.parent.parent, self.data_path.parent)
               if not d.exists()]
    try:
      super().download_and_prepare(download_config=download_config, **kwargs)
    except BaseException:
      if created and not self.data_path.exists():
        created[0].rmtree(missing_ok=True)
      raise

  def _download_and_prepare(self, dl_manager: tfds.download.DownloadManager,
                            download_config: tfds.download.DownloadConfig) -> None:
    set_file, _ = self._read_sources(_manual_dir(dl_manager))
    keypoint_set = set_file.keypoint_set
    if self.info.features is None:
      # `custom` without a manual dir at __init__: the keypoint count is known
      # only now. TFDS has no public setter; this is the attribute that
      # DatasetInfo.read_from_directory sets too.
      self.info._features = self._features(set_file)  # pylint: disable=protected-access
    elif self.info.features['keypoints'].shape[0] != keypoint_set.num_keypoints:
      raise ValueError(f'coco_keypoints: features for {self.info.features["keypoints"].shape[0]} '
                       f'keypoints, the files have {keypoint_set.num_keypoints}')
    super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    set_file, sources = self._read_sources(_manual_dir(dl_manager))
    metadata = self.info.metadata
    metadata[datasets.KEYPOINT_SET_KEY] = set_file.keypoint_set.to_dict()
    metadata[CATEGORY_IDS_KEY] = sorted({i for s in sources.values()
                                         for i in s.annotations.category_ids})
    metadata[SKIPPED_KEY] = {split: dict(s.annotations.skipped) for split, s in sources.items()}
    for split, source in sources.items():
      logging.info('coco_keypoints %s: %d persons from %s; left out: %s', split,
                   source.annotations.num_examples, source.annotations.path,
                   coco_annotations.skipped_summary(source.annotations.skipped))
    return {split: self._generate_examples(source) for split, source in sources.items()}

  # -- examples --------------------------------------------------------------

  def _generate_examples(self, source: _Source) -> Iterator[tuple[int, dict[str, Any]]]:
    """(annotation id, example) for each person with a box and a keypoint."""
    name, pixels = None, None
    for image, person in source.annotations.examples():
      if image.file_name != name:
        name = image.file_name
        pixels = self._read_image(source, image, person)
      yield person.annotation_id, self._example(pixels, image, person)

  def _read_image(self, source: _Source, image: coco_annotations.ImageRecord,
                  person: coco_annotations.Person) -> np.ndarray:
    """The image in its stored frame (the annotations' frame, as MPII's)."""
    path = source.images / image.file_name
    try:
      with path.open('rb') as f:
        return image_io.decode_image(f, str(path), apply_orientation=False)
    except (OSError, ValueError) as e:  # image_io.ImageReadError is a ValueError
      reason = ' '.join(str(e).split()) or type(e).__name__
      raise coco_annotations.CocoFormatError(
          f'{path}: image unreadable (annotation {person.annotation_id}, image '
          f'{image.image_id} of {source.annotations.path}): {reason}') from None

  def _example(self, pixels: np.ndarray, image: coco_annotations.ImageRecord,
               person: coco_annotations.Person) -> dict[str, Any]:
    cfg = self.builder_config
    objpos, scale = coco_annotations.box_center_scale(person.bbox)
    a = person_crops.crop_to_image_transform(objpos, scale, cfg.resolution, cfg.crop_side_factor)

    others = [(p.keypoints, p.status) for p in image.others(person)]
    crowd = image.crowd
    unlabelled = [p for p in image.persons if p.has_box and not p.has_keypoints]
    return {
        **person_crops.crop_fields(pixels, a, cfg.resolution, person.keypoints, person.status,
                                   others),
        'objpos': np.asarray(objpos, np.float32),
        'scale': np.float32(scale),
        'head_box': np.zeros(4, np.float32),
        'head_size': np.float32(0.0),
        'original_size': np.array(pixels.shape[:2], np.int32),
        'image_name': image.file_name,
        'image_index': np.int32(image.index),
        'person_index': np.int32(person.index),
        'single_person': len(image.persons) == 1 and not crowd,
        'coco_image_id': np.int64(image.image_id),
        'coco_annotation_id': np.int64(person.annotation_id),
        'coco_category_id': np.int64(person.category_id),
        'bbox': person.bbox.astype(np.float32),
        'area': np.float32(person.area),
        'crowd_boxes': np.array([c.bbox for c in crowd], np.float32).reshape(-1, 4),
        'crowd_areas': np.array([c.area for c in crowd], np.float32),
        'unlabelled_boxes': np.array([p.bbox for p in unlabelled], np.float32).reshape(-1, 4),
        'unlabelled_areas': np.array([p.area for p in unlabelled], np.float32),
        **person.part_boxes,
    }
