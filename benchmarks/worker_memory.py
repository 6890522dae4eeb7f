"""What max_worker_memory costs a pool whose workers never reach the bound: the RSS read after
each task (one pread of /proc/self/statm), and the frames the pool keeps for tasks in flight.

Times submit + result of N no-op tasks (pool started and warmed first, so worker start-up is not
in the time) on a pool without the bound and on one with a bound no worker reaches (1 TiB),
alternating, both under forkserver (the start method the bound picks by default). Prints each
pair's ratio (bounded / plain), the median ratio and its spread, and the cost of one RSS read in
the worker's code, alone:

    python benchmarks/worker_memory.py [--tasks 20000] [--rounds 10] [--workers 2]

Not part of `pytest benchmarks/`: a ratio measured in one run, alternating, as the guide asks.
"""

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time

import cfutures
from cfutures import _process_worker


def noop(x):
    return x


def run(tasks, workers, bound):
    ctx = multiprocessing.get_context("forkserver")
    with cfutures.ProcessPoolExecutor(workers, mp_context=ctx, max_worker_memory=bound) as ex:
        for f in [ex.submit(noop, i) for i in range(workers * 200)]:  # started and warm
            f.result()
        start = time.perf_counter()
        fs = [ex.submit(noop, i) for i in range(tasks)]
        for f in fs:
            f.result()
        elapsed = time.perf_counter() - start
        assert ex.stats().workers_replaced == 0
    return elapsed


def rss_read_ns(n=200_000):
    """The worker's check, as cfutures/_process_worker.py spells it, in this process."""
    statm, page = _process_worker._open_statm()
    max_pages, pread = (1 << 40) // page, os.pread
    start = time.perf_counter_ns()
    for _ in range(n):
        if int(pread(statm, 64, 0).split()[1]) > max_pages:
            break
    elapsed = (time.perf_counter_ns() - start) / n
    os.close(statm)
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, {args.tasks} no-op tasks, {args.workers} workers, "
          f"{args.rounds} alternating rounds")
    plain, bounded, ratios = [], [], []
    for i in range(args.rounds):
        # Alternate which goes first, so that drift favours neither.
        order = [None, 1 << 40] if i % 2 == 0 else [1 << 40, None]
        took = {bound: run(args.tasks, args.workers, bound) for bound in order}
        plain.append(args.tasks / took[None])
        bounded.append(args.tasks / took[1 << 40])
        ratios.append(took[1 << 40] / took[None])
        print(f"round {i + 1}: plain {plain[-1]:,.0f} tasks/s, bounded {bounded[-1]:,.0f} tasks/s, "
              f"time ratio {ratios[-1]:.3f}")
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    print(f"median: plain {statistics.median(plain):,.0f} tasks/s, bounded "
          f"{statistics.median(bounded):,.0f} tasks/s; time ratio bounded/plain median "
          f"{statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f})")
    print(f"one RSS read (pread of /proc/self/statm, parsed): {rss_read_ns():,.0f} ns")


if __name__ == "__main__":
    main()
