"""Every config value checked before any work starts: `check_config(config)`.

A bad value stops the run with one line naming the key, the value and what
is allowed, before datasets are opened or anything is compiled. Each key has
one rule in `RULES` (adding a key is one line there); keys without a rule are
left alone, and rules of keys a config lacks are skipped. Relations between
keys (scale_min <= scale_max, one factor per boundary) follow the per-key
rules. The names a key allows come from the code that acts on them
(rhpe_jax.core.config and rhpe_jax.core.keypoint_sets). Imports
nothing heavy: the command lines call it right after parsing, before
TensorFlow or JAX is imported.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import operator
import re
import sys
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from rhpe_jax.core import config as config_lib
from rhpe_jax.core import keypoint_sets

# A TFDS name: `name`, `name/config`, `name/config/1.0.0` or `name:1.*.*`.
_DATASET_NAME = re.compile(r'[a-z][a-z0-9_]*(/[A-Za-z0-9_.*\-]+){0,2}(:[\d.*]+)?')
# A split as TFDS reads it: `train`, `train[:250]`, `train[10%:]`, `train+validation`.
_SPLIT = re.compile(r'[A-Za-z0-9_]+(\[[-\d%:]*\])?(\+[A-Za-z0-9_]+(\[[-\d%:]*\])?)*')


@dataclasses.dataclass(frozen=True)
class Rule:
  """`test(value)` is true for the values that `allowed` describes."""
  test: Callable[[Any], bool]
  allowed: str


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def integer(minimum: int | None = None, *, or_minus_one: str = '', note: str = '') -> Rule:
  """An integer >= `minimum`; `or_minus_one` says what -1 means where it is allowed."""
  def test(value):
    return _is_int(value) and (minimum is None or value >= minimum
                               or (bool(or_minus_one) and value == -1))
  allowed = 'an integer' if minimum is None else f'an integer >= {minimum}'
  if or_minus_one:
    allowed += f', or -1 for {or_minus_one}'
  return Rule(test, allowed + note)


def number(*, above: float | None = None, at_least: float | None = None,
           at_most: float | None = None, below: float | None = None) -> Rule:
  """A finite number within the given bounds."""
  bounds = [(bound, sign, compare) for bound, sign, compare in (
      (above, '>', operator.gt), (at_least, '>=', operator.ge),
      (at_most, '<=', operator.le), (below, '<', operator.lt)) if bound is not None]
  return Rule(lambda value: _is_number(value) and all(compare(value, bound)
                                                      for bound, _, compare in bounds),
              'a number ' + ' and '.join(f'{sign} {bound:g}' for bound, sign, _ in bounds))


def one_of(names: Sequence[Any]) -> Rule:
  return Rule(lambda value: value in names,
              'one of ' + ', '.join(repr(n) for n in names))


def boolean() -> Rule:
  return Rule(lambda value: isinstance(value, bool), 'True or False')


def matching(pattern: re.Pattern, allowed: str) -> Rule:
  return Rule(lambda value: isinstance(value, str) and bool(pattern.fullmatch(value)), allowed)


def multiple_of_4() -> Rule:
  return Rule(lambda value: _is_int(value) and value > 0 and value % 4 == 0,
              'a positive multiple of 4 (the heat maps are 4 times smaller)')


def _sequence_of(item: Callable[[Any], bool]) -> Callable[[Any], bool]:
  return lambda value: isinstance(value, (tuple, list)) and all(item(v) for v in value)


def _extra_dataset(entry: Any) -> bool:
  """(name, split, joint mapping, weight > 0)."""
  return (isinstance(entry, (tuple, list)) and len(entry) == 4
          and RULES['dataset'].test(entry[0]) and RULES['train_split'].test(entry[1])
          and entry[2] in config_lib.JOINT_MAPPINGS and _is_number(entry[3]) and entry[3] > 0)


_SPLIT_RULE = matching(_SPLIT, "a split such as 'train' or 'train[:250]'")
_PERIOD = integer(note=' (<= 0 turns it off)')

def _is_mapping(value: Any) -> bool:
  """A dict, or the ConfigDict a dict becomes inside a config (a run's
  config.json read back)."""
  return isinstance(value, (Mapping, ml_collections.ConfigDict))


RULES: dict[str, Rule] = {
    'seed': integer(0),
    # Data.
    'dataset': matching(_DATASET_NAME, "a TFDS name such as 'mpii' or 'lsp/extended'"),
    'data_dir': Rule(lambda value: value is None or isinstance(value, str),
                     'a directory (or unset for the TFDS default)'),
    'train_split': _SPLIT_RULE,
    'eval_split': _SPLIT_RULE,
    'keypoint_set': one_of(keypoint_sets.CONFIG_NAMES),
    'dataset_keypoint_set': Rule(
        lambda value: value is None or _is_mapping(value),
        'unset, or a keypoint set (rhpe_jax.core.keypoint_sets.KeypointSet.to_dict)'),
    'keypoint_sigmas': Rule(_sequence_of(lambda v: _is_number(v) and v > 0),
                            'a tuple of OKS sigmas > 0, one per keypoint (empty: by rule)'),
    'extra_train_datasets': Rule(
        _sequence_of(_extra_dataset),
        f'a tuple of (dataset, split, joint mapping in {config_lib.JOINT_MAPPINGS}, weight > 0)'),
    'init_from': Rule(lambda value: isinstance(value, str), "a workdir, or '' to start fresh"),
    'init_from_checkpoint': Rule(
        lambda value: value in ('latest', 'best') or (isinstance(value, str) and value.isdigit())
        or (_is_int(value) and value >= 0), "'latest', 'best' or a step number"),
    'init_from_keypoint_set': one_of(('', *keypoint_sets.BUILT_IN_NAMES)),
    'shuffle_buffer': integer(1),
    'max_other_people': integer(0),
    # Input and augmentation.
    'input_size': multiple_of_4(),
    'box_scale': number(above=0),
    'rotation_deg': number(at_least=0, at_most=180),
    'rotation_prob': number(at_least=0, at_most=1),
    'scale_min': number(above=0),
    'scale_max': number(above=0),
    'translate_frac': number(at_least=0, below=0.5),
    'flip_prob': number(at_least=0, at_most=1),
    # Network.
    'num_iterations': integer(0),
    'use_parts': boolean(),
    'width': number(above=0),
    'compute_dtype': one_of(config_lib.COMPUTE_DTYPES),
    'remat': boolean(),
    'relu_output': boolean(),
    'batch_norm_per_pass': boolean(),
    'scan_unroll': integer(0, note=' (0 unrolls every pass)'),
    # Targets and loss.
    'occlusion_mode': one_of(config_lib.OCCLUSION_MODES),
    'sigma': number(above=0),
    'peak': number(above=0),
    'part_sigma_along': number(above=0),
    'part_sigma_across': number(above=0),
    # Optimiser.
    'optimizer': one_of(config_lib.OPTIMIZERS),
    'learning_rate': number(above=0),
    'momentum': number(at_least=0, below=1),
    'weight_decay': number(at_least=0),
    'lr_boundaries_epochs': Rule(_sequence_of(lambda v: _is_number(v) and v >= 0),
                                 'a tuple of epochs >= 0, e.g. (30, 35)'),
    'lr_factors': Rule(_sequence_of(lambda v: _is_number(v) and v > 0),
                       'a tuple of factors > 0, e.g. (0.5, 0.2)'),
    'lr_schedule': one_of(config_lib.LR_SCHEDULES),
    'warmup_steps': integer(0),
    'grad_clip_norm': number(at_least=0),
    'batch_size': integer(1),
    'num_epochs': number(above=0),
    'num_train_steps': integer(1, or_minus_one='num_epochs'),
    'num_train_examples': integer(1, or_minus_one="the dataset's size"),
    # Book-keeping.
    'log_every_steps': _PERIOD,
    'eval_every_steps': _PERIOD,
    'checkpoint_every_steps': _PERIOD,
    'keep_checkpoints': integer(1),
    'num_eval_examples': integer(1, or_minus_one='the whole split'),
    'eval_pck_threshold': number(above=0),
    'eval_metric': one_of(config_lib.EVAL_METRICS),
    'torso_definition': one_of(config_lib.TORSO_DEFINITIONS),
    'num_summary_images': integer(0),
    'prefetch_batches': integer(1),
}


def _relations(config: Mapping[str, Any]) -> list[tuple[bool, str]]:
  """(holds, message) for every rule that ties keys together."""
  has = lambda *keys: all(k in config for k in keys)
  checks = []
  if has('scale_min', 'scale_max'):
    checks.append((config['scale_min'] <= config['scale_max'],
                   f'config.scale_min = {config["scale_min"]!r} must be <= '
                   f'config.scale_max = {config["scale_max"]!r}'))
  if has('lr_boundaries_epochs', 'lr_factors'):
    boundaries, factors = tuple(config['lr_boundaries_epochs']), tuple(config['lr_factors'])
    checks.append((len(boundaries) == len(factors),
                   f'config.lr_factors = {factors!r} must have one factor per '
                   f'config.lr_boundaries_epochs = {boundaries!r} entry'))
    checks.append((list(boundaries) == sorted(boundaries),
                   f'config.lr_boundaries_epochs = {boundaries!r} must be in increasing order'))
  if has('keypoint_set', 'keypoint_sigmas') and config['keypoint_sigmas']:
    count = None  # the keypoint count, where the set is known here
    if config['keypoint_set'] in keypoint_sets.BUILT_IN_NAMES:
      count = keypoint_sets.built_in(config['keypoint_set']).num_keypoints
    elif _is_mapping(config.get('dataset_keypoint_set')):
      count = len(config['dataset_keypoint_set'].get('keypoint_names', ()))
    if count is not None:
      sigmas = tuple(config['keypoint_sigmas'])
      checks.append((len(sigmas) == count,
                     f'config.keypoint_sigmas has {len(sigmas)} sigmas; the keypoint set has '
                     f'{count} keypoints (one sigma each, or none: by rule)'))
  return checks


def upgrade_old_keys(config: Any) -> None:
  """Moves the keys a config still sets under an old name
  (config_lib.RENAMED_KEYS) to their new names, in place (a dict or a
  ConfigDict, locked or not), with one `warning:` line each; the dict the old
  `keypoint_set` held goes to `dataset_keypoint_set` (None, as runs with a
  built-in set wrote it: replaced). Raises ValueError when a config sets an
  old key and its new one to different values."""
  upgrades = []
  if _is_mapping(config.get('keypoint_set')):  # the old meaning: the dataset's set
    upgrades.append(('keypoint_set', 'dataset_keypoint_set'))
  upgrades += [(old, new) for old, new in config_lib.RENAMED_KEYS.items() if old in config]
  if not upgrades:
    return
  defaults = config_lib.default_config()

  def move(old: str, new: str) -> None:
    value = config[old]
    if new in config and config[new] not in (value, defaults.get(new), None):
      raise ValueError(f'config.{old} = {value!r} and config.{new} = {config[new]!r}: '
                       f'config.{old} is the old name of config.{new}; set config.{new} only')
    del config[old]
    if new in config:
      del config[new]  # a ConfigDict keeps a key's type: a new value of another type
    config[new] = value

  unlocked = config.unlocked() if hasattr(config, 'unlocked') else contextlib.nullcontext()
  with unlocked:
    for old, new in upgrades:
      move(old, new)
  for old, new in upgrades:
    if old in config_lib.RENAMED_KEYS:
      print(f'warning: config.{old} is now config.{new}; the old name works for now',
            file=sys.stderr, flush=True)


def check_config(config: Mapping[str, Any]) -> None:
  """Raises ValueError with one line for the first value no rule allows
  (old key names upgraded first: upgrade_old_keys)."""
  upgrade_old_keys(config)
  for key, rule in RULES.items():
    if key in config and not rule.test(config[key]):
      raise ValueError(f'config.{key} = {config[key]!r}: must be {rule.allowed}')
  for holds, message in _relations(config):
    if not holds:
      raise ValueError(message)
