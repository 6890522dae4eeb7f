"""ThreadPoolExecutor with a native queue and native worker loops: cfutures' side of
concurrent.futures.thread.

Who does what:
  * ``submit`` (native) creates the Future, queues the task and, when the stdlib's policy asks for
    a new thread (no idle worker, fewer than max_workers), calls ``_start_worker``.
  * ``_start_worker`` starts a real ``threading.Thread`` (named as the stdlib names them) whose
    target runs the initializer, then the native worker loop: it waits for tasks without the GIL
    and takes the GIL only to run them.
  * Workers hold a ``PoolHandle``, never the executor: dropping the executor shuts the pool down,
    and the workers finish the queue and exit.
  * At interpreter exit, ``_python_exit`` refuses new work, lets every pool drain and joins every
    worker, as the stdlib's exit hook does: workers started from a daemon thread are daemonic
    (threading's rule), and the interpreter would not wait for them otherwise.
"""

import itertools
import os
import threading
import weakref
from concurrent.futures import thread as _std_thread

from . import _base, _cfutures

BrokenThreadPool = _std_thread.BrokenThreadPool

_pools = weakref.WeakSet()     # handles of live pools
_workers = weakref.WeakSet()   # every worker thread still running (threading keeps them alive)
_interpreter_shutdown = False


def _python_exit():
    global _interpreter_shutdown
    _interpreter_shutdown = True
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
            _base.LOGGER.critical('Exception in initializer:', exc_info=True)
            handle.break_pool('A thread initializer failed, the thread pool is not usable anymore')
            return
    handle.run_worker()


@_base._stdlib_docstrings
class ThreadPoolExecutor(_cfutures.ThreadPoolBase, _base.Executor, _std_thread.ThreadPoolExecutor):
    """An Executor that runs calls in a pool of threads.

    A drop-in for concurrent.futures.ThreadPoolExecutor (and an instance of it).
    """

    # Used to assign unique thread names when thread_name_prefix is not supplied.
    _counter = itertools.count().__next__

    def __init__(self, max_workers=None, thread_name_prefix='',
                 initializer=None, initargs=()):
        """Initializes a new ThreadPoolExecutor instance.

        Args:
            max_workers: The maximum number of threads that can be used to
                execute the given calls.
            thread_name_prefix: An optional name prefix to give our threads.
            initializer: A callable used to initialize worker threads.
            initargs: A tuple of arguments to pass to the initializer.
        """
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        super().__init__(max_workers, ThreadPoolExecutor._start_worker)
        self._max_workers = max_workers
        self._thread_name_prefix = (thread_name_prefix or
                                    ("ThreadPoolExecutor-%d" % self._counter()))
        self._initializer = initializer
        self._initargs = initargs
        self._threads = set()
        self._handle = self._make_handle()
        _pools.add(self._handle)

    def _start_worker(self):
        # Called by the native submit() when a new worker is needed (given to it at __init__).
        thread_name = '%s_%d' % (self._thread_name_prefix or self, len(self._threads))
        t = threading.Thread(name=thread_name, target=_worker,
                             args=(self._handle, self._initializer, self._initargs))
        t.start()
        self._threads.add(t)
        _workers.add(t)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._handle.shutdown(cancel_futures)
        if wait:
            for t in list(self._threads):
                t.join()


