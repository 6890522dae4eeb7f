"""cfutures: concurrent.futures, implemented natively in C++.

Use it as the stdlib module::

    import cfutures as futures

    with futures.ThreadPoolExecutor(max_workers=4) as ex:
        for f in futures.as_completed(ex.submit(pow, 2, n) for n in range(10)):
            print(f.result())

The names, classes, constants and exceptions are those of concurrent.futures on the running
Python; the exceptions are the stdlib's own classes.

PYTEST_DONT_REWRITE: with CFUTURES_INSTALL=1 this package is imported at start-up, before pytest
marks the modules of its plugins (ours included) for assertion rewriting; this marker keeps
pytest from warning that it cannot rewrite it, which ``-W error`` turns into an abort.
"""

import concurrent.futures as _std_futures
import os as _os
import sys as _sys


def _installed_copy():
    """The installed cfutures package, when this one is a source checkout without the compiled
    module: ``python -m cfutures`` (or ``python -m pytest``) run in the repository's root puts the
    checkout first on sys.path. Returns its directory, or None when this copy is the real one."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _has_compiled_module(here):
        return None
    for entry in _sys.path:
        candidate = _os.path.join(_os.path.abspath(entry or _os.curdir), "cfutures")
        if (_os.path.isdir(candidate) and not _os.path.samefile(candidate, here)
                and _has_compiled_module(candidate)):
            return candidate
    return None


def _has_compiled_module(directory):
    # _cfutures.<tag>.so, not the _cfutures.pyi stub that the source tree has too.
    return any(n.startswith("_cfutures.") and n.endswith(".so") for n in _os.listdir(directory))


_installed = _installed_copy()
if _installed is not None:
    # Every submodule (and the compiled core) then comes from the installed copy.
    __path__[:] = [_installed]

__version__ = "0.1.0"

# The same public names as the stdlib module on this Python.
__all__ = tuple(_std_futures.__all__)

# Everything loads on first use (PEP 562), as the stdlib's executors do: a worker process, which
# imports cfutures only for its worker loop, does not pay for the rest. Names cfutures does not
# implement natively (such as 3.14's InterpreterPoolExecutor) come from the stdlib, and are listed
# in tests/deviations.py.
_LAZY = {
    "ThreadPoolExecutor": ".thread",
    "ProcessPoolExecutor": ".process",
    "install": "._install",
    "uninstall": "._install",
    "installed": "._install",
    # Beyond the stdlib (opt-in): _EXTENSIONS below.
    "TaskTimeout": ".process",
    "WorkerDied": ".process",
    "ExecutorStats": "._base",
    "progress": "._progress",
}
# The names cfutures has beyond the stdlib's: not in __all__, and hidden from what install()
# makes concurrent.futures (code that tests for them there sees the stdlib's module).
_EXTENSIONS = frozenset({"TaskTimeout", "WorkerDied", "ExecutorStats", "progress", "dask"})
_BASE_NAMES = ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "BrokenExecutor",
               "CancelledError", "Executor", "Future", "InvalidStateError", "TimeoutError",
               "as_completed", "wait")


def __getattr__(name):
    import importlib
    if name == "ProcessPoolExecutor" and _os.environ.get("CFUTURES_DASK"):
        # `python -m cfutures run --dask ADDRESS`: process pools run on that Dask cluster.
        value = importlib.import_module(".dask", __name__).ProcessPoolExecutor
    elif name == "dask":  # the submodule (it imports distributed only when an executor is made)
        value = importlib.import_module(".dask", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _BASE_NAMES:
        value = getattr(importlib.import_module("._base", __name__), name)
    elif name in __all__:
        value = getattr(_std_futures, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_LAZY) | set(_BASE_NAMES) | {"dask"})
