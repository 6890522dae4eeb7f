"""The peers: the rows of ``bench --peers`` on the pools people pick for speed
(multiprocessing.Pool, loky, pebble, mpire, joblib). PEERS (each peer: how to import it, open its
pools, start it in a fresh interpreter, the rows it has no equivalent of), PEER_ROWS and their
targets, available_peers, and measure_peer, one measurement of a row on a peer.

`bench --peers` runs PEER_ROWS on the stdlib, on cfutures (the workloads of workloads.py,
unchanged) and on each peer here through its own idiomatic API. A peer's measurement takes the
same steps as the stdlib's: a pool made and warmed with one no-op outside the clock, the timed
part, the pool closed; start-up rows run in a fresh interpreter. Each peer says which rows it has
no sensible equivalent for (the cell stays empty, with the reason as a footnote).
"""

import importlib.metadata
import operator
import platform
import time

from cfutures._bench.tasks import identity, noop
from cfutures._bench.workloads import startup_seconds

PEER_ROWS = ["thread_submit_result", "thread_round_trip", "process_submit_result",
             "process_round_trip", "process_map_chunks", "process_big_argument",
             "process_big_array", "process_startup_fork", "process_startup_spawn"]

# What each row needs from an implementation: the kind of pool, then the call it makes.
_ROW_NEEDS = {
    "thread_submit_result": ("thread", "submit"),
    "thread_round_trip": ("thread", "submit"),
    "process_submit_result": ("process", "submit"),
    "process_round_trip": ("process", "submit"),
    "process_map_chunks": ("process", "map"),
    "process_big_argument": ("process", "call"),
    "process_big_array": ("process", "call"),
    "process_startup_fork": ("fork",),
    "process_startup_spawn": ("spawn",),
}

# The row's pool: kind and number of workers, as in the stdlib workload of the same name.
_ROW_POOL = {
    "thread_submit_result": ("thread", 4), "thread_round_trip": ("thread", 1),
    "process_submit_result": ("process", 2), "process_round_trip": ("process", 1),
    "process_map_chunks": ("process", 2), "process_big_argument": ("process", 1),
    "process_big_array": ("process", 1),
}

# The targets for `--peers` (issue 13's, raised by issue 24's: reference, minimum ratio;
# "fastest": the fastest other implementation in the row). Under load every row must at least
# match the stdlib.
PEER_TARGETS = {
    "thread_submit_result": [("stdlib", 15.0)],
    "thread_round_trip": [("stdlib", 10.0)],
    "process_submit_result": [("stdlib", 6.0), ("mp.Pool", 3.0)],
    "process_round_trip": [("stdlib", 5.0), ("mp.Pool", 5.0)],
    "process_map_chunks": [("stdlib", 2.0), ("mp.Pool", 1.5)],
    "process_big_argument": [("stdlib", 2.5), ("mp.Pool", 1.0)],
    "process_big_array": [("mp.Pool", 1.0)],
    "process_startup_fork": [("fastest", 1.0)],
    "process_startup_spawn": [("fastest", 1.0)],
}
PEER_TARGETS_UNDER_LOAD = {row: [("stdlib", 1.0)] for row in PEER_ROWS}

# Rows whose samples are fresh interpreters: the issue asks for medians of at least 5 runs.
STARTUP_MIN_REPEAT = 5


class NotApplicable(Exception):
    """The implementation has no sensible equivalent of the row (the message says why)."""


class _PeerPool:
    """One open pool of a peer, reduced to the calls the measurements make:
    submit(fn) -> handle, get(handle) -> result, call(fn, arg) -> result (blocking),
    map(fn, items, chunksize) -> results, warm() (one no-op to completion), close()."""

    def __init__(self, close, submit=None, get=None, call=None, map=None, warm=None):
        self.submit, self.get, self.call, self.map, self.close = submit, get, call, map, close
        self.warm = warm or (lambda: get(submit(noop)))


_get = operator.methodcaller("get")         # multiprocessing / mpire AsyncResult
_result = operator.methodcaller("result")   # concurrent.futures-style futures


class _Peer:
    """A peer library: how to import it, open its pools, start it in a fresh interpreter, and the
    rows it has no equivalent of (capability -> reason) or that need a remark (row -> remark)."""
    name = module = distribution = how = ""
    missing = {}
    remarks = {}
    startup_imports = startup_start = startup_stop = ""

    def version(self):
        if self.module == "multiprocessing":
            return f"Python {platform.python_version()}"
        return importlib.metadata.version(self.distribution)

    def note(self, row):
        """Why this peer has no cell in the row, or None."""
        for need in _ROW_NEEDS[row]:
            if need in self.missing:
                return self.missing[need]
        return None

    def open(self, kind, workers):
        raise NotImplementedError

    def startup_parts(self, method):
        return {"imports": self.startup_imports.format(method=method),
                "start": self.startup_start.format(method=method),
                "stop": self.startup_stop.format(method=method)}


class _MpPool(_Peer):
    name, module = "mp.Pool", "multiprocessing"
    how = ("multiprocessing.Pool(n) (multiprocessing.pool.ThreadPool(n) for the thread rows): "
           "apply_async(f).get(), map(f, items, chunksize=1000); the default start method")
    startup_imports = "import multiprocessing, multiprocessing.pool"
    startup_start = ("pool = multiprocessing.get_context('{method}').Pool(2); "
                     "pool.apply_async(int).get()")
    startup_stop = "pool.close(); pool.join()"

    def open(self, kind, workers):
        import multiprocessing.pool
        pool = (multiprocessing.pool.ThreadPool(workers) if kind == "thread"
                else multiprocessing.Pool(workers))

        def close():
            pool.close()
            pool.join()
        return _PeerPool(close, submit=pool.apply_async, get=_get,
                         call=lambda fn, arg: pool.apply_async(fn, (arg,)).get(),
                         map=lambda fn, items, chunksize: pool.map(fn, items, chunksize=chunksize))


_LOKY_START = ("loky and joblib start workers with loky's own method (fork, then exec, as spawn "
               "does), measured in the spawn row; loky warns against plain fork")


class _Loky(_Peer):
    name = module = distribution = "loky"
    how = ("loky.ProcessPoolExecutor(n), a fresh one per measurement as for every other pool "
           "here (not loky's reusable executor): submit(f).result(), "
           "map(f, items, chunksize=1000); loky's own start method")
    missing = {"thread": "loky has process pools only", "fork": _LOKY_START}
    remarks = {"process_startup_spawn": "loky's own start method (fork, then exec)"}
    startup_imports = "import loky"
    startup_start = "pool = loky.ProcessPoolExecutor(2); pool.submit(int).result()"
    startup_stop = "pool.shutdown()"

    def open(self, kind, workers):
        import loky
        ex = loky.ProcessPoolExecutor(max_workers=workers)
        return _PeerPool(lambda: ex.shutdown(wait=True), submit=ex.submit, get=_result,
                         call=lambda fn, arg: ex.submit(fn, arg).result(),
                         map=lambda fn, items, chunksize: ex.map(fn, items, chunksize=chunksize))


class _Pebble(_Peer):
    name = module = "pebble"
    distribution = "Pebble"
    how = ("pebble.ThreadPool / pebble.ProcessPool(max_workers=n): schedule(f).result(), "
           "map(f, items, chunksize=1000).result(); the default start method")
    startup_imports = ("import multiprocessing, pebble; "
                       "context = multiprocessing.get_context('{method}')")
    startup_start = ("pool = pebble.ProcessPool(max_workers=2, context=context); "
                     "pool.schedule(int).result()")
    startup_stop = "pool.close(); pool.join()"

    def open(self, kind, workers):
        import pebble
        pool = (pebble.ThreadPool(max_workers=workers) if kind == "thread"
                else pebble.ProcessPool(max_workers=workers))

        def close():
            pool.close()
            pool.join()
        return _PeerPool(
            close, submit=pool.schedule, get=_result,
            call=lambda fn, arg: pool.schedule(fn, args=(arg,)).result(),
            map=lambda fn, items, chunksize: pool.map(fn, items, chunksize=chunksize).result())


class _Mpire(_Peer):
    name = module = distribution = "mpire"
    how = ("mpire.WorkerPool(n_jobs=n, keep_alive=True) (start_method='threading' for the thread "
           "rows): apply_async(f).get(), map(f, items, chunk_size=1000); its default start "
           "method (fork)")
    startup_imports = "import mpire"
    startup_start = ("pool = mpire.WorkerPool(n_jobs=2, start_method='{method}'); "
                     "pool.apply_async(int).get()")
    startup_stop = "pool.stop_and_join(); pool.terminate()"

    def open(self, kind, workers):
        import mpire
        options = {"start_method": "threading"} if kind == "thread" else {}
        # keep_alive: the workers outlive a map call (otherwise each map restarts them).
        pool = mpire.WorkerPool(n_jobs=workers, keep_alive=True, **options)

        def close():
            pool.stop_and_join()
            pool.terminate()
        return _PeerPool(
            close, submit=pool.apply_async, get=_get,
            call=lambda fn, arg: pool.apply_async(fn, args=(arg,)).get(),
            map=lambda fn, items, chunksize: pool.map(fn, items, chunk_size=chunksize))


class _Joblib(_Peer):
    name = module = distribution = "joblib"
    how = ("joblib.Parallel(n_jobs=n, batch_size=1000)(delayed(f)(x) for x in items) on its "
           "default backend (loky's reusable executor, shut down after each measurement); the "
           "one-task rows use n_jobs=2 (n_jobs=1 runs in the calling process), and NumPy arrays "
           "over 1 MB travel through its memory-mapped temporary files")
    missing = {"submit": "joblib has no submit/result: a Parallel call runs a batch "
                         "(measured in the map row)",
               "fork": _LOKY_START}
    remarks = {"process_startup_spawn": "loky's own start method (fork, then exec)"}
    startup_imports = "import joblib"
    startup_start = "joblib.Parallel(n_jobs=2)([joblib.delayed(int)()])"
    startup_stop = "from cfutures._bench.peers import _joblib_shutdown; _joblib_shutdown()"

    def open(self, kind, workers):
        import joblib
        n_jobs = max(workers, 2)

        def map_(fn, items, chunksize):
            return joblib.Parallel(n_jobs=n_jobs, batch_size=chunksize)(
                joblib.delayed(fn)(x) for x in items)
        return _PeerPool(
            _joblib_shutdown, map=map_,
            call=lambda fn, arg: joblib.Parallel(n_jobs=n_jobs)([joblib.delayed(fn)(arg)])[0],
            warm=lambda: joblib.Parallel(n_jobs=n_jobs)([joblib.delayed(noop)()]))


def _joblib_shutdown():
    # joblib keeps its loky executor for the next Parallel call; the handle to it is private.
    from joblib.externals.loky import reusable_executor
    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


PEERS = {p.name: p for p in (_MpPool(), _Loky(), _Pebble(), _Mpire(), _Joblib())}


def available_peers(names=None):
    """(importable peer names, {skipped name: why}); mp.Pool is always there."""
    found, skipped = [], {}
    for name, peer in PEERS.items():
        if names is not None and name not in names and name != "mp.Pool":
            continue
        try:
            importlib.import_module(peer.module)
            peer.version()
        except Exception as e:  # not installed, or broken: said so in the output
            skipped[name] = f"{type(e).__name__}: {e}"
        else:
            found.append(name)
    return found, skipped


# The timed parts on a peer's pool, step for step those of the stdlib workloads (workloads.py).

def _peer_submit_and_wait(pool, n):
    submit, get = pool.submit, pool.get
    pool.warm()
    t0 = time.perf_counter()
    fs = [submit(noop) for _ in range(n)]
    for f in fs:
        get(f)
    return n / (time.perf_counter() - t0)


def _peer_round_trips(pool, n):
    submit, get = pool.submit, pool.get
    for _ in range(20):
        get(submit(noop))
    t0 = time.perf_counter()
    for _ in range(n):
        get(submit(noop))
    return (time.perf_counter() - t0) / n


def _peer_map(pool, n):
    pool.warm()
    t0 = time.perf_counter()
    for _ in pool.map(identity, range(n), 1000):
        pass
    return n / (time.perf_counter() - t0)


def _peer_one_call(pool, argument, expected):
    pool.warm()
    t0 = time.perf_counter()
    assert pool.call(len, argument) == expected
    return time.perf_counter() - t0


def _peer_big_argument(pool, n):
    return _peer_one_call(pool, b"\x5a" * n, n)


def _peer_big_array(pool, n):
    import numpy
    return _peer_one_call(pool, numpy.full(n // 8, 0.5), n // 8)


_PEER_BODIES = {
    "thread_submit_result": _peer_submit_and_wait, "thread_round_trip": _peer_round_trips,
    "process_submit_result": _peer_submit_and_wait, "process_round_trip": _peer_round_trips,
    "process_map_chunks": _peer_map, "process_big_argument": _peer_big_argument,
    "process_big_array": _peer_big_array,
}


def measure_peer(name, workload, n):
    """One measurement of a row (the workload function's name) on the peer called name. Raises
    NotApplicable where the peer has no equivalent."""
    peer = PEERS[name]
    note = peer.note(workload)
    if note:
        raise NotApplicable(note)
    if workload.startswith("process_startup_"):
        return startup_seconds(peer.startup_parts(workload[len("process_startup_"):]))
    pool = peer.open(*_ROW_POOL[workload])
    try:
        return _PEER_BODIES[workload](pool, n)
    finally:
        pool.close()
