"""ThreadPoolExecutor with a native queue and native worker loops: cfutures' side of
concurrent.futures.thread.

Who does what:
  * ``submit`` (native) creates the Future, queues the task and, when the stdlib's policy asks for
    a new thread (no idle worker, fewer than max_workers), calls ``_start_worker``.
  * ``_start_worker`` starts a real ``threading.Thread`` (named as the stdlib names them) whose
    target runs the initializer, then the native worker loop: it waits for tasks without the GIL
    and takes the GIL only to run them.
  * Workers hold a ``ThreadPoolHandle``, never the executor: dropping the executor shuts the pool down,
    and the workers finish the queue and exit.
  * At interpreter exit, ``_python_exit`` refuses new work, lets every pool drain and joins every
    worker, as the stdlib's exit hook does: workers started from a daemon thread are daemonic
    (threading's rule), and the interpreter would not wait for them otherwise.
  * The stdlib's internals that code reads (``_work_queue``, ``_idle_semaphore``) are views of the
    native queue and counters with the stdlib's types, made on first use: submit never touches
    them.
"""

import functools
import itertools
import os
import queue
import threading
import time
import weakref
from concurrent.futures import thread as _std_thread

from . import _base, _cfutures, _green

BrokenThreadPool = _std_thread.BrokenThreadPool

_pools = weakref.WeakSet()     # handles of live pools
_workers = weakref.WeakSet()   # every worker thread still running (threading keeps them alive)


def _python_exit():
    _cfutures._set_interpreter_shutdown()
    # As the stdlib: no new work anywhere, every worker exits once its queue is empty, and the
    # interpreter waits for all of them.
    for handle in list(_pools):
        handle.release_idle_workers()
    for t in list(_workers):
        t.join()


try:
    threading._register_atexit(_python_exit)
except AttributeError:  # pragma: no cover - every supported CPython has it
    import atexit
    atexit.register(_python_exit)


def _after_fork_in_child():
    global _pools, _workers
    # Pools inherited from the parent belong to threads that do not exist here: forget them.
    _pools = weakref.WeakSet()
    _workers = weakref.WeakSet()
    _cfutures._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _default_max_workers():
    cpus = os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()
    # The stdlib's default: at least 5 workers for I/O bound tasks, at most 32 CPU cores.
    return min(32, (cpus or 1) + 4)


def _worker(handle, initializer, initargs):
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            _initializer_failed(handle)
            return
    handle.run_worker()


def _initializer_failed(handle):
    # As the stdlib: logged, and the pool broken (queued work fails, submit raises).
    _base.LOGGER.critical('Exception in initializer:', exc_info=True)
    handle.break_pool('A thread initializer failed, the thread pool is not usable anymore')


# The stdlib's work item, built the way the running Python builds it: 3.14 gives it a task tuple
# (fn, args, kwargs) and runs it in a worker context; earlier versions keep fn, args and kwargs.
_WorkItem = _std_thread._WorkItem
_WORK_ITEM_TAKES_TASK = "task" in _WorkItem.__init__.__code__.co_varnames
_WORK_ITEM_CONTEXT = (_std_thread.WorkerContext(None, ()) if _WORK_ITEM_TAKES_TASK else None)


def _make_work_item(future, fn, args, kwargs):
    if _WORK_ITEM_TAKES_TASK:
        return _WorkItem(future, (fn, args, kwargs))
    return _WorkItem(future, fn, args, kwargs)


def _run_work_item(item):
    if _WORK_ITEM_TAKES_TASK:
        item.run(_WORK_ITEM_CONTEXT)
    else:
        item.run()


_POLL_INTERVAL = 0.001  # blocking calls on the views below poll the native pool this often


class _WorkQueueView(queue.SimpleQueue):
    """``executor._work_queue``: the pool's native queue through queue.SimpleQueue's API.

    qsize() and empty() count the queued tasks; get()/get_nowait() take the oldest one off the
    queue (it will not run) and return it as the stdlib's _WorkItem, whose future can be
    cancelled or completed; put() queues a work item again (None, the stdlib's wake-up token, is
    accepted and ignored: native workers need none).
    """

    def __init__(self, executor):
        self._executor = weakref.ref(executor)

    def _pool(self):
        executor = self._executor()
        if executor is None:
            raise RuntimeError("the executor of this work queue is gone")
        return executor

    def qsize(self):
        executor = self._executor()
        return 0 if executor is None else executor._queued_tasks()

    def empty(self):
        return self.qsize() == 0

    def get(self, block=True, timeout=None):
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            executor = self._executor()
            taken = None if executor is None else executor._take_queued()
            del executor
            if taken is not None:
                return _make_work_item(*taken)
            if not block or (deadline is not None and time.monotonic() >= deadline):
                raise queue.Empty
            time.sleep(_POLL_INTERVAL)

    def get_nowait(self):
        return self.get(False)

    def put(self, item, block=True, timeout=None):
        if item is None:
            return
        self._pool().submit(_run_work_item, item)

    def put_nowait(self, item):
        self.put(item, False)


class _IdleSemaphore(threading.Semaphore):
    """``executor._idle_semaphore``: its value is the number of idle workers that no queued task
    will take (the stdlib's count of idle workers not yet claimed by a submit). Workers count
    themselves natively: release() changes nothing, and acquire() says whether a worker is idle
    (waiting up to `timeout` for one) without claiming it."""

    def __init__(self, executor):
        self._executor = weakref.ref(executor)
        super().__init__(0)

    @property
    def _value(self):
        executor = self._executor()
        return 0 if executor is None else executor._unclaimed_idle_workers()

    @_value.setter
    def _value(self, value):
        pass  # the count belongs to the pool

    def acquire(self, blocking=True, timeout=None):
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._value == 0:
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(_POLL_INTERVAL)
        return True

    __enter__ = acquire

    def release(self, n=1):
        if n < 1:
            raise ValueError('n must be one or more')


class _ViewOnFirstUse:
    """A read-only executor attribute: ``make(executor)``, made on first use and kept. Assigning
    it raises AttributeError (the pool would never see a replacement)."""

    def __init__(self, make):
        self.make = make

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, executor, owner=None):
        if executor is None:
            return self
        view = executor.__dict__.get(self.name)
        if view is None:
            view = executor.__dict__.setdefault(self.name, self.make(executor))
        return view

    def __set__(self, executor, value):
        raise AttributeError(f"{self.name} is a view of the native pool and cannot be replaced")


class _PoolHost:
    """What the native pool asks of Python (src/bindings/thread_pool.cpp, struct ThreadHost),
    looked up once when the executor is made, as the process pool's host (cfutures/process.py):
      start_worker(executor) -> None: one new worker thread (the class's _start_worker: a plain
                                      function, so that the host holds no executor)
      broken_type: what a broken pool raises (the class's BROKEN where the stdlib has it, 3.14+,
                   which InterpreterPoolExecutor sets to BrokenInterpreterPool)
    """

    __slots__ = ("start_worker", "broken_type")

    def __init__(self, executor_class):
        self.start_worker = executor_class._start_worker
        self.broken_type = getattr(executor_class, "BROKEN", BrokenThreadPool)


# The process pool's options, and why a thread pool has none of them: a TypeError that says so.
_PROCESS_ONLY = {
    "task_timeout": "a thread cannot be stopped; time out the wait instead, with result(timeout=)",
    "cancel_running": "a running thread cannot be stopped",
    "on_worker_death": "a thread does not die alone",
    "pickler": "threads share objects, nothing is pickled",
    "max_tasks_per_child": "threads are not replaced",
    "max_worker_memory": "threads share one process's memory",
    "mp_context": "threads are not processes",
}


@_base._stdlib_docstrings
class ThreadPoolExecutor(_cfutures.ThreadPoolBase, _base.Executor, _std_thread.ThreadPoolExecutor):
    """An Executor that runs calls in a pool of threads.

    A drop-in for concurrent.futures.ThreadPoolExecutor (and an instance of it).
    """

    # Used to assign unique thread names when thread_name_prefix is not supplied.
    _counter = itertools.count().__next__

    _work_queue = _ViewOnFirstUse(_WorkQueueView)
    _idle_semaphore = _ViewOnFirstUse(_IdleSemaphore)

    def __new__(cls, *args, **kwargs):
        for name in _PROCESS_ONLY.keys() & kwargs.keys():
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}: "
                            f"{name} is an option of ProcessPoolExecutor ({_PROCESS_ONLY[name]})")
        # The stdlib's pool in a program whose threading gevent or eventlet patched (_green.py).
        instead = _green.stdlib_pool_instead(cls, args, kwargs)
        return instead if instead is not None else super().__new__(cls)

    def __init__(self, max_workers=None, thread_name_prefix='',
                 initializer=None, initargs=(), *, max_queue=None, context=None):
        """Initializes a new ThreadPoolExecutor instance.

        Args:
            max_workers: The maximum number of threads that can be used to
                execute the given calls.
            thread_name_prefix: An optional name prefix to give our threads.
            initializer: A callable used to initialize worker threads.
            initargs: A tuple of arguments to pass to the initializer.
            max_queue: (cfutures, opt-in) At most this many tasks wait to start:
                submit() then blocks (GIL released, Ctrl-C works) until one starts,
                or see options(block=, block_timeout=); map() submits as its
                results are taken. None (the default): no bound, as the stdlib.
            context: (cfutures, opt-in) "submit": each task runs in a copy of the
                contextvars context of the thread that submitted it, taken at
                submit() (as asyncio.to_thread does). None (the default): tasks
                run in their worker thread's context, as the stdlib's.
        """
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        max_queue = _base._check_max_queue(max_queue)
        if context not in (None, "submit"):
            raise ValueError(f"context must be None or 'submit', not {context!r}")
        super().__init__(max_workers, _PoolHost(type(self)), max_queue or 0, context == "submit")
        self._max_queue = max_queue
        self._max_workers = max_workers
        self._thread_name_prefix = (thread_name_prefix or
                                    ("ThreadPoolExecutor-%d" % self._counter()))
        self._initializer = initializer
        self._initargs = initargs
        self._threads = set()  # every worker thread started, as in the stdlib
        self._shutdown_lock = threading.Lock()
        self._handle = self._make_handle()
        _pools.add(self._handle)

    def _start_worker(self):
        # Called by the native submit() when a new worker is needed (through _PoolHost).
        thread_name = '%s_%d' % (self._thread_name_prefix or self, len(self._threads))
        t = threading.Thread(name=thread_name, target=self._worker_target(), args=(self._handle,))
        t.start()
        self._threads.add(t)
        _workers.add(t)

    def _worker_target(self):
        """What each worker thread runs, given the pool's handle. It must not hold the executor
        (dropping the executor shuts the pool down)."""
        return functools.partial(_worker, initializer=self._initializer, initargs=self._initargs)

    def options(self, *, priority=0, block=True, block_timeout=None):
        """(cfutures, opt-in) A view of this executor whose submit() and map() give each task
        they create these options:

        priority: lower starts first; equal priorities keep submission order; 0 is every
            plain submit's. A queue order only: running tasks are not preempted.
        block, block_timeout: what submit() does while the queue is at its max_queue bound:
            wait (the default), wait at most block_timeout seconds, or (block=False) raise
            cfutures.QueueFull at once.

        The view keeps the executor alive and has no shutdown(). `with ex.options(...) as
        view:` means `with ex:`: the executor itself is shut down when the block ends. To
        scope options inside a longer-lived pool, keep the view in a variable instead."""
        return _base._ExecutorOptions(self, priority=priority, block=block, block_timeout=block_timeout)

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._handle.shutdown(cancel_futures)
        if wait:
            for t in list(self._threads):
                t.join()


