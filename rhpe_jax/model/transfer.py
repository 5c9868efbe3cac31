"""Carrying trained weights to a network of another keypoint set.

The trunk (feed-forward and fusion layers) does not depend on the keypoint
set and is copied whole; only the prediction heads do. A head's output
channel for a keypoint is copied from the source channel of the keypoint of
the same name (`keypoint_sets.match_keypoints`: MPII 'r_ankle' is COCO
'right_ankle'), a part channel from the source part joining the same two
keypoints; every other channel keeps its fresh initialisation.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from rhpe_jax.core import keypoint_sets

# The head modules whose last axis is one channel per keypoint / per part
# (rhpe_jax.model.network.Heads).
KEYPOINT_HEAD, PART_HEAD = 'keypoints', 'parts'


@dataclasses.dataclass(frozen=True)
class Transfer:
  """What `transfer_variables` carried over, by target keypoint / part name."""

  keypoints_from: dict[str, str]  # target keypoint -> source keypoint
  fresh_keypoints: tuple[str, ...]
  parts_from: dict[str, str]  # 'a-b' -> source 'c-d'
  fresh_parts: tuple[str, ...]

  def summary(self) -> str:
    """One line: what was restored and what starts fresh."""
    same = all(a == b for a, b in self.keypoints_from.items())
    mapped = ', '.join(f'{t}<-{s}' for t, s in self.keypoints_from.items()
                       if t != s) if not same else 'all by the same names'
    total_kp = len(self.keypoints_from) + len(self.fresh_keypoints)
    total_parts = len(self.parts_from) + len(self.fresh_parts)
    return (f'trunk and fusion layers restored; keypoint heads: {len(self.keypoints_from)} of '
            f'{total_kp} by name ({mapped or "none"}), fresh: '
            f'{", ".join(self.fresh_keypoints) or "none"}; part heads: {len(self.parts_from)} '
            f'of {total_parts}, fresh: {", ".join(self.fresh_parts) or "none"}')


def _part_name(keypoint_set: keypoint_sets.KeypointSet, pair: tuple[int, int]) -> str:
  return f'{keypoint_set.keypoint_names[pair[0]]}-{keypoint_set.keypoint_names[pair[1]]}'


def match_parts(source: keypoint_sets.KeypointSet, target: keypoint_sets.KeypointSet
                ) -> list[int | None]:
  """For each part of `target`, the source part joining the same two
  keypoints by canonical name (either order), or None."""
  key = lambda keypoint_set, pair: frozenset(
      keypoint_sets.canonical_name(keypoint_set.keypoint_names[i]) for i in pair)
  index = {key(source, pair): i for i, pair in enumerate(source.part_pairs)}
  return [index.get(key(target, pair)) for pair in target.part_pairs]


def transfer_variables(source: dict[str, Any], source_set: keypoint_sets.KeypointSet,
                       target: dict[str, Any], target_set: keypoint_sets.KeypointSet
                       ) -> tuple[dict[str, Any], Transfer]:
  """`target` ({'params', 'batch_stats'}, freshly initialised, host arrays)
  with `source`'s weights carried over (see the module docstring).

  Raises ValueError naming the first array that differs outside the heads
  (another width or network: no transfer, not a silent partial one)."""
  keypoint_map = keypoint_sets.match_keypoints(source_set, target_set)
  part_map = match_parts(source_set, target_set)

  def carry(path, fresh):
    names = [getattr(k, 'key', str(k)) for k in path]
    head = next((n for n in names if n in (KEYPOINT_HEAD, PART_HEAD)), None)
    node = source
    for name in names:
      if not isinstance(node, dict) or name not in node:
        if head is not None:  # e.g. a source without part heads: they start fresh
          return np.asarray(fresh)
        raise ValueError(f'{"/".join(names)} is not in the checkpoint: another network')
      node = node[name]
    old, fresh = np.asarray(node), np.asarray(fresh)
    if head is None:
      if old.shape != fresh.shape:
        raise ValueError(f'{"/".join(names)} has shape {old.shape} in the checkpoint, '
                         f'{fresh.shape} in this network: another width or network')
      return old.astype(fresh.dtype)
    mapping = keypoint_map if head == KEYPOINT_HEAD else part_map
    if old.shape[:-1] != fresh.shape[:-1]:
      raise ValueError(f'{"/".join(names)} has shape {old.shape} in the checkpoint, '
                       f'{fresh.shape} in this network: another width or network')
    out = fresh.copy()
    for channel, source_channel in enumerate(mapping[:fresh.shape[-1]]):
      if source_channel is not None:
        out[..., channel] = old[..., source_channel]
    return out

  variables = jax.tree_util.tree_map_with_path(carry, target)
  kp_names, src_names = target_set.keypoint_names, source_set.keypoint_names
  parts = [_part_name(target_set, p) for p in target_set.part_pairs]
  return variables, Transfer(
      keypoints_from={kp_names[t]: src_names[s] for t, s in enumerate(keypoint_map)
                      if s is not None},
      fresh_keypoints=tuple(kp_names[t] for t, s in enumerate(keypoint_map) if s is None),
      parts_from={parts[t]: _part_name(source_set, source_set.part_pairs[s])
                  for t, s in enumerate(part_map) if s is not None},
      fresh_parts=tuple(parts[t] for t, s in enumerate(part_map) if s is None))
