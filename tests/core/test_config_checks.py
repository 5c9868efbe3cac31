"""rhpe_jax.core.config_checks: one line per bad value, naming the key, the value
and what is allowed; every shipped config passes."""
import pathlib

import pytest

from experiments.configs import ablation, default, demo, lsp, mpii, mpii_lspet
from rhpe_jax.core import config_checks

# (overrides of the demo config, the expected message), written out by hand.
BAD = [
    ({'batch_size': -3}, 'config.batch_size = -3: must be an integer >= 1'),
    ({'batch_size': 0}, 'config.batch_size = 0: must be an integer >= 1'),
    ({'batch_size': 2.5}, 'config.batch_size = 2.5: must be an integer >= 1'),
    ({'batch_size': True}, 'config.batch_size = True: must be an integer >= 1'),
    ({'learning_rate': 0.0}, 'config.learning_rate = 0.0: must be a number > 0'),
    ({'learning_rate': float('nan')}, 'config.learning_rate = nan: must be a number > 0'),
    ({'learning_rate': '1e-3'}, "config.learning_rate = '1e-3': must be a number > 0"),
    ({'num_iterations': -1}, 'config.num_iterations = -1: must be an integer >= 0'),
    ({'input_size': 130}, 'config.input_size = 130: must be a positive multiple of 4 '
                          '(the heat maps are 4 times smaller)'),
    ({'input_size': 0}, 'config.input_size = 0: must be a positive multiple of 4 '
                        '(the heat maps are 4 times smaller)'),
    ({'dataset': 'MPII!'}, "config.dataset = 'MPII!': must be a TFDS name such as 'mpii' "
                           "or 'lsp/extended'"),
    ({'dataset': ''}, "config.dataset = '': must be a TFDS name such as 'mpii' "
                      "or 'lsp/extended'"),
    ({'train_split': 'train[:'}, "config.train_split = 'train[:': must be a split such as "
                                 "'train' or 'train[:250]'"),
    ({'keypoint_set': 'crowdpose'},
     "config.keypoint_set = 'crowdpose': must be one of 'coco', 'coco_wholebody', 'halpe', 'lsp', "
     "'mpii', 'dataset'"),
    ({'occlusion_mode': 'drop'},
     "config.occlusion_mode = 'drop': must be one of 'include', 'ignore', 'exclude'"),
    ({'optimizer': 'adamw'}, "config.optimizer = 'adamw': must be one of 'sgd', 'adam'"),
    ({'lr_schedule': 'linear'}, "config.lr_schedule = 'linear': must be one of 'step', 'cosine'"),
    ({'warmup_steps': -5}, 'config.warmup_steps = -5: must be an integer >= 0'),
    ({'eval_metric': 'pcp'}, "config.eval_metric = 'pcp': must be one of 'pckh', 'pck'"),
    ({'torso_definition': 'hips'},
     "config.torso_definition = 'hips': must be one of 'lsp_diagonal', 'mean_diagonals'"),
    ({'compute_dtype': 'float64'},
     "config.compute_dtype = 'float64': must be one of 'float32', 'bfloat16', 'float16'"),
    ({'flip_prob': 1.5}, 'config.flip_prob = 1.5: must be a number >= 0 and <= 1'),
    ({'rotation_prob': -0.1}, 'config.rotation_prob = -0.1: must be a number >= 0 and <= 1'),
    ({'rotation_deg': 200.0}, 'config.rotation_deg = 200.0: must be a number >= 0 and <= 180'),
    ({'translate_frac': 0.5}, 'config.translate_frac = 0.5: must be a number >= 0 and < 0.5'),
    ({'momentum': 1.0}, 'config.momentum = 1.0: must be a number >= 0 and < 1'),
    ({'sigma': 0.0}, 'config.sigma = 0.0: must be a number > 0'),
    ({'width': -0.5}, 'config.width = -0.5: must be a number > 0'),
    ({'use_parts': 1}, 'config.use_parts = 1: must be True or False'),
    ({'max_other_people': -1}, 'config.max_other_people = -1: must be an integer >= 0'),
    ({'shuffle_buffer': 0}, 'config.shuffle_buffer = 0: must be an integer >= 1'),
    ({'keep_checkpoints': 0}, 'config.keep_checkpoints = 0: must be an integer >= 1'),
    ({'prefetch_batches': 0}, 'config.prefetch_batches = 0: must be an integer >= 1'),
    ({'num_train_steps': 0}, 'config.num_train_steps = 0: must be an integer >= 1, '
                             'or -1 for num_epochs'),
    ({'num_eval_examples': -2}, 'config.num_eval_examples = -2: must be an integer >= 1, '
                                'or -1 for the whole split'),
    ({'eval_every_steps': 1.5}, 'config.eval_every_steps = 1.5: must be an integer '
                                '(<= 0 turns it off)'),
    ({'grad_clip_norm': -1.0}, 'config.grad_clip_norm = -1.0: must be a number >= 0'),
    ({'lr_factors': (0.5, -0.3)}, 'config.lr_factors = (0.5, -0.3): must be a tuple of '
                                  'factors > 0, e.g. (0.5, 0.2)'),
    ({'lr_factors': (0.5,)}, 'config.lr_factors = (0.5,) must have one factor per '
                             'config.lr_boundaries_epochs = (9, 11) entry'),
    ({'lr_boundaries_epochs': (11, 9)},
     'config.lr_boundaries_epochs = (11, 9) must be in increasing order'),
    ({'scale_min': 1.5, 'scale_max': 1.2},
     'config.scale_min = 1.5 must be <= config.scale_max = 1.2'),
    ({'extra_train_datasets': (('lsp/extended', 'train', 'lsp_to_coco', 0.3),)},
     "config.extra_train_datasets = (('lsp/extended', 'train', 'lsp_to_coco', 0.3),): must be "
     "a tuple of (dataset, split, joint mapping in (None, 'lsp_to_mpii'), weight > 0)"),
    ({'extra_train_datasets': (('lsp/extended', 'train', 'lsp_to_mpii', 0),)},
     "config.extra_train_datasets = (('lsp/extended', 'train', 'lsp_to_mpii', 0),): must be "
     "a tuple of (dataset, split, joint mapping in (None, 'lsp_to_mpii'), weight > 0)"),
]


def _bad_config(overrides):
  config = demo.get_config().to_dict()  # a plain dict: any type may be set
  config.update(overrides)
  return config


@pytest.mark.parametrize('overrides,message', BAD, ids=[str(o) for o, _ in BAD])
def test_bad_value_gives_one_line_naming_key_value_and_rule(overrides, message):
  with pytest.raises(ValueError) as error:
    config_checks.check_config(_bad_config(overrides))
  assert str(error.value) == message
  assert '\n' not in str(error.value)


def _lspet_sample():
  """The lead's new config, where this checkout has it (loaded from its file)."""
  path = pathlib.Path(__file__).parents[1] / 'experiments' / 'configs' / 'lspet_sample.py'
  if not path.exists():
    return []
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('lspet_sample', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return [module.get_config()]


def test_every_shipped_config_passes():
  configs = [m.get_config() for m in (default, demo, lsp, mpii, mpii_lspet)]
  configs += [ablation.get_config(v) for v in ablation.VARIANTS] + _lspet_sample()
  for config in configs:
    config_checks.check_config(config)


def test_every_default_key_has_a_rule():
  assert set(default.get_config()) <= set(config_checks.RULES)


def test_unknown_and_missing_keys_are_left_alone():
  config = demo.get_config().to_dict()
  config['lr_boundaries_steps'] = (1000, 2000)  # a key without a rule
  del config['momentum']
  config_checks.check_config(config)
  config['batch_size'] = -1  # still checked
  with pytest.raises(ValueError, match='batch_size'):
    config_checks.check_config(config)


def _allowed(key: str) -> list:
  """The names the checker allows for `key`, among the candidates."""
  candidates = ['coco', 'coco_wholebody', 'halpe', 'lsp', 'mpii', 'dataset', 'crowdpose',
                'include', 'ignore', 'exclude', 'drop', 'sgd', 'adam',
                'adamw', 'step', 'cosine', 'linear', 'float32', 'bfloat16', 'float16', 'float64',
                'pckh', 'pck', 'pcp', 'lsp_diagonal', 'mean_diagonals', 'hips']
  return [name for name in candidates if config_checks.RULES[key].test(name)]


def test_each_allowed_name_is_defined_once_where_the_code_uses_it():
  from rhpe_jax.core import config as config_lib  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import keypoint_sets
  from rhpe_jax.data import augment
  from rhpe_jax.evaluation import metrics
  from rhpe_jax.codec import targets
  from rhpe_jax.model import network
  # The code tests against the very tuples the checker's rules are made of.
  assert targets.OCCLUSION_MODES is config_lib.OCCLUSION_MODES
  assert augment.JOINT_MAPPINGS is config_lib.JOINT_MAPPINGS
  assert tuple(network.COMPUTE_DTYPES) == config_lib.COMPUTE_DTYPES
  # The rules allow those names and no other (hand-written here).
  assert _allowed('keypoint_set') == list(keypoint_sets.CONFIG_NAMES) == [
      'coco', 'coco_wholebody', 'halpe', 'lsp', 'mpii', 'dataset']
  assert _allowed('occlusion_mode') == ['include', 'ignore', 'exclude']
  assert _allowed('optimizer') == list(config_lib.OPTIMIZERS) == ['sgd', 'adam']
  assert _allowed('lr_schedule') == list(config_lib.LR_SCHEDULES) == ['step', 'cosine']
  assert _allowed('compute_dtype') == ['float32', 'bfloat16', 'float16']
  assert _allowed('eval_metric') == list(config_lib.EVAL_METRICS) == ['pckh', 'pck']
  assert (_allowed('torso_definition') == list(metrics.TORSO_DEFINITIONS)
          == ['lsp_diagonal', 'mean_diagonals'])
  extra = lambda mapping: (('lsp/extended', 'train', mapping, 0.3),)
  assert [m for m in (None, 'lsp_to_mpii', 'lsp_to_coco')
          if config_checks.RULES['extra_train_datasets'].test(extra(m))] == [None, 'lsp_to_mpii']


def test_the_code_accepts_what_the_checker_allows_and_rejects_the_rest():
  from rhpe_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import keypoint_sets
  from rhpe_jax.evaluation import metrics
  from rhpe_jax.training import steps as train_step
  import numpy as np  # pylint: disable=g-import-not-at-top
  for name in _allowed('keypoint_set'):
    if name == keypoint_sets.DATASET:  # the dataset's own set, once it is read
      with pytest.raises(ValueError, match='keypoint_set is empty'):
        keypoint_sets.of_config(_with(demo.get_config(), keypoint_set=name))
      config = _with(demo.get_config(), keypoint_set=name,
                     dataset_keypoint_set=keypoint_sets.LSP.to_dict())
      assert keypoint_sets.of_config(config) == keypoint_sets.LSP
    else:
      assert keypoint_sets.built_in(name).name == name
  config = demo.get_config()
  for dtype in _allowed('compute_dtype'):
    config.compute_dtype = dtype
    model_lib.create_model(config)
  for optimizer in _allowed('optimizer'):
    config.optimizer = optimizer
    train_step.create_optimizer(config, steps_per_epoch=10)
  for schedule in _allowed('lr_schedule'):
    config.lr_schedule = schedule
    train_step.learning_rate_schedule(config, steps_per_epoch=10, total_steps=100)
  gt = np.zeros((1, 14, 2))
  for definition in _allowed('torso_definition'):
    metrics.torso_size(gt, definition, keypoint_sets.LSP)
  # And the code rejects what the checker rejects.
  rejected = [lambda: keypoint_sets.built_in('crowdpose'),
              lambda: model_lib.create_model(_with(config, compute_dtype='float64')),
              lambda: train_step.create_optimizer(_with(config, optimizer='adamw'), 10),
              lambda: train_step.learning_rate_schedule(_with(config, lr_schedule='linear'), 10),
              lambda: metrics.torso_size(gt, 'hips', keypoint_sets.LSP)]
  for call in rejected:
    with pytest.raises(ValueError):
      call()


def _with(config, **values):
  config = config.copy_and_resolve_references()
  config.update(values)
  return config


def test_old_key_names_still_work_with_one_line_each(capsys):
  """A config that sets a key under its old name (config_lib.RENAMED_KEYS)
  runs as if it used the new one; a locked ConfigDict (a command line's
  --config) is upgraded in place."""
  from rhpe_jax.core import config as config_lib  # pylint: disable=g-import-not-at-top
  assert config_lib.RENAMED_KEYS == {'skeleton': 'keypoint_set',
                                     'init_from_skeleton': 'init_from_keypoint_set'}
  config = demo.get_config()  # a user's config file of before: sets the old names
  config.skeleton = 'coco'
  config.init_from_skeleton = 'lsp'
  config.lock()
  config_checks.check_config(config)
  assert (config.keypoint_set, config.init_from_keypoint_set) == ('coco', 'lsp')
  assert 'skeleton' not in config and 'init_from_skeleton' not in config
  assert capsys.readouterr().err.splitlines() == [
      'warning: config.skeleton is now config.keypoint_set; the old name works for now',
      'warning: config.init_from_skeleton is now config.init_from_keypoint_set; the old name '
      'works for now']
  config_checks.check_config(config)  # upgraded once: no second line
  assert capsys.readouterr().err == ''
  # A plain dict of before: its dataset's set moves to dataset_keypoint_set.
  values = {'skeleton': 'dataset', 'keypoint_set': {'name': 'x', 'keypoint_names': ['a']}}
  config_checks.upgrade_old_keys(values)
  assert values == {'keypoint_set': 'dataset',
                    'dataset_keypoint_set': {'name': 'x', 'keypoint_names': ['a']}}
  # An old value checked under its new name.
  with pytest.raises(ValueError, match="config.keypoint_set = 'crowdpose': must be one of"):
    config_checks.check_config({'skeleton': 'crowdpose'})


def test_an_old_and_a_new_key_that_disagree_are_an_error():
  config = demo.get_config()
  config.keypoint_set = 'lsp'
  config.skeleton = 'coco'
  with pytest.raises(ValueError) as error:
    config_checks.check_config(config)
  assert str(error.value) == ("config.skeleton = 'coco' and config.keypoint_set = 'lsp': "
                              'config.skeleton is the old name of config.keypoint_set; set '
                              'config.keypoint_set only')
  config.keypoint_set = 'coco'  # the same value twice: no conflict
  config_checks.check_config(config)
  assert config.keypoint_set == 'coco'


def test_the_checker_imports_neither_jax_nor_tensorflow():
  """The command lines check the config before TensorFlow is imported (its
  C++ start-up lines must meet the stderr filter)."""
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  from tests.conftest import REPO  # pylint: disable=g-import-not-at-top
  code = ('import sys; import rhpe_jax.cli, rhpe_jax.core.config_checks; '
          'print(sorted(m for m in ("jax", "tensorflow", "flax") if m in sys.modules))')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
  assert result.stdout.strip() == '[]'


def test_keypoint_sigmas_one_per_keypoint_where_the_set_is_known():
  config = demo.get_config().to_dict()
  config['keypoint_set'] = 'coco'
  config['keypoint_sigmas'] = (0.05,) * 17
  config_checks.check_config(config)
  config['keypoint_sigmas'] = (0.05,) * 16
  with pytest.raises(ValueError, match='keypoint_sigmas has 16 sigmas; the keypoint set has 17'):
    config_checks.check_config(config)
  config['keypoint_set'] = 'dataset'  # the set not read yet: checked when it is
  config_checks.check_config(config)
  config['dataset_keypoint_set'] = {'name': 'x', 'keypoint_names': ['a', 'b'],
                                    'flip_pairs': [], 'part_pairs': []}
  with pytest.raises(ValueError, match='has 16 sigmas; the keypoint set has 2'):
    config_checks.check_config(config)
