"""cfutures.dask: the concurrent.futures executor API, with the stdlib's semantics, on a Dask
cluster (the ``cfutures[dask]`` extra: ``distributed``).

    from cfutures.dask import DaskExecutor

    with DaskExecutor("tcp://scheduler:8786") as ex:        # or DaskExecutor() for a LocalCluster
        for result in ex.map(work, items, chunksize=1000):
            ...

One submit, from the caller to a Dask worker and back:
  * ``submit`` pickles the call at once (cloudpickle: functions of ``__main__`` travel by value),
    so what runs is what the arguments were at submit, as with the stdlib's executors. A piece of
    the call larger than _LARGE is sent once per executor as a shared blob (Client.scatter),
    found again by the digest of its bytes, and released when no task of the executor uses it.
  * The task waits in a local queue while ``max_workers`` tasks are already with Dask, then goes
    to ``Client.submit`` with a key of its own (no deduplication: every submit runs) as
    ``_dask_remote.run_call``, which unpacks the call in the worker and packs its outcome.
  * The executor's collector thread (``_collect``, alive while tasks are with Dask) takes the
    outcomes Dask fetched in batches (distributed.as_completed) and completes each cfutures
    Future: a result, the task's own exception with the remote traceback as ``__cause__``, or a
    clear error when Dask could not run it (WorkerDied when the worker running it died; a client
    that lost its scheduler breaks the executor, so nothing waits on it).
  * ``Future.cancel()`` succeeds for a task in the local queue, and for one with Dask that the
    scheduler has not handed to a worker: the check and the cancel run together on the
    scheduler's event loop (_dask_remote.cancel_unstarted). A task a worker holds may be running:
    cancel() returns False, as for a running task of the stdlib's pools.

Lock: ``_lock`` guards the executor's bookkeeping (the local queue, the tasks with Dask, the
shared blobs, the shutdown and broken flags). It is never held while calling Dask or completing a
future (whose callbacks run user code).

Invariant: every future submitted ends with a result, an exception or cancelled, whatever Dask
does (a lost worker, a closed client, a cancel from elsewhere).
"""

import atexit
import collections
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
import types
import uuid
import warnings
import weakref
from concurrent.futures import process as _std_process

from . import _base, _dask_remote
from ._errors import WorkerDied

BrokenProcessPool = _std_process.BrokenProcessPool

# A pickled piece of a call at least this large is sent once as a shared blob rather than inside
# each task (Dask warns about large graphs from 1 MB; below 64 KiB a scatter's round trip costs
# more than sending the bytes again).
_LARGE = 64 * 1024

# How long cancel() waits for a task just submitted to reach the scheduler (the submit travels on
# the client's batched stream, the cancel check on its own connection).
_CANCEL_REACH_SECONDS = 2.0


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("cfutures.dask needs Dask distributed: pip install 'cfutures[dask]'") \
            from exc
    return distributed


def _dumps(obj, token):
    """cloudpickle, with the functions of __main__ wrapped for _dask_remote.main_function."""
    import io

    import cloudpickle

    class CallPickler(cloudpickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, types.FunctionType) and obj.__module__ == "__main__":
                return _dask_remote.main_function, (token, cloudpickle.dumps(
                    obj, protocol=pickle.HIGHEST_PROTOCOL))
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    CallPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _Task:
    """One submit: its future, its packed call, and where it is (QUEUED here, SENT to Dask,
    DONE)."""

    QUEUED, SENT, DONE = "queued", "sent", "done"
    __slots__ = ("executor_ref", "future", "call", "digests", "key", "state", "dask_future",
                 "cancelling", "cancelled_by_dask")

    def __init__(self, executor, future, call, digests, key):
        self.executor_ref = weakref.ref(executor)
        self.future = future
        self.call = call          # (pieces, nargs, kwnames): see _dask_remote
        self.digests = digests    # the shared blobs its pieces index, in order
        self.key = key
        self.state = _Task.QUEUED
        self.dask_future = None
        self.cancelling = False         # a cancel is asking the scheduler
        self.cancelled_by_dask = False  # Dask cancelled it while that cancel asked


class DaskFuture(_base.Future):
    """A cfutures Future whose cancel() can take a task back from the Dask scheduler.

    It stays PENDING while its task is with Dask (running() is False: Dask does not tell the
    client when a task starts) and ends as any cfutures Future."""

    def cancel(self):
        """Cancels the task if it has not started, as far as Dask can tell: True for a task still
        queued by the executor or by the scheduler, False for one a worker holds (it may be
        running) or that is done."""
        task = self.__dict__.get("_task")
        executor = task.executor_ref() if task is not None else None
        if executor is None:
            return super().cancel()
        return executor._cancel(task, self)


class DaskExecutor(_base.Executor):
    """A concurrent.futures Executor that runs calls on a Dask cluster.

    Args:
        address: the scheduler's address. None, and no client: ``distributed.Client(
            **client_kwargs)``, which starts a LocalCluster; the executor owns that cluster (a
            worker that dies fails its task at once, see below) and closes it at shutdown.
        client: an existing ``distributed.Client`` to use; the executor leaves it open.
        max_workers: at most this many tasks with Dask at once, the rest wait in the executor
            (where cancel() always succeeds). None: every task goes to Dask as it is submitted.
        initializer, initargs: ``initializer(*initargs)`` runs once in each Dask worker process
            before its first task of this executor. If it raises, the executor is broken: that
            task and every later one fail with BrokenProcessPool.
        client_kwargs: passed to ``distributed.Client``.

    Semantics are the stdlib's: every submit runs (no deduplication of identical calls); map()
    sends each chunk as one task and honours buffersize; shutdown(cancel_futures=True) cancels
    what has not started; exceptions come back with their own type and the remote traceback as
    __cause__. A task whose worker dies fails with cfutures.WorkerDied, once Dask gives up on it:
    a cluster this executor starts gives up at the first death (allowed-failures=0); another
    cluster retries the task on other workers up to its ``distributed.scheduler.allowed-failures``
    (3 by default), and a task that then succeeds gives its result. The cluster's processes need
    cfutures installed, as they need the modules of the functions they run.
    """

    def __init__(self, address=None, *, client=None, max_workers=None, initializer=None,
                 initargs=(), **client_kwargs):
        distributed = _distributed()
        if client is not None and (address is not None or client_kwargs):
            raise TypeError("give either a client or an address (and client keyword arguments)")
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._owns_client = client is None
        if client is None:
            if address is None:
                import dask
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    client = distributed.Client(**client_kwargs)
            else:
                client = distributed.Client(address, **client_kwargs)
        self._client = client
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._queued = collections.deque()  # _Task; cancelled ones are skipped when popped
        self._sent = {}                     # key -> _Task with Dask
        self._blobs = {}                    # digest -> [dask future, tasks using it]
        self._shutdown = False
        self._broken = None                 # the BrokenProcessPool message, once broken
        self._closer = None
        self._completions = distributed.as_completed(loop=client.loop, with_results=True,
                                                     raise_errors=False)
        self._collector = None  # the thread running _collect, while tasks are with Dask
        # Names this executor in the workers: its initializer's outcome, its __main__ namespace.
        self._token = uuid.uuid4().hex
        self._init = None
        self._init_digests = []
        if initializer is not None:
            piece, digests = self._pieces([self._dumps((initializer, tuple(initargs)))], [])
            self._init = (self._token, piece[0])
            self._init_digests = digests  # held for the executor's life
        _live_executors.add(self)

    # -- submit ----------------------------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            self._check_open()
        future = DaskFuture()
        try:
            call, digests = self._pack_call(fn, args, kwargs)
        except Exception as exc:
            # As the stdlib's process pool: what does not pickle fails the future, not submit.
            future.set_exception(exc)
            return future
        task = _Task(self, future, call, digests, _key_of(fn))
        future._task = task
        with self._lock:
            try:
                self._check_open()
            except BaseException:
                self._release_blobs_locked(task)
                raise
            self._queued.append(task)
        self._send_queued()
        return future

    def _check_open(self):
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _interpreter_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def _pack_call(self, fn, args, kwargs):
        """(pieces, nargs, kwnames) and the digests of the blobs the pieces index."""
        whole = self._dumps((fn, args, kwargs))
        if len(whole) < _LARGE:
            # The initializer's blob, if any, is among every task's arguments.
            digests = self._pieces([], list(self._init_digests))[1] if self._init_digests else []
            return ((whole,), -1, ()), digests
        # Large: pickle each part, so that a large argument shared by many tasks is sent once.
        pieces = [self._dumps(fn), *map(self._dumps, args), *map(self._dumps, kwargs.values())]
        pieces, digests = self._pieces(pieces, list(self._init_digests))
        return (tuple(pieces), len(args), tuple(kwargs)), digests

    def _dumps(self, obj):
        return _dumps(obj, self._token)

    def _pieces(self, pieces, digests):
        """Replaces each large piece by the index of its shared blob in ``digests`` (which may
        already name blobs: they are counted again), scattering blobs not yet with the cluster;
        counts one more user of each blob."""
        data = {}
        for i, piece in enumerate(pieces):
            if len(piece) >= _LARGE:
                digest = hashlib.blake2b(piece, digest_size=20).digest()
                if digest not in digests:
                    digests.append(digest)
                data[digest] = piece
                pieces[i] = digests.index(digest)
        for digest in digests:
            with self._lock:
                entry = self._blobs.get(digest)
                if entry is not None:
                    entry[1] += 1
                    continue
            # Scattered outside the lock: two threads scattering the same new blob at once each
            # send it, and the second's copy is dropped.
            dask_future = self._client.scatter(data[digest], hash=False)
            with self._lock:
                entry = self._blobs.setdefault(digest, [dask_future, 0])
                entry[1] += 1
        return pieces, digests

    # -- to Dask and back -------------------------------------------------------------------

    def _send_queued(self):
        """Sends queued tasks while fewer than max_workers are with Dask."""
        while True:
            with self._lock:
                task = None
                while self._queued and (self._max_workers is None
                                        or len(self._sent) < self._max_workers):
                    candidate = self._queued.popleft()
                    if candidate.state == _Task.QUEUED:
                        task = candidate
                        break
                if task is None:
                    return
                task.state = _Task.SENT
                self._sent[task.key] = task
                blobs = [self._blobs[d][0] for d in task.digests]
            try:
                dask_future = self._client.submit(_dask_remote.run_call, self._init, task.call, *blobs,
                                                  key=task.key, pure=False)
            except Exception as exc:
                self._finish(task, None, BrokenProcessPool(
                    f"the Dask client could not take the task: {exc!r}"), cause=exc)
                continue
            task.call = None  # with Dask now
            task.dask_future = dask_future
            with self._lock:
                if self._collector is None:
                    # It keeps the executor alive while tasks are with Dask, as the stdlib's
                    # worker threads keep theirs.
                    self._collector = threading.Thread(target=self._collect,
                                                       name="cfutures-dask-collector")
                    self._collector.start()
            self._completions.add(dask_future)

    def _collect(self):
        """The collector thread, while tasks are with Dask: completes their futures as Dask
        finishes them. Dask fetches the results of many tasks at once in its event loop
        (distributed.as_completed); the futures are completed here, never in that loop (their
        callbacks run user code, which may call Dask). It ends once no task is with Dask, even
        if Dask never reports on some (a dead client's: the executor failed them)."""
        completions = self._completions
        while True:
            batch = completions.next_batch(block=False)
            for dask_future, outcome in batch:
                with self._lock:
                    task = self._sent.get(dask_future.key)
                if task is not None and task.dask_future is dask_future:
                    self._on_done(task, dask_future.status, outcome)
            if batch:
                continue
            with self._lock:
                if not self._sent:
                    self._collector = None
                    return
            with completions.thread_condition:
                # Dask queues the outcome, then notifies under this lock: none is missed.
                if not completions.has_ready():
                    completions.thread_condition.wait(0.1)

    def _finish(self, task, answer, error=None, cause=None):
        """Ends a task: its bookkeeping, then its future (outside the lock)."""
        with self._lock:
            if task.state == _Task.DONE:
                return
            task.state = _Task.DONE
            self._sent.pop(task.key, None)
            self._release_blobs_locked(task)
        _settle(_detach(task), answer, error, cause)
        self._send_queued()

    def _release_blobs_locked(self, task):
        for digest in task.digests:
            entry = self._blobs.get(digest)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._blobs[digest]
        task.digests = ()

    def _on_done(self, task, status, outcome):
        """``outcome``: the task's answer (bytes) when ``status`` is "finished", what Dask
        raised otherwise: a ``(type, exception, traceback)`` or a CancelledError."""
        if status == "finished":
            try:
                tag, value = pickle.loads(outcome)
            except BaseException as exc:
                self._finish(task, None, BrokenProcessPool(
                    f"the task's answer could not be read: {exc!r}"), cause=exc)
                return
            if tag == _dask_remote.BROKEN:
                self._break(f"an initializer failed in a Dask worker:\n{value}")
                self._finish(task, None, BrokenProcessPool(self._broken))
            else:
                self._finish(task, (tag, value))
            return
        if status == "cancelled":
            with self._lock:
                if task.cancelling:  # ours: cancel() completes the future
                    task.cancelled_by_dask = True
                    return
            error = _cancelled_by_dask(outcome)
            if self._client.status != "running":
                # The client lost its scheduler or was closed: nothing sent now would run.
                self._break(str(error))
            self._finish(task, None, error)
            return
        exc = outcome[1] if isinstance(outcome, tuple) else outcome
        distributed = _distributed()
        if isinstance(exc, distributed.KilledWorker):
            self._finish(task, None, WorkerDied(
                f"the Dask worker running this task died ({exc})"), cause=exc)
        else:
            self._finish(task, None, BrokenProcessPool(
                f"Dask could not run the task ({status}): {exc!r}"), cause=exc)

    def _break(self, message):
        """The initializer failed: every task not done fails with BrokenProcessPool."""
        with self._lock:
            if self._broken is not None:
                return
            self._broken = message
            queued = [t for t in self._queued if t.state == _Task.QUEUED]
            self._queued.clear()
            sent = list(self._sent.values())
        dask_futures = [t.dask_future for t in sent if t.dask_future is not None]
        for task in (*queued, *sent):
            self._finish(task, None, BrokenProcessPool(message))
        if dask_futures:
            try:
                self._client.cancel(dask_futures)
            except Exception:
                pass

    # -- cancel ------------------------------------------------------------------------------

    def _cancel(self, task, future):
        with self._lock:
            state = task.state
            if state == _Task.QUEUED:
                task.state = _Task.DONE
                self._release_blobs_locked(task)
            elif state == _Task.SENT:
                if task.cancelling:
                    return False  # another cancel is asking the scheduler
                task.cancelling = True
        if state == _Task.QUEUED:
            return _cancel_future(_detach(task))
        if state == _Task.SENT:
            return self._cancel_on_scheduler([task])
        return _base.Future.cancel(future)

    def _cancel_on_scheduler(self, tasks):
        """Cancels those of ``tasks`` (SENT, cancelling) that the scheduler has not handed to a
        worker; completes their futures as cancelled. Returns whether all were."""
        by_key = {t.key: t for t in tasks}
        pending = list(by_key)
        cancelled = []
        deadline = time.monotonic() + _CANCEL_REACH_SECONDS
        while pending:
            try:
                done, unknown = self._client.run_on_scheduler(
                    _dask_remote.cancel_unstarted, pending, self._client.id)
            except Exception:
                break  # the scheduler is gone: nothing more can be taken back
            cancelled += done
            # A key unknown to the scheduler has not arrived yet, or is done and released.
            pending = [k for k in unknown if by_key[k].state == _Task.SENT]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.002)
        cancelled = set(cancelled)
        for key, task in by_key.items():
            with self._lock:
                task.cancelling = False
                ours = key in cancelled
                theirs = task.cancelled_by_dask and not ours
                if ours:
                    task.state = _Task.DONE
                    self._sent.pop(key, None)
                    self._release_blobs_locked(task)
            if ours:
                _cancel_future(_detach(task))
            elif theirs:
                self._finish(task, None, _cancelled_by_dask(None))
        if cancelled:
            self._send_queued()
        return len(cancelled) == len(by_key)

    # -- map, shutdown -----------------------------------------------------------------------

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        """Returns an iterator equivalent to map(fn, iter), as ProcessPoolExecutor.map: each
        chunk of ``chunksize`` items is one Dask task, and with ``buffersize`` at most that many
        chunks are submitted and not yet consumed."""
        from ._map_chunks import map_in_chunks
        return map_in_chunks(self, fn, iterables, timeout, chunksize, buffersize)

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            queued, sent = [], []
            if cancel_futures:
                queued = [t for t in self._queued if t.state == _Task.QUEUED]
                for task in queued:
                    task.state = _Task.DONE
                    self._release_blobs_locked(task)
                self._queued.clear()
                sent = [t for t in self._sent.values() if not t.cancelling]
                for task in sent:
                    task.cancelling = True
            outstanding = [t.future for t in (*self._queued, *self._sent.values())
                           if t.future is not None]
        for task in queued:
            _cancel_future(_detach(task))
        if sent:
            self._cancel_on_scheduler(sent)
        if wait:
            _base.wait(outstanding)
            collector = self._collector
            if collector is not None and collector is not threading.current_thread():
                collector.join()
            self._close_client()
        elif self._owns_client and self._closer is None:
            # The work goes on; the cluster closes when it is done.
            self._closer = threading.Thread(target=self._close_when_done, args=(outstanding,),
                                            name="cfutures-dask-closer")
            self._closer.start()

    def _close_when_done(self, outstanding):
        _base.wait(outstanding)
        collector = self._collector
        if collector is not None:
            collector.join()
        self._close_client()

    def _close_client(self):
        if self._owns_client:
            self._owns_client = False
            try:
                self._client.close()
            except Exception:
                pass
        _live_executors.discard(self)

    def __repr__(self):
        return f"<{type(self).__name__} on {self._client!r}>"


class ProcessPoolExecutor(DaskExecutor, _std_process.ProcessPoolExecutor):
    """What ``ProcessPoolExecutor`` is under ``python -m cfutures run --dask ADDRESS`` (and with
    CFUTURES_DASK=ADDRESS): the stdlib's constructor, running its calls on that Dask cluster.

    ``max_workers`` bounds the tasks with Dask at once (None: no bound), ``initializer(*initargs)``
    runs once in each Dask worker process before its first task of this executor. ``mp_context``
    and ``max_tasks_per_child`` do not apply to a cluster: they are ignored, with a warning.
    The opt-in keywords of cfutures' process pool (task_timeout, cancel_running,
    on_worker_death) are not supported there yet. Calls travel with cloudpickle whatever
    ``pickler`` says. Executors of one process share one client of the cluster."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *,
                 max_tasks_per_child=None, task_timeout=None, cancel_running=False,
                 on_worker_death="break", pickler=None):
        for name, given in (("task_timeout", task_timeout is not None),
                            ("cancel_running", bool(cancel_running)),
                            ("on_worker_death", on_worker_death != "break")):
            if given:
                raise NotImplementedError(f"ProcessPoolExecutor({name}=...) is not supported on a "
                                          f"Dask cluster (python -m cfutures run --dask)")
        if pickler not in (None, "cloudpickle"):
            raise ValueError(f"unknown pickler {pickler!r}")
        ignored = [name for name, value in (("mp_context", mp_context),
                                            ("max_tasks_per_child", max_tasks_per_child))
                   if value is not None]
        if ignored:
            warnings.warn(f"ProcessPoolExecutor: {' and '.join(ignored)} ignored: the pool runs "
                          f"on the Dask cluster at {_routed_address()}", RuntimeWarning,
                          stacklevel=2)
        super().__init__(client=_shared_client(), max_workers=max_workers,
                         initializer=initializer, initargs=initargs)


# -- CFUTURES_DASK and `run --dask`: the cluster process pools run on ---------------------------

_shared = None          # (pid, address, client) of this process
_shared_lock = threading.Lock()


def routed():
    """Whether process pools run on a Dask cluster here (CFUTURES_DASK is set)."""
    return bool(os.environ.get("CFUTURES_DASK"))


def _routed_address():
    """CFUTURES_DASK's scheduler address; ``local`` starts a LocalCluster for this process (its
    address then replaces ``local`` in the environment, so child processes share it)."""
    address = os.environ.get("CFUTURES_DASK", "")
    if address == "local":
        address = start_local_cluster().address
        os.environ["CFUTURES_DASK"] = address
    if not address:
        raise RuntimeError("CFUTURES_DASK is not set")
    return address


def _shared_client():
    global _shared
    with _shared_lock:
        address = _routed_address()
        if _shared is None or _shared[0] != os.getpid() or _shared[1] != address:
            client = _distributed().Client(address)
            _shared = (os.getpid(), address, client)
            atexit.register(client.close)  # before the local cluster stops (atexit is LIFO)
        return _shared[2]


class LocalClusterProcess:
    """A LocalCluster in a child process (started by start_local_cluster): its scheduler's
    ``address``; ``close()`` stops it (closing its stdin), as does this process's exit."""

    def __init__(self):
        _distributed()
        # Neither variable reaches the cluster's own processes (its workers, and those Dask
        # restarts): they never start clusters or route to one.
        env = {k: v for k, v in os.environ.items()
               if k not in ("CFUTURES_DASK", "CFUTURES_INSTALL")}
        # The address comes back on a pipe of its own: the cluster's stdout and stderr are this
        # process's, where its tasks' prints go, as a process pool's workers' do.
        read_end, write_end = os.pipe()
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-c",
                 f"from cfutures.dask import _serve_local_cluster as serve; serve({write_end})"],
                stdin=subprocess.PIPE, env=env, pass_fds=(write_end,))
        finally:
            os.close(write_end)
        with open(read_end) as address:
            self.address = address.readline().strip()
        if not self.address:
            self._child.wait()
            raise RuntimeError(f"the local Dask cluster did not start "
                               f"(exit code {self._child.returncode})")
        atexit.register(self.close)

    def close(self):
        if self._child.stdin.closed:
            return
        self._child.stdin.close()
        try:
            self._child.wait(30)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def start_local_cluster():
    """Starts a LocalCluster on 127.0.0.1 in a child process that lives as long as this process,
    and returns it (a LocalClusterProcess: its ``address``, ``close()``)."""
    return LocalClusterProcess()


def _serve_local_cluster(address_fd):
    """The child of LocalClusterProcess: a LocalCluster on 127.0.0.1 whose tasks fail at their
    worker's first death, serving until stdin closes. CFUTURES_DASK_WORKERS, if set, is its
    number of worker processes (one thread each)."""
    import dask
    distributed = _distributed()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
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


def _cancelled_by_dask(reason):
    """The error of a task Dask cancelled, not the executor: its client closed or lost the
    scheduler, or another client cancelled it."""
    detail = f": {reason}" if reason is not None and str(reason) else ""
    error = BrokenProcessPool(f"Dask cancelled the task{detail}")
    if isinstance(reason, BaseException):
        error.__cause__ = reason
    return error


def _detach(task):
    """The task's future, no longer linked to the task (the task is DONE)."""
    future, task.future, task.dask_future = task.future, None, None
    if future is not None:
        future.__dict__.pop("_task", None)
    return future


def _cancel_future(future):
    """PENDING -> CANCELLED_AND_NOTIFIED (waiters and callbacks fire), as an executor does for a
    future it cancelled before running it."""
    if future is None or not _base.Future.cancel(future):
        return False
    future.set_running_or_notify_cancel()
    return True


def _settle(future, answer, error, cause):
    if answer is not None:
        tag, value = answer
        if tag == _dask_remote.RESULT:
            future.set_result(value)
        else:
            future.set_exception(value)
        return
    if cause is not None:
        error.__cause__ = cause
    future.set_exception(error)


def _key_of(fn):
    """A Dask key of its own for each submit, named after the function (as dashboards group)."""
    inner = getattr(fn, "func", fn)  # a map chunk: functools.partial(process_chunk, fn)
    if (getattr(inner, "__module__", "") == "cfutures._map_chunks"
            and getattr(fn, "args", None)):
        inner = fn.args[0]
    name = getattr(inner, "__name__", type(inner).__name__)
    return f"{name}-{uuid.uuid4().hex}"


# -- interpreter exit: as the stdlib's pools, work submitted runs before the interpreter exits ----

_live_executors = weakref.WeakSet()
_interpreter_shutdown = False


def _python_exit():
    global _interpreter_shutdown
    _interpreter_shutdown = True
    for executor in list(_live_executors):
        try:
            executor.shutdown(wait=True)
        except Exception:
            pass


# Run before the thread pools' own exit hooks (registered earlier, called later): Dask completes
# tasks through a ThreadPoolExecutor, which refuses work once its hook has run.
import concurrent.futures.thread  # noqa: E402,F401  (its hook first)
threading._register_atexit(_python_exit)
