"""Carrying an MPII network to COCO's and LSP's keypoint sets: channel by
channel against the name tables written out by hand."""
import jax
import numpy as np
import pytest

from rhpe_jax import checkpoints
from rhpe_jax.core import keypoint_sets
from rhpe_jax.model import transfer


def _variables(name: str, seed: int) -> dict:
  """Random host variables of a tiny network of keypoint set `name`."""
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  config.width, config.input_size, config.keypoint_set = 0.0625, 64, name
  zeros = checkpoints.variables_target(config)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda z: rng.normal(size=z.shape).astype(z.dtype), zeros)


def test_mpii_to_coco_copies_the_trunk_and_maps_heads_by_name():
  source, target = _variables('mpii', 0), _variables('coco', 1)
  moved, report = transfer.transfer_variables(source, keypoint_sets.MPII, target,
                                               keypoint_sets.COCO)
  trunk = lambda tree: [v for path, v in jax.tree_util.tree_leaves_with_path(tree)
                        if not any('heads' in str(k) for k in path)]
  assert len(trunk(moved)) > 20
  for a, b in zip(trunk(moved), trunk(source)):
    np.testing.assert_array_equal(a, b)
  # COCO keypoint -> MPII channel, by hand: left_shoulder (5) <- l_shoulder (13),
  # right_ankle (16) <- r_ankle (0); nose (0) and the eyes and ears start fresh.
  by_hand = {5: 13, 6: 12, 7: 14, 8: 11, 9: 15, 10: 10, 11: 3, 12: 2, 13: 4, 14: 1, 15: 5, 16: 0}
  for heads in (('heads_0',), ('fusion', 'heads')):
    node = lambda tree: _at(tree['params'], heads + ('keypoints', 'kernel'))
    for coco in range(17):
      want = node(source)[..., by_hand[coco]] if coco in by_hand else node(target)[..., coco]
      np.testing.assert_array_equal(node(moved)[..., coco], want)
    # Parts: COCO (6, 8) right_shoulder-right_elbow is COCO part 9 and MPII
    # part 9 (11, 12) r_elbow-r_shoulder; COCO part 7 (5, 6), shoulder to
    # shoulder, has no MPII part.
    parts = lambda tree: _at(tree['params'], heads + ('parts', 'bias'))
    np.testing.assert_array_equal(parts(moved)[..., 9], parts(source)[..., 9])
    np.testing.assert_array_equal(parts(moved)[..., 7], parts(target)[..., 7])
  assert report.fresh_keypoints == ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear')
  assert report.keypoints_from['right_ankle'] == 'r_ankle'
  assert 'keypoint heads: 12 of 17 by name' in report.summary()
  assert 'fresh: nose, left_eye, right_eye, left_ear, right_ear' in report.summary()


def _at(tree, keys):
  for key in keys:
    tree = tree[key]
  return np.asarray(tree)


def test_mpii_to_lsp_maps_every_lsp_joint_and_refuses_another_width():
  source, target = _variables('mpii', 0), _variables('lsp', 1)
  moved, report = transfer.transfer_variables(source, keypoint_sets.MPII, target,
                                               keypoint_sets.LSP)
  kernel = lambda tree: _at(tree['params'], ('heads_0', 'keypoints', 'kernel'))
  np.testing.assert_array_equal(kernel(moved), kernel(source)[..., keypoint_sets.LSP_TO_MPII])
  assert report.fresh_keypoints == ()
  wider = jax.tree_util.tree_map(lambda x: np.concatenate([x, x], -1) if x.ndim else x, source)
  with pytest.raises(ValueError, match='another width or network'):
    transfer.transfer_variables(wider, keypoint_sets.MPII, target, keypoint_sets.LSP)
