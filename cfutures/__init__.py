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

import os as _os
import sys as _sys


def _installed_copy():
    """The installed cfutures package, when this one is a source checkout without the compiled
    module: ``python -m cfutures`` (or ``python -m pytest``) run in the repository's root puts the
    checkout first on sys.path. Returns its directory, or None when this copy is the real one."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _has_compiled_module(here) or not _is_source_checkout(here):
        return None
    for entry in _sys.path:
        candidate = _os.path.join(_os.path.abspath(entry or _os.curdir), "cfutures")
        if (_os.path.isdir(candidate) and not _os.path.samefile(candidate, here)
                and (_has_compiled_module(candidate) or not _is_source_checkout(candidate))):
            return candidate
    return None


def _is_source_checkout(directory):
    return _os.path.exists(_os.path.join(directory, _os.pardir, "src", "bindings", "module.cpp"))


def _has_compiled_module(directory):
    # _cfutures.<tag>.so, not the _cfutures.pyi stub that the source tree has too.
    return any(n.startswith("_cfutures.") and n.endswith(".so") for n in _os.listdir(directory))


def _in_subinterpreter():
    """Whether this interpreter is not the process's main one (a task of an
    InterpreterPoolExecutor, concurrent.interpreters). cfutures' native module loads only in the
    main interpreter (CPython refuses it in a subinterpreter with its own GIL)."""
    import _thread
    if hasattr(_thread, "_is_main_interpreter"):  # 3.12+: a builtin, nothing to load
        return not _thread._is_main_interpreter()
    try:
        import _xxsubinterpreters as interpreters  # 3.9-3.11: an extension module (0.1-0.5 ms)
    except ImportError:
        return False
    return int(interpreters.get_current()) != int(interpreters.get_main())


class _NativeModuleRefused:
    """The import hook of a subinterpreter: cfutures._cfutures raises ImportError before it is
    loaded. CPython refuses a single-phase extension module there only after running its init
    function (3.12), which leaves pybind11's state of the subinterpreter behind and corrupts the
    heap when the process ends."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == __name__ + "._cfutures":
            raise ImportError(
                "cfutures' native module cannot be loaded in a subinterpreter: cfutures runs in "
                "the main interpreter, and here its concurrent.futures names are the stdlib's "
                "own (cfutures.ThreadPoolExecutor is concurrent.futures.ThreadPoolExecutor)",
                name=name)
        return None


# In a subinterpreter the stdlib's names are the stdlib's own objects (its pure-Python pools work
# there), so a module that imports cfutures can be imported by a subinterpreter's task; cfutures'
# own submodules raise ImportError there.
_IN_SUBINTERPRETER = _in_subinterpreter()
if _IN_SUBINTERPRETER:
    _sys.meta_path.insert(0, _NativeModuleRefused)

_installed = _installed_copy()
if _installed is not None:
    # Every submodule (and the compiled core) then comes from the installed copy.
    __path__[:] = [_installed]

# Whether the native core was built: True on Linux. False for a portable build (an sdist built
# off Linux, or with CFUTURES_NATIVE=0), whose public names are the stdlib's own
# (cfutures/_portable.py). A source checkout without its compiled module counts as native:
# using it then fails on the missing module and says so.
NATIVE = _has_compiled_module(__path__[0]) or _is_source_checkout(__path__[0])
if not NATIVE:
    from ._portable import SubmoduleFinder as _SubmoduleFinder
    _sys.meta_path.insert(0, _SubmoduleFinder)

__version__ = "0.1.0"


def _public_names():
    """__all__: the same public names as the stdlib module on this Python, and
    InterpreterPoolExecutor from 3.12 on (the stdlib has it from 3.14; subinterpreters with their
    own GIL exist from 3.12). Read from concurrent.futures on first use, like everything else."""
    names = globals().get("__all__")
    if names is None:
        import concurrent.futures
        names = tuple(concurrent.futures.__all__)
        if _sys.version_info >= (3, 12) and "InterpreterPoolExecutor" not in names:
            names += ("InterpreterPoolExecutor",)
        globals()["__all__"] = names
    return names


# Everything loads on first use (PEP 562), the stdlib's concurrent.futures included: a worker
# process imports cfutures only for its worker loop (cfutures._process_worker), and a spawned
# one starts sooner without the stdlib's package and the logging module it imports.
_LAZY = {
    "ThreadPoolExecutor": ".thread",
    "ProcessPoolExecutor": ".process",
    "install": "._install",
    "uninstall": "._install",
    "installed": "._install",
    # Beyond the stdlib (opt-in): _EXTENSIONS below.
    "TaskTimeout": "._errors",
    "WorkerDied": "._errors",
    "ExecutorStats": "._base",
    "QueueFull": "._base",
    "progress": "._progress",
    "GreenThreadWarning": "._green",
}
if _sys.version_info >= (3, 12):
    _LAZY["InterpreterPoolExecutor"] = ".interpreter"
# The names cfutures has beyond the stdlib's: not in __all__, and hidden from what install()
# makes concurrent.futures (code that tests for them there sees the stdlib's module).
_EXTENSIONS = frozenset({"TaskTimeout", "WorkerDied", "ExecutorStats", "QueueFull", "progress", "dask",
                         "GreenThreadWarning"})
_BASE_NAMES = ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "BrokenExecutor",
               "CancelledError", "Executor", "Future", "InvalidStateError", "TimeoutError",
               "as_completed", "wait")


def _run_process_worker(*args):
    """The target of a process pool's worker processes: imports the worker loop there, so that
    the pool's own process (which never runs it) does not load it on its way to a first result."""
    from ._process_worker import main
    return main(*args)


def __getattr__(name):
    import importlib
    if name == "__all__":
        return _public_names()
    if name.startswith("_"):  # a submodule being imported (`from . import _cfutures`), not a name
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _IN_SUBINTERPRETER and name in _public_names():
        value = getattr(importlib.import_module("concurrent.futures"), name)
    elif name == "ProcessPoolExecutor" and _os.environ.get("CFUTURES_DASK"):
        # `python -m cfutures run --dask ADDRESS`: process pools run on that Dask cluster.
        value = importlib.import_module(".dask", __name__).ProcessPoolExecutor
    elif name == "dask":  # the submodule (it imports distributed only when an executor is made)
        value = importlib.import_module(".dask", __name__)
    elif not NATIVE and name in _public_names():
        from . import _portable
        value = getattr(_portable if name in _portable.POOLS
                        else importlib.import_module("concurrent.futures"), name)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _BASE_NAMES:
        # All of them at once: a thread that first touches one (futures.as_completed in a daemon
        # thread) then finds a plain attribute, as with the stdlib, instead of running the import
        # system while the interpreter finalizes (3.13t hung there under load: a thread that
        # left during finalization kept sys.modules' lock).
        base = importlib.import_module("._base", __name__)
        globals().update({base_name: getattr(base, base_name) for base_name in _BASE_NAMES})
        value = getattr(base, name)
    elif name in _public_names():
        value = getattr(importlib.import_module("concurrent.futures"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_public_names()) | set(_LAZY) | set(_BASE_NAMES) | {"dask"})
