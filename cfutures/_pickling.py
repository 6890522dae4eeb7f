"""Pickling for the process pool: multiprocessing's ForkingPickler semantics, without its cost.

ForkingPickler (what the stdlib's process pool uses) adds reducers for connections, sockets and
the like, but copies the whole dispatch table on every dumps(), which costs more than pickling a
small call. Here the combined table is built once, and rebuilt only when copyreg's table or
ForkingPickler's registrations change size (ForkingPickler.register() by user code).
"""

import copyreg
import io
import pickle
from multiprocessing.reduction import ForkingPickler

from . import _shm

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


def dumps(obj, protocol=5, segments=None):
    """obj pickled as ForkingPickler would. With a list `segments`, large buffers go to shared
    memory (see _shm) and the names of the segments made are appended to it."""
    buf = io.BytesIO()
    if segments is None:
        pickler = pickle.Pickler(buf, protocol)
    else:
        buffers = []  # PickleBuffers, taken out of band at no Python cost (list.append)
        pickler = pickle.Pickler(buf, protocol, buffer_callback=buffers.append)
    table = _dispatch_table()
    pickler.dispatch_table = table
    pickler.dump(obj)
    data = buf.getbuffer()
    if segments is None or (not buffers and data.nbytes < _shm.THRESHOLD):
        return data
    return _shm.finish_dumps(obj, protocol, table, data, buffers, segments)
