"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) on keypoints over
the frames of a video.

A first-order low-pass filter whose cutoff rises with speed: slow keypoints
are smoothed hard (the jitter of a still person goes), fast ones lightly (a
moving limb is not dragged behind). Per coordinate, at each time step dt:

  alpha(c)  = 1 / (1 + tau / dt),  tau = 1 / (2 pi c)
  dx        = (x - x_hat_prev) / dt
  dx_hat    = alpha(d_cutoff) dx + (1 - alpha(d_cutoff)) dx_hat_prev
  cutoff    = min_cutoff + beta |dx_hat|
  x_hat     = alpha(cutoff) x + (1 - alpha(cutoff)) x_hat_prev

The first sample passes unchanged (dx_hat = 0). `min_cutoff` is in Hz,
`beta` in 1 / pixel (the cutoff's rise per pixel/s of speed); dt comes from
the frames' time stamps, so skipped frames lengthen the step.
"""
from __future__ import annotations

import math

import numpy as np

MIN_CUTOFF = 1.0  # Hz
BETA = 0.05  # 1 / pixel: at 100 px/s the cutoff is 6 Hz
D_CUTOFF = 1.0  # Hz, the derivative's own low-pass


def alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
  """The smoothing factor of a first-order low-pass of `cutoff` Hz for a
  step of `dt` seconds."""
  tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
  return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
  """Filters arrays of one shape (e.g. keypoints (J, 2)) sample by sample."""

  def __init__(self, min_cutoff: float = MIN_CUTOFF, beta: float = BETA,
               d_cutoff: float = D_CUTOFF):
    check_parameters(min_cutoff, beta, d_cutoff)
    self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
    self._x: np.ndarray | None = None
    self._dx: np.ndarray | None = None
    self._t: float | None = None

  def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
    """The filtered value of sample `x` at time `t` (seconds)."""
    x = np.asarray(x, np.float64)
    if self._x is None:
      self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
      return x.copy()
    dt = float(t) - self._t
    if not dt > 0:  # a repeated time stamp: nothing new to weigh
      return self._x.copy()
    a_d = alpha(self.d_cutoff, dt)
    self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
    a = alpha(self.min_cutoff + self.beta * np.abs(self._dx), dt)
    self._x = a * x + (1 - a) * self._x
    self._t = float(t)
    return self._x.copy()


def check_parameters(min_cutoff: float, beta: float, d_cutoff: float = D_CUTOFF) -> None:
  """A positive cutoff and a non-negative beta (ValueError naming the argument)."""
  if not (math.isfinite(min_cutoff) and min_cutoff > 0):
    raise ValueError(f'min_cutoff must be a positive frequency (Hz), got {min_cutoff}')
  if not (math.isfinite(beta) and beta >= 0):
    raise ValueError(f'beta must be >= 0, got {beta}')
  if not (math.isfinite(d_cutoff) and d_cutoff > 0):
    raise ValueError(f'd_cutoff must be a positive frequency (Hz), got {d_cutoff}')
