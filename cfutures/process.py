"""ProcessPoolExecutor with a native parent side: cfutures' side of concurrent.futures.process.

Data flow (compare the diagram at the top of the stdlib's process.py):

    submit() ---- pickles (fn, args, kwargs) through the host, queues the frame ----+
                                                                                     v
    manager thread (native loop, no GIL): dispatches to the least-loaded worker over its pipe,
        reads the answers, watches each worker's pidfd for its exit; once per batch it takes
        the GIL to complete futures, reap exited workers and start replacements.   |
                                                                                     v
    worker processes (multiprocessing.Process with the pool's mp_context): _process_worker.main,
        through cfutures._run_process_worker (this process never imports the worker loop)

Who does what:
  * ProcessPoolBase (native, src/bindings/process_pool.cpp): submit, the job table, the manager
    loop, crash detection. It reaches Python only through the pool's host.
  * _PoolHost: everything the native pool asks of Python, in one object made once per executor:
    start a worker process, start the manager thread, reap exited workers, and (un)pickle calls
    and answers (_pickling). It holds no reference to the executor, so dropping the executor
    shuts the pool down.
  * A worker that exits without being asked to (crash, os._exit, kill, failed initializer), or
    sends what the protocol does not allow, breaks the pool the stdlib's way: BrokenProcessPool
    on every pending future and on later submits.

Beyond the stdlib, opt-in (keyword-only arguments after the stdlib's):
  * task_timeout=S (and executor.options(task_timeout=S)): a task running longer than S seconds
    from when its worker started it has that worker killed and replaced; its future fails with
    TaskTimeout. Deadlines are kept by the native manager loop.
  * on_worker_death="replace": a worker that dies once started fails only the task it was
    running, with WorkerDied (a BrokenProcessPool); the pool replaces it and goes on.
  * cancel_running=True: Future.cancel() on a running task stops it (its worker is killed and
    replaced) and returns True; the future ends CANCELLED.
  * pickler="cloudpickle": calls and answers travel with cloudpickle (lambdas, closures).
  * max_worker_memory=BYTES: after each task, a worker whose resident memory (RSS) exceeds
    BYTES, even after a garbage collection, leaves cleanly (Exiting) and is replaced.
  Either way the tasks sent ahead to the stopped (or departing) worker are dispatched again,
  not failed.
"""

import itertools
import multiprocessing as mp
import os
import pickle
import threading
import weakref
from concurrent.futures import process as _std_process

from . import _base, _cfutures, _green, _pickling, _run_process_worker

BrokenProcessPool = _std_process.BrokenProcessPool
_check_system_limits = _std_process._check_system_limits
_ExceptionWithTraceback = _std_process._ExceptionWithTraceback
_RemoteTraceback = _std_process._RemoteTraceback

# core::StopCause, in order.
_TIMED_OUT, _CANCELLED, _WORKER_DIED = range(3)


def _describe_call(call):
    """`fn(args...)` of a (fn, args, kwargs) call, for a message: the function's qualified name
    and the arguments' repr, cut short."""
    import reprlib
    fn, args, kwargs = call
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    if module and module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    shorten = reprlib.Repr()
    shorten.maxstring = shorten.maxother = 30
    text = ", ".join([shorten.repr(a) for a in args] + [f"{k}={shorten.repr(v)}" for k, v in kwargs.items()])
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name}({text})"


def _stopped_error(cause, exitcode, call, limit):
    from ._errors import TaskTimeout, WorkerDied
    if cause == _TIMED_OUT:
        return TaskTimeout(f"the task {_describe_call(call)} ran longer than its task_timeout of "
                           f"{limit:g} s; its worker process was stopped and replaced")
    if cause == _WORKER_DIED:
        if exitcode is None:
            how = "exit code unknown"
        else:
            how = f"killed by signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"
        return WorkerDied(f"The worker process running the task {_describe_call(call)} died ({how}); "
                          f"it was replaced", exitcode)
    return _base.CancelledError()


_pools = weakref.WeakSet()  # handles of pools whose manager runs, for interpreter exit
_managers = weakref.WeakSet()


def _python_exit():
    _cfutures._set_process_interpreter_shutdown()
    for handle in list(_pools):
        handle.shutdown(False)
    for thread in list(_managers):
        thread.join()


try:
    threading._register_atexit(_python_exit)
except AttributeError:  # pragma: no cover
    import atexit
    atexit.register(_python_exit)


def _after_fork_in_child():
    global _pools, _managers
    # Pools inherited from the parent belong to threads that do not exist here (their locks may
    # be held forever): forget them. multiprocessing's fork children run threading's exit hooks.
    _pools = weakref.WeakSet()
    _managers = weakref.WeakSet()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _default_max_workers():
    cpus = os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()
    return cpus or 1


_manager_ids = itertools.count()


def _run_manager(handle, ready, stopped):
    ready.set()
    handle.run_manager()  # releases the GIL at once; returns once the pool has stopped
    stopped()


class _PoolHost:
    """What the native pool asks of Python (src/bindings/process_pool.cpp, struct ProcessHost;
    the thread pool's host has the same shape, cfutures/thread.py).

    The native side looks these up once, when the executor is made:
      start(workers, manager) -> (started, error): starts `workers` worker processes, then, given
                               a handle, the manager thread running manager.run_manager(); one
                               call for all of it (the first submit's only call back into
                               Python besides pickling). `started` lists (pid, task_fd,
                               result_fd, attachment_fd, exit_fd) per worker started, the
                               parent's ends of its channel and a descriptor readable once it
                               exits (its sentinel's copy, or -1), all now the native pool's
                               (exit_fd stands in for a pidfd where pidfd_open is refused);
                               `error` is None, or the
                               exception that stopped the starting (nothing after it started)
      reap(pids)            -> {pid: exitcode}: join worker processes that have exited
      dumps(obj), dumps_call(fn, args, kwargs) -> (payload, attachments); buffer_threshold:
      arguments this large go through dumps_call; plain_dumps(call, protocol), when not None,
      pickles a call whose function is a plain function and whose arguments are all of
      plain_types (smaller than buffer_threshold), natively checked: _pickling's fast path
      without a Python frame;
      unpickle(payload) -> obj, and when type(obj) is packed_type, unpack(obj, attachments)
      -> the answer (_pickling.loads in two steps: most answers need only the first, in C);
      stopped_error(cause, exitcode, call, limit) -> the exception of a task whose worker was
                   stopped or died (call: its (fn, args, kwargs); limit: its task_timeout)
      while the pool goes on.
    """

    buffer_threshold = _pickling.THRESHOLD
    unpickle = staticmethod(pickle.loads)
    packed_type = _pickling.Packed
    unpack = staticmethod(_pickling.unpack)
    stopped_error = staticmethod(_stopped_error)

    plain_types = tuple(_pickling.PLAIN_TYPES)
    protocol = _pickling.PROTOCOL

    def __init__(self, mp_context, initializer, initargs, max_tasks_per_child, pickling,
                 max_worker_memory=None, replaces_workers=False):
        self.pickling = pickling
        self.dumps = pickling.dumps
        self.dumps_call = pickling.dumps_call
        self.plain_dumps = pickle.dumps if pickling.name is None else None
        self.mp_context = mp_context
        self.initializer = initializer
        self.initargs = initargs
        self.max_tasks_per_child = max_tasks_per_child or 0
        self.max_worker_memory = max_worker_memory  # bytes, or None: the worker reads no RSS
        self.processes = {}  # pid -> multiprocessing.Process: executor._processes
        self.manager_thread = None
        self._lock = threading.Lock()
        # Under 'fork', the workers that start once the manager runs are forked by a zygote
        # (cfutures/_zygote.py), made with the first ones.
        self.wants_zygote = replaces_workers and mp_context.get_start_method() == "fork"
        self.zygote = None

    def start(self, workers, manager):
        started = []
        try:
            for _ in range(workers):
                started.append(self._start_worker())
            if manager is not None:
                if self.wants_zygote and self.zygote is None:
                    from . import _zygote  # only pools that replace workers under 'fork'
                    self.zygote = _zygote.Zygote(self.mp_context, _run_process_worker,
                                                 self._worker_args())
                self._start_manager(manager)
        except BaseException as error:  # Ctrl-C too: the native side must learn what started
            if manager is not None:
                # No manager would ever stop what this call started (and multiprocessing would
                # wait for those workers at exit): it stops them itself. A later submit starts
                # the pool again.
                self._stop_unmanaged(started)
                started = []
            return started, error
        return started, None

    def _stop_unmanaged(self, started):
        """Kills and joins the workers of ``started`` (none has had a task) and the zygote, and
        closes the parent's ends of their channels."""
        for pid, *fds in started:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
            with self._lock:
                process = self.processes.pop(pid, None)
            if process is not None:
                process.kill()
                process.join()
        if self.zygote is not None:
            zygote, self.zygote = self.zygote, None
            zygote.close()
            zygote.process.join(30)

    def _start_worker(self):
        # The channel (src/core/protocol.hpp): a pipe each way for frames, a socketpair for the
        # descriptors of attachments.
        ends = [self.mp_context.Pipe(duplex=False), self.mp_context.Pipe(duplex=False),
                self.mp_context.Pipe(duplex=True)]
        (task_reader, task_writer), (result_reader, result_writer), (attachments, worker_attachments) = ends
        try:
            if self.zygote is not None:
                p = self.zygote.start_worker(task_reader, result_writer, worker_attachments)
            else:
                p = self.mp_context.Process(
                    target=_run_process_worker,
                    args=(task_reader, result_writer, worker_attachments, *self._worker_args()))
                p.start()
        except BaseException:
            for pair in ends:
                for conn in pair:
                    conn.close()
            raise
        # The worker has its ends now; ours become plain non-blocking descriptors.
        fds = []
        for mine, theirs in ((task_writer, task_reader), (result_reader, result_writer),
                             (attachments, worker_attachments)):
            theirs.close()
            fds.append(os.dup(mine.fileno()))
            mine.close()
            os.set_blocking(fds[-1], False)
        sentinel = getattr(p, "sentinel", None)  # (a zygote's worker has none)
        fds.append(os.dup(sentinel) if sentinel is not None else -1)
        with self._lock:
            self.processes[p.pid] = p
        return (p.pid, *fds)

    def _worker_args(self):
        # What _run_process_worker takes after the worker's three channel ends.
        return (self.initializer, self.initargs, self.max_tasks_per_child, os.getpid(),
                self.pickling.name, self.max_worker_memory)

    def _stopped(self):
        # The manager loop returned: every worker has exited and been reaped.
        if self.zygote is not None:
            self.zygote.close()
            # It leaves at once: the workers it would join have all been reaped.
            self.zygote.process.join(30)

    def _start_manager(self, handle):
        # Once per pool (the native side claims the call; again only if this raised).
        ready = threading.Event()
        t = threading.Thread(target=_run_manager, args=(handle, ready, self._stopped),
                             name=f"cfutures-process-pool-{next(_manager_ids)}")
        t.start()
        # The manager dispatches without the GIL, but it must first get the GIL once to enter
        # its loop; without this wait, a burst of submits holding the GIL would keep it out (and
        # shutdown(cancel_futures=True) would cancel everything).
        ready.wait()
        self.manager_thread = t
        _pools.add(handle)
        _managers.add(t)

    def reap(self, pids):
        exitcodes = {}
        for pid in pids:
            with self._lock:
                p = self.processes.pop(pid, None)
            if p is not None:
                p.join()
                exitcodes[pid] = p.exitcode
        return exitcodes


def _check_max_worker_memory(max_worker_memory):
    if max_worker_memory is None:
        return None
    if isinstance(max_worker_memory, bool) or not isinstance(max_worker_memory, int):
        raise TypeError("max_worker_memory must be an integer number of bytes or None")
    if max_worker_memory <= 0:
        raise ValueError("max_worker_memory must be a positive number of bytes or None")
    return max_worker_memory


class _CallQueueView:
    """Stand-in for the stdlib's executor._call_queue: there is no shared queue here (each worker
    has its own pipe); code that joins or closes it at shutdown keeps working."""

    def close(self):
        pass

    def join_thread(self):
        pass

    def cancel_join_thread(self):
        pass


@_base._stdlib_docstrings
class ProcessPoolExecutor(_cfutures.ProcessPoolBase, _base.Executor,
                          _std_process.ProcessPoolExecutor):
    """An Executor that runs calls in a pool of worker processes.

    A drop-in for concurrent.futures.ProcessPoolExecutor (and an instance of it).
    """

    def __new__(cls, *args, **kwargs):
        # The stdlib's pool in a program whose threading gevent or eventlet patched (_green.py).
        instead = _green.stdlib_pool_instead(cls, args, kwargs)
        return instead if instead is not None else super().__new__(cls)

    def __init__(self, max_workers=None, mp_context=None,
                 initializer=None, initargs=(), *, max_tasks_per_child=None,
                 task_timeout=None, cancel_running=False, on_worker_death="break",
                 pickler=None, max_queue=None, max_worker_memory=None):
        """Initializes a new ProcessPoolExecutor instance.

        Args:
            max_workers: The maximum number of processes that can be used to
                execute the given calls. If None or not given then as many
                worker processes will be created as the machine has processors.
            mp_context: A multiprocessing context to launch the workers created
                using the multiprocessing.get_context('start method') API. This
                object should provide SimpleQueue, Queue and Process.
            initializer: A callable used to initialize worker processes.
            initargs: A tuple of arguments to pass to the initializer.
            max_tasks_per_child: The maximum number of tasks a worker process
                can complete before it will exit and be replaced with a fresh
                worker process. The default of None means worker process will
                live as long as the executor. Requires a non-'fork' mp_context
                start method. When given, we default to using 'spawn' if no
                mp_context is supplied.
            task_timeout: (cfutures, opt-in) Seconds a task may run, counted from when
                its worker starts it. A task running longer has its worker killed and
                replaced, and its future fails with cfutures.TaskTimeout; the tasks
                sent ahead to that worker run on. None (the default): no limit.
            cancel_running: (cfutures, opt-in) If true, Future.cancel() on a running
                task stops it: its worker is killed and replaced, cancel() returns True
                and the future ends CANCELLED (callbacks and waiters fire as for any
                cancel). A task sent ahead to a worker and not started is taken back.
                If its result arrives first, cancel() returns False, as for a
                finished future.
            on_worker_death: (cfutures, opt-in) "break" (the default, the stdlib's
                behaviour): a worker that dies breaks the pool. "replace": it fails
                only the task it was running, with cfutures.WorkerDied, and is
                replaced; a worker whose initializer fails still breaks the pool.
            max_queue: (cfutures, opt-in) At most this many tasks wait to be sent to a
                worker: submit() then blocks (GIL released, Ctrl-C works) until one is
                sent, or see options(block=, block_timeout=); map() submits as its
                results are taken. None (the default): no bound, as the stdlib.
            pickler: (cfutures, opt-in) "cloudpickle" sends calls and answers with
                cloudpickle (the cfutures[cloudpickle] extra): lambdas, closures and
                functions of __main__ or a notebook run under any start method (a
                script read from stdin needs fork). None (the default): the standard
                pickler.
            max_worker_memory: (cfutures, opt-in) Bytes of resident memory (RSS) a
                worker process may keep. After each task, a worker above it runs a
                garbage collection, and if still above, exits cleanly and is replaced;
                the tasks sent ahead to it run elsewhere, none fails. A worker's RSS
                stays under this bound plus one task's growth. None (the default): no
                bound, and no worker reads its RSS.

        No option changes the start method. Under 'fork', the workers that replace
        others are forked by the pool's zygote, a copy of the program made with the
        first workers, before the pool's threads start (cfutures/_zygote.py).
        """
        # No _check_system_limits(): it imports multiprocessing.synchronize (about 1.6M
        # instructions, a tenth of a pool's start) to refuse platforms without POSIX semaphores,
        # which the stdlib's queues need and this pool does not use.
        if max_workers is None:
            max_workers = _default_max_workers()
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if mp_context is None:
            if max_tasks_per_child is not None:
                mp_context = mp.get_context("spawn")
            else:
                mp_context = mp.get_context()
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            elif max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
            if mp_context.get_start_method(allow_none=False) == "fork":
                # https://github.com/python/cpython/issues/90622
                raise ValueError("max_tasks_per_child is incompatible with"
                                 " the 'fork' multiprocessing start method;"
                                 " supply a different mp_context.")
        _base._submit_options(task_timeout=task_timeout)
        max_queue = _base._check_max_queue(max_queue)
        max_worker_memory = _check_max_worker_memory(max_worker_memory)
        pickling = _pickling.Pickling(pickler) if pickler is not None else _pickling._STANDARD
        if on_worker_death not in ("break", "replace"):
            raise ValueError('on_worker_death must be "break" or "replace"')
        if not isinstance(cancel_running, bool):
            raise TypeError(f"cancel_running must be True or False, not {cancel_running!r}")
        # Under 'fork', all workers start at once, before any thread of ours exists (forking a
        # process that has threads can deadlock the child), as in the stdlib.
        start_all = mp_context.get_start_method(allow_none=False) == "fork"
        replaces_workers = (task_timeout is not None or bool(cancel_running)
                            or on_worker_death == "replace" or max_worker_memory is not None)
        self._host = _PoolHost(mp_context, initializer, initargs, max_tasks_per_child, pickling,
                               max_worker_memory, replaces_workers)
        super().__init__(max_workers, start_all, max_tasks_per_child or -1, self._host,
                         task_timeout, on_worker_death == "replace", bool(cancel_running),
                         max_worker_memory is not None, max_queue or 0)
        self._max_queue = max_queue
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._initializer = initializer
        self._initargs = initargs
        self._max_tasks_per_child = max_tasks_per_child
        self._max_worker_memory = max_worker_memory
        self._safe_to_dynamically_spawn_children = not start_all
        self._processes = self._host.processes
        self._call_queue = _CallQueueView()
        self._shutdown_lock = threading.Lock()
        self._cancel_pending_futures = False

    @property
    def _pending_work_items(self):
        """The tasks submitted and not yet reported, as the stdlib's {work id: _WorkItem} (a
        snapshot: changing it changes nothing in the pool)."""
        return {work_id: _std_process._WorkItem(*job)
                for work_id, job in self._pending_jobs().items()}

    @property
    def _executor_manager_thread(self):
        """The thread running the native manager loop (None until the first submit)."""
        return self._host.manager_thread

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        """Returns an iterator equivalent to map(fn, iter).

        Args:
            fn: A callable that will take as many arguments as there are
                passed iterables.
            timeout: The maximum number of seconds to wait. If None, then there
                is no limit on the wait time.
            chunksize: If greater than one, the iterables will be chopped into
                chunks of size chunksize and submitted to the process pool.
                If set to one, the items in the list will be sent one at a time.
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
        return _map(self, fn, iterables, timeout, chunksize, buffersize)

    def options(self, *, task_timeout=None, priority=0, block=True, block_timeout=None):
        """(cfutures, opt-in) A view of this executor whose submit() and map() give each task
        they create (each chunk, for map with chunksize) these options:

        task_timeout: seconds from when the task starts (see __init__); map()'s own timeout=
            keeps its meaning.
        priority: lower starts first; equal priorities keep submission order; 0 is every
            plain submit's. A queue order only: running tasks are not preempted, and a task
            already sent ahead to a worker starts before a later one with a lower priority.
        block, block_timeout: what submit() does while the queue is at its max_queue bound:
            wait (the default), wait at most block_timeout seconds, or (block=False) raise
            cfutures.QueueFull at once.

        The view keeps the executor alive and has no shutdown(). `with ex.options(...) as
        view:` means `with ex:`: the executor itself is shut down when the block ends. To
        scope options inside a longer-lived pool, keep the view in a variable instead."""
        return _base._ExecutorOptions(self, task_timeout=task_timeout, priority=priority, block=block,
                                      block_timeout=block_timeout)

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._cancel_pending_futures = self._cancel_pending_futures or cancel_futures
            self._shutdown_pool(cancel_futures)
            # As the stdlib, which lets go of them here (the pool still tracks its processes).
            self._call_queue = None
            self._processes = None
        manager = self._executor_manager_thread
        if wait and manager is not None:
            manager.join()

    def _force_shutdown(self, operation):
        # As 3.15's (3.14.10's too): an unknown operation is refused before anything stops.
        if operation not in ("terminate", "kill"):
            raise ValueError(f"Unsupported operation: {operation!r}")
        # dict.copy(), one step also on a free-threaded build: the manager thread removes the
        # workers it reaps meanwhile, and a loop over the live dict would fail.
        processes = list((self._processes or {}).copy().values())
        self.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            try:
                if not p.is_alive():
                    continue
                if operation == "terminate":
                    p.terminate()
                else:
                    p.kill()
            except (ValueError, ProcessLookupError):
                continue  # already exited (or closed)

    def terminate_workers(self):
        """Attempts to terminate all living worker processes immediately (SIGTERM), then shuts
        the executor down. Do not submit tasks afterwards."""
        self._force_shutdown(operation="terminate")

    def kill_workers(self):
        """Attempts to kill all living worker processes immediately (SIGKILL), then shuts the
        executor down. Do not submit tasks afterwards."""
        self._force_shutdown(operation="kill")


def _map(executor, fn, iterables, timeout, chunksize, buffersize):
    # cfutures/_map_chunks.py, imported by the first map(): not on the way to a first result.
    from ._map_chunks import map_in_chunks
    return map_in_chunks(executor, fn, iterables, timeout, chunksize, buffersize)


def __getattr__(name):
    if name in ("TaskTimeout", "WorkerDied"):  # this module's names too, loaded on first use
        from . import _errors
        return getattr(_errors, name)
    # Everything else is the stdlib module's (the same objects): pickles that name
    # concurrent.futures.process (_process_chunk, _rebuild_exc, ...) must resolve under
    # cfutures.install() too.
    return getattr(_std_process, name)
