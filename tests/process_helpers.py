"""Functions the process-pool tests run in worker processes.

They live in a plain module (not a test module, which pytest imports under a package-qualified
name) so that workers started by spawn and forkserver can import them: tests/conftest.py puts
this directory on PYTHONPATH for child processes.
"""

import os
import pickle
import time


def mul(x, y):
    return x * y


def fails():
    raise ValueError("in worker")


def exits():
    raise SystemExit(3)


def hard_exit():
    os._exit(7)


def segfault():
    import ctypes
    import faulthandler
    faulthandler.disable()  # a forked worker inherits pytest's handler: its dump is only noise
    ctypes.string_at(0)


def sleep_and_return(t, value):
    time.sleep(t)
    return value


def identity(x):
    return x


def getpid():
    return os.getpid()


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("not today")


def returns_unpicklable():
    return Unpicklable()


def init_fails():
    raise ValueError("bad initializer")


def crash_with(data):
    os._exit(9)


def make_bytes(n):
    return b"\x01" * n


def no_more_descriptors():
    """An initializer: the worker's own descriptor limit, reached (no memfd for its results)."""
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")),
                                                resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def limit_address_space(extra):
    """An initializer: this worker may map only ``extra`` bytes more than it has now."""
    import resource
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, resource.RLIM_INFINITY))


def describe_array(a):
    """What a worker sees of a NumPy array: its sum, shape and flags."""
    return float(a.sum()), a.shape, a.flags.writeable, a.flags.f_contiguous


def make_arrays(n):
    import numpy as np
    return {"range": np.arange(n), "fortran": np.ones((n, 3), order="F")[:, :2]}


def nested_buffers(n):
    return {"b": [b"\x02" * n], "ba": (bytearray(b"\x03" * n),), "small": b"s"}


def buffer_lengths(obj):
    return {k: [len(x) for x in v] for k, v in obj.items() if isinstance(v, (list, tuple))}


def _worker_loop_locals():
    """The locals of the cfutures worker loop running this task (its pipes, its job's tag)."""
    import sys
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "cfutures._process_worker":
            return frame.f_locals
        frame = frame.f_back
    raise RuntimeError("not in a cfutures worker")


def write_to_own_channel(hex_bytes):
    """A hostile task: writes raw bytes into its worker's pipe to the pool."""
    os.write(_worker_loop_locals()["result_conn"].fileno(), bytes.fromhex(hex_bytes))
    return "written"


def forge_own_answer(length, tail_hex):
    """A hostile task: starts an answer to its own job announcing `length` bytes, sends a few."""
    state = _worker_loop_locals()
    os.write(state["result_conn"].fileno(), bytes.fromhex(frame_header(3, state["tag"], length) + tail_hex))
    return "written"


def frame_header(kind, tag, length, attachments=0, magic=0xCF5AF002):
    """A header of cfutures' frame protocol (src/core/protocol.hpp), as hex."""
    import struct
    return struct.pack("=IHHQQ", magic, kind, attachments, tag, length).hex()


def nested_list(depth):
    x = []
    for _ in range(depth):
        x = [x]
    return x


def record_outcome(log, future):
    """A done-callback: notes how the future ended (and lets other threads run meanwhile)."""
    time.sleep(0.0001)
    if future.cancelled():
        log.append("cancelled")
    elif future.exception() is not None:
        log.append(type(future.exception()).__name__)
    else:
        log.append("result")


def wait_for_path(path, limit=60):
    """Blocks until `path` exists (at most `limit` seconds): a task the test ends when it likes."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


def kill_self(sig):
    import signal
    if sig == signal.SIGSEGV:
        import faulthandler
        faulthandler.disable()  # as segfault(): a forked worker's inherited dump is only noise
    os.kill(os.getpid(), sig)


def sleep_then_write(t, path):
    """Sleeps, then leaves `path` behind: a stopped task never writes it."""
    time.sleep(t)
    with open(path, "w") as f:
        f.write("ran")
    return t


def loaded_modules(_=None):
    import sys
    return sorted(sys.modules)


RELEASING = None  # a threading.Event, set by SlowToRelease.__del__ in the process that made it


class SlowToRelease:
    """An argument whose release takes `seconds` in the process that made it (time.sleep: the GIL
    is free meanwhile), and sets RELEASING as it begins; nothing in the others."""

    def __init__(self, seconds, owner=None):
        self.seconds = seconds
        self.owner = os.getpid() if owner is None else owner

    def __reduce__(self):
        return (SlowToRelease, (self.seconds, self.owner))

    def __del__(self):
        if os.getpid() == self.owner:
            if RELEASING is not None:
                RELEASING.set()
            time.sleep(self.seconds)


# max_worker_memory's tests: memory a worker keeps on purpose, and how much it holds.
LEAKED = []


def resident_bytes(_=None):
    """This process's resident set size (RSS), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def leak(index, megabytes):
    """Keeps `megabytes` MiB alive in this process (every page written, so resident); returns
    (index, the RSS after it, pid)."""
    if megabytes:
        LEAKED.append(b"x" * (megabytes << 20))
    return index, resident_bytes(), os.getpid()


def statm_opened(_=None):
    """Whether this worker process has /proc/self/statm open (max_worker_memory reads it)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in ("/proc/self/statm", f"/proc/{os.getpid()}/statm"):
                return True
        except OSError:
            continue
    return False


def hoard(index, objects):
    """Keeps `objects` small lists alive in this process (the garbage collector walks them all:
    a later gc.collect() takes milliseconds); returns (index, the RSS after it, pid)."""
    LEAKED.append([[i] for i in range(objects)])
    return index, resident_bytes(), os.getpid()
