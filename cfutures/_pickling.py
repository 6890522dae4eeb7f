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
    if segments is not None:
        return _shm.dumps(obj, protocol, _dispatch_table(), segments)
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol)
    pickler.dispatch_table = _dispatch_table()
    pickler.dump(obj)
    return buf.getbuffer()
