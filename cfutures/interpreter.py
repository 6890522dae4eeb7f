"""InterpreterPoolExecutor (Python 3.12+): 3.14's executor whose worker threads each own a
subinterpreter with its own GIL, on cfutures' native thread pool and native subinterpreters;
cfutures' side of concurrent.futures.interpreter.

One call's way:
  * ``submit`` checks the call as the stdlib does (a callable; scripts are refused) and queues
    ``_run_in_worker_context((fn, args, kwargs))`` on the native pool's queue; the future is a
    cfutures Future.
  * A worker thread of the native pool creates its subinterpreter when it starts
    (``_cfutures.Subinterpreter``, which runs cfutures/_interpreter_worker.py in it), runs the
    initializer there, and keeps it until it exits.
  * For each task the worker thread pickles the call (a call that cannot be pickled fails its
    future with NotShareableError, as in the stdlib) and hands the bytes to the subinterpreter:
    the thread leaves the main interpreter (whose other threads go on) for the subinterpreter's
    own GIL, which unpickles and runs the call and pickles its answer. Back in the main
    interpreter the answer becomes the result, or the exception raised with its own type and
    ExecutionFailed (the remote traceback) as ``__cause__``.
  * Nothing of the task's objects crosses but bytes: the function and arguments must be
    picklable, and the subinterpreter imports what it unpickles with the sys.path it started
    with (the stdlib's rules).

A failing initializer breaks the pool with BrokenInterpreterPool (the class's ``BROKEN``, which
the native pool raises). Everything else is cfutures' ThreadPoolExecutor.
"""

import builtins
import dis
import functools
import io
import marshal
import pickle
import sys
import threading
import types

from . import _base, _cfutures, _interpreter_worker, thread as _thread
from .thread import ThreadPoolExecutor

try:  # 3.14+: the stdlib's pool and errors, which cfutures' are (or derive from)
    from concurrent import interpreters as _std_interpreters
    from concurrent.futures import interpreter as _std_interpreter
except ImportError:
    _std_interpreters = _std_interpreter = None

if _std_interpreter is not None:
    BrokenInterpreterPool = _std_interpreter.BrokenInterpreterPool
    ExecutionFailed = _std_interpreters.ExecutionFailed
    NotShareableError = _std_interpreters.NotShareableError
    _STDLIB_POOL = (_std_interpreter.InterpreterPoolExecutor,)
else:
    try:
        from _interpreters import NotShareableError  # 3.13
    except ImportError:
        class NotShareableError(TypeError):  # 3.12; 3.14's base
            """An object cannot cross into another interpreter."""

    class BrokenInterpreterPool(_thread.BrokenThreadPool):
        """
        Raised when a worker thread in an InterpreterPoolExecutor failed initializing.
        """

    class ExecutionFailed(Exception):
        """An unhandled exception happened in a subinterpreter (3.14's
        concurrent.interpreters.ExecutionFailed): ``excinfo`` describes it, and str() gives
        its remote traceback."""

        def __init__(self, excinfo):
            super().__init__(excinfo.formatted)
            self.excinfo = excinfo

        def __str__(self):
            return f"{super().__str__()}\n\nUncaught in the interpreter:\n\n{self.excinfo.errdisplay}"

    _STDLIB_POOL = ()


@functools.lru_cache(maxsize=None)
def _worker_source():
    """(source, filename) of the module each subinterpreter runs: its file's text, which is
    what the main interpreter imported (read from the file: an import hook, pytest's assertion
    rewriter for one, may have loaded the module without a get_source())."""
    with open(_interpreter_worker.__file__, encoding="utf-8") as f:
        return f.read(), _interpreter_worker.__file__


class _CallPickler(pickle.Pickler):
    """pickle, and a function that pickle cannot name (a local one) crosses by its code when it is
    stateless, as 3.14's interpreters send functions: no closure, no defaults, and no global
    names but builtins. Anything else stays pickle's (which refuses it)."""

    def reducer_override(self, obj):
        if type(obj) is types.FunctionType and not _named(obj) and _stateless(obj):
            return _interpreter_worker.function_from_code, (marshal.dumps(obj.__code__),
                                                            obj.__module__)
        return NotImplemented


def _dumps(obj):
    buffer = io.BytesIO()
    _CallPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _named(fn):
    """Whether pickle can name `fn` (its module's attribute path leads to it)."""
    target = sys.modules.get(fn.__module__)
    for part in fn.__qualname__.split("."):
        target = getattr(target, part, None)
    return target is fn


def _stateless(fn):
    if fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__:
        return False
    return _code_is_stateless(fn.__code__, fn.__globals__)


_NAME_READS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_NAME_WRITES = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL", "STORE_NAME", "DELETE_NAME"})


def _code_is_stateless(code, globals_):
    # A read must find a builtin; any write of a global (or of a name in a nested class body,
    # conservatively) keeps the function from crossing by its code.
    for instruction in dis.get_instructions(code):
        if instruction.opname in _NAME_WRITES:
            return False
        if instruction.opname in _NAME_READS and (instruction.argval in globals_ or
                                                  not hasattr(builtins, instruction.argval)):
            return False
    return all(_code_is_stateless(const, globals_) for const in code.co_consts
               if isinstance(const, types.CodeType))


def _main_module():
    """How a subinterpreter loads this interpreter's __main__ when a call needs it: the script's
    path, or the module run with -m; None for code with no file (-c, the REPL)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return ("module", spec.name)
    path = getattr(main, "__file__", None)
    return ("path", path) if path else None


def _execution_failed(excinfo):
    module, qualname, message, text = excinfo
    kind = types.SimpleNamespace(__name__=qualname.rpartition(".")[2], __qualname__=qualname,
                                 __module__=module)
    formatted = f"{kind.__name__}: {message}" if message else kind.__name__
    return ExecutionFailed(types.SimpleNamespace(type=kind, msg=message, formatted=formatted,
                                                 errdisplay=text.rstrip("\n")))


class WorkerContext:
    """One worker thread's subinterpreter: the interface of the stdlib's WorkerContext
    (``prepare``, ``initialize``, ``run``, ``finalize``) on a native _cfutures.Subinterpreter."""

    @classmethod
    def prepare(cls, initializer, initargs):
        def resolve_task(fn, args, kwargs):
            if isinstance(fn, str):
                raise TypeError('scripts not supported')
            return (fn, args, kwargs)
        initdata = None if initializer is None else resolve_task(initializer, initargs, {})
        return functools.partial(cls, initdata), resolve_task

    def __init__(self, initdata):
        self.initdata = initdata
        self.interp = None

    def initialize(self):
        self.interp = _cfutures.Subinterpreter(*_worker_source())
        try:
            if self.initdata:
                self.run(self.initdata)
        except BaseException:
            self.finalize()
            raise

    def finalize(self):
        interp, self.interp = self.interp, None
        if interp is not None:
            interp.close()

    def run(self, task):
        try:
            call = _dumps(task)
        except Exception as exc:
            raise NotShareableError(f"args not shareable: {exc}") from exc
        answer = pickle.loads(self.interp.call(pickle.dumps((call, _main_module()))))
        kind = answer[0]
        if kind == _interpreter_worker.RETURNED:
            return answer[1]
        if kind == _interpreter_worker.UNPICKLABLE_CALL:
            raise NotShareableError("args not shareable") from _execution_failed(answer[1])
        if kind == _interpreter_worker.UNSHAREABLE_RESULT:
            raise NotShareableError("the call's result cannot cross back from the interpreter") \
                from _execution_failed(answer[1])
        _, pickled, excinfo = answer
        wrapper = _execution_failed(excinfo)
        if pickled is None:
            raise wrapper
        try:
            exc = pickle.loads(pickled)
        except Exception:
            raise wrapper from None
        raise exc from wrapper


_worker_context = threading.local()  # .current: the WorkerContext of this worker thread


def _worker(handle, create_context):
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
class InterpreterPoolExecutor(ThreadPoolExecutor, *_STDLIB_POOL):
    """An Executor that runs calls in a pool of subinterpreters, one per worker thread.

    A drop-in for concurrent.futures.InterpreterPoolExecutor (and an instance of it) where the
    stdlib has it (3.14+); the same executor on 3.12 and 3.13.
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
        return functools.partial(_worker, create_context=self._create_worker_context)

    def submit(self, fn, /, *args, **kwargs):
        task = self._resolve_work_item_task(fn, args, kwargs)
        return super().submit(_run_in_worker_context, task)

    def _submit_with(self, options, fn, /, *args, **kwargs):
        # What options(...).submit() calls: the call goes to the worker's interpreter too.
        task = self._resolve_work_item_task(fn, args, kwargs)
        return super()._submit_with(options, _run_in_worker_context, task)


if _std_interpreter is not None:
    def __getattr__(name):
        # The rest is the stdlib module's (do_call, ...): the same objects.
        return getattr(_std_interpreter, name)
