"""cfutures.progress(): a progress bar over futures as they complete, or over any iterable.

Beyond the stdlib (opt-in). The bar is tqdm's when tqdm is installed (tqdm's own rule: off when
its output is not a terminal), otherwise a small one drawn on stderr, only when stderr is a
terminal. It only consumes what it is given, so it works the same on thread and process pools
(and on futures of any executor).
"""

import concurrent.futures
import sys
import time

from . import _base

__all__ = ["progress"]


def progress(iterable, total=None, desc=None):
    """Yields from `iterable`, showing progress.

    A sized collection of futures (a list, tuple, set, or dict keyed by futures, of cfutures or
    concurrent.futures futures) is yielded in completion order, as as_completed() does; anything else (a map()
    iterator, a generator) is yielded in its own order, one item at a time. `total` defaults to
    len(iterable) when it has one; `desc` labels the bar.
    """
    futures = _futures_in(iterable)
    if futures is not None:
        items = _base.as_completed(futures)
        total = len(futures) if total is None else total
    else:
        items = iterable
        if total is None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
    bar = _open_bar(total, desc)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def _futures_in(iterable):
    """The futures of a sized collection made only of futures (a dict's keys), or None."""
    if not isinstance(iterable, (list, tuple, set, frozenset, dict)) or not iterable:
        return None
    if all(isinstance(f, concurrent.futures.Future) for f in iterable):
        return iterable
    return None


def _open_bar(total, desc):
    # tqdm's own rule (disable=None: off when not a terminal), checked first: a tqdm bar, even
    # a disabled one, starts tqdm's monitor thread.
    if not _is_terminal(sys.stderr):
        return _NoBar()
    try:
        import tqdm
    except ImportError:
        return _TerminalBar(sys.stderr, total, desc)
    return tqdm.tqdm(total=total, desc=desc, disable=None)


def _is_terminal(stream):
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty()
        return False


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


class _TerminalBar:
    """One line on a terminal, redrawn at most every `interval` seconds and once at the end."""

    width = 30
    interval = 0.1

    def __init__(self, stream, total, desc):
        self.stream, self.total, self.desc = stream, total, desc
        self.done = 0
        self.started = self.drawn_at = time.monotonic()
        self._draw()

    def update(self, n):
        self.done += n
        now = time.monotonic()
        if now - self.drawn_at >= self.interval or self.done == self.total:
            self.drawn_at = now
            self._draw()

    def close(self):
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self):
        elapsed = time.monotonic() - self.started
        rate = f"{self.done / elapsed:.1f}/s" if elapsed > 0 else "?/s"
        label = f"{self.desc}: " if self.desc else ""
        if self.total:
            filled = min(self.width, self.width * self.done // self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"{label}{100 * self.done // self.total:3d}% |{bar}| {self.done}/{self.total} [{rate}]"
        else:
            line = f"{label}{self.done} [{rate}]"
        self.stream.write("\r" + line)
        self.stream.flush()
