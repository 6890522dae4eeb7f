"""Functions the Dask tests run in the cluster's worker processes (importable by name there:
tests/conftest.py puts this directory on PYTHONPATH for child processes)."""

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
