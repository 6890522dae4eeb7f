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
  * The task waits in a local queue, while ``max_workers`` tasks are already with Dask and until
    the executor's sender thread (``_send``) takes it: the tasks queued meanwhile go together as
    one ``Client.map`` (one message for the scheduler rather than one per task; a task with
    shared blobs goes alone, through ``Client.submit``), each with a key of its own (no
    deduplication: every submit runs), as ``_dask_remote.run_call``, which unpacks the call in
    the worker and packs its outcome.
  * The executor's collector thread (``_collect``, alive while tasks are with Dask) takes the
    tasks Dask reports done (``_Completions``), fetches the results of those that end
    close together with one gather (``_linger``, ``_fetch``) and completes each cfutures
    Future: a result, the task's own exception with the remote traceback as ``__cause__``, or a
    clear error when Dask could not run it (WorkerDied when the worker running it died; a client
    that lost its scheduler breaks the executor, so nothing waits on it).
  * The future turns RUNNING when its task starts on a worker: a worker plugin
    (_dask_remote.TaskStartReporter, registered once per client) reports starts in batches, as
    events the scheduler passes to the client, whose event loop marks the futures
    (_mark_started).
  * ``Future.cancel()`` succeeds for a task in the local queue, and for one with Dask that the
    scheduler has not handed to a worker: the check and the cancel run together on the
    scheduler's event loop (_dask_remote.cancel_unstarted). A task a worker holds may be running:
    cancel() returns False, as for a running task of the stdlib's pools.

Lock: ``_lock`` guards the executor's bookkeeping (the local queue, the tasks with Dask, the
shared blobs, the counts of stats(), the shutdown and broken flags). It is never held while
calling Dask or completing a future (whose callbacks run user code); marking a future RUNNING,
which runs no callback, happens under it, so that a cancel sees either a running future or a
pending one it may take back.

Invariant: every future submitted ends with a result, an exception or cancelled, whatever Dask
does (a lost worker, a closed client, a cancel from elsewhere).
"""

import atexit
import collections
import hashlib
import io
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import itertools
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

# The collector fetches results in batches: once a task is done it waits for the next while tasks
# keep ending less than _GATHER_GAP apart, for at most _GATHER_LINGER (a lone task waits
# _GATHER_GAP more, the last one with Dask nothing).
_GATHER_GAP = 0.003
_GATHER_LINGER = 0.05

# The sender thread waits this long for more tasks once the local queue is empty, then ends.
_SEND_LINGER = 0.005
# At most this many tasks go in one graph: the scheduler takes a graph in one go, the workers
# waiting meanwhile (graphs of thousands of tasks left them idle for seconds).
_SEND_BATCH = 100
# A submit this long after the previous one, with no sender thread running, is sent by its
# caller's thread at once (as fast as a lone task can go); closer ones go through the sender.
_SEND_ALONE = 0.001


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("cfutures.dask needs Dask distributed: pip install 'cfutures[dask]'") \
            from exc
    return distributed


# Where a client's certificate goes for a tls:// scheduler.
_TLS_SETTINGS = (
    "pass DaskExecutor(security=distributed.Security(tls_ca_file=..., tls_client_cert=..., "
    "tls_client_key=...)), or set Dask's configuration: distributed.comm.tls.ca-file, "
    "distributed.comm.tls.client.cert "
    "and distributed.comm.tls.client.key (environment variables "
    "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT, "
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY, or a YAML file in ~/.config/dask or DASK_CONFIG)")


def _connect(distributed, address, client_kwargs):
    """distributed.Client(address, **client_kwargs), which may fail: the scheduler refused the
    client (a certificate it does not trust) or could not be reached, or the address is tls://
    and the client has no certificate (Dask's TypeError is then given the settings that carry
    it)."""
    try:
        return distributed.Client(address, **client_kwargs)
    except BaseException as exc:
        _stop_failed_client(exc)
        if (isinstance(exc, TypeError) and "ssl_context" in str(exc)
                and str(address).startswith("tls://")):
            raise TypeError(f"connecting to {address} needs this client's certificate and the "
                            f"CA that signed the cluster's: {_TLS_SETTINGS}") from exc
        raise


def _stop_failed_client(exc):
    """The client that failed in ``distributed.Client(...)`` (found in the exception's
    traceback): distributed closes a client that could not connect but leaves its event loop's
    thread running for the life of the process (Client.close() does nothing for a closed
    client); one that failed before connecting is closed here, rather than when collected."""
    import traceback
    init = _distributed().Client.__init__.__code__
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code is init:
            client = frame.f_locals["self"]
            try:
                if client.status == "closed":
                    client._loop_runner.stop()
                elif client.status != "newly-created":
                    client.close()
            except Exception:
                pass
            return


def _dumps(obj, token):
    """cloudpickle, with the functions of __main__ wrapped for _dask_remote.main_function."""
    buffer = io.BytesIO()
    pickler = (_CallPickler or _call_pickler())(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.token = token
    pickler.dump(obj)
    return buffer.getvalue()


_CallPickler = None  # _dumps' pickler class, made once (when cloudpickle is first needed)


def _call_pickler():
    global _CallPickler
    import cloudpickle

    class CallPickler(cloudpickle.Pickler):
        token = None  # the executor's, set before each dump

        def reducer_override(self, obj):
            if isinstance(obj, types.FunctionType) and obj.__module__ == "__main__":
                return _dask_remote.main_function, (self.token, cloudpickle.dumps(
                    obj, protocol=pickle.HIGHEST_PROTOCOL))
            return super().reducer_override(obj)

    _CallPickler = CallPickler
    return CallPickler


class _Task:
    """One submit: its future, its packed call, and where it is (QUEUED here, SENT to Dask,
    DONE)."""

    QUEUED, SENT, DONE = "queued", "sent", "done"
    __slots__ = ("executor_ref", "future", "call", "digests", "seq", "key", "state",
                 "dask_future", "started", "cancelling", "cancelled_by_dask")

    def __init__(self, executor, future, call, digests, seq, key):
        self.executor_ref = weakref.ref(executor)
        self.future = future
        self.call = call          # (pieces, nargs, kwnames): see _dask_remote
        self.digests = digests    # the shared blobs its pieces index, in order
        self.seq = seq            # its number in the executor, in its key
        self.key = key
        self.state = _Task.QUEUED
        self.started = False            # a worker reported its start: the future is RUNNING
        self.dask_future = None
        self.cancelling = False         # a cancel is asking the scheduler
        self.cancelled_by_dask = False  # Dask cancelled it while that cancel asked


class _Completions:
    """The Dask futures of an executor's tasks in the order they end (finished, failed or
    cancelled), as distributed.as_completed(futures) gives them but without their results and
    with less work in the client's event loop (which a LocalCluster's scheduler shares):
    add_all() hands the futures added meanwhile to the loop in one callback, where one coroutine
    per future waits for its end (on distributed's private ``Future._state``)."""

    def __init__(self, loop):
        self._loop = loop
        self.thread_condition = threading.Condition()  # guards the rest, notified as futures end
        self._ready = []          # ended, not yet taken by next_batch()
        self._added = []          # added, not yet handed to the loop
        self._handing = False     # a callback in the loop will take self._added
        # The watchers not done: the event loop holds its tasks weakly only.
        self._watchers = set()    # touched in the event loop only

    def add_all(self, dask_futures):
        with self.thread_condition:
            self._added += dask_futures
            if self._handing:
                return
            self._handing = True
        self._loop.add_callback(self._watch_added)

    def _watch_added(self):
        import asyncio
        with self.thread_condition:
            added, self._added, self._handing = self._added, [], False
        for dask_future in added:
            watcher = asyncio.ensure_future(self._watch(dask_future))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, dask_future):
        await dask_future._state.wait()
        with self.thread_condition:
            self._ready.append(dask_future)
            self.thread_condition.notify()

    def has_ready(self):
        return bool(self._ready)

    def next_batch(self):
        """The futures that ended since the last call."""
        with self.thread_condition:
            batch, self._ready = self._ready, []
        return batch


class DaskFuture(_base.Future):
    """A cfutures Future whose cancel() can take a task back from the Dask scheduler.

    It is PENDING while its task waits, in the executor or at the scheduler, and turns RUNNING
    soon after a worker starts the task (starts are reported in batches, every few tens of
    milliseconds: a short task may finish without having been seen RUNNING)."""

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
                with dask.config.set(_dask_remote.cluster_config()):
                    client = distributed.Client(**client_kwargs)
            else:
                client = _connect(distributed, address, client_kwargs)
        self._client = client
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._queued = collections.deque()  # _Task; cancelled ones are skipped when popped
        self._sent = {}                     # key -> _Task with Dask
        self._blobs = {}                    # digest -> [dask future, tasks using it]
        self._shutdown = False
        self._broken = None                 # the BrokenProcessPool message, once broken
        self._closer = None
        self._seqs = itertools.count()
        # stats(): submitted, completed, failed, cancelled (the rest is counted from the tasks).
        self._counts = collections.Counter()
        self._running = 0
        # Done Dask futures, without their results: the collector fetches those in batches.
        self._completions = _Completions(client.loop)
        self._collector = None  # the thread running _collect, while tasks are with Dask
        self._sender = None     # the thread running _send, while tasks wait in the local queue
        self._sender_waiting = False
        self._send_wakeup = threading.Condition(self._lock)
        self._last_submit = 0.0  # when submit last queued a task (time.monotonic())
        # Names this executor in the workers: its initializer's outcome, its __main__ namespace.
        self._token = uuid.uuid4().hex
        self._init = None
        self._init_digests = []
        if initializer is not None:
            piece, digests = self._pieces([self._dumps((initializer, tuple(initargs)))], [])
            self._init = (self._token, piece[0])
            self._init_digests = digests  # held for the executor's life
        _live_executors.add(self)
        _listen_for_starts(self)

    # -- submit ----------------------------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            self._check_open()
        future = DaskFuture()
        try:
            call, digests = self._pack_call(fn, args, kwargs)
        except Exception as exc:
            # As the stdlib's process pool: what does not pickle fails the future, not submit.
            with self._lock:
                self._counts["submitted"] += 1
                self._counts["failed"] += 1
            future.set_exception(exc)
            return future
        seq = next(self._seqs)
        task = _Task(self, future, call, digests, seq,
                     _dask_remote.task_key(_name_of(fn), self._token, seq))
        future._task = task
        with self._lock:
            try:
                self._check_open()
            except BaseException:
                self._release_blobs_locked(task)
                raise
            self._counts["submitted"] += 1
            self._queued.append(task)
        self._send_queued(submitting=True)
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

    def _send_queued(self, submitting=False):
        """Sends the queued tasks: the sender thread does (started if not running, else woken),
        unless a submit comes alone (_SEND_ALONE after the previous one, no sender running):
        its caller's thread then sends it at once, without the hand-over."""
        with self._lock:
            if not self._queued:
                return
            now = time.monotonic()
            alone = submitting and self._sender is None and now - self._last_submit > _SEND_ALONE
            if submitting:
                self._last_submit = now
            if not alone:
                if self._sender is None:
                    self._sender = threading.Thread(target=self._send,
                                                    name="cfutures-dask-sender")
                    self._sender.start()
                elif self._sender_waiting:
                    self._send_wakeup.notify()
                return
            batch = self._take_queued_locked()
        self._send_batch(batch)

    def _send(self):
        """The sender thread, while tasks wait in the local queue (and _SEND_LINGER longer): sends
        them while fewer than max_workers are with Dask, all those queued meanwhile at once."""
        idle_since = None
        while True:
            with self._lock:
                batch = self._take_queued_locked()
                if not batch:
                    if self._queued:
                        timeout = 0.1  # max_workers with Dask: one ending wakes this thread
                    else:
                        now = time.monotonic()
                        idle_since = idle_since or now
                        timeout = _SEND_LINGER - (now - idle_since)
                        if timeout <= 0 or self._shutdown:
                            self._sender = None
                            return
                    self._sender_waiting = True
                    self._send_wakeup.wait(timeout)
                    self._sender_waiting = False
                    continue
            idle_since = None
            self._send_batch(batch)

    def _take_queued_locked(self):
        """The queued tasks that may go to Dask now (at most _SEND_BATCH), SENT: [(task, its
        blobs' Dask futures)]."""
        batch = []
        while self._queued and len(batch) < _SEND_BATCH and (
                self._max_workers is None or len(self._sent) < self._max_workers):
            task = self._queued.popleft()
            if task.state != _Task.QUEUED:
                continue  # cancelled
            task.state = _Task.SENT
            self._sent[task.seq] = task
            batch.append((task, [self._blobs[d][0] for d in task.digests]))
        return batch

    def _send_batch(self, batch):
        """Hands SENT tasks to Dask: those without shared blobs as one graph, the others one by
        one (their blobs are trailing arguments)."""
        client = self._client
        plain = [task for task, blobs in batch if not blobs]
        groups = [(plain, None)] if len(plain) > 1 else []
        groups += [([task], blobs) for task, blobs in batch if blobs or len(plain) == 1]
        for tasks, blobs in groups:
            try:
                if blobs is None:
                    dask_futures = client.map(_dask_remote.run_call, [self._init] * len(tasks),
                                              [task.call for task in tasks],
                                              key=[task.key for task in tasks], pure=False)
                else:
                    task = tasks[0]
                    dask_futures = [client.submit(_dask_remote.run_call, self._init, task.call,
                                                  *blobs, key=task.key, pure=False)]
            except Exception as exc:
                for task in tasks:
                    self._finish(task, None, BrokenProcessPool(
                        f"the Dask client could not take the task: {exc!r}"), cause=exc)
                continue
            with self._lock:
                for task, dask_future in zip(tasks, dask_futures):
                    task.call = None  # with Dask now
                    if task.state == _Task.SENT:
                        task.dask_future = dask_future
                if self._collector is None:
                    # It keeps the executor alive while tasks are with Dask, as the stdlib's
                    # worker threads keep theirs.
                    self._collector = threading.Thread(target=self._collect,
                                                       name="cfutures-dask-collector")
                    self._collector.start()
            self._completions.add_all(dask_futures)

    def _collect(self):
        """The collector thread, while tasks are with Dask: completes their futures as Dask
        finishes them, the results of many fetched at once (_linger, _fetch); the futures are
        completed here, never in the client's event loop (their callbacks run user code, which
        may call Dask). It ends once no task is with Dask, even if Dask never reports on some (a
        dead client's: the executor failed them)."""
        completions = self._completions
        while True:
            batch = completions.next_batch()
            if batch:
                for task, status, outcome in self._fetch(self._linger(batch)):
                    self._on_done(task, status, outcome)
                continue
            with self._lock:
                if not self._sent:
                    self._collector = None
                    return
            with completions.thread_condition:
                # Dask queues the outcome, then notifies under this lock: none is missed.
                if not completions.has_ready():
                    completions.thread_condition.wait(0.1)

    def _linger(self, batch):
        """``batch`` (done Dask futures), with those that end next while they keep ending less
        than _GATHER_GAP apart (for at most _GATHER_LINGER): their results then come with one
        gather. Each gather is a request to the scheduler, which asks the workers: one per task
        (distributed.as_completed(with_results=True) as tasks end one by one) costs the
        scheduler, which a LocalCluster runs in the client's process, more than the tasks."""
        completions = self._completions
        deadline = time.monotonic() + _GATHER_LINGER
        while True:
            with self._lock:
                if len(batch) >= len(self._sent):
                    return batch  # no other task to wait for
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch
            with completions.thread_condition:
                if not completions.has_ready():
                    completions.thread_condition.wait(min(_GATHER_GAP, remaining))
            more = completions.next_batch()
            if not more:
                return batch
            batch += more

    def _fetch(self, batch):
        """``(task, status, outcome)`` for the done Dask futures of ``batch`` whose task is still
        the executor's, as _on_done takes them: the finished ones' answers (bytes) fetched with
        one gather, what Dask raised for the others."""
        tasks = []
        with self._lock:  # once per batch, not per task
            for dask_future in batch:
                parsed = _dask_remote.parse_key(dask_future.key)
                task = self._sent.get(parsed[1]) if parsed else None
                if task is not None and task.dask_future is dask_future:
                    tasks.append((task, dask_future))
        finished = {f.key: f for _, f in tasks if f.status == "finished"}
        answers, failure = {}, None
        if finished:
            try:
                # errors="skip": a key that fails meanwhile (lost, then failed again) is None.
                answers = self._client.gather(finished, errors="skip")
            except Exception as exc:
                failure = exc
        done = []
        for task, dask_future in tasks:
            answer = answers.get(dask_future.key)
            status = dask_future.status
            if answer is not None:
                done.append((task, "finished", answer))
            elif status == "finished":
                done.append((task, "not fetched", failure or RuntimeError("no result came")))
            else:
                # As distributed.as_completed(with_results=True) gave them: (type, exception,
                # traceback) for an error, the CancelledError of a cancel.
                state = dask_future._state
                exc = getattr(state, "exception", None)
                done.append((task, status, (type(exc), exc, getattr(state, "traceback", None))
                             if status == "error" else exc))
        return done

    def _finish(self, task, answer, error=None, cause=None):
        """Ends a task: its bookkeeping, then its future (outside the lock)."""
        with self._lock:
            if task.state == _Task.DONE:
                return
            self._done_locked(task)
            succeeded = answer is not None and answer[0] == _dask_remote.RESULT
            self._counts["completed" if succeeded else "failed"] += 1
        _settle(_detach(task), answer, error, cause)
        self._send_queued()

    def _done_locked(self, task):
        """The task leaves the executor's bookkeeping (its future is completed next)."""
        task.state = _Task.DONE
        self._sent.pop(task.seq, None)
        if task.started:
            task.started = False
            self._running -= 1
        self._release_blobs_locked(task)

    def _mark_started(self, seqs):
        """Start reports (in the client's event loop): the futures of these tasks turn RUNNING,
        unless a cancel is asking the scheduler about them (it then decides)."""
        with self._lock:
            for seq in seqs:
                task = self._sent.get(seq)
                if task is None or task.started or task.cancelling:
                    continue
                if task.future.set_running_or_notify_cancel():
                    task.started = True
                    self._running += 1

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
            address = getattr(getattr(exc, "last_worker", None), "address", None)
            where = f" at {address}" if isinstance(address, str) else ""
            self._finish(task, None, WorkerDied(
                f"the Dask worker{where} running this task died ({exc})"), cause=exc)
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
                self._done_locked(task)
                self._counts["cancelled"] += 1
            elif state == _Task.SENT:
                if task.cancelling or task.started:
                    return False  # running, or another cancel is asking the scheduler
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
                    self._done_locked(task)
                    self._counts["cancelled"] += 1
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
            if self._sender_waiting:
                self._send_wakeup.notify()  # it ends now if nothing is queued
            queued, sent = [], []
            if cancel_futures:
                queued = [t for t in self._queued if t.state == _Task.QUEUED]
                for task in queued:
                    self._done_locked(task)
                self._counts["cancelled"] += len(queued)
                self._queued.clear()
                sent = [t for t in self._sent.values() if not (t.cancelling or t.started)]
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
            for thread in (self._sender, self._collector):
                if thread is not None and thread is not threading.current_thread():
                    thread.join()
            self._close_client()
        elif self._owns_client and self._closer is None:
            # The work goes on; the cluster closes when it is done.
            self._closer = threading.Thread(target=self._close_when_done, args=(outstanding,),
                                            name="cfutures-dask-closer")
            self._closer.start()

    def _close_when_done(self, outstanding):
        _base.wait(outstanding)
        for thread in (self._sender, self._collector):
            if thread is not None:
                thread.join()
        self._close_client()

    def _close_client(self):
        _stop_listening_for_starts(self)
        if self._owns_client:
            self._owns_client = False
            _close_made_client(self._client)
        _live_executors.discard(self)

    def stats(self):
        """(cfutures) A DaskExecutorStats: the executor's tasks (submitted, queued: not started,
        in the executor or with Dask, of which ``with_dask`` are with Dask; running: reported
        started by a worker; completed, failed, cancelled) and the cluster's ``workers`` (worker
        processes), ``idle_workers`` (those with no task to run or running, as of their last
        heartbeat) and ``threads``. The cluster's figures cost one round trip to the scheduler;
        they are 0 once the client is closed."""
        with self._lock:
            counts = self._counts
            queued = sum(t.state == _Task.QUEUED for t in self._queued)
            with_dask = len(self._sent) - self._running
            mine = (counts["submitted"], queued + with_dask, self._running, counts["completed"],
                    counts["failed"], counts["cancelled"])
        workers = idle = threads = 0
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except Exception:
            info = None  # the client is closed or lost its scheduler
        if info:
            for worker in info.get("workers", {}).values():
                workers += 1
                threads += worker.get("nthreads", 0)
                busy = worker.get("metrics", {}).get("task_counts", {})
                if not any(busy.get(state) for state in _BUSY_WORKER_STATES):
                    idle += 1
        return DaskExecutorStats(*mine, workers, idle, with_dask=with_dask, threads=threads)

    def __repr__(self):
        return f"<{type(self).__name__} on {self._client!r}>"


# A worker holding a task in one of these states is not idle.
_BUSY_WORKER_STATES = ("executing", "ready", "constrained", "long-running", "waiting", "fetch",
                       "flight")


class DaskExecutorStats(_base.ExecutorStats):
    """What DaskExecutor.stats() returns: an ExecutorStats (``queued`` counts every task not
    started, in the executor or with Dask) with two more attributes outside the tuple:
    ``with_dask``, the queued tasks Dask holds, and ``threads``, the cluster's worker threads."""

    _extras = (*_base.ExecutorStats._extras, "with_dask", "threads")
    with_dask = 0
    threads = 0


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
            client = _connect(_distributed(), address, {})
            _shared = (os.getpid(), address, client)
            atexit.register(_close_made_client, client)  # before the local cluster stops (LIFO)
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
            # The cluster's process never loads cfutures' compiled module (_dask_remote does
            # not), and a crash there prints every thread's Python stack (faulthandler) where
            # the run's own errors go: the run otherwise sees only a lost scheduler.
            self._child = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-c",
                 f"from cfutures._dask_remote import serve_local_cluster as serve; "
                 f"serve({write_end})"],
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
        died = self._child.poll()  # before it was asked to stop: a crash, or killed from outside
        self._child.stdin.close()
        try:
            self._child.wait(30)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        if died is not None and died < 0:
            sys.stderr.write(f"cfutures: the local Dask cluster (process {self._child.pid}) "
                             f"had ended by {_signal_name(-died)}\n")


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def start_local_cluster():
    """Starts a LocalCluster on 127.0.0.1 in a child process that lives as long as this process,
    and returns it (a LocalClusterProcess: its ``address``, ``close()``)."""
    return LocalClusterProcess()


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


def _name_of(fn):
    """The name a task's key starts with: its function's (a map chunk's: the mapped function's),
    as Dask's dashboards group tasks by it."""
    inner = getattr(fn, "func", fn)  # a map chunk: functools.partial(process_chunk, fn)
    if (getattr(inner, "__module__", "") == "cfutures._map_chunks"
            and getattr(fn, "args", None)):
        inner = fn.args[0]
    return getattr(inner, "__name__", type(inner).__name__)


# -- start reports: executor token -> the executor, for the clients' event handlers -------------

_listeners = weakref.WeakValueDictionary()
_listening_clients = weakref.WeakSet()
_listeners_lock = threading.Lock()


def _listen_for_starts(executor):
    """Makes the cluster report the starts of the executor's tasks to its client: the worker
    plugin is registered, and the client subscribed to the reports, once per client."""
    client = executor._client
    with _listeners_lock:
        _listeners[executor._token] = executor
        new = client not in _listening_clients
        _listening_clients.add(client)
    if new:
        try:
            client.subscribe_topic(_dask_remote.START_TOPIC, _on_start_report)
            client.register_plugin(_dask_remote.TaskStartReporter(),
                                   name=_dask_remote.TaskStartReporter.name)
        except Exception as exc:
            # (Workers that cannot load the plugin: an older cfutures there.) The executor
            # works on; its futures stay PENDING until done, as before the reports existed.
            logging.getLogger("cfutures.dask").warning(
                "task starts will not be reported (futures stay PENDING while their task runs): "
                "the cluster refused the worker plugin: %r", exc)


def _stop_listening_for_starts(executor):
    with _listeners_lock:
        _listeners.pop(executor._token, None)


def _close_made_client(client):
    """Closes a client cfutures made (an executor's own, or the shared one of CFUTURES_DASK at
    exit), unsubscribed first from the start reports: the scheduler, which handles the client's
    messages in order, then sends it none after its close. A report on its way to a closed client
    makes the scheduler log a CRITICAL traceback (in `run --dask local`, into the user's run)."""
    with _listeners_lock:
        listening = client in _listening_clients
        _listening_clients.discard(client)
    if listening:
        try:
            client.unsubscribe_topic(_dask_remote.START_TOPIC)
        except Exception:  # a client that lost its scheduler
            pass
    try:
        client.close()
    except Exception:
        pass


def _on_start_report(event):
    """A start report, in a client's event loop: ``(time, {token: [seq, ...]})``."""
    for token, seqs in event[1].items():
        executor = _listeners.get(token)
        if executor is not None:
            executor._mark_started(seqs)


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
