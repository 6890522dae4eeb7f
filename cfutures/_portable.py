"""The portable cfutures: what ``import cfutures`` gives where the native core was not built.

The native core needs Linux (epoll, eventfd, pidfd, memfd). An sdist built elsewhere (macOS,
Windows, a BSD), or on Linux with ``CFUTURES_NATIVE=0`` in the build's environment, installs the
Python package alone (pyproject.toml's overrides skip CMake), and ``cfutures.NATIVE`` is False.
Then:

* ``Future``, ``Executor``, ``wait``, ``as_completed``, the constants and the exceptions are the
  stdlib's own objects, as they always are for the exceptions and constants;
* ``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` are the stdlib's pools, subclassed only to
  refuse cfutures' opt-in options (``task_timeout``, ``cancel_running``,
  ``on_worker_death="replace"``, ``pickler``, ``max_worker_memory``, ``options()``,
  ``stats()``) with a
  NotImplementedError that names the platform, rather than the stdlib's TypeError, and to
  have 3.14's ``map(buffersize=)`` on every Python, as the native pools do;
* ``cfutures.thread``, ``cfutures.process`` and ``cfutures.interpreter`` are the stdlib's
  submodules' names with these pools in them (SubmoduleFinder);
* ``install()`` changes nothing (``concurrent.futures`` already is the stdlib), so that
  ``python -m cfutures run`` and a program that calls it run unchanged;
* ``progress()`` and ``cfutures.dask`` work as on Linux: they are Python over the public API.

A program written against cfutures on Linux therefore imports and runs here; only the opt-in
features beyond the stdlib are missing, and they say so.
"""

import concurrent.futures as _std
import importlib as _importlib
import importlib.machinery as _machinery
import platform as _platform
import sys as _sys


def unsupported(feature):
    """The error for an opt-in feature of the native core used in a portable build (or in a
    program patched by gevent or eventlet, where these pools stand in for the native ones)."""
    from . import _green
    library = _green.patched_by()
    if library is not None:
        return NotImplementedError(
            f"{feature} needs cfutures' native pools, which cannot run in a program whose "
            f"threading is monkey-patched by {library}: this is concurrent.futures' own pool")
    if _sys.platform.startswith("linux"):
        why = "which this build of cfutures left out (it was built with CFUTURES_NATIVE=0)"
    else:
        why = (f"which exists on Linux only (this is {_platform.system() or _sys.platform}, "
               f"where cfutures' executors are concurrent.futures' own)")
    return NotImplementedError(f"{feature} needs cfutures' native core, {why}; "
                               f"cfutures.NATIVE is False")


class _RefusesExtensions:
    """The opt-in methods cfutures' native pools add, refused by name."""

    def stats(self):
        """(cfutures) Live statistics: needs the native core (NotImplementedError here)."""
        raise unsupported(f"{type(self).__name__}.stats()")

    def options(self, **options):
        """(cfutures) Per-task options: needs the native core (NotImplementedError here)."""
        raise unsupported(f"{type(self).__name__}.options()")


class _MapBuffersize:
    """map(buffersize=), 3.14's, on every Python, as cfutures' native pools have it (a program
    that uses it on Linux runs here too); from 3.14 on, the stdlib's own."""

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        if buffersize is None or _sys.version_info >= (3, 14):
            extra = {} if buffersize is None else {"buffersize": buffersize}
            return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize, **extra)
        if isinstance(self, _std.ProcessPoolExecutor):
            from ._map_chunks import map_in_chunks
            return map_in_chunks(self, fn, iterables, timeout, chunksize, buffersize)
        from . import _base
        return _base.Executor.map(self, fn, *iterables, timeout=timeout, buffersize=buffersize)


def _refuse_options(pool, given):
    """NotImplementedError for the first opt-in argument in `given` ((name, value, default)
    triples) that is not its default."""
    for name, value, default in given:
        if value != default:
            raise unsupported(f"{pool}({name}={value!r})")


class ThreadPoolExecutor(_RefusesExtensions, _MapBuffersize, _std.ThreadPoolExecutor):
    __doc__ = _std.ThreadPoolExecutor.__doc__

    def __init__(self, *args, max_queue=None, context=None, **kwargs):
        _refuse_options("ThreadPoolExecutor", (("max_queue", max_queue, None), ("context", context, None)))
        super().__init__(*args, **kwargs)


class ProcessPoolExecutor(_RefusesExtensions, _MapBuffersize, _std.ProcessPoolExecutor):
    __doc__ = _std.ProcessPoolExecutor.__doc__

    def __init__(self, *args, task_timeout=None, cancel_running=False, on_worker_death="break",
                 pickler=None, max_queue=None, max_worker_memory=None, **kwargs):
        _refuse_options("ProcessPoolExecutor", (("task_timeout", task_timeout, None),
                                                ("cancel_running", cancel_running, False),
                                                ("on_worker_death", on_worker_death, "break"),
                                                ("pickler", pickler, None),
                                                ("max_queue", max_queue, None),
                                                ("max_worker_memory", max_worker_memory, None)))
        super().__init__(*args, **kwargs)

    if _sys.version_info < (3, 14):  # 3.14's, on every Python, as the native pool has them
        def terminate_workers(self):
            """Terminates the worker processes (SIGTERM), then shuts the executor down."""
            self._stop_workers("terminate")

        def kill_workers(self):
            """Kills the worker processes (SIGKILL), then shuts the executor down."""
            self._stop_workers("kill")

        def _stop_workers(self, how):
            processes = list((self._processes or {}).copy().values())
            self.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                try:
                    if process.is_alive():
                        getattr(process, how)()
                except (ValueError, ProcessLookupError):
                    continue  # already exited (or closed)


if _sys.version_info >= (3, 14):
    class InterpreterPoolExecutor(_RefusesExtensions, _std.InterpreterPoolExecutor):
        __doc__ = _std.InterpreterPoolExecutor.__doc__
elif _sys.version_info >= (3, 12):
    class InterpreterPoolExecutor:
        """cfutures' InterpreterPoolExecutor for 3.12 and 3.13 is native: not available here
        (the stdlib has its own from 3.14)."""

        def __init__(self, *args, **kwargs):
            raise unsupported("InterpreterPoolExecutor before Python 3.14")


POOLS = ("ThreadPoolExecutor", "ProcessPoolExecutor", "InterpreterPoolExecutor")


class SubmoduleFinder:
    """The import hook of a portable build (cfutures/__init__.py puts it first on sys.meta_path):
    ``cfutures.thread``, ``cfutures.process`` and ``cfutures.interpreter`` are made from the
    stdlib's submodules of the same names, with this module's pools (and cfutures' exceptions)
    in them, so that code importing them runs as on Linux."""

    OURS = {
        "cfutures.thread": ("concurrent.futures.thread", ("ThreadPoolExecutor",)),
        "cfutures.process": ("concurrent.futures.process",
                             ("ProcessPoolExecutor", "TaskTimeout", "WorkerDied")),
        "cfutures.interpreter": ("concurrent.futures.interpreter", ("InterpreterPoolExecutor",)),
    }

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in cls.OURS or (name == "cfutures.interpreter" and _sys.version_info < (3, 12)):
            return None
        return _machinery.ModuleSpec(name, cls)

    @staticmethod
    def create_module(spec):
        return None

    @classmethod
    def exec_module(cls, module):
        stdlib_name, names = cls.OURS[module.__name__]
        if module.__name__ != "cfutures.interpreter" or _sys.version_info >= (3, 14):
            stdlib = _importlib.import_module(stdlib_name)  # (3.12 and 3.13 have none)
            module.__dict__.update((k, v) for k, v in vars(stdlib).items() if not k.startswith("__"))
        from . import _errors
        for name in names:
            module.__dict__[name] = globals().get(name) or getattr(_errors, name)
