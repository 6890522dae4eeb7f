"""cfutures.progress() (beyond the stdlib): what it yields, and what it draws where."""

import contextlib
import fcntl
import io
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
import unicodedata

import pytest

import cfutures
from conftest import ProcessExecutorFactory
from process_helpers import sleep_and_return

pytestmark = pytest.mark.portable  # progress() is Python over the public API: a portable build has it too


class TerminalStream(io.TextIOWrapper):
    """A text stream on a pseudo-terminal: isatty() is true, what is written can be read back."""

    def __init__(self):
        self.master, slave = os.openpty()
        # 24 rows of 80 columns (a new pty has 0 x 0, where tqdm draws nothing).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        super().__init__(os.fdopen(slave, "wb", buffering=0), encoding="utf-8", write_through=True)

    def written(self):
        os.set_blocking(self.master, False)
        chunks = []
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    def close(self):
        super().close()
        os.close(self.master)


@contextlib.contextmanager
def terminal_stderr():
    """sys.stderr on a terminal, inside the test's body (pytest's capture puts its own back
    between a fixture's setup and the test)."""
    stream, saved = TerminalStream(), sys.stderr
    sys.stderr = stream
    try:
        yield stream
    finally:
        sys.stderr = saved
        stream.close()


@pytest.fixture
def without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError


def test_not_a_stdlib_name():
    assert "progress" not in cfutures.__all__


def test_futures_come_back_as_they_complete_and_nothing_is_drawn_off_a_terminal(capsys):
    with cfutures.ThreadPoolExecutor(3) as ex:
        fs = [ex.submit(sleep_and_return, d, d) for d in (0.6, 0.01, 0.3)]
        order = [f.result() for f in cfutures.progress(fs, desc="work")]
    assert order == [0.01, 0.3, 0.6]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("tqdm_installed", [True, False], ids=["tqdm", "builtin"])
def test_map_items_come_in_order_on_a_process_pool(capsys, monkeypatch, tqdm_installed):
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    factory = ProcessExecutorFactory(cfutures, "forkserver")
    try:
        ex = factory(2)
        items = list(cfutures.progress(ex.map(sleep_and_return, [0.01] * 6, range(6)), total=6))
    finally:
        factory.close()
    assert items == list(range(6))
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: nothing drawn


def test_the_builtin_bar_draws_on_a_terminal(without_tqdm):
    with terminal_stderr() as terminal:
        assert list(cfutures.progress(iter(range(3)), total=3, desc="squares")) == [0, 1, 2]
        out = terminal.written()
    assert "squares" in out and "3/3" in out and "100%" in out


def test_the_builtin_bar_counts_without_a_total(without_tqdm):
    with terminal_stderr() as terminal:
        assert list(cfutures.progress(x for x in "abcd")) == list("abcd")
        assert "4 [" in terminal.written()


# The built-in bar in a child process whose stderr is a pseudo-terminal, as a user sees it (tqdm
# hidden), on a clock of its own: 25 items in the first quarter second give one redraw at
# 100.0/s, the 26th at 13 s gives 2.0/s, two characters shorter (the issue's `[509.1/s]]]`).
# argv[1] is [desc, sized, columns to resize the terminal to before the last item, or 0].
CHILD = r"""
import fcntl, json, struct, sys, termios, time
sys.modules["tqdm"] = None
import cfutures
desc, sized, resize_to = json.loads(sys.argv[1])
clock = [0.0]
time.monotonic = lambda: clock[0]  # after the imports: threading keeps the real one for its waits

def items():
    for i in range(26):
        clock[0] = 0.05 if i < 24 else 0.25 if i == 24 else 13.0
        if i == 25 and resize_to:
            fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, resize_to, 0, 0))
        yield i

assert list(cfutures.progress(items(), total=26 if sized else None, desc=desc)) == list(range(26))
"""


def run_in_terminal(columns, desc, sized, resize_to=0):
    """What CHILD writes on a terminal `columns` wide, as the terminal receives it."""
    master, slave = os.openpty()
    proc = None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["PYTHONIOENCODING"] = "utf-8"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([desc, sized, resize_to])],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        slave = None
        chunks, deadline = [], time.monotonic() + 30
        while select.select([master], [], [], max(0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every copy of the terminal's slave side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = b"".join(chunks).decode("utf-8", "replace")
        assert proc.wait(timeout=10) == 0, out
        return out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if slave is not None:
            os.close(slave)
        os.close(master)


def cells(ch):
    """The terminal cells a character takes."""
    return 0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class Screen:
    """A minimal terminal of the strict kind: \\r, \\n (a pty turns it into \\r\\n), ESC[K, and
    a character in the last column wraps at once (a Windows console, a terminal without xterm's
    deferred wrap), so a line as wide as the terminal leaves a row behind. Wide characters take two
    cells. Any other escape sequence fails the test."""

    def __init__(self, columns):
        self.columns, self.rows, self.col, self.wrapped = columns, [[]], 0, []

    def feed(self, text):
        i = 0
        while i < len(text):
            row = self.rows[-1]
            if text.startswith("\x1b[K", i):
                del row[self.col:]
                i += 3
                continue
            ch = text[i]
            i += 1
            assert ch != "\x1b", f"an escape sequence other than ESC[K: {text[i - 1:i + 8]!r}"
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.rows.append([])
                self.col = 0
            else:
                width = cells(ch)
                if self.col + width > self.columns:
                    self._wrap()
                    row = self.rows[-1]
                row.extend(" " * (self.col + width - len(row)))
                row[self.col:self.col + width] = [ch] + [""] * (width - 1)
                self.col += width
                if self.col >= self.columns:
                    self._wrap()
        return ["".join(row).rstrip() for row in self.rows]

    def _wrap(self):
        self.wrapped.append("".join(self.rows[-1]))
        self.rows.append([])
        self.col = 0


def draws(out):
    """Each redraw's visible text (what follows a \\r), without trailing spaces or ESC[K."""
    return [d.replace("\x1b[K", "").rstrip() for d in out.replace("\r\n", "\n").split("\r") if d.strip()]


@pytest.mark.parametrize("sized", [True, False], ids=["total", "no-total"])
def test_a_shorter_redraw_of_the_builtin_bar_leaves_nothing_behind(sized):
    out = run_in_terminal(80, "work", sized)
    last = draws(out)[-1]
    assert last.endswith("26/26 [2.0/s]" if sized else "26 [2.0/s]"), out
    assert any("[100.0/s]" in d for d in draws(out)), out  # the rate did shrink by two characters
    screen = Screen(80)
    assert screen.feed(out) == [last, ""], out  # not `[2.0/s]]]`
    assert screen.wrapped == []


@pytest.mark.parametrize("columns", [40, 12])
@pytest.mark.parametrize("sized", [True, False], ids=["total", "no-total"])
@pytest.mark.parametrize("desc", ["squaring a long list of numbers, slowly",
                                  "计算一个相当长的列表中每个数的平方"], ids=["ascii", "wide"])
def test_the_builtin_bar_fits_the_terminal_and_keeps_its_counts(desc, sized, columns):
    out = run_in_terminal(columns, desc, sized)
    screen = Screen(columns)
    lines = screen.feed(out)
    assert screen.wrapped == [], out  # no redraw reached the last column
    assert lines == [draws(out)[-1], ""], out
    counts = "26/26" if sized else "26 [2.0/s]"
    assert counts in lines[0], out
    if columns == 40:  # room for the counts, the rate and a cut description
        assert lines[0].startswith(desc[:3]) and lines[0].endswith("[2.0/s]"), out
        if sized:
            assert "100% |##########|" in lines[0], out


def test_the_builtin_bar_reads_the_width_again_at_each_redraw():
    out = run_in_terminal(100, "squaring a long list of numbers, slowly", True, resize_to=40)
    shown = [sum(map(cells, d)) for d in draws(out)]
    assert max(shown) > 60 and shown[-1] <= 39, out
    assert "squaring a long list of numbers, slowly: " in draws(out)[0], out


def test_tqdm_draws_on_a_terminal(monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # no monitor thread left behind
    with terminal_stderr() as terminal:
        assert list(cfutures.progress([1, 2, 3], desc="plain")) == [1, 2, 3]  # not futures: in order
        out = terminal.written()
    assert "plain" in out and "3/3" in out


def test_a_dict_keyed_by_futures_gives_its_keys_as_they_complete(capsys):
    with cfutures.ThreadPoolExecutor(2) as ex:
        fs = {ex.submit(sleep_and_return, d, d): d for d in (0.3, 0.01)}
        assert [fs[f] for f in cfutures.progress(fs)] == [0.01, 0.3]
    assert capsys.readouterr().err == ""


def test_an_empty_collection_and_a_mixed_one(capsys):
    assert list(cfutures.progress([])) == []
    f = cfutures.Future()
    f.set_result(1)
    assert list(cfutures.progress([f, 2])) == [f, 2]  # not only futures: items in order
    assert capsys.readouterr().err == ""
