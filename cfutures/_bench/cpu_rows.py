"""The rows of the pool kinds: CPU-bound pure Python on subinterpreters, threads and processes,
the interpreter pool's round trip, and BASELINES, what the "stdlib" side of the CPU-bound rows
measures.

InterpreterPoolExecutor rows exist where cfutures has it (3.12+). The round-trip row compares it
with the stdlib's, where the stdlib has one (3.14+); the CPU-bound rows compare cfutures'
InterpreterPoolExecutor (the "cfutures" column) with cfutures' own thread and process pools (the
"stdlib" column: see ROW_BASELINES), all on 2 workers, each made and warmed with one task outside
the clock. On a free-threaded build, the thread pool row compares the same CPU-bound work with
the GIL off (the "cfutures" column) and on (-X gil=1, the "stdlib" column), each in a fresh
interpreter.
"""

import operator
import os
import subprocess
import sys
import time

import cfutures
from cfutures._bench.tasks import _module, _round_trips

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
from cfutures._bench import cpu_rows
with cfutures.ThreadPoolExecutor(2) as ex:
    print(cpu_rows._cpu_map(ex, {n}))
"""


def free_threaded_cpu(impl, n):
    """CPU-bound iterations per second on cfutures.ThreadPoolExecutor(2) in a fresh interpreter,
    with the GIL off ("cfutures") and on (-X gil=1, the "stdlib" slot)."""
    gil = "0" if impl == "cfutures" else "1"
    out = subprocess.run([sys.executable, "-X", f"gil={gil}", "-c",
                          _CPU_THREADS_SCRIPT.format(n=n)], check=True, capture_output=True,
                         text=True, env=dict(os.environ, CFUTURES_INSTALL="0"))
    return float(out.stdout.strip())


# What the "stdlib" side of each CPU-bound row measures (ROW_BASELINES).
BASELINES = {
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
}
