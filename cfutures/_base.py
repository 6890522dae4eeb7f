"""Futures, executors' common base, wait() and as_completed(): cfutures' side of
concurrent.futures._base.

The state machine, the waiters and the blocking are native (``_cfutures``); this module gives them
the stdlib's shapes. ``Future`` inherits from both the native ``FutureBase`` and the stdlib's
``concurrent.futures.Future``: every method resolves to the native one, and
``isinstance(f, concurrent.futures.Future)`` holds, which is what asyncio and other libraries check.
The constants and exception classes are the stdlib's own objects, so ``except`` clauses written
against concurrent.futures catch cfutures' errors.
"""

import collections
import itertools
import queue
import time
import weakref
from concurrent.futures import _base as _std

from . import NATIVE

if NATIVE:
    from . import _cfutures

FIRST_COMPLETED = _std.FIRST_COMPLETED
FIRST_EXCEPTION = _std.FIRST_EXCEPTION
ALL_COMPLETED = _std.ALL_COMPLETED

PENDING = _std.PENDING
RUNNING = _std.RUNNING
CANCELLED = _std.CANCELLED
CANCELLED_AND_NOTIFIED = _std.CANCELLED_AND_NOTIFIED
FINISHED = _std.FINISHED
if hasattr(_std, "_FUTURE_STATES"):  # gone from 3.14's stdlib: mirrored where it exists
    _FUTURE_STATES = _std._FUTURE_STATES
_STATE_TO_DESCRIPTION_MAP = _std._STATE_TO_DESCRIPTION_MAP

LOGGER = _std.LOGGER

Error = _std.Error
CancelledError = _std.CancelledError
TimeoutError = _std.TimeoutError
InvalidStateError = _std.InvalidStateError
BrokenExecutor = _std.BrokenExecutor
DoneAndNotDoneFutures = _std.DoneAndNotDoneFutures


class ExecutorStats(collections.namedtuple(
        "ExecutorStats", "submitted queued running completed failed cancelled workers idle_workers")):
    """What ThreadPoolExecutor.stats() and ProcessPoolExecutor.stats() return (cfutures, beyond
    the stdlib): tasks submitted, queued (not started), running (started: in a process pool,
    sent to a worker, the stdlib's RUNNING), completed (a result), failed (an exception),
    cancelled; worker threads or processes, and those idle with nothing to take (a worker that
    a queued task will wake is not idle, so idle_workers is 0 while tasks wait).

    Whenever no call is in flight, submitted == queued + running + completed + failed +
    cancelled, and once every future submitted is done, queued == running == 0.

    ``workers_replaced`` (keyword-only, default 0) is an attribute outside the tuple, so that
    unpacking the eight fields keeps working: the worker processes started in place of one that
    left or was stopped while the pool ran (max_worker_memory, max_tasks_per_child, task_timeout,
    cancel_running, on_worker_death="replace"); 0 for a thread pool. ``calls_inlined`` (the same
    way): the calls a process pool sent with their large buffers through the pipe because no
    memfd could be made or sent (a descriptor limit reached, memfd_create refused): they cost a
    copy more on each side. Such attributes are in the repr, in _asdict(), kept by _replace(),
    copies and pickles, and compared between two ExecutorStats.
    """

    # No __slots__: the extra attributes live in the instance's dict. The class attributes are
    # the defaults of instances made without __new__ (namedtuple's _make()). A subclass names its
    # own extras in _extras (cfutures.dask.DaskExecutorStats).
    _extras = ("workers_replaced", "calls_inlined")
    workers_replaced = 0
    calls_inlined = 0

    def __new__(cls, submitted, queued, running, completed, failed, cancelled, workers,
                idle_workers, **extras):
        unknown = set(extras) - set(cls._extras)
        if unknown:
            raise TypeError(f"{cls.__name__}() got unexpected keyword arguments: "
                            f"{', '.join(sorted(unknown))}")
        self = super().__new__(cls, submitted, queued, running, completed, failed, cancelled,
                               workers, idle_workers)
        for name, value in extras.items():
            if value:
                setattr(self, name, value)
        return self

    def _extra_items(self):
        return [(name, getattr(self, name)) for name in self._extras]

    def __repr__(self):
        extras = "".join(f", {name}={value!r}" for name, value in self._extra_items())
        return f"{super().__repr__()[:-1]}{extras})"

    def _asdict(self):
        fields = super()._asdict()
        fields.update(self._extra_items())
        return fields

    def _replace(self, /, **changes):
        extras = {name: changes.pop(name, value) for name, value in self._extra_items()}
        new = super()._replace(**changes)
        for name, value in extras.items():
            if value:
                setattr(new, name, value)
        return new

    def __eq__(self, other):
        if isinstance(other, ExecutorStats):
            return (tuple.__eq__(self, other) and type(self)._extras == type(other)._extras
                    and self._extra_items() == other._extra_items())
        return tuple.__eq__(self, other)

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__


class QueueFull(queue.Full):
    """(cfutures) submit() found the executor's queue at its max_queue bound and was told not to
    wait (executor.options(block=False)), or not that long (options(block_timeout=S)).

    A subclass of queue.Full, so code written against a bounded queue.Queue catches it."""


_PRIORITY_LIMIT = 2**31 - 1


def _submit_options(priority=0, block=True, block_timeout=None, task_timeout=None):
    """The checked options of executor.options(), as the tuple the native _submit_with() takes."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError("priority must be an integer")
    if not -_PRIORITY_LIMIT <= priority <= _PRIORITY_LIMIT:
        raise ValueError(f"priority must be between {-_PRIORITY_LIMIT} and {_PRIORITY_LIMIT}")
    if not isinstance(block, bool):
        raise TypeError("block must be True or False")
    if block_timeout is not None:
        if isinstance(block_timeout, bool) or not isinstance(block_timeout, (int, float)):
            raise TypeError("block_timeout must be a number of seconds or None")
        if not block_timeout >= 0:
            raise ValueError("block_timeout must be >= 0 or None")
        if not block:
            raise ValueError("block_timeout is for block=True: block=False never waits")
    if task_timeout is not None:
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, (int, float)):
            raise TypeError("task_timeout must be a number of seconds or None")
        if not task_timeout > 0:
            raise ValueError("task_timeout must be a positive number of seconds or None")
    return (priority, block, block_timeout, task_timeout)


def _check_max_queue(max_queue):
    if max_queue is None:
        return None
    if isinstance(max_queue, bool) or not isinstance(max_queue, int):
        raise TypeError("max_queue must be an integer or None")
    if max_queue < 1:
        raise ValueError("max_queue must be >= 1 or None")
    return max_queue


class _ExecutorOptions:
    """What executor.options() returns: the executor, with submit() and map() applying the given
    options to each task they create (each chunk, for a process pool's map).

    A view holds its executor, so the chained form ``Pool(1).options(...).submit(...)`` works as
    ``Pool(1).submit(...)`` does. It has no shutdown() of its own (shutting down is the
    executor's business); ``with ex.options(...) as view:`` means what ``with ex:`` means, and
    gives the view."""

    def __init__(self, executor, **options):
        self._executor = executor
        self._options = _submit_options(**options)
        defaults = dict(zip(("priority", "block", "block_timeout", "task_timeout"), _submit_options()))
        self._named = {name: value for name, value in options.items() if value != defaults[name]}

    def submit(self, fn, /, *args, **kwargs):
        return self._executor._submit_with(self._options, fn, *args, **kwargs)

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        # The executor's own map, submitting through this view; the iterator refills
        # (buffersize) through the view, so it keeps the view.
        results = type(self._executor).map(self, fn, *iterables, timeout=timeout, chunksize=chunksize,
                                           buffersize=buffersize)
        return _keeping(results, self)

    def __enter__(self):
        self._executor.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        return self._executor.__exit__(exc_type, exc_val, exc_tb)

    def __getattr__(self, name):
        if name == "shutdown":
            raise AttributeError(f"{type(self).__name__!r} has no shutdown(): shut down the executor "
                                 f"itself (the view submits to it)")
        return getattr(self._executor, name)

    def __repr__(self):
        named = " ".join(f"{k}={v!r}" for k, v in self._named.items())
        return f"<{type(self).__name__} {named} of {self._executor!r}>"


def _keeping(iterator, owner):
    """`iterator`'s items; `owner` lives as long as this generator."""
    yield from iterator


def _run_callback(fn, future):
    # Called by the native core for each done-callback: an Exception is logged, anything else
    # (KeyboardInterrupt, SystemExit) propagates, as in the stdlib.
    try:
        fn(future)
    except Exception:
        LOGGER.exception('exception calling callback for %r', future)


class _InitSignature:
    """A class's __signature__: its __init__'s without self, made when asked (by inspect, which
    the asker imported; help() and IDEs read it). Without it, inspect.signature() of an executor
    class gives the (*args, **kwargs) of its __new__ (the green-thread check), and of Future
    nothing (its __init__ is native), where the stdlib's classes show their parameters."""

    def __init__(self, init=None):
        self.init = init  # None: the class's own __init__

    def __get__(self, obj, cls):
        import inspect
        sig = inspect.signature(self.init or cls.__init__)
        return sig.replace(parameters=list(sig.parameters.values())[1:])


if NATIVE:
    class Future(_cfutures.FutureBase, _std.Future):
        """Represents the result of an asynchronous computation.

        A drop-in for concurrent.futures.Future (and an instance of it): same methods, same
        states, same exceptions, with the state machine and the waiting done natively.

        ``_condition`` and ``_waiters`` read as views of the native state. A subclass may assign
        its own (``self._condition = green_threading.Condition()``, as green-thread executors
        do; ``self._waiters = [...]``): that future then runs concurrent.futures.Future's own
        methods, so every state change and wait goes through the assigned objects, the pools
        complete it through its methods, and wait() and as_completed() watch it as they watch
        a stdlib future. A future that assigns neither keeps the native path.
        """

        # cancel(), cancelled(), running(), done(), add_done_callback(), result(),
        # exception(), set_running_or_notify_cancel(), set_result() and set_exception() come
        # from FutureBase.
        __signature__ = _InitSignature(_std.Future.__init__)

    _cfutures._set_future_type(Future, _run_callback, QueueFull)
else:
    Future = _std.Future  # a portable build (cfutures/_portable.py): the stdlib's own


def _result_or_cancel(fut, timeout=None):
    try:
        try:
            return fut.result(timeout)
        finally:
            fut.cancel()
    finally:
        # Break a reference cycle with the exception in self._exception
        del fut


def _yield_results(pending, end_time, refill):
    """Yields the results of ``pending`` (a deque of futures) in order.

    ``refill()`` returns one more future to append, or None; it keeps ``buffersize`` futures in
    flight. Futures left when the consumer stops are cancelled.
    """
    try:
        while pending:
            if refill is not None:
                nxt = refill()
                if nxt is not None:
                    pending.append(nxt)
            # The future is never bound to a local: one suspended at the yield would keep the
            # result alive while the consumer holds (or drops) it.
            if end_time is None:
                yield _result_or_cancel(pending.popleft())
            else:
                yield _result_or_cancel(pending.popleft(), end_time - time.monotonic())
    finally:
        for fut in pending:
            fut.cancel()


def _stdlib_docstrings(cls):
    """Methods that restate the stdlib's behaviour carry its docstring (shutdown, submit...),
    and the class shows its __init__'s signature."""
    for name, value in vars(cls).items():
        std = getattr(_std.Executor, name, None)
        if callable(value) and not getattr(value, "__doc__", None) and std is not None:
            value.__doc__ = std.__doc__
    cls.__signature__ = _InitSignature()
    return cls


class Executor(_std.Executor):
    """This is an abstract base class for concrete asynchronous executors.

    Subclasses implement submit(); map() is built on it. Instances are also instances of
    concurrent.futures.Executor.
    """

    def stats(self):
        """(cfutures) Live statistics: an ExecutorStats named tuple (submitted, queued, running,
        completed, failed, cancelled, workers, idle_workers; and workers_replaced, outside the
        tuple), counted by the native pool without a lock on the task's path. Only cfutures'
        own pools keep them."""
        native = getattr(self, "_stats", None)
        if native is None:
            raise NotImplementedError(f"{type(self).__name__} keeps no statistics")
        *fields, replaced, inlined = native()
        return ExecutorStats(*fields, workers_replaced=replaced, calls_inlined=inlined)

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        """Returns an iterator equivalent to map(fn, iter).

        Args:
            fn: A callable that will take as many arguments as there are
                passed iterables.
            timeout: The maximum number of seconds to wait. If None, then there
                is no limit on the wait time.
            chunksize: The size of the chunks the iterable will be broken into
                before being passed to a child process. This argument is only
                used by ProcessPoolExecutor; it is ignored by
                ThreadPoolExecutor.
            buffersize: The number of submitted tasks whose results have not
                yet been yielded. If the buffer is full, iteration over the
                iterables pauses until a result is yielded from the buffer.
                If None, all input elements are eagerly collected, and a task is
                submitted for each.

        Returns:
            An iterator equivalent to: map(func, *iterables) but the calls may
            be evaluated out-of-order.

        Raises:
            TimeoutError: If the entire result iterator could not be generated
                before the given timeout.
            Exception: If fn(*args) raises for any values.
        """
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if buffersize is None:
            # A pool with a bound (max_queue) submits as results are taken, never more than the
            # bound ahead: map() keeps to it without blocking the caller until the end.
            buffersize = getattr(self, "_max_queue", None)
        end_time = None if timeout is None else timeout + time.monotonic()
        argument_tuples = zip(*iterables)
        submit = self.submit
        if buffersize is None:
            pending = collections.deque([submit(fn, *args) for args in argument_tuples])
            return _yield_results(pending, end_time, None)

        pending = collections.deque(
            [submit(fn, *args) for args in itertools.islice(argument_tuples, buffersize)])
        # The generator must not keep the executor alive: refill through a weak reference.
        executor_ref = weakref.ref(self)

        def refill():
            executor = executor_ref()
            if executor is None:
                return None
            args = next(argument_tuples, None)
            return None if args is None else executor.submit(fn, *args)

        return _yield_results(pending, end_time, refill)


def wait(fs, timeout=None, return_when=ALL_COMPLETED):
    """Wait for the futures in the given sequence to complete.

    Args:
        fs: The sequence of Futures (possibly created by different Executors) to
            wait upon. cfutures and concurrent.futures futures may be mixed.
        timeout: The maximum number of seconds to wait. If None, then there
            is no limit on the wait time.
        return_when: Indicates when this function should return. The options
            are:

            FIRST_COMPLETED - Return when any future finishes or is
                              cancelled.
            FIRST_EXCEPTION - Return when any future finishes by raising an
                              exception. If no future raises an exception
                              then it is equivalent to ALL_COMPLETED.
            ALL_COMPLETED -   Return when all futures finish or are cancelled.

    Returns:
        A named 2-tuple of sets. The first set, named 'done', contains the
        futures that completed (is finished or cancelled) before the wait
        completed. The second set, named 'not_done', contains uncompleted
        futures. Duplicate futures given to *fs* are removed and will be
        returned only once.
    """
    done, not_done = _cfutures.wait(fs, timeout, return_when)
    return DoneAndNotDoneFutures(done, not_done)


def as_completed(fs, timeout=None):
    """An iterator over the given futures that yields each as it completes.

    Args:
        fs: The sequence of Futures (possibly created by different Executors) to
            iterate over. cfutures and concurrent.futures futures may be mixed.
        timeout: The maximum number of seconds to wait. If None, then there
            is no limit on the wait time.

    Returns:
        An iterator that yields the given Futures as they complete (finished or
        cancelled). If any given Futures are duplicated, they will be returned
        once.

    Raises:
        TimeoutError: If the entire result iterator could not be generated
            before the given timeout.
    """
    if timeout is not None:
        end_time = timeout + time.monotonic()
    waiter = _cfutures.AsCompleted(fs)
    try:
        # Futures are popped off each batch so that none stays referenced once yielded.
        batch = waiter.take_finished()
        while batch:
            yield batch.pop()
        while waiter.pending:
            if timeout is None:
                wait_timeout = None
            else:
                wait_timeout = end_time - time.monotonic()
                if wait_timeout < 0:
                    raise TimeoutError('%d (of %d) futures unfinished' % (
                        waiter.pending, waiter.total))
            batch = waiter.wait(wait_timeout)
            while batch:
                yield batch.pop()
    finally:
        waiter.close()


if not NATIVE:  # a portable build (cfutures/_portable.py): the stdlib's own
    wait = _std.wait
    as_completed = _std.as_completed
