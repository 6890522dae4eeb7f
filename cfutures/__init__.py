"""cfutures: concurrent.futures, implemented natively in C++.

Use it as the stdlib module::

    import cfutures as futures

    with futures.ThreadPoolExecutor(max_workers=4) as ex:
        for f in futures.as_completed(ex.submit(pow, 2, n) for n in range(10)):
            print(f.result())

The names, classes, constants and exceptions are those of concurrent.futures on the running
Python; the exceptions are the stdlib's own classes.
"""

import concurrent.futures as _std_futures

from ._base import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
    TimeoutError,
    as_completed,
    wait,
)

from ._install import install, installed, uninstall

__version__ = "0.1.0"

# The same public names as the stdlib module on this Python.
__all__ = tuple(_std_futures.__all__)

# Executors load lazily, as in the stdlib; names cfutures does not implement natively (such as
# 3.14's InterpreterPoolExecutor) come from the stdlib, and are listed in tests/deviations.py.
_LAZY = {
    "ThreadPoolExecutor": ".thread",
    "ProcessPoolExecutor": ".process",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in __all__:
        value = getattr(_std_futures, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
