"""cfutures.progress() (beyond the stdlib): what it yields, and what it draws where."""

import contextlib
import fcntl
import io
import os
import struct
import sys
import termios
import time

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
