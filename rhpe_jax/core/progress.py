"""The progress bar of long command-line runs: tqdm's, with rate and time left.

  36%|███▋      | 18/50 [00:34<00:16,  2.00img/s, 1 failed]

The rate (and so the time left) counts from `start_rate()`: call it after
compilation, so that the first batch's compile time does not make the ETA
wrong (tqdm's plain average, `smoothing=0`, from then on); `note` prints a
whole line above the bar. Without a total (a webcam) the bar shows the count
and the rate.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
  """`done / total` on `stream` (stderr by default) with the rate and ETA."""

  def __init__(self, total: int | None, *, unit: str = 'img', stream: TextIO | None = None,
               min_interval: float = 0.5, clock: Callable[[], float] = time.monotonic):
    import tqdm  # pylint: disable=g-import-not-at-top
    self.total, self.unit, self.clock = total, unit, clock
    self.done = self.failed = 0
    self._rate_start: tuple[float, int] | None = None
    self._bar = tqdm.tqdm(total=total, unit=unit, file=stream if stream is not None else sys.stderr,
                          mininterval=min_interval, miniters=1, smoothing=0, dynamic_ncols=True)
    self._bar._time = clock  # pylint: disable=protected-access
    self._bar.start_t = self._bar.last_print_t = clock()

  def start_rate(self) -> None:
    """The rate and ETA count from now (and from what is done now)."""
    self._rate_start = (self.clock(), self.done)
    # tqdm's rate is (n - initial) / (now - start_t); a close before the next
    # draw still draws the last state and ends the line (last_print_t >= start_t).
    self._bar.initial = self.done
    self._bar.start_t = self._bar.last_print_t = self._rate_start[0]

  def rate(self) -> float | None:
    """Items per second since `start_rate`, None before any."""
    if self._rate_start is None:
      return None
    start, done = self._rate_start
    elapsed = self.clock() - start
    return (self.done - done) / elapsed if elapsed > 0 and self.done > done else None

  def update(self, done: int, failed: int = 0, force: bool = False) -> None:
    if failed != self.failed:
      self._bar.set_postfix_str(f'{failed} failed', refresh=False)
    self.done, self.failed = done, failed
    self._bar.update(done - self._bar.n)
    if force:
      self._bar.refresh()

  def note(self, text: str) -> None:
    """`text` on a line of its own, above the bar."""
    self._bar.write(text, file=self._bar.fp)

  def close(self) -> None:
    self._bar.close()
