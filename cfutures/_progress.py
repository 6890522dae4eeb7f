"""cfutures.progress(): a progress bar over futures as they complete, or over any iterable.

Beyond the stdlib (opt-in). The bar is tqdm's when tqdm is installed (tqdm's own rule: off when
its output is not a terminal), otherwise a small one drawn on stderr, only when stderr is a
terminal. It only consumes what it is given, so it works the same on thread and process pools
(and on futures of any executor).
"""

import concurrent.futures
import os
import shutil
import sys
import time
import unicodedata

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
    """One line on a terminal, redrawn at most every `interval` seconds and once at the end.

    A redraw returns with \\r and writes spaces over what the previous, longer one left, rather than
    the erase-to-end-of-line sequence ESC[K: a dumb terminal (TERM=dumb, Emacs' shell) and a
    Windows console without virtual-terminal processing show that sequence as text (tqdm pads too).
    The line stays one column narrower than the terminal: a character in the last column wraps at
    once on a Windows console and on terminals without xterm's deferred wrap, and \\r would then
    return to a new row, leaving the old one behind. The width is read again at each redraw (one
    ioctl, at most every `interval`), so a resized terminal is followed without a SIGWINCH handler.
    On a narrow terminal the bar shrinks first, down to `min_width`; then the description is cut;
    then the bar goes; then the rate; the counts stay (cut at the end only when even they do not fit).
    """

    width = 30  # the bar's cells when the terminal has room
    min_width = 10  # below this, the description is cut before the bar shrinks further
    interval = 0.1

    def __init__(self, stream, total, desc):
        self.stream, self.total, self.desc = stream, total, desc
        self.done = 0
        self.shown = 0  # the cells the last redraw wrote, for the next one to blank out
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
        room = self._columns() - 1
        line = self._line(room)
        shown = _cells(line)
        self.stream.write("\r" + line + " " * (min(self.shown, room) - shown))
        self.stream.flush()
        self.shown = shown

    def _columns(self):
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):  # no descriptor, or not a terminal any more
            columns = 0
        # 0 on a terminal that never had its size set: COLUMNS, the size of stdout's, or 80.
        return columns or shutil.get_terminal_size().columns

    def _line(self, room):
        """The bar's text in at most `room` cells."""
        elapsed = time.monotonic() - self.started
        rate = f"{self.done / elapsed:.1f}/s" if elapsed > 0 else "?/s"
        if not self.total:
            counts = _with_rate(f"{self.done}", rate, room)
            return _cut(_label(self.desc, room - len(counts)) + counts, room)
        percent = f"{100 * self.done // self.total:3d}% "
        counts = _with_rate(f"{self.done}/{self.total}", rate, room - len(percent))
        free = room - len(percent) - len(counts)  # for the label and "|bar| "
        label = _label(self.desc, free)
        cells = min(self.width, free - _cells(label) - 3)
        if cells < self.min_width:
            cells = self.min_width if free - 3 >= self.min_width else 0
            label = _label(self.desc, free - (cells + 3 if cells else 0))
        bar = ""
        if cells:
            filled = min(cells, cells * self.done // self.total)
            bar = "|" + "#" * filled + "-" * (cells - filled) + "| "
        return _cut(label + percent + bar + counts, room)


def _with_rate(counts, rate, room):
    """`counts [rate]`, or the counts alone where both do not fit in `room` cells."""
    both = f"{counts} [{rate}]"
    return both if len(both) <= room else counts


def _label(desc, room):
    """`desc: `, its description cut to fit `room` cells, or nothing."""
    cut = _cut(desc, room - 2) if desc else ""
    return cut + ": " if cut else ""


def _cut(text, room):
    """The longest start of `text` that takes at most `room` cells on a terminal."""
    used = 0
    for i, ch in enumerate(text):
        used += _cells(ch)
        if used > room:
            return text[:i].rstrip()
    return text


def _cells(text):
    """The terminal cells `text` takes: two for a wide (East Asian) character, none for a
    combining one."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
               for ch in text)
