"""A one-line progress bar with rate and time left, for long command-line runs.

  [=======>            ] 37/120  31%  2.4 img/s  ETA 0:00:34  1 failed

The rate counts from `start_rate()` (call it after compilation, so the first
batch's compile time does not make the ETA wrong), redraws are at most every
`min_interval` seconds, and `note` prints a whole line above the bar.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def format_duration(seconds: float) -> str:
  """H:MM:SS of a non-negative number of seconds (rounded up)."""
  total = int(-(-max(seconds, 0.0) // 1))
  return f'{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}'


class Progress:
  """Draws `done / total` on `stream` (stderr by default) with an ETA."""

  def __init__(self, total: int, *, unit: str = 'img', width: int = 24,
               stream: TextIO | None = None, min_interval: float = 0.5,
               clock: Callable[[], float] = time.monotonic):
    self.total, self.unit, self.width = total, unit, width
    self.stream = stream if stream is not None else sys.stderr
    self.min_interval, self.clock = min_interval, clock
    self.done = self.failed = 0
    self._rate_start: tuple[float, int] | None = None
    self._last_draw = -float('inf')
    self._drawn = False
    self._length = 0

  def start_rate(self) -> None:
    """The rate and ETA count from now (and from what is done now)."""
    self._rate_start = (self.clock(), self.done)

  def rate(self) -> float | None:
    """Items per second since `start_rate`, None before any."""
    if self._rate_start is None:
      return None
    start, done = self._rate_start
    elapsed = self.clock() - start
    return (self.done - done) / elapsed if elapsed > 0 and self.done > done else None

  def line(self) -> str:
    fraction = self.done / self.total if self.total else 1.0
    filled = int(fraction * self.width)
    bar = '=' * filled + ('>' if filled < self.width else '') + ' ' * (self.width - filled - 1)
    text = f'[{bar[:self.width]}] {self.done}/{self.total} {100 * fraction:3.0f}%'
    rate = self.rate()
    if rate:
      text += f'  {rate:.2f} {self.unit}/s  ETA {format_duration((self.total - self.done) / rate)}'
    elif self.done < self.total:
      text += '  ETA --'
    if self.failed:
      text += f'  {self.failed} failed'
    return text

  def update(self, done: int, failed: int = 0, force: bool = False) -> None:
    self.done, self.failed = done, failed
    now = self.clock()
    if force or now - self._last_draw >= self.min_interval or done >= self.total:
      self._last_draw = now
      self._draw()

  def note(self, text: str) -> None:
    """`text` on a line of its own, above the bar."""
    if self._drawn:
      self.stream.write('\r' + ' ' * self._length + '\r')
    self.stream.write(text + '\n')
    if self._drawn:
      self._draw()
    self.stream.flush()

  def close(self) -> None:
    if self._drawn:
      self._draw()
      self.stream.write('\n')
      self.stream.flush()
      self._drawn = False

  def _draw(self) -> None:
    text = self.line()
    self.stream.write('\r' + text + ' ' * max(0, self._length - len(text)))
    self.stream.flush()
    self._length, self._drawn = len(text), True
