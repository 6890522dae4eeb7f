"""Side-by-side benchmarks: the same workload on concurrent.futures and on cfutures, in one run.

``python -m cfutures bench`` prints the table; ``pytest benchmarks/`` runs the same workloads under
pytest-benchmark. Each workload returns a measurement for one implementation; the runner alternates
the implementations repetition by repetition (so that machine noise hits both alike), keeps the
median and the spread, and reports the ratio, which is the figure that counts on a shared machine.

``--peers`` runs the rows of issue 13 on multiprocessing.Pool too and on loky, pebble, mpire and
joblib where installed, each through its own idiomatic API (see "peers" below); ``--under-load``
keeps one busy process per core spinning for the whole run; ``--plot FILE.png`` draws the ratios
(matplotlib, imported only then).
"""

import argparse
import concurrent.futures
import contextlib
import gc
import importlib.util
import json
import operator
import os
import platform
import shlex
import statistics
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time

import cfutures

IMPLS = {"stdlib": "concurrent.futures", "cfutures": "cfutures"}


def _module(name):
    return concurrent.futures if name == "stdlib" else cfutures


def noop():
    pass


def identity(x):
    return x


# --- workloads: each takes (impl name, size) and returns (value, unit) -------------------------

def _submit_and_wait(ex, n):
    ex.submit(noop).result()
    t0 = time.perf_counter()
    fs = [ex.submit(noop) for _ in range(n)]
    for f in fs:
        f.result()
    return n / (time.perf_counter() - t0)


def _round_trips(ex, n, fn=noop, *args):
    for _ in range(20):
        ex.submit(fn, *args).result()
    t0 = time.perf_counter()
    for _ in range(n):
        ex.submit(fn, *args).result()
    return (time.perf_counter() - t0) / n


def thread_submit_result(impl, n):
    """submit + result of n no-op tasks on 4 workers (tasks per second)."""
    with _module(impl).ThreadPoolExecutor(4) as ex:
        return _submit_and_wait(ex, n)


def thread_round_trip(impl, n):
    """submit -> result latency on a 1-worker pool (seconds per round trip)."""
    with _module(impl).ThreadPoolExecutor(1) as ex:
        return _round_trips(ex, n)


def thread_map(impl, n):
    """list(ex.map(identity, range(n))) on 4 workers (items per second)."""
    futures = _module(impl)
    with futures.ThreadPoolExecutor(4) as ex:
        t0 = time.perf_counter()
        for _ in ex.map(identity, range(n)):
            pass
        return n / (time.perf_counter() - t0)


def _finished_futures(futures, n):
    fs = []
    for i in range(n):
        f = futures.Future()
        f.set_result(i)
        fs.append(f)
    return fs


def as_completed_finished(impl, n):
    """Iterate as_completed() over n finished futures (seconds)."""
    futures = _module(impl)
    fs = _finished_futures(futures, n)
    gc.collect()
    t0 = time.perf_counter()
    for _ in futures.as_completed(fs):
        pass
    return time.perf_counter() - t0


def wait_finished(impl, n):
    """wait() on n finished futures (seconds)."""
    futures = _module(impl)
    fs = _finished_futures(futures, n)
    gc.collect()
    t0 = time.perf_counter()
    futures.wait(fs)
    return time.perf_counter() - t0


def as_completed_live(impl, n):
    """as_completed() over n tasks completing on a 4-worker pool, submit included (seconds)."""
    futures = _module(impl)
    with futures.ThreadPoolExecutor(4) as ex:
        t0 = time.perf_counter()
        for _ in futures.as_completed([ex.submit(noop) for _ in range(n)]):
            pass
        return time.perf_counter() - t0


SHORT_TASK = 0.05  # seconds: the uneven workload's short tasks


def _uneven(ex, n):
    """One task as long as n short ones, then the n short ones, on 2 warm workers (seconds to the
    last). Ideally one worker runs the long task while the other runs every short one."""
    ex.submit(noop).result()
    t0 = time.perf_counter()
    fs = [ex.submit(time.sleep, n * SHORT_TASK)] + [ex.submit(time.sleep, SHORT_TASK) for _ in range(n)]
    for f in fs:
        f.result()
    return time.perf_counter() - t0


def thread_uneven(impl, n):
    """The uneven workload on 2 threads."""
    with _module(impl).ThreadPoolExecutor(2) as ex:
        return _uneven(ex, n)


def process_uneven(impl, n):
    """The uneven workload on 2 worker processes."""
    with _module(impl).ProcessPoolExecutor(2) as ex:
        return _uneven(ex, n)


def process_submit_result(impl, n):
    """submit + result of n no-op tasks on 2 worker processes (tasks per second)."""
    with _module(impl).ProcessPoolExecutor(2) as ex:
        return _submit_and_wait(ex, n)


def process_submit_result_timed(impl, n):
    """process_submit_result with cfutures giving each task a 60 s task_timeout (the stdlib has
    none): the cost of a deadline per task, read against the row above."""
    with _module(impl).ProcessPoolExecutor(2) as ex:
        return _submit_and_wait(ex if impl == "stdlib" else ex.options(task_timeout=60), n)


def process_round_trip(impl, n):
    """submit -> result latency on a 1-process pool (seconds per round trip)."""
    with _module(impl).ProcessPoolExecutor(1) as ex:
        return _round_trips(ex, n)


def process_map_chunks(impl, n):
    """map(identity, range(n), chunksize=1000) on 2 worker processes (items per second)."""
    futures = _module(impl)
    with futures.ProcessPoolExecutor(2) as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        for _ in ex.map(identity, range(n), chunksize=1000):
            pass
        return n / (time.perf_counter() - t0)


def _one_call(impl, fn, argument, expected):
    """fn(argument) on a warm 1-process pool (seconds)."""
    with _module(impl).ProcessPoolExecutor(1) as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        assert ex.submit(fn, argument).result() == expected
        return time.perf_counter() - t0


def process_big_argument(impl, n):
    """submit(len, <n bytes>).result() on a warm 1-process pool (seconds)."""
    return _one_call(impl, len, b"\x5a" * n, n)


def process_big_array(impl, n):
    """The same with a NumPy array of n bytes: a pickle protocol 5 out-of-band buffer."""
    import numpy
    return _one_call(impl, len, numpy.full(n // 8, 0.5), n // 8)


# Creation to first result in a fresh interpreter, the pool's module imported inside the clock:
# a short script pays that import too. The task is a builtin (int()), so that spawned workers
# import nothing for it.
_STARTUP_SCRIPT = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    {imports}

    if __name__ == "__main__":
        {start}
        print(time.perf_counter() - t0, flush=True)
        {stop}
""")
_OWN_STARTUP = {
    "imports": "import multiprocessing; import {module} as futures",
    "start": ("ex = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("
              "'{method}')); ex.submit(int).result()"),
    "stop": "ex.shutdown()",
}


def _startup(impl, method):
    # Forking from a process that already ran the other workloads would measure their
    # leftovers, not the pool.
    if impl in IMPLS:
        parts = {k: v.format(module=IMPLS[impl], method=method) for k, v in _OWN_STARTUP.items()}
    else:
        parts = PEERS[impl].startup_parts(method)
    out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT.format(**parts)], check=True,
                         capture_output=True, text=True, env=dict(os.environ, CFUTURES_INSTALL="0"))
    return float(out.stdout.strip())


_IMPORT_FLOOR = ("import time\nt0 = time.perf_counter()\n"
                 "import multiprocessing, concurrent.futures.process\n"
                 "print(time.perf_counter() - t0)")


def import_floor():
    """Seconds a fresh interpreter takes to import multiprocessing and the stdlib's
    concurrent.futures.process: part of every start-up row of the stdlib and of cfutures, whose
    ProcessPoolExecutor is a subclass of the stdlib's."""
    out = subprocess.run([sys.executable, "-c", _IMPORT_FLOOR], check=True, capture_output=True,
                         text=True, env=dict(os.environ, CFUTURES_INSTALL="0"))
    return float(out.stdout.strip())


def process_startup_fork(impl, n):
    """ProcessPoolExecutor(2) creation to first result, fork (seconds)."""
    return _startup(impl, "fork")


def process_startup_spawn(impl, n):
    """... under spawn."""
    return _startup(impl, "spawn")


def process_startup_forkserver(impl, n):
    """... under forkserver."""
    return _startup(impl, "forkserver")


_MEMORY_SCRIPT = textwrap.dedent("""
    import gc, sys, threading
    import {module} as futures

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * {page}

    n = {n}
    if "{what}" == "pool":
        gate = threading.Event()
        ex = futures.ThreadPoolExecutor(1)
        ex.submit(gate.wait)          # the worker is busy: everything else stays pending
        gc.collect(); before = rss()
        fs = [ex.submit(int) for _ in range(n)]
        gc.collect(); after = rss()
        gate.set(); ex.shutdown(cancel_futures=True)
    else:
        gc.collect(); before = rss()
        fs = [futures.Future() for _ in range(n)]
        gc.collect(); after = rss()
    print((after - before) / n)
""")


def memory_per_pending_future(impl, n, what="pool"):
    """RSS growth per pending future (bytes), measured in a fresh interpreter."""
    script = _MEMORY_SCRIPT.format(module=IMPLS[impl], n=n, what=what,
                                   page=os.sysconf("SC_PAGE_SIZE"))
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True, env=dict(os.environ, CFUTURES_INSTALL="0"))
    return float(out.stdout.strip())


def memory_per_plain_future(impl, n):
    return memory_per_pending_future(impl, n, what="plain")


# --- Dask: cfutures.dask.DaskExecutor against Dask's own APIs, on one cluster ------------------
#
# These rows are there only when `distributed` is installed. Their "stdlib" side is not the
# stdlib: it is the Dask API named in the row (ROW_BASELINES; the table says so in a footnote and
# the --json rows under "baseline"). Both sides of a row run on the same cluster in the same run:
# a 2-worker LocalCluster that run() starts before the first Dask row and closes after the last
# (a row measured alone, by measure() or pytest-benchmark, starts its own). Every measurement
# waits until the scheduler holds no task (what the previous one released), makes its executor
# and warms it with one no-op outside the clock; the timed part maps identity over the items and
# consumes every result.

DASK_CHUNKSIZE = 1000
DASK_IDLE_SECONDS = 30.0  # at most this long waiting for the scheduler to forget earlier tasks

_dask_client = None  # the Client of the cluster that dask_cluster() holds open, if any


@contextlib.contextmanager
def dask_cluster():
    """A 2-worker LocalCluster (worker processes, one thread each) and a Client on it, workers
    up and warm; the one already open if there is one."""
    global _dask_client
    if _dask_client is not None:
        yield _dask_client
        return
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        client.run(_dask_worker_warm)  # the modules the tasks need, imported in every worker
        _dask_client = client
        try:
            yield client
        finally:
            _dask_client = None


def _dask_worker_warm():
    import cfutures._dask_remote  # noqa: F401  (this module is imported by unpickling us)


def _scheduler_task_count(dask_scheduler):
    return len(dask_scheduler.tasks)


def _dask_idle(client):
    deadline = time.monotonic() + DASK_IDLE_SECONDS
    while client.run_on_scheduler(_scheduler_task_count) and time.monotonic() < deadline:
        time.sleep(0.01)


def _dask_executor_map(client, n):
    """cfutures.dask.DaskExecutor(client=client).map(identity, items, chunksize=1000)."""
    from cfutures.dask import DaskExecutor
    _dask_idle(client)
    with DaskExecutor(client=client) as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        for last in ex.map(identity, range(n), chunksize=DASK_CHUNKSIZE):
            pass
        elapsed = time.perf_counter() - t0
    assert last == n - 1
    return n / elapsed


def _dask_get_executor_map(client, n):
    """client.get_executor().map(identity, items): Dask's Executor, one task per item (its map
    takes no chunksize)."""
    _dask_idle(client)
    with client.get_executor() as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        for last in ex.map(identity, range(n)):
            pass
        elapsed = time.perf_counter() - t0
    assert last == n - 1
    return n / elapsed


def _dask_client_map(client, n):
    """client.gather(client.map(identity, items, pure=False)): one task per item."""
    _dask_idle(client)
    client.submit(noop, pure=False).result()
    t0 = time.perf_counter()
    results = client.gather(client.map(identity, range(n), pure=False))
    elapsed = time.perf_counter() - t0
    assert len(results) == n and results[-1] == n - 1
    return n / elapsed


def dask_vs_get_executor(impl, n):
    """DaskExecutor.map(chunksize=1000) ("cfutures") against client.get_executor().map
    (in the "stdlib" slot) on the 2-worker LocalCluster (items per second)."""
    with dask_cluster() as client:
        return (_dask_executor_map if impl == "cfutures" else _dask_get_executor_map)(client, n)


def dask_vs_client_map(impl, n):
    """DaskExecutor.map(chunksize=1000) ("cfutures") against client.gather(client.map(...))
    (in the "stdlib" slot) on the 2-worker LocalCluster (items per second)."""
    with dask_cluster() as client:
        return (_dask_executor_map if impl == "cfutures" else _dask_client_map)(client, n)


# --- pool kinds: CPU-bound pure Python on subinterpreters, threads and processes ---------------
#
# InterpreterPoolExecutor rows exist where cfutures has it (3.12+). The round-trip row compares it
# with the stdlib's, where the stdlib has one (3.14+); the CPU-bound rows compare cfutures' InterpreterPoolExecutor (the
# "cfutures" column) with cfutures' own thread and process pools (the "stdlib" column: see
# ROW_BASELINES), all on 2 workers, each made and warmed with one task outside the clock. On a
# free-threaded build, the thread pool row compares the same CPU-bound work with the GIL off (the
# "cfutures" column) and on (-X gil=1, the "stdlib" column), each in a fresh interpreter.

CPU_TASKS = 8  # tasks of cfutures._cpu.spin(n // CPU_TASKS) per measurement


def _cpu_map(ex, n):
    from cfutures import _cpu
    list(ex.map(_cpu.spin, [1000] * 2))
    t0 = time.perf_counter()
    list(ex.map(_cpu.spin, [n // CPU_TASKS] * CPU_TASKS))
    return n / (time.perf_counter() - t0)


def interpreter_round_trip(impl, n):
    """submit -> result latency on a 1-interpreter pool (seconds per round trip)."""
    with _module(impl).InterpreterPoolExecutor(1) as ex:
        # A builtin: what a subinterpreter unpickles without importing anything.
        return _round_trips(ex, n, operator.truth, 1)


def interpreter_vs_threads_cpu(impl, n):
    """CPU-bound iterations per second: cfutures' InterpreterPoolExecutor(2) ("cfutures")
    against cfutures' ThreadPoolExecutor(2) (the "stdlib" slot)."""
    pool = cfutures.InterpreterPoolExecutor if impl == "cfutures" else cfutures.ThreadPoolExecutor
    with pool(2) as ex:
        return _cpu_map(ex, n)


def interpreter_vs_processes_cpu(impl, n):
    """CPU-bound iterations per second: cfutures' InterpreterPoolExecutor(2) ("cfutures")
    against cfutures' ProcessPoolExecutor(2) (the "stdlib" slot)."""
    pool = cfutures.InterpreterPoolExecutor if impl == "cfutures" else cfutures.ProcessPoolExecutor
    with pool(2) as ex:
        return _cpu_map(ex, n)


_CPU_THREADS_SCRIPT = """
import cfutures
from cfutures import _bench
with cfutures.ThreadPoolExecutor(2) as ex:
    print(_bench._cpu_map(ex, {n}))
"""


def free_threaded_cpu(impl, n):
    """CPU-bound iterations per second on cfutures.ThreadPoolExecutor(2) in a fresh interpreter,
    with the GIL off ("cfutures") and on (-X gil=1, the "stdlib" slot)."""
    gil = "0" if impl == "cfutures" else "1"
    out = subprocess.run([sys.executable, "-X", f"gil={gil}", "-c",
                          _CPU_THREADS_SCRIPT.format(n=n)], check=True, capture_output=True,
                         text=True, env=dict(os.environ, CFUTURES_INSTALL="0"))
    return float(out.stdout.strip())


# What the "stdlib" side of a row measures where it is not concurrent.futures.
_DASK_SIDES = ("; the cfutures column is cfutures.dask.DaskExecutor(client=client).map(identity, "
               f"items, chunksize={DASK_CHUNKSIZE}), one task per chunk; both on one "
               "LocalCluster(n_workers=2, threads_per_worker=1, processes=True) in the same run, "
               "every result consumed")
ROW_BASELINES = {
    "interpreter_vs_threads_cpu": "cfutures.ThreadPoolExecutor(2), against cfutures."
                                  "InterpreterPoolExecutor(2) in the cfutures column: "
                                  f"{CPU_TASKS} tasks of pure-Python integer arithmetic",
    "interpreter_vs_processes_cpu": "cfutures.ProcessPoolExecutor(2) (the default start "
                                    "method), against cfutures.InterpreterPoolExecutor(2) in the "
                                    f"cfutures column: {CPU_TASKS} tasks of pure-Python integer "
                                    "arithmetic",
    "free_threaded_cpu": "the same free-threaded interpreter with the GIL on (-X gil=1), "
                         "against the GIL off in the cfutures column: cfutures."
                         f"ThreadPoolExecutor(2), {CPU_TASKS} tasks of pure-Python integer "
                         "arithmetic, each side in a fresh interpreter",
    "dask_vs_get_executor": "Dask's client.get_executor().map(identity, items), one Dask task per "
                            "item (its map takes no chunksize)" + _DASK_SIDES,
    "dask_vs_client_map": "Dask's client.gather(client.map(identity, items, pure=False)), one "
                          "Dask task per item" + _DASK_SIDES,
}

# Rows that share a resource, opened before the first of them runs and closed after the last.
ROW_GROUPS = {"dask_vs_get_executor": dask_cluster, "dask_vs_client_map": dask_cluster}


# name, function, size, quick size, unit, "higher is better", target ratio (None: reported only),
# what the target means
WORKLOADS = [
    ("thread submit+result of no-op tasks, 4 workers", thread_submit_result, 100_000, 20_000,
     "tasks/s", True, 15.0),
    ("thread round trip, 1 worker", thread_round_trip, 20_000, 3_000, "us", False, 10.0),
    ("thread map of identity, 4 workers", thread_map, 100_000, 20_000, "items/s", True, None),
    ("thread uneven: one 2 s task, then 40 of 50 ms, 2 workers", thread_uneven, 40, 4, "ms",
     False, 0.98),
    ("as_completed over finished futures", as_completed_finished, 100_000, 20_000, "ms",
     False, 10.0),
    ("wait on finished futures", wait_finished, 100_000, 20_000, "ms", False, 5.0),
    ("as_completed over live tasks, 4 workers", as_completed_live, 20_000, 5_000, "ms", False,
     None),
    ("memory per pending future in a pool", memory_per_pending_future, 300_000, 50_000,
     "bytes", False, 3.0),
    ("memory per Future() object", memory_per_plain_future, 300_000, 50_000, "bytes",
     False, None),
    ("process submit+result of no-op tasks, 2 workers", process_submit_result, 20_000, 3_000,
     "tasks/s", True, 5.0),
    ("process submit+result, cfutures with task_timeout=60 each, 2 workers",
     process_submit_result_timed, 20_000, 3_000, "tasks/s", True, None),
    ("process round trip, 1 worker", process_round_trip, 2_000, 300, "us", False, 4.0),
    ("process map(chunksize=1000), 2 workers", process_map_chunks, 200_000, 50_000, "items/s",
     True, 2.0),
    ("process uneven: one 2 s task, then 40 of 50 ms, 2 workers", process_uneven, 40, 4, "ms",
     False, 0.98),
    ("process 64 MiB bytes argument", process_big_argument, 64 << 20, 16 << 20, "ms", False, 2.5),
    ("process 64 MiB NumPy array argument", process_big_array, 64 << 20, 16 << 20, "ms", False,
     None),
    ("process pool start to first result, fork", process_startup_fork, 1, 1, "ms", False, 1.0),
    ("process pool start to first result, spawn", process_startup_spawn, 1, 1, "ms", False, 1.0),
    ("process pool start to first result, forkserver", process_startup_forkserver, 1, 1, "ms",
     False, 1.0),
    # 3.12+ (InterpreterPoolExecutor; the round trip 3.14+), and free-threaded builds; the "stdlib" side of the CPU
    # rows is another pool or the GIL build (ROW_BASELINES).
    ("interpreter round trip, 1 worker", interpreter_round_trip, 2_000, 300, "us", False, None),
    ("CPU-bound pure Python, 2 workers: interpreter pool vs thread pool",
     interpreter_vs_threads_cpu, 4_000_000, 800_000, "iterations/s", True, None),
    ("CPU-bound pure Python, 2 workers: interpreter pool vs process pool",
     interpreter_vs_processes_cpu, 4_000_000, 800_000, "iterations/s", True, None),
    ("CPU-bound pure Python in a thread pool, 2 workers: free-threaded vs GIL",
     free_threaded_cpu, 4_000_000, 800_000, "iterations/s", True, None),
    # Only with distributed installed; the "stdlib" side is Dask's own API (ROW_BASELINES).
    # 4,000 items, not 20,000: Dask's one-task-per-item paths run about 500 items/s here, so 20k
    # took 4 minutes over 3 repeats. Throughput per item is steady past a few hundred tasks, and
    # 4 chunks instead of 20 only lower the DaskExecutor's figure (its fixed costs weigh more).
    ("dask map(chunksize=1000) vs client.get_executor().map, 2-worker LocalCluster",
     dask_vs_get_executor, 4_000, 1_000, "items/s", True, 10.0),
    ("dask map(chunksize=1000) vs client.map + gather, 2-worker LocalCluster",
     dask_vs_client_map, 4_000, 1_000, "items/s", True, None),
]

# --- peers: the same rows on the pools people pick for speed ----------------------------------
#
# `bench --peers` runs PEER_ROWS on the stdlib, on cfutures (the workloads above, unchanged) and
# on each peer below through its own idiomatic API. A peer's measurement takes the same steps as
# the stdlib's: a pool made and warmed with one no-op outside the clock, the timed part, the pool
# closed; start-up rows run in a fresh interpreter. Each peer says which rows it has no sensible
# equivalent for (the cell stays empty, with the reason as a footnote).

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
        import importlib.metadata  # here: spawned workers import this module for noop()
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
    startup_stop = "from cfutures._bench import _joblib_shutdown; _joblib_shutdown()"

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


# The timed parts on a peer's pool, step for step those of the stdlib workloads above.

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


def measure(impl, workload, n):
    """One measurement of a row (the workload function's name) on one implementation: "stdlib",
    "cfutures" or a peer's name. Raises NotApplicable where a peer has no equivalent."""
    fn = next(w[1] for w in WORKLOADS if w[1].__name__ == workload)
    if impl in IMPLS:
        return fn(impl, n)
    peer = PEERS[impl]
    note = peer.note(workload)
    if note:
        raise NotApplicable(note)
    if workload.startswith("process_startup_"):
        return _startup(impl, workload[len("process_startup_"):])
    pool = peer.open(*_ROW_POOL[workload])
    try:
        return _PEER_BODIES[workload](pool, n)
    finally:
        pool.close()


# --- load: one busy process per core -----------------------------------------------------------

# A spinning interpreter that also ends itself within ~50 ms of its parent's death, so that a
# killed benchmark leaves nothing behind.
_SPIN = ("import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
         "    for _ in range(1000000):\n        pass\n")


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Load:
    """with Load(): one busy process per core for the duration of the block, always ended after
    it (exceptions and KeyboardInterrupt included)."""

    def __init__(self, processes=None):
        self.count = processes or _cores()
        self.processes = []

    def __enter__(self):
        try:
            for _ in range(self.count):
                # Their own session: a Ctrl-C reaches the benchmark, which ends them itself.
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _SPIN], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            time.sleep(0.2)  # let them reach their loop
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p in self.processes:
            if p.poll() is None:
                p.kill()
        for p in self.processes:
            p.wait()
        self.processes = []
        return False


# --- the runner ------------------------------------------------------------------------------

_SCALE = {"us": 1e6, "ms": 1e3}


def _fmt(value, unit):
    v = value * _SCALE.get(unit, 1)
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def _available(workload):
    # A row whose library is not installed is left out.
    if workload[1] is process_big_array:
        return importlib.util.find_spec("numpy") is not None
    if workload[1].__name__.startswith("dask_"):
        return importlib.util.find_spec("distributed") is not None
    if workload[1] is interpreter_round_trip:  # its baseline is the stdlib's pool (3.14+)
        return hasattr(_module("stdlib"), "InterpreterPoolExecutor")
    if workload[1].__name__.startswith("interpreter_"):
        return hasattr(cfutures, "InterpreterPoolExecutor")
    if workload[1] is free_threaded_cpu:
        return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return True


class _Progress:
    """One line on a terminal, rewritten in place; elsewhere (a CI log) one line per row."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream is not None and getattr(stream, "isatty", lambda: False)()
        self.shown = 0
        self.row = None

    def update(self, row, rows, name, impl, run, runs):
        if self.stream is None:
            return
        if self.tty:
            import shutil
            width = shutil.get_terminal_size((100, 20)).columns - 1
            text = f"[row {row}/{rows}] {impl} run {run}/{runs}: {name}"[:width]
            self.stream.write("\r" + text + " " * max(0, self.shown - len(text)))
            self.shown = len(text)
        elif self.row != row:
            self.stream.write(f"[row {row}/{rows}] {name}: {runs} run(s) per implementation\n")
        self.row = row
        self.stream.flush()

    def done(self):
        if self.tty and self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
        self.shown = 0


def _ratio(row, impl, other):
    a, b = row["median"][impl], row["median"][other]
    return a / b if row["higher_is_better"] else b / a


def run(repeat=3, quick=False, only=None, progress=sys.stderr, peers=None, under_load=False):
    """Runs the table's rows, implementations alternating run by run; returns one dict per row.

    peers: None for the stdlib/cfutures table (WORKLOADS), or the peers' names (importable ones)
    for the --peers table (PEER_ROWS, start-up rows at least STARTUP_MIN_REPEAT runs unless
    quick). under_load only chooses the targets the --peers rows are judged against."""
    rows = []
    if peers is None:
        table = WORKLOADS
    else:
        table = [w for w in WORKLOADS if w[1].__name__ in PEER_ROWS]
    selected = [w for w in table if (not only or any(o in w[0] for o in only)) and _available(w)]
    impls = list(IMPLS) + list(peers or [])
    shown = _Progress(progress)
    # A group of rows sharing a resource (ROW_GROUPS): opened before its first row, closed after
    # its last.
    last_of_group = {ROW_GROUPS.get(w[1].__name__): k for k, w in enumerate(selected, 1)}
    open_groups = {}
    try:
        for k, (name, fn, size, quick_size, unit, higher_better, target) in enumerate(selected, 1):
            n = quick_size if quick else size
            key = fn.__name__
            group = ROW_GROUPS.get(key)
            if group is not None and group not in open_groups:
                with contextlib.ExitStack() as stack:
                    stack.enter_context(group())
                    open_groups[group] = stack.pop_all()
            notes = {impl: PEERS[impl].note(key) for impl in impls if impl not in IMPLS}
            notes = {impl: note for impl, note in notes.items() if note}
            runnable = [impl for impl in impls if impl not in notes]
            runs = repeat
            if peers is not None and key.startswith("process_startup_") and not quick:
                runs = max(repeat, STARTUP_MIN_REPEAT)
            if key.startswith("process_startup_"):
                floor = [import_floor() for _ in range(runs)]
            samples = {impl: [] for impl in runnable}
            for rep in range(runs):
                # Rotate the order so that a noisy neighbour does not always hit the same
                # implementation (with two, the order simply alternates).
                shift = rep % len(runnable)
                for impl in runnable[shift:] + runnable[:shift]:
                    shown.update(k, len(selected), name, impl, rep + 1, runs)
                    if peers is None:
                        samples[impl].append(fn(impl, n))
                    else:
                        samples[impl].append(measure(impl, key, n))
            med = {impl: statistics.median(v) for impl, v in samples.items()}
            row = {"workload": name, "unit": unit, "n": n, "higher_is_better": higher_better,
                   "samples": samples, "median": med}
            row["ratio"] = _ratio(row, "cfutures", "stdlib")
            if key.startswith("process_startup_"):
                row["import_floor"] = statistics.median(floor)
            if key in ROW_BASELINES:
                row["baseline"] = ROW_BASELINES[key]
            if peers is None:
                row.update(target=target, met=None if target is None else row["ratio"] >= target)
            else:
                _judge_peers_row(row, key, notes, runs, under_load)
            rows.append(row)
            if group is not None and last_of_group[group] == k:
                open_groups.pop(group).close()
    finally:
        for stack in open_groups.values():
            stack.close()
        shown.done()
    return rows


def _judge_peers_row(row, key, notes, runs, under_load):
    others = [impl for impl in row["median"] if impl != "cfutures"]
    ratios = {impl: _ratio(row, "cfutures", impl) for impl in others}
    fastest = min(ratios, key=ratios.get)  # the smallest ratio is the fastest other
    targets = []
    for ref, minimum in (PEER_TARGETS_UNDER_LOAD if under_load else PEER_TARGETS)[key]:
        impl = fastest if ref == "fastest" else ref
        if impl in ratios:
            targets.append({"against": ref, "minimum": minimum, "ratio": ratios[impl],
                            "met": ratios[impl] >= minimum})
    row.update(key=key, runs=runs, notes=notes, ratios=ratios, fastest_other=fastest,
               ratio_fastest_other=ratios[fastest], targets=targets)


def environment():
    """The machine a table was measured on: CPU model, the host's cores, what this process may
    use (affinity mask, cgroup CPU quota: the waiting policy's inputs), kernel, Python."""
    from cfutures import _cfutures
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    limits = _cfutures._cpu_limits()
    quota = ("no CPU quota" if limits["quota_cpus"] is None
             else f"CPU quota {limits['quota_cpus']:g} ({limits['quota_source']})")
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "limits": f"affinity {limits['affinity_cpus']} CPUs, {quota}: "
                  f"{limits['usable_cpus']} usable",
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({platform.python_compiler()})",
        "cfutures": cfutures.__version__,
    }


def _load_line(load):
    if not load:
        return "Load: none added (idle, apart from whatever else runs on the machine)"
    return (f"Load: UNDER LOAD, {load} busy processes (one per core, `while True: pass`) "
            f"spinning throughout the run")


def render(rows, repeat, command, quick=False, load=0):
    env = environment()
    lines = [
        f"Machine: {env['machine']}; {env['limits']}",
        f"Python: {env['python']}; cfutures {env['cfutures']}",
        f"Command: {command}  (median of {repeat} alternating runs per side; spread = min..max)",
        "",
        "| workload | n | unit | concurrent.futures | cfutures | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    if load:
        lines.insert(2, _load_line(load))
    baselines = []  # rows whose concurrent.futures column holds another library's API
    for r in rows:
        cells = []
        for impl in IMPLS:
            s = r["samples"][impl]
            cells.append(f"{_fmt(r['median'][impl], r['unit'])} "
                         f"({_fmt(min(s), r['unit'])}..{_fmt(max(s), r['unit'])})")
        if r["target"] is None:
            target = ""
        elif quick:
            target = f">= {r['target']:g}x (not judged: --quick sizes)"
        else:
            target = f">= {r['target']:g}x {'met' if r['met'] else 'NOT MET'}"
        workload = r["workload"]
        if "baseline" in r:
            if r["baseline"] not in baselines:
                baselines.append(r["baseline"])
            workload += f" [{baselines.index(r['baseline']) + 1}]"
        lines.append(f"| {workload} | {r['n']:,} | {r['unit']} | {cells[0]} | {cells[1]} | "
                     f"{r['ratio']:.1f}x | {target} |")
    lines.append("")
    lines.append("ratio: how many times better cfutures is (throughput ratio, or time and memory "
                 "ratio stdlib/cfutures).")
    for i, baseline in enumerate(baselines, 1):
        lines.append(f"[{i}] The concurrent.futures column of this row is {baseline}.")
    if any(r["workload"].startswith("dask ") for r in rows):
        import importlib.metadata
        lines.append(f"Dask: distributed {importlib.metadata.version('distributed')}.")
    return "\n".join(lines)


def _spread(samples, median):
    # Half the min..max range, in percent of the median.
    if median == 0:
        return 0.0
    return (max(samples) - min(samples)) / 2 / median * 100


def render_peers(rows, repeat, command, peers, skipped, quick=False, load=0):
    env = environment()
    impls = list(IMPLS) + list(peers)
    labels = {"stdlib": "concurrent.futures", "cfutures": "cfutures", **{p: p for p in peers}}
    startup_runs = max((r["runs"] for r in rows if r["key"].startswith("process_startup_")),
                       default=repeat)
    versions = ", ".join(f"{p} ({PEERS[p].version()})" for p in peers)
    lines = [
        f"Machine: {env['machine']}; {env['limits']}",
        f"Python: {env['python']}; cfutures {env['cfutures']}",
        f"Peers: {versions}",
    ]
    if skipped:
        lines.append("Peers not importable (skipped): "
                     + "; ".join(f"{p} ({why})" for p, why in skipped.items()))
    lines += [
        _load_line(load),
        f"Command: {command}  (median of {repeat} runs per implementation, alternating run by run"
        f"{f'; start-up rows {startup_runs} runs, each in a fresh interpreter' if startup_runs != repeat else ''}"
        f"; ± = half the min..max range, in % of the median)",
        "",
        "| workload | n | unit | " + " | ".join(labels[i] for i in impls)
        + " | cfutures/stdlib | cfutures vs fastest other | target |",
        "|---|---|---|" + "---|" * len(impls) + "---|---|---|",
    ]
    footnotes = []

    def mark(text):
        if text not in footnotes:
            footnotes.append(text)
        return f"[{footnotes.index(text) + 1}]"

    for r in rows:
        cells = []
        for impl in impls:
            if impl in r["notes"]:
                cells.append(mark(r["notes"][impl]))
                continue
            s, m = r["samples"][impl], r["median"][impl]
            cell = _fmt(m, r["unit"]) + (f" ±{_spread(s, m):.0f}%" if len(s) > 1 else "")
            remark = PEERS[impl].remarks.get(r["key"]) if impl in PEERS else None
            if remark:
                cell += " " + mark(remark)
            cells.append(cell)
        if quick:
            target = "not judged (--quick sizes)"
        else:
            target = "; ".join(f"{'fastest other' if t['against'] == 'fastest' else t['against']}"
                               f" >= {t['minimum']:g}x {'met' if t['met'] else 'NOT MET'}"
                               for t in r["targets"])
        lines.append(f"| {r['workload']} | {r['n']:,} | {r['unit']} | " + " | ".join(cells)
                     + f" | {r['ratio']:.2f}x | {r['ratio_fastest_other']:.2f}x "
                       f"({labels[r['fastest_other']]}) | {target} |")
    lines.append("")
    lines.append("Ratios: how many times better cfutures is (throughput ratio, or time ratio "
                 "other/cfutures); below 1x the other implementation is faster.")
    for i, text in enumerate(footnotes, 1):
        lines.append(f"[{i}] {text}.")
    lines.append("Every measurement makes its own pool and warms it with one no-op outside the "
                 "clock. Start-up rows: a fresh interpreter, the clock started before the pool "
                 "library's imports (multiprocessing's included), until the first result of "
                 "int() comes back.")
    floors = [r["import_floor"] for r in rows if "import_floor" in r]
    if floors:
        lines.append("Of that, importing multiprocessing and the stdlib's "
                     f"concurrent.futures.process alone took {statistics.median(floors) * 1e3:.1f} "
                     "ms in this run (median): a floor of the stdlib's rows and of cfutures', "
                     "whose ProcessPoolExecutor is a subclass of the stdlib's.")
    lines.append("How each peer is called:")
    for p in peers:
        lines.append(f"- {p}: {PEERS[p].how}.")
    return "\n".join(lines)


def plot(rows, path, title):
    """A bar chart of the ratios: per row, cfutures against each other implementation (log scale;
    above the line at 1x cfutures is ahead)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    def ratios(r):
        return r.get("ratios", {"stdlib": r["ratio"]})
    order = ["stdlib", *PEERS]
    others = [impl for impl in order if any(impl in ratios(r) for r in rows)]
    names = {"stdlib": "concurrent.futures"}
    width = 0.8 / len(others)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(rows) + 1.5), 6))
    values = [1.0]
    for j, impl in enumerate(others):
        xs = [i - 0.4 + width * (j + 0.5) for i, r in enumerate(rows) if impl in ratios(r)]
        ys = [ratios(r)[impl] for r in rows if impl in ratios(r)]
        values += ys
        # From the 1x line: up where cfutures is ahead, down where it is behind.
        ax.bar(xs, [y - 1 for y in ys], bottom=1, width=width,
               label=f"vs {names.get(impl, impl)}")
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 1.5, max(values) * 4)  # room for the legend at the top
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([textwrap.fill(r["workload"], 18, break_long_words=False) for r in rows], fontsize=7)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("times better than the other implementation (log scale)")
    ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(others), 6), loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cfutures bench",
                                     description="Benchmark cfutures against concurrent.futures, "
                                                 "side by side in one run.")
    parser.add_argument("--repeat", type=int, help="runs per side (default 3; 5 with --apps)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--only", action="append", help="run workloads whose name contains this")
    parser.add_argument("--json", help="also write the raw samples here")
    parser.add_argument("--peers", nargs="?", const="all", metavar="NAMES",
                        help="the rows of issue 13 on multiprocessing.Pool too, and on loky, "
                             "pebble, mpire and joblib where installed (NAMES: a comma-separated "
                             f"choice among {', '.join(PEERS)}); start-up rows run at least "
                             f"{STARTUP_MIN_REPEAT} times unless --quick")
    parser.add_argument("--under-load", action="store_true",
                        help="one busy process per core for the whole run (ended afterwards)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw the ratios as a bar chart (needs matplotlib)")
    parser.add_argument("--apps", action="store_true",
                        help="real programs instead of the table (gRPC, dask, asyncio, tqdm, "
                             "NumPy; cfutures/_bench_apps.py), each in fresh interpreters with "
                             "the stdlib and under cfutures.install(); --repeat defaults to 5")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 5 if args.apps else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.apps:
        if args.peers is not None or args.plot:
            parser.error("--apps takes --repeat, --quick, --only, --json and --under-load only")
        return _main_apps(args, argv)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, which is not installed here "
                     "(pip install matplotlib, or cfutures[plot])")
    peers = skipped = None
    if args.peers is not None:
        wanted = None
        if args.peers != "all":
            by_lower = {p.lower(): p for p in PEERS}
            wanted = set()
            for name in filter(None, (n.strip() for n in args.peers.split(","))):
                if name.lower() not in by_lower:
                    parser.error(f"--peers: unknown peer {name!r} (known: {', '.join(PEERS)})")
                wanted.add(by_lower[name.lower()])
        peers, skipped = available_peers(wanted)
    command = "python -m cfutures bench" + (" " + shlex.join(argv) if argv else "")
    load = Load() if args.under_load else contextlib.nullcontext()
    started = time.perf_counter()
    with load:
        rows = run(repeat=args.repeat, quick=args.quick, only=args.only, peers=peers,
                   under_load=args.under_load)
    elapsed = time.perf_counter() - started
    count = load.count if args.under_load else 0
    if peers is None:
        print(render(rows, args.repeat, command, quick=args.quick, load=count))
    else:
        print(render_peers(rows, args.repeat, command, peers, skipped, quick=args.quick,
                           load=count))
        print(f"Run time: {elapsed:.0f} s")
    if args.plot:
        what = "under load" if args.under_load else "idle"
        env = environment()
        plot(rows, args.plot, f"cfutures against the others, {what}: how many times better "
                              f"(above 1x cfutures is ahead). {env['machine']}; "
                              f"{env['limits']}; {env['python']}; "
                              f"{command}")
        print(f"Plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "command": command, "load": count,
                       "peers": peers, "skipped_peers": skipped, "seconds": elapsed,
                       "rows": rows}, f, indent=2)
    return 0


def _main_apps(args, argv):
    from cfutures import _bench_apps
    command = "python -m cfutures bench" + (" " + shlex.join(argv) if argv else "")
    load = Load() if args.under_load else contextlib.nullcontext()
    with load:
        rows = _bench_apps.run_apps(repeat=args.repeat, quick=args.quick, only=args.only)
    count = load.count if args.under_load else 0
    print(_bench_apps.render_apps(rows, args.repeat, command, load=count))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "command": command, "load": count,
                       "rows": rows}, f, indent=2)
    return 0
