"""The experiment configs hold the paper's settings (values from reference.md
and the paper's Table I, written out here by hand)."""
import pytest

from experiments.configs import ablation, default, lsp, mpii, mpii_lspet
from rhpe_jax.data import augment
from rhpe_jax.core import keypoint_sets
from tfds_builders.lsp import lsp_dataset_builder

# The release's rates for its loss summed over a batch of 20; ours averages
# over the batch, so each is multiplied by 20.
RELEASE_RATES = (1e-5, 5e-6, 1e-6)
RELEASE_BOUNDARY_EPOCHS = (30, 35)


def _rates(config):
  rates = [config.learning_rate]
  for factor in config.lr_factors:
    rates.append(rates[-1] * factor)
  return rates


def test_mpii_is_the_papers_setting():
  config = mpii.get_config()
  assert config.dataset == 'mpii' and config.keypoint_set == 'mpii'
  assert config.input_size == 248
  assert config.batch_size == 20
  assert config.optimizer == 'sgd' and config.momentum == 0.95
  assert config.num_iterations == 2 and config.use_parts and config.width == 1.0
  assert config.occlusion_mode == 'include'
  assert config.sigma == 1.3 and config.peak == 12.0
  assert config.part_sigma_along == 0.15 and config.part_sigma_across == 0.08
  assert tuple(config.lr_boundaries_epochs) == RELEASE_BOUNDARY_EPOCHS
  assert _rates(config) == pytest.approx([20 * r for r in RELEASE_RATES])
  assert 40 <= config.num_epochs <= 50
  assert config.eval_metric == 'pckh' and config.eval_pck_threshold == 0.5
  assert config.eval_split == 'validation'
  assert config.extra_train_datasets == ()


def test_lsp_evaluates_pck_at_0_2_on_lsp_joints():
  config = lsp.get_config()
  assert config.dataset.split('/')[0] == 'lsp'
  assert config.keypoint_set == 'lsp'
  assert keypoint_sets.built_in(config.keypoint_set).num_keypoints == 14
  assert config.eval_metric == 'pck' and config.eval_pck_threshold == 0.2
  configs = {c.name for c in lsp_dataset_builder.Builder.BUILDER_CONFIGS}
  assert config.dataset.split('/')[1] in configs


def test_mpii_lspet_mixes_lspet_through_the_joint_mapping():
  config = mpii_lspet.get_config()
  assert config.dataset == 'mpii' and config.keypoint_set == 'mpii'
  (name, split, mapping, weight), = config.extra_train_datasets
  assert name == 'lsp/extended' and split == 'train'
  assert mapping in augment.JOINT_MAPPINGS and mapping == 'lsp_to_mpii'
  assert 0 < weight < 1
  assert 'extended' in {c.name for c in lsp_dataset_builder.Builder.BUILDER_CONFIGS}
  # Everything else is the MPII setting.
  base = mpii.get_config().to_dict()
  changed = {k for k, v in config.to_dict().items() if base[k] != v}
  assert changed == {'extra_train_datasets'}


# Table I of the paper: (occlusion mode, iterations, body parts) per row.
TABLE_I = {
    'exclude': ('exclude', 0, False),
    'ignore': ('ignore', 0, False),
    'include': ('include', 0, False),
    'iter1': ('include', 1, False),
    'iter2': ('include', 2, False),
    'iter2_parts': ('include', 2, True),
}


@pytest.mark.parametrize('variant', sorted(TABLE_I))
def test_ablation_variants_are_table_one(variant):
  config = ablation.get_config(variant)
  assert (config.occlusion_mode, config.num_iterations, config.use_parts) == TABLE_I[variant]
  base = default.get_config().to_dict()
  changed = {k for k, v in config.to_dict().items() if base[k] != v}
  assert changed <= {'occlusion_mode', 'num_iterations', 'use_parts'}


def test_full_ablation_row_equals_the_mpii_config():
  assert ablation.get_config('iter2_parts').to_dict() == mpii.get_config().to_dict()


def test_unknown_ablation_is_named():
  with pytest.raises(ValueError, match='iter9'):
    ablation.get_config('iter9')


def test_coco_configs_name_the_coco_builder_and_their_keypoint_sets():
  from experiments.configs import coco, lspet_sample, mpii_from_coco, own_data  # pylint: disable=g-import-not-at-top
  from rhpe_jax.core import config_checks  # pylint: disable=g-import-not-at-top
  from tfds_builders.coco_keypoints import coco_keypoints_dataset_builder as cb  # pylint: disable=g-import-not-at-top
  names = {c.name for c in cb.Builder.BUILDER_CONFIGS}
  config = coco.get_config()
  assert config.dataset == 'coco_keypoints/coco2017' and 'coco2017' in names
  assert keypoint_sets.built_in(config.keypoint_set).num_keypoints == 17
  assert (config.width, config.input_size, config.num_iterations) == (1.0, 248, 2)  # the paper's
  assert config.eval_metric == 'pck' and config.eval_pck_threshold == 0.2
  own = own_data.get_config()
  assert own.dataset == 'coco_keypoints/custom' and 'custom' in names
  assert own.keypoint_set == keypoint_sets.DATASET  # the build's own set
  cpu = lspet_sample.get_config()
  assert (own.width, own.input_size, own.batch_size) == (cpu.width, cpu.input_size, cpu.batch_size)
  # Fine-tuning on MPII from COCO: the MPII setting but for the start and a
  # shorter schedule.
  tune, base = mpii_from_coco.get_config().to_dict(), mpii.get_config().to_dict()
  assert {k for k, v in tune.items() if base[k] != v} == {
      'init_from_checkpoint', 'num_epochs', 'lr_boundaries_epochs'}
  # Whole-body: COCO's setting on the wholebody build, its own keypoint set,
  # started from a COCO run.
  from experiments.configs import wholebody  # pylint: disable=g-import-not-at-top
  body = wholebody.get_config()
  assert body.dataset == 'coco_keypoints/wholebody' and 'wholebody' in names
  assert body.keypoint_set == keypoint_sets.DATASET and body.init_from_checkpoint == 'best'
  assert {k for k, v in body.to_dict().items() if config.to_dict()[k] != v} == {
      'dataset', 'keypoint_set', 'init_from_checkpoint'}
  for c in (config, own, mpii_from_coco.get_config(), body):
    config_checks.check_config(c)
