"""What runs on the Dask cluster for cfutures.dask.DaskExecutor: in a worker, one call unpacked from
the bytes the client captured at submit, its outcome packed back into bytes, and the reports of
which tasks started; on the scheduler, the cancellation of tasks that have not started; and the
process of a local cluster (serve_local_cluster, for ``run --dask local``).

It imports only the standard library, cloudpickle and distributed, never the compiled module: the
cluster's processes need the cfutures package installed, not loaded.

Task keys: ``{name}-cfutures{token}-{seq}`` (task_key): the function's name first, as Dask's
dashboards group keys by it; then the executor's token and the task's number in that executor,
which is how a start report names a task (TaskStartReporter).

The wire format (the client side is cfutures.dask._pack_call):
- a *piece* is either ``bytes`` (a pickle sent inline in the task) or an ``int``: the index of a
  shared blob, a large pickle the client scattered once and passes as one of the task's trailing
  arguments, which Dask resolves to the blob's bytes before the call;
- ``init`` is None or ``(token, piece)``: the executor's initializer and initargs, run once per
  worker process and executor token before that executor's first task there;
- ``call`` is ``(pieces, nargs, kwnames)``: with ``nargs == -1`` the single piece is the whole
  ``(fn, args, kwargs)``; otherwise the pieces are fn, the nargs positional arguments, then the
  values of the keyword arguments named by kwnames.
- A function of the client's ``__main__`` (a script's, a notebook's) travels by value, wrapped in
  ``main_function(token, payload)``: in the worker it is rebound to one namespace per executor
  token and process, shared by the executor's ``__main__`` functions (its initializer included),
  so that a global one of them sets is seen by the others, as in the ``__mp_main__`` of the
  stdlib's spawned workers. Plain cloudpickle would give each call fresh globals.
- The answer is the pickle of ``(tag, value)``: RESULT and the result, EXCEPTION and the exception
  wrapped with its traceback (the stdlib's _ExceptionWithTraceback: the client re-raises it with
  the remote traceback as ``__cause__``), or BROKEN and the traceback text of a failed initializer.
"""

import builtins
import logging
import os
import pickle
import sys
import sysconfig
import threading
import traceback
import types

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # cfutures.dask imported without distributed: DaskExecutor() says what to install
    WorkerPlugin = object

RESULT, EXCEPTION, BROKEN = 0, 1, 2

_KEY_MARK = "-cfutures"


def task_key(name, token, seq):
    return f"{name}{_KEY_MARK}{token}-{seq}"


def parse_key(key):
    """``(token, seq)`` of a key task_key made, None for any other key."""
    if not isinstance(key, str):
        return None
    mark = key.rfind(_KEY_MARK)
    if mark < 0:
        return None
    token, _, seq = key[mark + len(_KEY_MARK):].partition("-")
    return (token, int(seq)) if seq.isdigit() else None


# The event topic of start reports: one for every client of the cluster (the scheduler keeps a
# bounded log per topic, and never forgets a topic); each client keeps the tokens it knows.
START_TOPIC = "cfutures-task-starts"

# How long a worker gathers the starts of tasks before it reports them: one message per worker
# and interval, not one per task.
START_REPORT_SECONDS = 0.02


class TaskStartReporter(WorkerPlugin):
    """A worker plugin (one per worker, registered by each client once) that reports the tasks
    of cfutures executors that start executing, in batches: every START_REPORT_SECONDS at most,
    one event ``{token: [seq, ...]}`` on START_TOPIC, which the scheduler passes to the clients
    that subscribed. Runs in the worker's event loop (transition hooks and the flush alike), so
    it needs no lock."""

    idempotent = True  # registering it again (another executor, another client) changes nothing
    name = "cfutures-task-starts"

    def setup(self, worker):
        self._worker = worker
        self._started = {}  # token -> [seq] not yet reported
        self._flush_due = False

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        parsed = parse_key(key)
        if parsed is None:
            return
        self._started.setdefault(parsed[0], []).append(parsed[1])
        if not self._flush_due:
            self._flush_due = True
            self._worker.loop.call_later(START_REPORT_SECONDS, self._flush)

    def _flush(self):
        self._flush_due = False
        started, self._started = self._started, {}
        if started:
            self._worker.log_event(START_TOPIC, started)

# Executor tokens whose initializer ran in this process: None when it succeeded, the failure's
# traceback text otherwise. The lock makes one of the worker's threads run it while the others
# wait for the outcome.
_initialized = {}
_init_lock = threading.Lock()


# Executor token -> the namespace of its __main__ functions in this process. Its own lock: the
# initializer, unpickled under _init_lock, may be one of them.
_main_namespaces = {}
_namespaces_lock = threading.Lock()


def main_function(token, payload):
    """Unpickles a function of the client's __main__, bound to the executor's namespace here."""
    fn = pickle.loads(payload)
    with _namespaces_lock:
        namespace = _main_namespaces.get(token)
        if namespace is None:
            namespace = _main_namespaces[token] = {"__builtins__": builtins,
                                                   "__name__": "__main__"}
    shipped = fn.__globals__  # what cloudpickle sent: the globals the function's code names
    adopted = [name for name in shipped if name not in namespace]
    for name in adopted:
        namespace[name] = shipped[name]
    # Functions shipped along (called by fn) share the namespace too.
    for name in adopted:
        if _is_main_function(namespace[name]):
            namespace[name] = _rebind(namespace[name], namespace)
    return _rebind(fn, namespace)


def _is_main_function(value):
    return isinstance(value, types.FunctionType) and value.__module__ == "__main__"


def _rebind(fn, namespace):
    rebound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__,
                                 fn.__closure__)
    rebound.__kwdefaults__ = fn.__kwdefaults__
    rebound.__qualname__ = fn.__qualname__
    rebound.__dict__.update(fn.__dict__)
    return rebound


def _load(piece, blobs):
    return pickle.loads(blobs[piece] if isinstance(piece, int) else piece)


def _answer(tag, value):
    import cloudpickle
    return cloudpickle.dumps((tag, value), protocol=pickle.HIGHEST_PROTOCOL)


def _exception_answer(exc):
    from concurrent.futures.process import _ExceptionWithTraceback
    try:
        return _answer(EXCEPTION, _ExceptionWithTraceback(exc, exc.__traceback__))
    except Exception as unpicklable:
        # The exception itself does not pickle: say so, with the original's traceback text.
        error = RuntimeError(f"the task raised an exception that cannot be sent back "
                             f"({unpicklable!r}): {exc!r}")
        return _answer(EXCEPTION, _ExceptionWithTraceback(error, exc.__traceback__))


def _initialize(init, blobs):
    token, piece = init
    with _init_lock:
        if token not in _initialized:
            try:
                initializer, initargs = _load(piece, blobs)
                initializer(*initargs)
                _initialized[token] = None
            except BaseException:
                _initialized[token] = traceback.format_exc()
        return _initialized[token]


def run_call(init, call, *blobs):
    """The Dask task of one submit (or one map chunk): returns the packed outcome."""
    if init is not None:
        failure = _initialize(init, blobs)
        if failure is not None:
            return _answer(BROKEN, failure)
    try:
        pieces, nargs, kwnames = call
        if nargs < 0:
            fn, args, kwargs = _load(pieces[0], blobs)
        else:
            fn = _load(pieces[0], blobs)
            args = [_load(p, blobs) for p in pieces[1:1 + nargs]]
            kwargs = {name: _load(p, blobs) for name, p in zip(kwnames, pieces[1 + nargs:])}
        result = fn(*args, **kwargs)
    except BaseException as exc:
        return _exception_answer(exc)
    try:
        return _answer(RESULT, result)
    except BaseException as exc:
        return _exception_answer(exc)


# The scheduler's task states before one is handed to a worker: a task in any other state may be
# running (with the default worker saturation, the scheduler hands a worker only what it can
# start), or is done.
_NOT_STARTED = frozenset({"released", "waiting", "queued", "no-worker"})


def cancel_unstarted(keys, client_id, dask_scheduler=None):
    """Runs on the scheduler's event loop (Client.run_on_scheduler), so nothing moves between the
    check and the cancel: cancels those of ``keys`` that no worker has, and returns
    ``(cancelled, unknown)``: unknown keys have not reached the scheduler yet."""
    cancelled, unknown = [], []
    for key in keys:
        task = dask_scheduler.tasks.get(key)
        if task is None:
            unknown.append(key)
        elif task.state in _NOT_STARTED:
            cancelled.append(key)
    if cancelled:
        try:
            dask_scheduler.stimulus_cancel(cancelled, client_id, force=False,
                                           reason="cancelled by cfutures", msg=None)
        except TypeError:  # distributed before 2024.11 takes neither reason nor msg
            dask_scheduler.stimulus_cancel(cancelled, client_id, force=False)
    return cancelled, unknown


# CPython 3.13's free-threaded build reads another thread's frames unsafely: a frame taken from
# sys._current_frames() can be freed while it is read (python/cpython#152355, fixed in 3.14 and
# not backported). Dask's statistical profiler does exactly that, every 10 ms, in every
# scheduler, nanny and worker process; on 3.13t it segfaulted a worker mid-task in CI.
FRAMES_OF_OTHER_THREADS_UNSAFE = (bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
                                  and sys.version_info < (3, 14))


def cluster_config():
    """The Dask settings of a cluster cfutures starts (serve_local_cluster, DaskExecutor() without
    an address): a task fails at its worker's first death, and where reading another thread's
    frames can crash the interpreter, Dask's profiler is off."""
    config = {"distributed.scheduler.allowed-failures": 0}
    if FRAMES_OF_OTHER_THREADS_UNSAFE:
        config["distributed.worker.profile.enabled"] = False
    return config


def serve_local_cluster(address_fd):
    """The process of cfutures.dask.LocalClusterProcess: a LocalCluster on 127.0.0.1 with the
    settings of cluster_config(); writes the scheduler's address to ``address_fd`` and
    serves until stdin closes. CFUTURES_DASK_WORKERS, if set, is its number of worker processes
    (one thread each)."""
    import dask
    import distributed
    with dask.config.set(cluster_config()):
        workers = os.environ.get("CFUTURES_DASK_WORKERS")
        shape = {"n_workers": int(workers), "threads_per_worker": 1} if workers else {}
        # No dashboard, and the scheduler's HTTP server on a free port: its default, 8787, warns
        # when taken (by another cluster of the machine).
        http = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
        with distributed.LocalCluster(host="127.0.0.1", scheduler_kwargs=http,
                                      **shape) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            with open(address_fd, "w") as address:
                address.write(cluster.scheduler_address + "\n")
            sys.stdin.read()
            # The run is over. Dask's close races the workers' heartbeats against the
            # scheduler's and logs the losers' tracebacks (seen under load), which would end
            # the user's run with a traceback that is not theirs: nothing of the cluster logs now.
            client.run(logging.disable, logging.CRITICAL, nanny=True)
            client.run(logging.disable, logging.CRITICAL)
            logging.disable(logging.CRITICAL)
