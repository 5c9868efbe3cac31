"""Tests of rhpe_jax.training.losses against NumPy hand computations."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rhpe_jax.training.losses import pose_loss, weighted_squared_error
from rhpe_jax.codec.targets import Targets, render_batch

S, B, H, W, J, K = 3, 2, 5, 6, 4, 3


def _random_targets(rng, k=K):
  return Targets(
      keypoint_maps=rng.uniform(0, 12, (B, H, W, J)).astype(np.float32),
      keypoint_weights=rng.choice([0.0, 0.1, 0.9, 1.0], (B, H, W, J)).astype(np.float32),
      part_maps=rng.uniform(0, 12, (B, H, W, k)).astype(np.float32),
      part_weights=rng.choice([0.0, 0.25, 0.75], (B, H, W, k)).astype(np.float32))


def _numpy_loss(kp, parts, t):
  """Loops over stages and images: sum over pixels and maps, mean over images."""
  per_stage = []
  for s in range(kp.shape[0]):
    total = 0.0
    for b in range(kp.shape[1]):
      total += np.sum(np.float64(t.keypoint_weights[b])
                      * (np.float64(kp[s, b]) - t.keypoint_maps[b]) ** 2)
      total += np.sum(np.float64(t.part_weights[b])
                      * (np.float64(parts[s, b]) - t.part_maps[b]) ** 2)
    per_stage.append(total / kp.shape[1])
  return sum(per_stage), np.array(per_stage)


def test_loss_matches_numpy():
  rng = np.random.default_rng(0)
  kp = rng.normal(3, 4, (S, B, H, W, J)).astype(np.float32)
  parts = rng.normal(3, 4, (S, B, H, W, K)).astype(np.float32)
  t = _random_targets(rng)
  total, per_stage = pose_loss(kp, parts, t)
  ref_total, ref_stage = _numpy_loss(kp, parts, t)
  assert total.dtype == jnp.float32 and total.shape == ()
  assert per_stage.dtype == jnp.float32 and per_stage.shape == (S,)
  np.testing.assert_allclose(per_stage, ref_stage, rtol=1e-5)
  np.testing.assert_allclose(total, ref_total, rtol=1e-5)
  np.testing.assert_allclose(float(total), float(np.sum(per_stage)), rtol=1e-6)
  # Stages differ, so the breakdown really is per stage.
  assert len(set(np.round(np.asarray(per_stage), 3))) == S


def test_tiny_case_by_hand():
  # One stage, two images, one 1x1 keypoint map, no parts:
  # image 0: w=0.5, (3 - 1)^2 -> 2; image 1: w=2, (0 - 2)^2 -> 8; mean = 5.
  kp = np.array([3.0, 0.0], np.float32).reshape(1, 2, 1, 1, 1)
  t = Targets(np.array([1.0, 2.0], np.float32).reshape(2, 1, 1, 1),
              np.array([0.5, 2.0], np.float32).reshape(2, 1, 1, 1),
              np.zeros((2, 1, 1, 0), np.float32), np.zeros((2, 1, 1, 0), np.float32))
  total, per_stage = pose_loss(kp, np.zeros((1, 2, 1, 1, 0), np.float32), t)
  assert float(total) == 5.0 and per_stage.shape == (1,)


def test_no_parts():
  rng = np.random.default_rng(1)
  kp = rng.normal(size=(S, B, H, W, J)).astype(np.float32)
  parts = np.zeros((S, B, H, W, 0), np.float32)
  t = _random_targets(rng, k=0)
  total, per_stage = pose_loss(kp, parts, t)
  np.testing.assert_allclose(per_stage, _numpy_loss(kp, parts, t)[1], rtol=1e-5)


def test_weighted_squared_error_helper():
  rng = np.random.default_rng(2)
  pred = rng.normal(size=(B, H, W, J)).astype(np.float32)
  t = _random_targets(rng)
  got = weighted_squared_error(pred, t.keypoint_maps, t.keypoint_weights)
  ref = np.mean([np.sum(t.keypoint_weights[b] * (pred[b] - t.keypoint_maps[b]) ** 2)
                 for b in range(B)])
  assert got.shape == ()
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_bfloat16_predictions_give_float32_loss():
  rng = np.random.default_rng(3)
  kp = jnp.asarray(rng.normal(3, 4, (S, B, H, W, J)), jnp.bfloat16)
  parts = jnp.asarray(rng.normal(3, 4, (S, B, H, W, K)), jnp.bfloat16)
  t = _random_targets(rng)
  total, per_stage = pose_loss(kp, parts, t)
  assert total.dtype == jnp.float32 and per_stage.dtype == jnp.float32
  # Same as the float32 loss of the bfloat16-rounded values: no bfloat16 arithmetic.
  ref_total, ref_stage = _numpy_loss(np.asarray(kp.astype(jnp.float32)),
                                     np.asarray(parts.astype(jnp.float32)), t)
  np.testing.assert_allclose(per_stage, ref_stage, rtol=1e-5)
  np.testing.assert_allclose(total, ref_total, rtol=1e-5)


def test_shape_errors():
  rng = np.random.default_rng(4)
  t = _random_targets(rng)
  kp = np.zeros((S, B, H, W, J), np.float32)
  with pytest.raises(ValueError, match='part_maps'):
    pose_loss(kp, np.zeros((S, B, H, W), np.float32), t)
  with pytest.raises(ValueError, match='disagree'):
    pose_loss(kp, np.zeros((S, B, H + 1, W, K), np.float32), t)
  with pytest.raises(ValueError, match='trailing'):
    pose_loss(np.zeros((S, B, H, W, J + 1), np.float32),
              np.zeros((S, B, H, W, K), np.float32), t)


# ----------------------------------------------------------------------------
# Gradients of real targets: exactly zero where a pixel is to be ignored.

def _scene(mode):
  """Two images on a 40x48 grid, joints 0..3, parts (0, 1) and (2, 3).

  Image 0: joint 0 visible at (10, 10), joint 1 occluded at (30, 12), joint 2
  missing, joint 3 visible at (12, 30); another person's joint 3 at (34, 30).
  Image 1: everything missing but joint 0 at (20, 20).
  """
  kp = np.zeros((2, 4, 2), np.float32)
  kp[0] = [[10, 10], [30, 12], [0, 0], [12, 30]]
  kp[1, 0] = [20, 20]
  st = np.array([[2, 1, 0, 2], [2, 0, 0, 0]], np.int32)
  others = np.zeros((2, 1, 4, 2), np.float32)
  others[0, 0, 3] = [34, 30]
  ost = np.zeros((2, 1, 4), np.int32)
  ost[0, 0, 3] = 2
  t = render_batch(kp, st, grid_shape=(40, 48), part_pairs=((0, 1), (2, 3)),
                   occlusion_mode=mode, other_keypoints=others, other_status=ost)
  return t


def _disc(cx, cy, h=40, w=48):
  ys, xs = np.mgrid[0:h, 0:w]
  return ((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 1.3 ** 2) <= 18 * math.log(10)


def _grads(t, seed=0):
  rng = np.random.default_rng(seed)
  kp = jnp.asarray(rng.uniform(0.5, 2.0, (2, 2, 40, 48, 4)), jnp.float32)
  parts = jnp.asarray(rng.uniform(0.5, 2.0, (2, 2, 40, 48, 2)), jnp.float32)
  g_kp, g_parts = jax.grad(lambda a, b: pose_loss(a, b, t)[0], argnums=(0, 1))(kp, parts)
  return np.asarray(kp), np.asarray(g_kp), np.asarray(g_parts)


@pytest.mark.parametrize('mode', ['ignore', 'exclude', 'include'])
def test_gradient_zero_exactly_where_ignored(mode):
  t = _scene(mode)
  kp, g_kp, g_parts = _grads(t)
  occluded = _disc(30, 12)
  other = _disc(34, 30) & ~_disc(12, 30)
  assert occluded.sum() > 100 and other.sum() > 50
  # Hand formula: d/dp sum w (p - t)^2 / B = 2 w (p - t) / B, for every stage.
  w = np.asarray(t.keypoint_weights)
  expected = 2 * w * (kp - np.asarray(t.keypoint_maps)) / 2
  np.testing.assert_allclose(g_kp, expected, rtol=1e-5, atol=1e-7)
  for s in range(2):
    # Missing joints' maps and parts with a missing end: nothing at all.
    assert np.all(g_kp[s, 0, ..., 2] == 0) and np.all(g_kp[s, 1, ..., 1:] == 0)
    assert np.all(g_parts[s, 0, ..., 1] == 0) and np.all(g_parts[s, 1] == 0)
    # Another person's region outside the active one: exactly zero.
    assert np.all(g_kp[s, 0, ..., 3][other] == 0)
    assert np.all(g_kp[s, 0, ..., 3][~other] != 0)
    occ = g_kp[s, 0, ..., 1][occluded]
    if mode == 'ignore':
      assert np.all(occ == 0)
      part = _part_region()
      assert part.sum() > 100
      assert np.all(g_parts[s, 0, ..., 0][part] == 0)
      assert np.all(g_parts[s, 0, ..., 0][~part] != 0)
    elif mode == 'exclude':
      # Background target 0 and weight 1 - f: the response is penalised.
      assert np.all(occ > 0)
      f = occluded.sum() / (40 * 48)
      np.testing.assert_allclose(occ, 2 * (1 - f) * kp[s, 0, ..., 1][occluded] / 2, rtol=1e-5)
    else:
      assert np.all(occ != 0)
      assert np.all(np.asarray(t.keypoint_maps[0, ..., 1])[occluded] > 0)


def _part_region():
  """Pixels of the oriented Gaussian for the part (10, 10) -> (30, 12), by hand."""
  ys, xs = np.mgrid[0:40, 0:48]
  length = math.hypot(20, 2)
  c, s = 20 / length, 2 / length
  along = (xs - 20) * c + (ys - 11) * s
  across = -(xs - 20) * s + (ys - 11) * c
  e = along ** 2 / (2 * (0.15 * length) ** 2) + across ** 2 / (2 * (0.08 * length) ** 2)
  return e <= 18 * math.log(10)
