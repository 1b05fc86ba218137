"""Progress lines with rate and ETA for long steps (data, Reverb, evaluation, reports).

  progress = Progress('Generating MinAtar-Breakout', total=20000, unit='steps')
  for step in ...:
    progress.update(1)          # prints at most every `interval` seconds
  progress.done()               # one final line with the overall rate

A line reads:
  Generating MinAtar-Breakout: 12,000/20,000 steps (60%)  1,403 steps/s  ETA 0:06
"""
import sys
import time
from typing import Optional, TextIO


def format_duration(seconds: float) -> str:
  """'1:05:03', '6:40' or '0:06' (h:mm:ss / m:ss)."""
  if seconds != seconds or seconds == float('inf'):
    return '?'
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


class Progress:
  """Counts work done and prints a progress line every `interval` seconds."""

  def __init__(self, label: str, total: Optional[float] = None, unit: str = 'steps',
               interval: float = 10.0, stream: Optional[TextIO] = None, start: float = 0):
    self.label = label
    self.total = total
    self.unit = unit
    self.interval = interval
    self.count = start
    self._start_count = start
    self._stream = stream or sys.stdout
    self._start = time.perf_counter()
    self._last_print = self._start
    self.lines_printed = 0

  def rate(self, now: Optional[float] = None) -> float:
    """Units per second since the start."""
    elapsed = (time.perf_counter() if now is None else now) - self._start
    return (self.count - self._start_count) / elapsed if elapsed > 0 else 0.0

  def line(self, now: Optional[float] = None) -> str:
    rate = self.rate(now)
    if self.total:
      share = f' ({100 * self.count / self.total:.0f}%)'
      count = f'{self.count:,.0f}/{self.total:,.0f} {self.unit}{share}'
      eta = (self.total - self.count) / rate if rate > 0 else float('inf')
      tail = f'  ETA {format_duration(eta)}'
    else:
      count, tail = f'{self.count:,.0f} {self.unit}', ''
    return f'{self.label}: {count}  {rate:,.1f} {self.unit}/s{tail}'

  def update(self, n: float = 1) -> None:
    self.count += n
    now = time.perf_counter()
    if now - self._last_print >= self.interval:
      self._last_print = now
      self.lines_printed += 1
      print(self.line(now), file=self._stream, flush=True)

  def done(self, message: str = '', only_if_long: bool = False) -> float:
    """Prints the final line (with `message`); returns the elapsed seconds.

    `only_if_long`: print it only if progress lines were printed (the work
    took longer than `interval`), for steps whose result is reported anyway.
    """
    now = time.perf_counter()
    elapsed = now - self._start
    if only_if_long and not self.lines_printed:
      return elapsed
    done = f'{self.count - self._start_count:,.0f} {self.unit}'
    print(f'{self.label}: done, {done} in {format_duration(elapsed)} ({self.rate(now):,.1f} '
          f'{self.unit}/s){message}', file=self._stream, flush=True)
    return elapsed
