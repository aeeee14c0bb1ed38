"""Progress a person can read: tqdm bars on a terminal, a few plain lines in a log file or CI.

A tqdm bar redraws itself with carriage returns; written to a file, every redraw stays (a
training's `loss=` on every epoch): `dualdiff train --domain cabinet --recipe demo` wrote 58 kB
of them to its log (CHANGELOG). `progress_bar` gives the bar when its stream is a terminal and
otherwise `LineProgress`, which prints one line at the end, with the rate and the last postfix,
and for longer work one when each quarter is done.
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

MILESTONES = (0.25, 0.5, 0.75)  # fractions of the total announced before the end
MIN_GAP_SECONDS = 10.0          # a milestone line only this long after the previous line (short work: one line)


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, *, desc: str = "", total: int | None = None, unit: str = "it",
                 disable: bool = False, file=None, initial: int = 0, **tqdm_options):
    """A tqdm bar on a terminal; elsewhere a LineProgress with the same methods (update, set_postfix, close)."""
    stream = file if file is not None else sys.stderr
    if disable or is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, file=stream, initial=initial,
                    **tqdm_options)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = initial + len(iterable)
    return LineProgress(iterable, desc, total, unit, stream, initial)


class LineProgress:
    """Progress for a log: a line at 25 %, 50 % and 75 % (at most one per MIN_GAP_SECONDS), one at the end."""

    def __init__(self, iterable, desc: str, total: int | None, unit: str, stream, initial: int = 0):
        self.iterable, self.desc, self.total, self.unit, self.stream = iterable, desc, total, unit, stream
        self.n, self.postfix, self._first, self._closed = initial, "", initial, False
        self._start = self._last = time.perf_counter()
        self._next = 0  # index into MILESTONES

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        passed = False
        while self._next < len(MILESTONES) and self.n < self.total and self.n >= MILESTONES[self._next] * self.total:
            self._next, passed = self._next + 1, True
        if passed and time.perf_counter() - self._last >= MIN_GAP_SECONDS:
            self._line()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n > self._first or self.total == 0:
            self._line()

    def _line(self) -> None:
        self._last = time.perf_counter()
        seconds = self._last - self._start
        done = self.n - self._first
        rate = f", {done / seconds:.3g} {self.unit}/s" if seconds > 0 and done else ""
        of = f"/{self.total}" if self.total else ""
        percent = f"{100 * self.n / self.total:3.0f}% " if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc + ': ' if self.desc else ''}{percent}{self.n}{of} {self.unit} in {seconds:.0f} s"
              f"{rate}{tail}", file=self.stream, flush=True)
