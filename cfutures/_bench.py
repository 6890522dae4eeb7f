"""Side-by-side benchmarks: the same workload on concurrent.futures and on cfutures, in one run.

``python -m cfutures bench`` prints the table; ``pytest benchmarks/`` runs the same workloads under
pytest-benchmark. Each workload returns a measurement for one implementation; the runner alternates
the implementations repetition by repetition (so that machine noise hits both alike), keeps the
median and the spread, and reports the ratio, which is the figure that counts on a shared machine.
"""

import argparse
import concurrent.futures
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
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


def _round_trips(ex, n):
    for _ in range(20):
        ex.submit(noop).result()
    t0 = time.perf_counter()
    for _ in range(n):
        ex.submit(noop).result()
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


def process_submit_result(impl, n):
    """submit + result of n no-op tasks on 2 worker processes (tasks per second)."""
    with _module(impl).ProcessPoolExecutor(2) as ex:
        return _submit_and_wait(ex, n)


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


_STARTUP_SCRIPT = textwrap.dedent("""
    import multiprocessing, time
    import {module} as futures
    from cfutures._bench import noop

    if __name__ == "__main__":
        context = multiprocessing.get_context("{method}")
        t0 = time.perf_counter()
        with futures.ProcessPoolExecutor(2, mp_context=context) as ex:
            ex.submit(noop).result()
            print(time.perf_counter() - t0)
""")


def _startup(impl, method):
    # In a fresh interpreter (imports done before the clock starts): forking from a process that
    # already ran the other workloads would measure their leftovers, not the pool.
    script = _STARTUP_SCRIPT.format(module=IMPLS[impl], method=method)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
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


# name, function, size, quick size, unit, "higher is better", target ratio (None: reported only),
# what the target means
WORKLOADS = [
    ("thread submit+result of no-op tasks, 4 workers", thread_submit_result, 100_000, 20_000,
     "tasks/s", True, 5.0),
    ("thread round trip, 1 worker", thread_round_trip, 20_000, 3_000, "us", False, 3.0),
    ("thread map of identity, 4 workers", thread_map, 100_000, 20_000, "items/s", True, None),
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
    ("process round trip, 1 worker", process_round_trip, 2_000, 300, "us", False, 4.0),
    ("process map(chunksize=1000), 2 workers", process_map_chunks, 200_000, 50_000, "items/s",
     True, 2.0),
    ("process 64 MiB bytes argument", process_big_argument, 64 << 20, 16 << 20, "ms", False, 2.5),
    ("process 64 MiB NumPy array argument", process_big_array, 64 << 20, 16 << 20, "ms", False,
     None),
    ("process pool start to first result, fork", process_startup_fork, 1, 1, "ms", False, 1.0),
    ("process pool start to first result, spawn", process_startup_spawn, 1, 1, "ms", False, 1.0),
    ("process pool start to first result, forkserver", process_startup_forkserver, 1, 1, "ms",
     False, 1.0),
]

_SCALE = {"us": 1e6, "ms": 1e3}


def _fmt(value, unit):
    v = value * _SCALE.get(unit, 1)
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def _available(workload):
    if workload[1] is process_big_array:
        return importlib.util.find_spec("numpy") is not None  # the row is left out without it
    return True


def run(repeat=3, quick=False, only=None, progress=sys.stderr):
    rows = []
    selected = [w for w in WORKLOADS
                if _available(w) and (not only or any(o in w[0] for o in only))]
    for k, (name, fn, size, quick_size, unit, higher_better, target) in enumerate(selected, 1):
        n = quick_size if quick else size
        samples = {impl: [] for impl in IMPLS}
        for rep in range(repeat):
            # Alternate the order so that a noisy neighbour does not always hit the same side.
            order = list(IMPLS) if rep % 2 == 0 else list(reversed(IMPLS))
            for impl in order:
                print(f"[{k}/{len(selected)}] {name}: {impl}, run {rep + 1}/{repeat}",
                      file=progress, flush=True)
                samples[impl].append(fn(impl, n))
        med = {impl: statistics.median(v) for impl, v in samples.items()}
        ratio = (med["cfutures"] / med["stdlib"]) if higher_better else (med["stdlib"] / med["cfutures"])
        rows.append({
            "workload": name, "unit": unit, "n": n, "higher_is_better": higher_better,
            "samples": samples, "median": med, "ratio": ratio, "target": target,
            "met": None if target is None else ratio >= target,
        })
    return rows


def environment():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({platform.python_compiler()})",
        "cfutures": cfutures.__version__,
    }


def render(rows, repeat, command, quick=False):
    env = environment()
    lines = [
        f"Machine: {env['machine']}",
        f"Python: {env['python']}; cfutures {env['cfutures']}",
        f"Command: {command}  (median of {repeat} alternating runs per side; spread = min..max)",
        "",
        "| workload | n | unit | concurrent.futures | cfutures | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
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
        lines.append(f"| {r['workload']} | {r['n']:,} | {r['unit']} | {cells[0]} | {cells[1]} | "
                     f"{r['ratio']:.1f}x | {target} |")
    lines.append("")
    lines.append("ratio: how many times better cfutures is (throughput ratio, or time and memory "
                 "ratio stdlib/cfutures).")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cfutures bench",
                                     description="Benchmark cfutures against concurrent.futures, "
                                                 "side by side in one run.")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--only", action="append", help="run workloads whose name contains this")
    parser.add_argument("--json", help="also write the raw samples here")
    args = parser.parse_args(argv)
    command = "python -m cfutures bench" + (" " + " ".join(argv) if argv else "")
    rows = run(repeat=args.repeat, quick=args.quick, only=args.only)
    print(render(rows, args.repeat, command, quick=args.quick))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "command": command, "rows": rows}, f,
                      indent=2)
    return 0
