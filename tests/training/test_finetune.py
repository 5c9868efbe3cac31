"""Fine-tuning across keypoint sets: an MPII checkpoint onto the 14 keypoints
of the LSPET COCO-format file and the 17 of COCO's sample, a COCO-17 one onto
a COCO-WholeBody build's 133, through the training loop's start
(config.init_from)."""
import jax
import numpy as np
import pytest

from rhpe_jax import checkpoints
from rhpe_jax.core import keypoint_sets
from tests.conftest import COCO_FORMAT_CONFIG, tiny_config


def _config(tiny_data_dir, tiny_workdir, build_dir):
  """The tiny network of `tiny_workdir` (MPII joints) on a COCO-format build."""
  config = tiny_config(tiny_data_dir)
  config.update(dict(dataset=f'coco_keypoints/{COCO_FORMAT_CONFIG}', data_dir=str(build_dir),
                     keypoint_set='dataset', train_split='validation', eval_split='validation',
                     init_from=str(tiny_workdir), init_from_keypoint_set='mpii',
                     eval_every_steps=0, checkpoint_every_steps=0, num_summary_images=0))
  return config


def _leaves(tree) -> dict:
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_an_mpii_network_starts_a_14_keypoint_run(coco_format_builds, tiny_data_dir,
                                                  tiny_workdir, capsys):
  from rhpe_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import loop, steps  # pylint: disable=g-import-not-at-top
  config = _config(tiny_data_dir, tiny_workdir, coco_format_builds['lspet'][2])
  keypoint_set = datasets.resolve_keypoint_set(config)
  assert keypoint_set.num_keypoints == 14 and keypoint_set.keypoint_names[0] == 'right_ankle'
  fresh = steps.create_train_state(config, jax.random.key(1), steps_per_epoch=2)
  started = loop.start_from_checkpoint(config, fresh)
  source, _ = checkpoints.read_variables(str(tiny_workdir), 'latest')
  got, want = _leaves(started.params), _leaves(source['params'])
  for key, value in got.items():
    if 'heads' not in key:  # the trunk and fusion layers: copied
      np.testing.assert_array_equal(value, want[key])
  # LSPET's 14 names are all MPII's (right_ankle is r_ankle, neck is
  # upper_neck): every keypoint channel comes from MPII, by hand:
  by_hand = [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9]
  key = "['heads_0']['keypoints']['kernel']"
  np.testing.assert_array_equal(got[key], want[key][..., by_hand])
  line = capsys.readouterr().out
  assert 'keypoint heads: 14 of 14 by name' in line and 'fresh: none; part heads' in line
  # Without the source's set named, and none in its workdir: one line saying how.
  config.init_from_keypoint_set = ''
  with pytest.raises(ValueError, match="config.init_from_keypoint_set = 'mpii'"):
    loop.start_from_checkpoint(config, fresh)


@pytest.mark.slow
def test_a_coco_network_starts_a_wholebody_run(wholebody_build, tiny_data_dir, tmp_path,
                                               capsys):
  """The body's 17 keypoint channels and 19 part channels come from the COCO
  network by name; the feet, face and hands start fresh."""
  from rhpe_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from rhpe_jax.training import loop, steps  # pylint: disable=g-import-not-at-top
  coco = tiny_config(tiny_data_dir)
  coco.keypoint_set = 'coco'
  coco_run = tmp_path / 'coco_run'
  manager = checkpoints.CheckpointManager(str(coco_run), coco)
  manager.save(1, steps.create_train_state(coco, jax.random.key(0), 2).replace(step=1),
               metric=0.0, force=True)
  manager.wait()
  manager.close()
  config = _config(tiny_data_dir, coco_run, wholebody_build[2])
  config.init_from_keypoint_set = 'coco'
  keypoint_set = datasets.resolve_keypoint_set(config)
  assert keypoint_set.name == 'coco_wholebody' and keypoint_set.num_keypoints == 133
  fresh = steps.create_train_state(config, jax.random.key(1), steps_per_epoch=2)
  started = loop.start_from_checkpoint(config, fresh)
  source, _ = checkpoints.read_variables(str(coco_run), 'latest')
  got, want, new = _leaves(started.params), _leaves(source['params']), _leaves(fresh.params)
  for key, value in got.items():
    if 'heads' not in key:
      np.testing.assert_array_equal(value, want[key])
  for head in ('keypoints', 'parts'):
    key = f"['heads_0']['{head}']['kernel']"
    count = want[key].shape[-1]  # COCO's 17 keypoints, its 19 parts: the first channels
    np.testing.assert_array_equal(got[key][..., :count], want[key])
    np.testing.assert_array_equal(got[key][..., count:], new[key][..., count:])
  line = capsys.readouterr().out
  assert f'started from {coco_run} (step 1, coco)' in line
  assert 'keypoint heads: 17 of 133 by name (all by the same names)' in line
  assert 'fresh: left_big_toe, left_small_toe' in line and 'part heads: 19 of 19' in line


@pytest.mark.slow
def test_an_mpii_network_fine_tunes_on_coco_keypoints(coco_format_builds, tiny_data_dir,
                                                     tiny_workdir, tmp_path, capsys):
  from rhpe_jax.training import loop  # pylint: disable=g-import-not-at-top
  config = _config(tiny_data_dir, tiny_workdir, coco_format_builds['coco'][2])
  config.num_train_steps = 2
  workdir = tmp_path / 'run'
  loop.train_and_evaluate(config, str(workdir))
  out = capsys.readouterr().out
  assert f'started from {tiny_workdir} (step 1, mpii)' in out
  assert 'keypoint heads: 12 of 17 by name' in out
  assert 'fresh: nose, left_eye, right_eye, left_ear, right_ear' in out
  assert keypoint_sets.read_from_workdir(str(workdir)).num_keypoints == 17  # for predict
  variables, step = checkpoints.restore_variables(
      _config(tiny_data_dir, tiny_workdir, coco_format_builds['coco'][2]), str(workdir), 'latest')
  assert step == 2
  assert variables['params']['heads_0']['keypoints']['kernel'].shape[-1] == 17
  # A resumed run does not start from init_from again (a finished one resumes
  # at its last step and has nothing to do: nothing is compiled).
  loop.train_and_evaluate(config, str(workdir))
  out = capsys.readouterr().out
  assert 'started from' not in out and 'already holds step 2 of 2' in out

  # The paper's recipe, COCO then MPII (Table I row 7), at this scale: an
  # MPII run starts from the COCO run, whose set its workdir names.
  from rhpe_jax.training import steps  # pylint: disable=g-import-not-at-top
  mpii = tiny_config(tiny_data_dir)
  mpii.update(dict(init_from=str(workdir), init_from_keypoint_set=''))
  loop.start_from_checkpoint(mpii, steps.create_train_state(mpii, jax.random.key(2), 2))
  line = capsys.readouterr().out
  assert f'started from {workdir} (step 2, person)' in line  # the file's category name
  # MPII's pelvis, thorax, upper neck and head top have no COCO keypoint.
  assert 'keypoint heads: 12 of 16 by name' in line
  assert 'fresh: pelvis, thorax, upper_neck, head_top;' in line
