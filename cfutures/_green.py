"""Green threads: what cfutures does in a program whose ``threading`` gevent or eventlet patched.

Such a program expects every thread and every wait to be cooperative: a greenlet that waits lets
the others run on the same OS thread. cfutures' workers are OS threads started by its native
core, and its waits are futex waits the patch cannot see; a greenlet waiting on a native future
would block its hub, and with it every other greenlet. So in such a program:

* ``cfutures.install()`` (and ``python -m cfutures run``, CFUTURES_INSTALL=1) leave
  ``concurrent.futures`` as the stdlib's, whose pure-Python pools and waits the patch makes
  cooperative;
* a program patched after install() gets the stdlib's module back the first time it looks a name
  up in ``concurrent.futures`` (cfutures._install._PackageView);
* constructing one of cfutures' native executors directly gives the stdlib's pool of that name
  instead (its native threads would be greenlets, whose native loops block the hub for good).

Each of these warns once per process, with GreenThreadWarning, naming the library. A Future
subclass that gives its futures a cooperative Condition (``self._condition = ...``, as
green-thread executors do) runs the stdlib's own methods through it, patched or not (see
``cfutures.Future``).

Nothing here imports gevent or eventlet: a program that has not imported them is not patched.
"""

import sys
import warnings


class GreenThreadWarning(RuntimeWarning):
    """cfutures left concurrent.futures as the stdlib's, or made the stdlib's pool where a native
    one was asked for, in a program whose ``threading`` gevent or eventlet monkey-patched."""


_warned = False


def patched_by():
    """'gevent' or 'eventlet' when that library monkey-patched ``threading``, else None."""
    # getattr: the module may be importing still (eventlet.patcher imports asyncio, which reads
    # concurrent.futures), and then it has patched nothing yet.
    is_patched = getattr(sys.modules.get("gevent.monkey"), "is_module_patched", None)
    if is_patched is not None and is_patched("threading"):
        return "gevent"
    is_patched = getattr(sys.modules.get("eventlet.patcher"), "is_monkey_patched", None)
    if is_patched is not None and is_patched("thread"):
        return "eventlet"
    return None


def warn_once(message, stacklevel=3):
    """Warns with GreenThreadWarning, the first time only."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(message, GreenThreadWarning, stacklevel=stacklevel)


def stays_stdlib(library, how):
    """The warning of install() and of the installed module: `how` says what happened."""
    warn_once(f"threading is monkey-patched by {library}: {how}; cfutures' native threads and "
              f"waits cannot yield to {library}'s hub, so concurrent.futures is the stdlib's "
              f"(cfutures' own names stay cfutures')",
              stacklevel=4)


def stdlib_pool_instead(cls, args, kwargs):
    """What ``cls(*args, **kwargs)`` makes, for a native executor class, in a patched program: the
    stdlib's pool of the same name (the portable build's, which refuses cfutures' opt-in options
    by name), with the warning; None in a program that is not patched.

    Under the patch, ``threading.Thread`` starts greenlets: the native worker loop or manager
    loop would run in one and block the hub for good. A subclass of a native executor cannot be
    swapped for the stdlib's class, so it is refused with a RuntimeError rather than left to
    hang."""
    library = patched_by()
    if library is None:
        return None
    from cfutures import _portable
    stdlib_class = getattr(_portable, cls.__name__, None)
    if not cls.__module__.startswith("cfutures.") or stdlib_class is None:
        raise RuntimeError(
            f"{cls.__qualname__} is a cfutures native executor, whose threads cannot run in a "
            f"program whose threading is monkey-patched by {library} (they would be greenlets "
            f"blocking its hub); subclass concurrent.futures.{cls.__name__} there")
    warn_once(f"cfutures.{cls.__name__} in a program whose threading is monkey-patched by "
              f"{library}: the stdlib's pool is used instead (cfutures' native threads would be "
              f"greenlets and block {library}'s hub; the stdlib's cooperate with it)",
              stacklevel=4)
    return stdlib_class(*args, **kwargs)
