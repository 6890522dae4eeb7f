"""The workloads of concurrent.futures' users, each run on the stdlib and on cfutures (thread and
process pools, waiting on futures, memory, process pool start-up), and the table of rows
``python -m cfutures bench`` runs: WORKLOADS, with ROW_BASELINES (rows whose "stdlib" side is
something else) and ROW_GROUPS (rows that share a resource). The Dask rows live in dask_rows, the
CPU-bound rows of the pool kinds in cpu_rows.
"""

import gc
import os
import subprocess
import sys
import textwrap
import time

from cfutures._bench import cpu_rows, dask_rows
from cfutures._bench.cpu_rows import (free_threaded_cpu, interpreter_round_trip,
                                      interpreter_vs_processes_cpu, interpreter_vs_threads_cpu)
from cfutures._bench.dask_rows import (dask_cluster, dask_submit_vs_client_submit,
                                       dask_submit_vs_client_submit_long, dask_vs_client_map,
                                       dask_vs_get_executor)
from cfutures._bench.tasks import IMPLS, _module, _round_trips, identity, noop

# --- workloads: each takes (impl name, size) and returns (value, unit) -------------------------

def _submit_and_wait(ex, n):
    ex.submit(noop).result()
    t0 = time.perf_counter()
    fs = [ex.submit(noop) for _ in range(n)]
    for f in fs:
        f.result()
    return n / (time.perf_counter() - t0)


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


def startup_seconds(parts):
    """_STARTUP_SCRIPT with these parts ({"imports", "start", "stop"}: a pool library's lines) in a
    fresh interpreter: seconds from before the imports to the first result."""
    # Forking from a process that already ran the other workloads would measure their
    # leftovers, not the pool.
    out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT.format(**parts)], check=True,
                         capture_output=True, text=True, env=dict(os.environ, CFUTURES_INSTALL="0"))
    return float(out.stdout.strip())


def _startup(impl, method):
    return startup_seconds({k: v.format(module=IMPLS[impl], method=method)
                            for k, v in _OWN_STARTUP.items()})


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


# What the "stdlib" side of a row measures where it is not concurrent.futures.
ROW_BASELINES = {**cpu_rows.BASELINES, **dask_rows.BASELINES}

# Rows that share a resource, opened before the first of them runs and closed after the last.
ROW_GROUPS = {"dask_vs_get_executor": dask_cluster, "dask_vs_client_map": dask_cluster,
              "dask_submit_vs_client_submit": dask_cluster,
              "dask_submit_vs_client_submit_long": dask_cluster}


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
    # Single submits (issue 29): within 1.1x of Dask's own client.submit + gather, a short run
    # and a long one (the long one takes about 30 s a side here).
    ("dask 500 single submits + as_completed vs client.submit + gather, 2-worker LocalCluster",
     dask_submit_vs_client_submit, 500, 100, "tasks/s", True, 0.91),
    ("dask 20,000 single submits + as_completed vs client.submit + gather, 2-worker "
     "LocalCluster", dask_submit_vs_client_submit_long, 20_000, 1_000, "tasks/s", True, 0.91),
]
