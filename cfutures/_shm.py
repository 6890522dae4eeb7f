"""Large buffers of a process-pool call travel in POSIX shared memory, not through the pipe.

A top-level argument (or keyword argument, or a task's result) that is a bytes, bytearray or
memoryview of at least THRESHOLD bytes is copied once into a fresh segment (mode 0600, named
/cfutures-<pid>-<n>) and replaced by a small placeholder; the receiver maps the segment, copies
it out and unlinks the name at once. The sender keeps the names of the segments it made for a
job and unlinks them again when the job ends in any way (an unlinked name is ignored), so that
a worker that dies before reading its arguments leaves nothing in /dev/shm.

Exact bytes objects cannot be intercepted by a pickler hook (the pickler writes them directly),
hence the substitution before pickling.
"""

import itertools
import mmap
import os

import _posixshmem

# Below this, one more copy through the pipe costs less than creating and mapping a segment.
THRESHOLD = 1 << 20

_counter = itertools.count()
_KINDS = {bytes: "bytes", bytearray: "bytearray", memoryview: "memoryview"}


class _Segment:
    """What is pickled in place of a large buffer."""

    __slots__ = ("name", "size", "kind")

    def __init__(self, name, size, kind):
        self.name, self.size, self.kind = name, size, kind

    def __reduce__(self):
        return _attach, (self.name, self.size, self.kind)


def _attach(name, size, kind):
    fd = _posixshmem.shm_open(name, os.O_RDWR, 0o600)
    try:
        _posixshmem.shm_unlink(name)  # the mapping keeps the memory; the name is not needed
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as m:
            data = bytearray(m) if kind == "bytearray" else m[:]
    finally:
        os.close(fd)
    return memoryview(data) if kind == "memoryview" else data


def _is_large(obj):
    kind = _KINDS.get(type(obj))
    if kind is None:
        return False
    size = obj.nbytes if kind == "memoryview" else len(obj)
    return size >= THRESHOLD and (kind != "memoryview" or obj.contiguous)


def export(obj, names):
    """A placeholder for `obj` in a new segment; its name is appended to `names`."""
    kind = _KINDS[type(obj)]
    view = memoryview(obj).cast("B")
    name = f"/cfutures-{os.getpid()}-{next(_counter)}"
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, view.nbytes)
        # The kernel copies into the segment: cheaper than faulting in a fresh mapping.
        written = 0
        while written < view.nbytes:
            written += os.pwrite(fd, view[written:], written)
    except BaseException:
        _posixshmem.shm_unlink(name)
        raise
    finally:
        os.close(fd)
    names.append(name)
    return _Segment(name, view.nbytes, kind)


def prepare_call(fn, args, kwargs):
    """(fn, args, kwargs) with large buffers replaced, and the segment names made."""
    names = []
    args = tuple(export(a, names) if _is_large(a) else a for a in args)
    kwargs = {k: export(v, names) if _is_large(v) else v for k, v in kwargs.items()}
    return (fn, args, kwargs), names


def prepare_result(result):
    names = []
    return (export(result, names) if _is_large(result) else result), names


def unlink(names):
    for name in names:
        try:
            _posixshmem.shm_unlink(name)
        except FileNotFoundError:
            pass
