"""Functions the Dask tests run in the cluster's worker processes (importable by name there:
tests/conftest.py puts this directory on PYTHONPATH for child processes)."""

import itertools
import os
import signal
import time


def key_of_current_task(x):
    """The Dask key of the task running this call: the items of one map chunk share it."""
    from distributed import get_worker
    return x, get_worker().get_current_task()


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def append_line_after(delay, path, text):
    time.sleep(delay)
    return append_line(path, text)


def kill_own_worker():
    os.kill(os.getpid(), signal.SIGKILL)


def worker_env(name):
    return os.environ.get(name)


_initialized = []


def initialize(tag):
    _initialized.append((tag, os.getpid()))


def initializations(_=None):
    return list(_initialized)


def length(data):
    return len(data)


def first_byte(data):
    return data[0]


def unpicklable_result():
    import threading
    return threading.Lock()


def raises_nested():
    def inner():
        raise KeyError("deep")
    inner()


def wait_for_file(path, result, timeout=30):
    """Returns ``result`` once ``path`` exists (the test creates it to let the task end)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return result


def counted(taken):
    """0, 1, 2, ... (in the test's process), each number appended to ``taken`` as it is taken:
    what a map read from its input."""
    for i in itertools.count():
        taken.append(i)
        yield i


def check_submits_and_remote_traceback(ex, timeout):
    """(In the test's process.) Submits with positional and keyword arguments give their results;
    an exception comes back with its type and the remote traceback as __cause__."""
    import concurrent.futures.process

    import pytest

    from process_helpers import mul
    assert ex.submit(mul, 6, 7).result(timeout=timeout) == 42
    assert ex.submit(mul, x=2, y=5).result(timeout=timeout) == 10
    with pytest.raises(KeyError, match="deep") as info:
        ex.submit(raises_nested).result(timeout=timeout)
    cause = info.value.__cause__
    assert type(cause) is concurrent.futures.process._RemoteTraceback
    assert "in inner" in str(cause) and 'raise KeyError("deep")' in str(cause)
