"""InterpreterPoolExecutor (Python 3.14+): 3.14's executor whose worker threads each own a
subinterpreter with its own GIL, on cfutures' native thread pool; cfutures' side of
concurrent.futures.interpreter.

One call's way:
  * ``submit`` checks the call as the stdlib does (a callable; scripts are refused) and queues
    ``_run_in_worker_context(task)`` on the native queue; the future is a cfutures Future.
  * A worker thread of the native pool created its subinterpreter when it started, with the
    stdlib's ``WorkerContext`` (which also runs the initializer there), and keeps it until it
    exits. It runs the task through ``WorkerContext.run``: ``Interpreter.call`` pickles the call
    into the subinterpreter, switches to that interpreter's GIL (the main interpreter's GIL is
    free meanwhile: the workers run Python in parallel) and brings back the pickled result, or
    the exception, raised with its own type and ``interpreters.ExecutionFailed`` (the remote
    traceback) as ``__cause__``.
  * What crosses, and the errors for what cannot (``NotShareableError``), are the running
    Python's own: the contexts are the stdlib's.

A failing initializer breaks the pool with BrokenInterpreterPool (the class's ``BROKEN``, which
the native pool raises). Everything else is cfutures' ThreadPoolExecutor.
"""

import functools
import threading
from concurrent.futures import interpreter as _std_interpreter

from . import _base, thread as _thread
from .thread import ThreadPoolExecutor

BrokenInterpreterPool = _std_interpreter.BrokenInterpreterPool
WorkerContext = _std_interpreter.WorkerContext

_worker_context = threading.local()  # .current: the WorkerContext of this worker thread


def _interpreter_worker(handle, create_context):
    context = create_context()
    try:
        context.initialize()  # creates the subinterpreter and runs the initializer in it
    except BaseException:
        _thread._initializer_failed(handle)
        return
    _worker_context.current = context
    try:
        handle.run_worker()
    finally:
        del _worker_context.current
        context.finalize()


def _run_in_worker_context(task):
    return _worker_context.current.run(task)


@_base._stdlib_docstrings
class InterpreterPoolExecutor(ThreadPoolExecutor, _std_interpreter.InterpreterPoolExecutor):
    """An Executor that runs calls in a pool of subinterpreters, one per worker thread.

    A drop-in for concurrent.futures.InterpreterPoolExecutor (and an instance of it).
    """

    BROKEN = BrokenInterpreterPool

    @classmethod
    def prepare_context(cls, initializer, initargs):
        return WorkerContext.prepare(initializer, initargs)

    def __init__(self, max_workers=None, thread_name_prefix='',
                 initializer=None, initargs=()):
        """Initializes a new InterpreterPoolExecutor instance.

        Args:
            max_workers: The maximum number of interpreters that can be used
                to execute the given calls.
            thread_name_prefix: An optional name prefix to give our threads.
            initializer: A callable used to initialize each worker interpreter.
            initargs: A tuple of arguments to pass to the initializer.
        """
        create_context, resolve_task = self.prepare_context(initializer, initargs)
        super().__init__(max_workers,
                         thread_name_prefix or f"InterpreterPoolExecutor-{self._counter()}")
        self._initializer = initializer
        self._initargs = initargs
        self._create_worker_context = create_context
        self._resolve_work_item_task = resolve_task

    def _worker_target(self):
        return functools.partial(_interpreter_worker, create_context=self._create_worker_context)

    def submit(self, fn, /, *args, **kwargs):
        task = self._resolve_work_item_task(fn, args, kwargs)
        return super().submit(_run_in_worker_context, task)


def __getattr__(name):
    # The rest is the stdlib module's (do_call, ...): the same objects.
    return getattr(_std_interpreter, name)
