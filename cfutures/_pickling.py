"""Pickling for the process pool: a call or an answer becomes (payload, attachments).

The payload is a pickle. Attachments are the large buffers that travel beside it: the native
layer copies each into a memfd when the frame is written, and the receiver maps it without
another copy (src/core/protocol.hpp). Nothing here names memory: what crosses processes dies
with them, however they end.

Three ways a large buffer (THRESHOLD bytes or more) is found, cheapest first:

* Top level: an argument, keyword argument or answer that is itself a bytes, bytearray or
  contiguous memoryview is wrapped (``_Large``) before pickling, so that it goes out of band.
  Exact bytes cannot be intercepted by any pickler hook without slowing down every small call,
  hence the wrapping.
* Out of band: anything that pickles with protocol 5 PickleBuffers (NumPy arrays, pandas
  blocks, pickle.PickleBuffer itself) has its buffers collected by the pickler's
  buffer_callback; the large ones become attachments, the small ones are copied into the
  payload, and the receiver gets them back through pickle's ``buffers=`` (writable unless the
  sender's buffer was read-only, as pickle records).
* Nested: if the pickle still holds a bytes/bytearray of THRESHOLD bytes or more inside another
  object (found by walking the pickle's frames, see _has_large_bytes), it is pickled again with
  a persistent_id hook that makes attachments of those: a second pass, paid only by calls that
  carry such a buffer.

A pickle that is itself large (a long list, a big str) travels as an attachment too.

A pool pickles with the standard pickler by default, or with cloudpickle's
(ProcessPoolExecutor(pickler="cloudpickle")): a Pickling object holds which, for the calls it
sends and, in its workers, for the answers. Either way the receiver needs only pickle.loads
(cloudpickle's pickles name cloudpickle's own functions, imported where they are loaded).

Pickling has multiprocessing's ForkingPickler semantics (its reducers for connections, sockets
and the like) without its cost: ForkingPickler copies the whole dispatch table on every dumps(),
which costs more than pickling a small call; here the combined table is built once, and rebuilt
only when copyreg's table or ForkingPickler's registrations change size.
"""

import collections
import copyreg
import io
import pickle
from types import FunctionType as _FunctionType
from multiprocessing.reduction import ForkingPickler

from . import _cfutures

# Below this, one more copy through the pipe costs less than making and mapping a memfd.
THRESHOLD = 1 << 20
MAX_ATTACHMENTS = _cfutures.MAX_ATTACHMENTS
PROTOCOL = 5  # for out-of-band buffers, on every Python

_KINDS = {bytes: "bytes", bytearray: "bytearray", memoryview: "memoryview"}
_table = None
_sizes = None


def _dispatch_table():
    global _table, _sizes
    sizes = (len(copyreg.dispatch_table), len(ForkingPickler._extra_reducers))
    if sizes != _sizes:
        table = copyreg.dispatch_table.copy()
        table.update(ForkingPickler._extra_reducers)
        _table, _sizes = table, sizes
    return _table


# Objects of these exact types pickle the same with or without the dispatch table (the C pickler
# saves them, and plain functions, before it looks at any table) and have no out-of-band buffers:
# a call of only these (str and bytes smaller than THRESHOLD) takes the fast path, which the
# process pool also checks natively (cfutures.process._PoolHost.plain_types).
PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})


def _is_plain(obj):
    t = type(obj)
    return t in PLAIN_TYPES and (len(obj) < THRESHOLD if t is bytes or t is str else True)


def _is_plain_call(call):
    """Whether call is (function, args, kwargs) with only plain arguments: most small tasks."""
    if type(call) is not tuple or len(call) != 3:
        return False
    fn, args, kwargs = call
    return (type(fn) is _FunctionType and type(args) is tuple and type(kwargs) is dict
            and all(map(_is_plain, args)) and all(map(_is_plain, kwargs.values())))


class Pickling:
    """How one pool turns objects into (payload, attachments): `pickler` None for the standard
    pickler with multiprocessing's reducers, "cloudpickle" for cloudpickle's (functions and
    classes that cannot be imported by name, lambdas and closures among them, go by value)."""

    def __init__(self, pickler=None):
        if pickler is None:
            self._pickler = pickle.Pickler
            self._table = _dispatch_table
        elif pickler == "cloudpickle":
            try:
                import cloudpickle
            except ImportError:
                raise ImportError('pickler="cloudpickle" needs the cloudpickle package: '
                                  'pip install "cfutures[cloudpickle]"') from None
            self._pickler = cloudpickle.Pickler
            # cloudpickle's own reducers (which include copyreg's), then multiprocessing's.
            self._table = lambda: collections.ChainMap(ForkingPickler._extra_reducers,
                                                       cloudpickle.Pickler.dispatch_table)
        else:
            raise ValueError(f'pickler must be None or "cloudpickle", not {pickler!r}')
        self.name = pickler
        self._nested_pickler = type("_NestedPickler", (_NestedPickling, self._pickler), {})

    def dumps(self, obj):
        """(payload, attachments) for obj; attachments is a sequence of contiguous buffers."""
        if self.name is None and (_is_plain(obj) or _is_plain_call(obj)):
            # The fast path: no Pickler to set up (it cost more than pickling a small call).
            data = pickle.dumps(obj, PROTOCOL)
            if len(data) < THRESHOLD:
                return data, ()
        if _large_view(obj) is not None:
            obj = _Large(obj)
        buf = io.BytesIO()
        buffers = []  # PickleBuffers, taken out of band at no Python cost (list.append)
        pickler = self._pickler(buf, PROTOCOL, buffer_callback=buffers.append)
        pickler.dispatch_table = self._table()
        pickler.dump(obj)
        data = buf.getbuffer()
        if not buffers and data.nbytes < THRESHOLD:
            return data, ()
        return self._finish(obj, data, buffers)

    def dumps_call(self, fn, args, kwargs):
        """dumps((fn, args, kwargs)), with large top-level arguments out of band."""
        args = tuple(_Large(a) if _large_view(a) is not None else a for a in args)
        kwargs = {k: _Large(v) if _large_view(v) is not None else v for k, v in kwargs.items()}
        return self.dumps((fn, args, kwargs))

    def _finish(self, obj, data, buffers):
        """The rest of dumps() for a pickle `data` of obj that took PickleBuffers out of band
        (`buffers`) or is large."""
        attachments = []
        nested = _has_large_bytes(data)
        if nested:
            buffers = []
            buf = io.BytesIO()
            self._nested_pickler(buf, self._table(), buffers.append, attachments).dump(obj)
            data = buf.getbuffer()
        shipped = [_ship_buffer(b, attachments) for b in buffers]
        inner = _attach(data, attachments) if data.nbytes >= THRESHOLD else None
        packed = pickle.dumps(Packed(bytes(data) if inner is None else inner, shipped, nested),
                              PROTOCOL)
        return packed, attachments



def loads(payload, attachments):
    """The object that dumps() turned into (payload, attachments)."""
    obj = pickle.loads(payload)
    return unpack(obj, attachments) if type(obj) is Packed else obj


def unpack(packed, attachments):
    """The object a Packed payload stands for, given the frame's attachments."""
    return packed.unpack(attachments)


def _large_view(obj):
    """A flat byte view of obj if it is a large bytes/bytearray/memoryview, else None."""
    if type(obj) not in _KINDS:
        return None
    if type(obj) is memoryview:
        if obj.nbytes < THRESHOLD or not obj.contiguous:
            return None
        return obj.cast("B") if obj.c_contiguous else memoryview(obj.tobytes())
    return memoryview(obj) if len(obj) >= THRESHOLD else None


def _rebuild(kind, buffer):
    """Runs in the receiver: the object a _Large or a nested buffer stood for, of its kind."""
    if kind == "bytearray":
        return bytearray(buffer)
    data = bytes(buffer)
    return memoryview(data) if kind == "memoryview" else data


class _Large:
    """What is pickled in place of a top-level large buffer: it goes out of band."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __reduce__(self):
        return _rebuild, (_KINDS[type(self.obj)], pickle.PickleBuffer(_large_view(self.obj)))


class _NestedPickling:
    """Mixed into a pickler class (Pickling._nested_pickler): makes attachments of large
    bytes/bytearray/memoryview found anywhere in the object."""

    def __init__(self, file, dispatch_table, buffer_callback, attachments):
        super().__init__(file, PROTOCOL, buffer_callback=buffer_callback)
        self.dispatch_table = dispatch_table
        self.attachments = attachments
        self.exported = {}  # id(obj) -> persistent id, for this dump (obj keeps them alive)

    def persistent_id(self, obj):
        view = _large_view(obj)
        if view is None:
            return None
        # Called before the memo is consulted: an object met twice gets one attachment.
        pid = self.exported.get(id(obj))
        if pid is None:
            if len(self.attachments) >= MAX_ATTACHMENTS:
                return None
            pid = self.exported[id(obj)] = (len(self.attachments), _KINDS[type(obj)])
            self.attachments.append(view)
        return pid


class _NestedUnpickler(pickle.Unpickler):
    def __init__(self, file, buffers, attachments):
        super().__init__(file, buffers=buffers)
        self.attachments = attachments
        self.rebuilt = {}  # attachment index -> its object: one object shared stays one

    def persistent_load(self, pid):
        index, kind = pid
        obj = self.rebuilt.get(index)
        if obj is None:
            obj = self.rebuilt[index] = _rebuild(kind, self.attachments[index])
        return obj


class Packed:
    """The payload of a call or answer that has attachments or out-of-band buffers:
    ``data`` (the inner pickle, or the index of the attachment holding it), ``buffers`` (for
    each out-of-band buffer, an attachment index or an in-band copy), ``nested`` (whether
    persistent ids refer to attachments)."""

    __slots__ = ("data", "buffers", "nested")

    def __init__(self, data, buffers, nested):
        self.data, self.buffers, self.nested = data, buffers, nested

    def __reduce__(self):
        return Packed, (self.data, self.buffers, self.nested)

    def unpack(self, attachments):
        data = attachments[self.data] if type(self.data) is int else self.data
        buffers = [attachments[b] if type(b) is int else b for b in self.buffers]
        if self.nested:
            return _NestedUnpickler(io.BytesIO(data), buffers, attachments).load()
        return pickle.loads(data, buffers=buffers)


def _attach(view, attachments):
    """The index of view as a new attachment, or None when there is no room left."""
    if len(attachments) >= MAX_ATTACHMENTS:
        return None
    attachments.append(view)
    return len(attachments) - 1


def _ship_buffer(buffer, attachments):
    """How one out-of-band buffer travels: an attachment index if it is large and contiguous,
    else a bytearray copy inside the payload (writable, as pickle would have made it in band;
    read-only ones are marked so by pickle itself)."""
    try:
        raw = buffer.raw()
    except BufferError:  # not contiguous
        return bytearray(memoryview(buffer).tobytes())
    if raw.nbytes >= THRESHOLD:
        index = _attach(raw, attachments)
        if index is not None:
            return index
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
    False: the pickle then simply travels as it is."""
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


# The standard way, shared by every pool that does not ask for another (defined last: it needs
# _NestedPickling).
_STANDARD = Pickling()
dumps = _STANDARD.dumps
dumps_call = _STANDARD.dumps_call
