"""COCO keypoint AP/AR: pycocotools' COCOeval (iouType='keypoints') on
ground truth rebuilt from arrays (an evaluation split's examples) or read
from a COCO file, with the keypoint set's OKS sigmas.

No OKS is computed here: COCOeval does all of it, with its own rules kept
(persons with `num_keypoints` 0 and `iscrowd` regions are ignored regions,
a detection may match a crowd region any number of times, at most 20
results per image, area ranges medium and large). AP is class-agnostic: the
categories of a merged keypoint set (AP-10K's species) are scored together,
as AP-10K reports it. Numbers are COCOeval's `stats` as it gives them:
fractions in [0, 1], -1 where undefined (no ground truth in an area range).

A keypoint set with `groups` (COCO-WholeBody's body, foot, face, hands) is
scored per group as well (`group_scores`), as COCO-WholeBody's own
evaluation does with pycocotools (github.com/jin-s13/COCO-WholeBody,
evaluation/myeval_*.py; xtcocotools' 'keypoints_<group>' does the same): each
group alone, ground truth and results cut to its keypoints, its sigmas, a
person without a labelled keypoint in the group ignored; then all keypoints.
Its first group is the body, whose keypoints' extent is a result's area (its
results keep the body in `keypoints`, the field COCOeval takes areas from).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from rhpe_jax.core import keypoint_sets
from rhpe_jax.data import coco_results

# COCOeval.stats for keypoints, in its order.
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')

# Per-person fields of a COCO-format build (tfds_builders/coco_keypoints)
# that the evaluation pass carries next to the predictions; a split has COCO
# ids when its predictions hold `coco_image_id`.
PERSON_FIELDS = ('coco_image_id', 'coco_annotation_id', 'coco_category_id', 'bbox', 'area')
# The image's regions COCOeval ignores (iscrowd regions; persons annotated
# without keypoints), padded in the evaluation pipeline to a fixed count
# (rhpe_jax.data.input_pipeline.MAX_CROWD_REGIONS) with their number.
CROWD_FIELDS = tuple(f'{kind}_{what}' for kind in ('crowd', 'unlabelled')
                     for what in ('boxes', 'areas', 'count'))


def has_coco_ids(predictions: Mapping[str, Any]) -> bool:
  """Whether predictions come from a split with COCO image ids."""
  return 'coco_image_id' in predictions


def sigmas_of(config: ml_collections.ConfigDict) -> tuple[tuple[float, ...], str]:
  """The OKS sigmas a config is scored with and the rule that gave them:
  `config.keypoint_sigmas` when set, else the keypoint set's own, else
  COCO's by keypoint name and 0.079 for the rest (`keypoint_sets.oks_sigmas`)."""
  keypoint_set = keypoint_sets.of_config(config)
  given = tuple(float(s) for s in (config.get('keypoint_sigmas') or ()))
  if given:
    if len(given) != keypoint_set.num_keypoints:
      raise ValueError(f'config.keypoint_sigmas has {len(given)} sigmas; the keypoint set '
                       f'{keypoint_set.name!r} has {keypoint_set.num_keypoints} keypoints')
    return given, 'config.keypoint_sigmas'
  if keypoint_set.sigmas is not None:
    return keypoint_set.sigmas, f'the keypoint set {keypoint_set.name!r} gives them'
  return (keypoint_sets.oks_sigmas(keypoint_set),
          f"COCO's by keypoint name, {keypoint_sets.DEFAULT_SIGMA} for the others")


def _finite_list(values: Any) -> list[float]:
  return [float(v) for v in np.asarray(values, np.float64).ravel()]


def ground_truth(image_ids: Sequence[int], annotation_ids: Sequence[int], keypoints: Any,
                 status: Any, bboxes: Any, areas: Any, *, keypoint_names: Sequence[str],
                 crowd: Mapping[int, tuple[Any, Any]] | None = None,
                 unlabelled: Mapping[int, tuple[Any, Any]] | None = None,
                 category_id: int | Sequence[int] = coco_results.PERSON_CATEGORY_ID
                 ) -> dict[str, Any]:
  """A COCO keypoints ground-truth dict from arrays, one row per person.

  `keypoints` (N, K, 2) original image pixels, `status` (N, K) the project's
  codes (0 missing, 1 occluded, 2 visible: COCO's v), `bboxes` (N, 4) xywh,
  `areas` (N,); `crowd` maps an image id to its iscrowd regions (boxes
  (M, 4) xywh, areas (M,)), which become iscrowd annotations without
  keypoints (ids after the largest person id); `unlabelled` likewise maps an
  image id to the boxes and areas of its persons annotated without
  keypoints. A person without labelled keypoints gets `num_keypoints` 0,
  which COCOeval treats as a region to ignore (a detection on it is neither
  a hit nor a false positive). `category_id` is one for all or one per
  person (a merged keypoint set's categories; regions take the first).
  """
  keypoints = np.asarray(keypoints, np.float64)
  status = np.asarray(status)
  bboxes, areas = np.asarray(bboxes, np.float64), np.asarray(areas, np.float64)
  count, num_keypoints = len(image_ids), len(keypoint_names)
  if (keypoints.shape != (count, num_keypoints, 2) or status.shape != (count, num_keypoints)
      or bboxes.shape != (count, 4) or areas.shape != (count,)
      or len(annotation_ids) != count):
    raise ValueError(
        f'ground truth of {count} persons with {num_keypoints} keypoints needs keypoints '
        f'{(count, num_keypoints, 2)}, status {(count, num_keypoints)}, bboxes {(count, 4)}, '
        f'areas ({count},) and {count} annotation ids; got {keypoints.shape}, {status.shape}, '
        f'{bboxes.shape}, {areas.shape}, {len(annotation_ids)}')
  if len(set(int(a) for a in annotation_ids)) != count:
    raise ValueError('ground truth: annotation ids repeat')
  categories = [int(c) for c in np.broadcast_to(np.asarray(category_id, np.int64), (count,))]
  region_category = categories[0] if categories else int(np.ravel(category_id)[0])
  annotations = []
  for i in range(count):
    v = np.clip(status[i].astype(np.int64), 0, 2)
    xy = np.where((v > 0)[:, None], keypoints[i], 0.0)
    triples = np.concatenate([xy, v[:, None].astype(np.float64)], axis=1)
    annotations.append({
        'id': int(annotation_ids[i]), 'image_id': int(image_ids[i]),
        'category_id': categories[i], 'iscrowd': 0,
        'keypoints': _finite_list(triples), 'num_keypoints': int(np.sum(v > 0)),
        'bbox': _finite_list(bboxes[i]), 'area': float(areas[i])})
  next_id = max([int(a) for a in annotation_ids], default=0) + 1
  image_set = set(int(i) for i in image_ids)
  for iscrowd, regions in ((1, crowd), (0, unlabelled)):
    for image_id, (boxes, region_areas) in sorted((regions or {}).items()):
      boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
      region_areas = np.asarray(region_areas, np.float64).reshape(-1)
      if len(boxes) != len(region_areas):
        raise ValueError(f'image {image_id}: {len(boxes)} region boxes, '
                         f'{len(region_areas)} areas')
      image_set.add(int(image_id))
      for box, area in zip(boxes, region_areas):
        annotations.append({
            'id': next_id, 'image_id': int(image_id), 'category_id': region_category,
            'iscrowd': iscrowd, 'keypoints': [0.0] * (3 * num_keypoints), 'num_keypoints': 0,
            'bbox': _finite_list(box), 'area': float(area)})
        next_id += 1
  return {
      'images': [{'id': i} for i in sorted(image_set)],
      'annotations': annotations,
      'categories': [{'id': c, 'name': 'person' if c == coco_results.PERSON_CATEGORY_ID
                      else f'category_{c}', 'keypoints': list(keypoint_names)}
                     for c in sorted(set(categories) | {region_category})],
  }


def crowd_regions(predictions: Mapping[str, np.ndarray], kind: str = 'crowd'
                  ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """Each image's regions of `kind` ('crowd': iscrowd regions; 'unlabelled':
  persons without keypoints) as (boxes, areas), from the padded per-person
  fields of the evaluation pass (every person of an image carries them)."""
  regions: dict[int, tuple[np.ndarray, np.ndarray]] = {}
  if f'{kind}_count' not in predictions:
    return regions
  for image_id, boxes, areas, n in zip(predictions['coco_image_id'],
                                       predictions[f'{kind}_boxes'],
                                       predictions[f'{kind}_areas'],
                                       predictions[f'{kind}_count']):
    if int(image_id) not in regions and int(n) > 0:
      regions[int(image_id)] = (np.asarray(boxes)[:int(n)], np.asarray(areas)[:int(n)])
  return regions


def _categories(predictions: Mapping[str, np.ndarray], category_id: int) -> Any:
  """Each person's category (a build that has them) or `category_id` for all."""
  return predictions.get('coco_category_id', category_id)


def ground_truth_from_predictions(predictions: Mapping[str, np.ndarray],
                                  keypoint_names: Sequence[str],
                                  category_id: int = coco_results.PERSON_CATEGORY_ID
                                  ) -> dict[str, Any]:
  """`ground_truth` of the persons of an evaluation pass (`predict_split` of
  a split with COCO ids): keypoints `gt_image` (original pixels), with the
  crowd regions of their images; each person's category where the build
  has them, else `category_id`."""
  if not has_coco_ids(predictions):
    raise ValueError('these predictions have no COCO ids (coco_image_id): the dataset is '
                     'not a COCO-format build')
  return ground_truth(
      predictions['coco_image_id'], predictions['coco_annotation_id'], predictions['gt_image'],
      predictions['keypoint_status'], predictions['bbox'], predictions['area'],
      keypoint_names=keypoint_names, crowd=crowd_regions(predictions),
      unlabelled=crowd_regions(predictions, 'unlabelled'),
      category_id=_categories(predictions, category_id))


def results_from_predictions(predictions: Mapping[str, np.ndarray], *,
                             pred_key: str = 'pred_image', box_scores: Any = None,
                             category_id: int = coco_results.PERSON_CATEGORY_ID
                             ) -> list[dict[str, Any]]:
  """COCO keypoint results, one per predicted person: keypoints in original
  pixels, score = box score (1 for ground-truth boxes) x mean peak, the
  person's category (where the build has them, else `category_id`)."""
  count = len(predictions[pred_key])
  scores = np.ones(count) if box_scores is None else np.asarray(box_scores, np.float64)
  categories = np.broadcast_to(_categories(predictions, category_id), (count,))
  return [coco_results.keypoint_result(
      int(predictions['coco_image_id'][i]), predictions[pred_key][i],
      predictions['confidence'][i], category_id=int(categories[i]),
      box_score=float(scores[i]))
          for i in range(count)]


def load_ground_truth(path: str) -> dict[str, Any]:
  """A COCO keypoints annotation file as a dict (one line naming the file if
  it is not one)."""
  data = coco_results.load_json(path, 'annotation file', dict)
  if not {'images', 'annotations', 'categories'} <= set(data):
    raise ValueError(f'{path}: a COCO annotation file has images, annotations and categories')
  return data


def read_results(path: str) -> list[dict[str, Any]]:
  """A COCO keypoint results file (checked against ground truth by `keypoint_ap`)."""
  return coco_results.load_json(path, 'results file')


def _num_keypoints(ground_truth_: Mapping[str, Any]) -> int:
  names = {len(c.get('keypoints', ())) for c in ground_truth_['categories']}
  if len(names) != 1 or not names.issubset(range(1, 10**6)):
    raise ValueError('the ground truth needs categories that name their keypoints, '
                     'one keypoint count for all')
  return names.pop()


def check_results(ground_truth_: Mapping[str, Any], results: Sequence[Any],
                  source: str = 'results') -> None:
  """One line naming `source` and the record for results COCOeval cannot
  score: no records, an image id the ground truth lacks, a wrong keypoint
  count, a score or coordinate that is not a finite number."""
  if not results:
    raise ValueError(f'{source}: no results to score (COCOeval needs at least one)')
  images = {int(image['id']) for image in ground_truth_['images']}
  categories = {int(c['id']) for c in ground_truth_['categories']}
  expected = 3 * _num_keypoints(ground_truth_)
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  for i, record in enumerate(results):
    where = f'{source}: record {i}'
    if not isinstance(record, dict) or not {'image_id', 'category_id', 'keypoints',
                                            'score'} <= set(record):
      raise ValueError(f'{where}: a keypoint result needs image_id, category_id, keypoints '
                       'and score')
    if record['image_id'] not in images:
      raise ValueError(f'{where}: image id {record["image_id"]!r} is not an image of the '
                       'ground truth')
    if record['category_id'] not in categories:
      raise ValueError(f'{where}: category id {record["category_id"]!r} is not one of the '
                       f'ground truth ({sorted(categories)})')
    values = record['keypoints']
    if not isinstance(values, list) or len(values) != expected:
      size = len(values) if isinstance(values, list) else type(values).__name__
      raise ValueError(f'{where}: {size} keypoint values; the ground truth has '
                       f'{expected // 3} keypoints ({expected} values x, y, v)')
    if not all(number(v) for v in values):
      raise ValueError(f'{where}: keypoints must be finite numbers')
    if not number(record['score']):
      raise ValueError(f'{where}: score must be a finite number, got {record["score"]!r}')


def keypoint_ap(ground_truth_: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                sigmas: Sequence[float], *, source: str = 'results',
                result_areas: Sequence[float] | None = None) -> dict[str, float]:
  """COCOeval's keypoint AP and AR (STAT_NAMES) of `results` against
  `ground_truth_` (a COCO dict: `ground_truth`, `load_ground_truth`) over the
  ground truth's images, with OKS sigmas `sigmas` (one per keypoint).
  `result_areas` replace the areas COCOeval gives results (their keypoints'
  extent), which decide whether an unmatched result counts in an area range.
  pycocotools' prints are captured, not shown."""
  from pycocotools import coco as coco_lib  # pylint: disable=g-import-not-at-top
  from pycocotools import cocoeval  # pylint: disable=g-import-not-at-top
  check_results(ground_truth_, results, source)
  sigmas = np.asarray(sigmas, np.float64)
  num_keypoints = _num_keypoints(ground_truth_)
  if sigmas.shape != (num_keypoints,) or not np.all(sigmas > 0):
    raise ValueError(f'{len(sigmas)} OKS sigmas for {num_keypoints} keypoints (each > 0)')
  # Class-agnostic: every category as the first (COCOeval's useCats = 0 is
  # not applied to keypoints' OKS).
  pooled = copy.deepcopy(dict(ground_truth_))
  pooled['categories'] = pooled['categories'][:1]
  records = copy.deepcopy(list(results))  # loadRes writes into the records
  for record in pooled['annotations'] + records:
    record['category_id'] = pooled['categories'][0]['id']
  with contextlib.redirect_stdout(io.StringIO()):
    gt = coco_lib.COCO()
    gt.dataset = pooled
    gt.createIndex()
    dt = gt.loadRes(records)
    if result_areas is not None:
      for record, area in zip(records, result_areas):  # loadRes's records, indexed by dt
        record['area'] = float(area)
    evaluation = cocoeval.COCOeval(gt, dt, iouType='keypoints')
    evaluation.params.kpt_oks_sigmas = sigmas
    evaluation.params.imgIds = sorted(gt.getImgIds())
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  return dict(zip(STAT_NAMES, (float(v) for v in evaluation.stats)))


# The name of the all-keypoints row of `group_scores` (COCO-WholeBody's).
WHOLE_GROUP = 'wholebody'


def _cut(records: Sequence[Mapping[str, Any]], start: int, end: int,
         ground_truth_: bool) -> list[dict[str, Any]]:
  """Records with their keypoints cut to [start, end); ground truth counts
  its labelled keypoints again (COCOeval ignores a person with none)."""
  out = []
  for record in records:
    values = list(record['keypoints'])[3 * start:3 * end]
    cut = dict(record, keypoints=values)
    if ground_truth_:
      cut['num_keypoints'] = int(sum(v > 0 for v in values[2::3]))
    out.append(cut)
  return out


def group_scores(ground_truth_: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                 sigmas: Sequence[float], groups: Sequence[tuple[str, int, int]], *,
                 source: str = 'results') -> dict[str, dict[str, float]]:
  """`keypoint_ap` of each group (name, start, end) of keypoints alone, then
  of all keypoints (WHOLE_GROUP): COCO-WholeBody's body, foot, face,
  lefthand, righthand and whole-body AP (see the module docstring). A
  result's area, for the area ranges, is the extent of its first group's
  keypoints in every row (COCO-WholeBody's: the body's, its results'
  `keypoints` field)."""
  check_results(ground_truth_, results, source)
  sigmas = list(sigmas)
  _, start, end = groups[0]
  areas = []
  for record in results:
    first = np.asarray(record['keypoints'], np.float64).reshape(-1, 3)[start:end, :2]
    areas.append(float(np.prod(first.max(axis=0) - first.min(axis=0))))
  out = {}
  for name, start, end in groups:
    cut = dict(ground_truth_, annotations=_cut(ground_truth_['annotations'], start, end, True),
               categories=[dict(c, keypoints=list(c['keypoints'])[start:end])
                           for c in ground_truth_['categories']])
    out[name] = keypoint_ap(cut, _cut(results, start, end, False), sigmas[start:end],
                            source=source, result_areas=areas)
  out[WHOLE_GROUP] = keypoint_ap(ground_truth_, results, sigmas, source=source,
                                 result_areas=areas)
  return out


def format_scores(scores: Mapping[str, float], label: str = '') -> str:
  """COCO AP/AR as one table (percent; '-' where COCOeval gives -1); `label`
  names the row."""
  width = 7
  header = f'{"OKS":<10}' + ''.join(f'{n:>{width}}' for n in STAT_NAMES)
  row = f'{label:<10}' + ''.join(
      f'{100 * scores[n]:>{width}.1f}' if scores[n] >= 0 else f'{"-":>{width}}'
      for n in STAT_NAMES)
  return header + '\n' + row
