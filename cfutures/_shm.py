"""Large buffers of a process-pool call or result travel in POSIX shared memory, not the pipe.

Three ways a large buffer (THRESHOLD bytes or more) is found, cheapest first:

* Top level: an argument, keyword argument or result that is itself a bytes, bytearray or
  contiguous memoryview is replaced before pickling by a placeholder naming its segment
  (prepare_call / prepare_result). Exact bytes cannot be intercepted by any pickler hook
  without slowing down every small call, hence the substitution.
* Out of band: anything that pickles with protocol 5 PickleBuffers (NumPy arrays, pandas
  blocks, pickle.PickleBuffer itself) has its buffers collected by dumps()'s buffer_callback;
  the large ones go to segments, the small ones are copied into the outer pickle, and the
  receiver gets them back through pickle's `buffers=`, a segment mapped without a copy
  (writable unless the sender's buffer was read-only, as pickle records).
* Nested: if the pickle still holds a bytes/bytearray of THRESHOLD bytes or more inside another
  object (found by walking the pickle's frames, see _has_large_bytes), it is pickled again with
  a persistent_id hook that moves those to segments: a second pass, paid only by calls that
  carry such a buffer.

Segments are mode 0600 and named /cfutures-<pid>-<n>. The receiver unlinks a name as soon as it
has opened it. The sender keeps the names it made for a job and unlinks them again when the job
ends in any way (an unlinked name is ignored), so that a worker dying before it reads its
arguments leaves nothing behind; a pool sweeps its workers' names once it has stopped (a worker
can die between making a result's segment and the parent reading it).
"""

import io
import itertools
import mmap
import os
import pickle

import _posixshmem

# Below this, one more copy through the pipe costs less than creating and mapping a segment.
THRESHOLD = 1 << 20

_counter = itertools.count()
_KINDS = {bytes: "bytes", bytearray: "bytearray", memoryview: "memoryview"}


def _new_segment(view, names):
    """Copies a contiguous byte view into a new segment and returns its name (also appended to
    names), or None if /dev/shm cannot take it (full, or a container's small tmpfs): the
    buffer then goes through the pipe, as it would with the stdlib."""
    name = f"/cfutures-{os.getpid()}-{next(_counter)}"
    try:
        fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        os.ftruncate(fd, view.nbytes)
        # The kernel copies into the segment: cheaper than faulting in a fresh mapping.
        written = 0
        while written < view.nbytes:
            written += os.pwrite(fd, view[written:], written)
    except BaseException as exc:
        _posixshmem.shm_unlink(name)
        if isinstance(exc, OSError):
            return None
        raise
    finally:
        os.close(fd)
    names.append(name)
    return name


def _open(name):
    fd = _posixshmem.shm_open(name, os.O_RDWR, 0o600)
    _posixshmem.shm_unlink(name)  # the open descriptor keeps the memory; the name is not needed
    return fd


def _attach(name, size, kind):
    """The object a placeholder stands for: a private copy of the segment, of its kind."""
    fd = _open(name)
    try:
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as m:
            data = bytearray(m) if kind == "bytearray" else m[:]
    finally:
        os.close(fd)
    return memoryview(data) if kind == "memoryview" else data


def _map(name, size):
    """An out-of-band buffer: the segment itself, mapped (no copy), freed when unreferenced.
    A PickleBuffer, so that a bare one (not consumed by a reconstructor) can be pickled again."""
    fd = _open(name)
    try:
        return pickle.PickleBuffer(mmap.mmap(fd, size, access=mmap.ACCESS_WRITE))
    finally:
        os.close(fd)


class _Segment:
    """What is pickled in place of a top-level large buffer."""

    __slots__ = ("name", "size", "kind")

    def __init__(self, name, size, kind):
        self.name, self.size, self.kind = name, size, kind

    def __reduce__(self):
        return _attach, (self.name, self.size, self.kind)


def _large_view(obj):
    """A flat byte view of obj if it is a large bytes/bytearray/memoryview, else None."""
    if type(obj) not in _KINDS:
        return None
    if type(obj) is memoryview:
        if obj.nbytes < THRESHOLD or not obj.contiguous:
            return None
        return obj.cast("B") if obj.c_contiguous else memoryview(obj.tobytes())
    return memoryview(obj) if len(obj) >= THRESHOLD else None


def export(obj, names):
    """A placeholder for large buffer `obj` in a new segment; its name is appended to `names`."""
    view = _large_view(obj)
    name = _new_segment(view, names)
    return obj if name is None else _Segment(name, view.nbytes, _KINDS[type(obj)])


def prepare_call(fn, args, kwargs):
    """(fn, args, kwargs) with top-level large buffers replaced, and the segment names made."""
    names = []
    args = tuple(export(a, names) if _large_view(a) is not None else a for a in args)
    kwargs = {k: export(v, names) if _large_view(v) is not None else v for k, v in kwargs.items()}
    return (fn, args, kwargs), names


def prepare_result(result):
    names = []
    return (export(result, names) if _large_view(result) is not None else result), names


class _NestedPickler(pickle.Pickler):
    """Moves large bytes/bytearray/memoryview found anywhere in the object to segments."""

    def __init__(self, file, protocol, dispatch_table, buffer_callback, names):
        super().__init__(file, protocol, buffer_callback=buffer_callback)
        self.dispatch_table = dispatch_table
        self.names = names
        self.exported = {}  # id(obj) -> persistent id, for this dump (obj keeps them alive)

    def persistent_id(self, obj):
        view = _large_view(obj)
        if view is None:
            return None
        # Called before the memo is consulted: an object met twice gets one segment.
        pid = self.exported.get(id(obj))
        if pid is None:
            name = _new_segment(view, self.names)
            if name is None:
                return None
            pid = self.exported[id(obj)] = (name, view.nbytes, _KINDS[type(obj)])
        return pid


class _NestedUnpickler(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attached = {}  # a segment's name -> its object: one object shared stays one

    def persistent_load(self, pid):
        obj = self.attached.get(pid[0])
        if obj is None:
            obj = self.attached[pid[0]] = _attach(*pid)
        return obj


def _unpack(data, out_of_band, nested):
    """Runs in the receiver: the object, with its segments mapped or copied back."""
    buffers = [_map(*b) if type(b) is tuple else b for b in out_of_band]
    if nested:
        return _NestedUnpickler(io.BytesIO(data), buffers=buffers).load()
    return pickle.loads(data, buffers=buffers)


class _Packed:
    """The outer pickle of a call or result that has segments."""

    __slots__ = ("args",)

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return _unpack, self.args


def _ship_buffer(buffer, names):
    """How one out-of-band buffer travels: (segment name, size) if it is large and contiguous
    and /dev/shm takes it, else a bytearray copy inside the outer pickle (writable, as pickle
    would have made it in band; read-only ones are marked so by pickle itself)."""
    try:
        raw = buffer.raw()
    except BufferError:  # not contiguous
        return bytearray(memoryview(buffer).tobytes())
    if raw.nbytes >= THRESHOLD:
        name = _new_segment(raw, names)
        if name is not None:
            return (name, raw.nbytes)
    return bytearray(raw)


# Opcodes of a bytes/str payload, with the size of their length field. The pickler writes a
# payload of 64 KiB or more outside its frames: right after a frame (and at most 3 unframed
# opcode bytes, a frame too short to get a header), comes the opcode, its length, the payload.
_PAYLOAD_OPCODES = {0x42: 4, 0x8E: 8, 0x96: 8, 0x58: 4, 0x8D: 8}  # B BINBYTES8 BYTEARRAY8 X BINUNICODE8
_BYTES_OPCODES = (0x42, 0x8E, 0x96)
_FRAME = 0x95


def _is_boundary(data, p, size):
    """Whether a frame or a payload header can start within 4 bytes of p (or the pickle ends)."""
    if p >= size - 3:
        return p <= size
    return any(data[q] == _FRAME or data[q] in _PAYLOAD_OPCODES for q in range(p, p + 4))


def _has_large_bytes(data):
    """Whether a protocol 5 pickle holds a bytes/bytearray of THRESHOLD bytes or more inline.

    Walks the frames and the unframed payloads between them instead of scanning every byte, so
    that a large str or a long list costs a few hundred steps. Anything unexpected answers
    False: the pickle then simply goes through the pipe."""
    size = data.nbytes
    if size < THRESHOLD or data[0] != 0x80:
        return False
    p = 2
    while p < size - 3:
        if data[p] == _FRAME:
            p += 9 + int.from_bytes(data[p + 1:p + 9], "little")
            continue
        for q in range(p, min(p + 4, size)):
            width = _PAYLOAD_OPCODES.get(data[q])
            if width is None:
                continue
            length = int.from_bytes(data[q + 1:q + 1 + width], "little")
            end = q + 1 + width + length
            if length >= 1 << 16 and _is_boundary(data, end, size):
                break
        else:
            return False
        if data[q] in _BYTES_OPCODES and length >= THRESHOLD:
            return True
        p = end
    return False


def finish_dumps(obj, protocol, dispatch_table, data, buffers, names):
    """The rest of _pickling.dumps() for a pickle `data` of obj that took PickleBuffers out of
    band (`buffers`) or is large: large buffers go to segments whose names are appended to
    names, and the result is the outer pickle that brings everything back."""
    nested = _has_large_bytes(data)
    if nested:
        buffers = []
        buf = io.BytesIO()
        _NestedPickler(buf, protocol, dispatch_table, buffers.append, names).dump(obj)
        data = buf.getbuffer()
    if not buffers and not nested:
        return data
    out_of_band = [_ship_buffer(b, names) for b in buffers]
    packed = io.BytesIO()
    pickle.Pickler(packed, protocol).dump(_Packed(bytes(data), out_of_band, nested))
    return packed.getbuffer()


def unlink(names):
    for name in names:
        try:
            _posixshmem.shm_unlink(name)
        except FileNotFoundError:
            pass


def sweep(pids):
    """Unlinks what processes `pids` left in /dev/shm (results they made but nobody read)."""
    pids = {str(pid) for pid in pids}
    try:
        entries = os.listdir("/dev/shm")
    except OSError:
        return
    for entry in entries:
        parts = entry.split("-")
        if len(parts) == 3 and parts[0] == "cfutures" and parts[1] in pids:
            unlink(["/" + entry])
