"""rhpe_jax.inference.smoothing: the One-Euro filter against steps worked out
by hand, and on a noisy known trajectory (less jitter, a bounded lag)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rhpe_jax.inference import smoothing

# A cutoff of 1 / (2 pi) Hz has tau = 1 s: with dt = 1 s, alpha = 1 / (1 + 1) = 0.5.
C = 1 / (2 * math.pi)


def test_fixed_cutoff_by_hand():
  """beta = 0: a plain low-pass, alpha = 0.5 at dt = 1 s and 2/3 at dt = 2 s."""
  f = smoothing.OneEuroFilter(min_cutoff=C, beta=0.0, d_cutoff=C)
  assert f(0.0, 0.0) == 0.0  # the first sample passes
  assert f(10.0, 1.0) == pytest.approx(5.0)  # 0.5 * 10 + 0.5 * 0
  assert f(10.0, 2.0) == pytest.approx(7.5)  # 0.5 * 10 + 0.5 * 5
  # A skipped frame: dt = 2 s, tau / dt = 1/2, alpha = 2/3: 7.5 + 2/3 * 2.5.
  assert f(10.0, 4.0) == pytest.approx(7.5 + 2.5 * 2 / 3)
  assert f(99.0, 4.0) == pytest.approx(7.5 + 2.5 * 2 / 3)  # the same time stamp: unchanged


def test_speed_raises_the_cutoff_by_hand():
  """beta = 3 / (10 pi): |dx_hat| = 5 gives cutoff 4 / (2 pi), tau = 1/4, alpha = 0.8."""
  f = smoothing.OneEuroFilter(min_cutoff=C, beta=3 / (10 * math.pi), d_cutoff=C)
  f(np.array([0.0, 100.0]), 0.0)
  # x = 10: dx = 10, dx_hat = 0.5 * 10 = 5, cutoff = (1 + 3) / (2 pi), alpha = 0.8 -> 8.
  # The second coordinate holds still: dx_hat = 0, alpha = 0.5, stays 100.
  np.testing.assert_allclose(f(np.array([10.0, 100.0]), 1.0), [8.0, 100.0])
  # x = 10 again: dx = 2, dx_hat = 0.5 * 2 + 0.5 * 5 = 3.5,
  # cutoff = (1 + 2.1) / (2 pi), tau = 1 / 3.1, alpha = 3.1 / 4.1 -> 8 + 2 * 3.1 / 4.1.
  np.testing.assert_allclose(f(np.array([10.0, 100.0]), 2.0), [8 + 2 * 3.1 / 4.1, 100.0])


def test_less_jitter_on_a_noisy_known_trajectory_within_two_frames_of_lag():
  """A keypoint swinging 50 px at 0.5 Hz, 30 fps, with 3 px of noise: the
  default filter halves the frame-to-frame jitter and lags at most 2 frames."""
  rng = np.random.default_rng(0)
  t = np.arange(150) / 30.0
  truth = np.stack([100 + 50 * np.sin(np.pi * t), 80 + 20 * np.cos(np.pi * t)], -1)
  noisy = truth + rng.normal(0, 3.0, truth.shape)
  f = smoothing.OneEuroFilter()
  smoothed = np.array([f(x, s) for x, s in zip(noisy, t)])

  def jitter(track):  # RMS of the frame-to-frame steps' error
    return float(np.sqrt(np.mean((np.diff(track, axis=0) - np.diff(truth, axis=0)) ** 2)))

  def lag(track):  # the shift (frames) that best lines the track up with the truth
    errors = [np.mean((track[k:] - truth[:len(truth) - k]) ** 2) for k in range(10)]
    return int(np.argmin(errors))

  assert lag(noisy) == 0
  assert jitter(smoothed) < 0.6 * jitter(noisy)
  assert lag(smoothed) <= 2


@pytest.mark.parametrize('args, name', [((0.0, 0.1), 'min_cutoff'), ((1.0, -1.0), 'beta'),
                                        ((float('nan'), 0.1), 'min_cutoff'),
                                        ((1.0, 0.1, 0.0), 'd_cutoff')])
def test_bad_parameters_name_the_argument(args, name):
  with pytest.raises(ValueError, match=f'^{name} must be'):
    smoothing.OneEuroFilter(*args)
