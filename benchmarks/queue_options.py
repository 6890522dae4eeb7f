"""What each opt-in queue option costs (issue 28), against the same pool without it, in one run.

Each row times a pool with the option beside the same pool without it, alternating rounds in one
process, and prints both medians and their ratio (option / plain: above 1 is slower):

    python benchmarks/queue_options.py            # every row
    python benchmarks/queue_options.py context    # rows whose name contains "context"

The rows:
  - context="submit": a contextvars copy per submit (thread pool, 1 worker, submit then result);
  - max_queue never reached: the bound's check per submit (thread pool, 4 workers, 50k no-ops);
  - the options view alone (priority=0: the plain lane), then priority on every task (the map of
    lanes in use) (thread pool, 4 workers, 50k no-ops);
  - the same two on a process pool (2 workers, 20k no-ops, chunks of one task).
"""

import sys
import time

import cfutures

ROUNDS = 7


def round_trips(ex, n):
    for _ in range(n):
        ex.submit(int).result()


def fan_out(submit, n):
    futures = [submit(int) for _ in range(n)]
    for f in futures:
        f.result()


def rows():
    yield ("thread round trip, context='submit'", 20_000,
           lambda: cfutures.ThreadPoolExecutor(1, context="submit"), lambda: cfutures.ThreadPoolExecutor(1),
           round_trips)
    yield ("thread 50k no-ops, max_queue never reached", 50_000,
           lambda: cfutures.ThreadPoolExecutor(4, max_queue=10**9), lambda: cfutures.ThreadPoolExecutor(4),
           lambda ex, n: fan_out(ex.submit, n))
    yield ("thread 50k no-ops, options(priority=0): the view alone", 50_000,
           lambda: cfutures.ThreadPoolExecutor(4), lambda: cfutures.ThreadPoolExecutor(4),
           (lambda ex, n: fan_out(ex.options(priority=0).submit, n), lambda ex, n: fan_out(ex.submit, n)))
    yield ("thread 50k no-ops, options(priority=1) on each", 50_000,
           lambda: cfutures.ThreadPoolExecutor(4), lambda: cfutures.ThreadPoolExecutor(4),
           (lambda ex, n: fan_out(ex.options(priority=1).submit, n), lambda ex, n: fan_out(ex.submit, n)))
    yield ("process 20k no-ops, max_queue never reached", 20_000,
           lambda: cfutures.ProcessPoolExecutor(2, max_queue=10**9), lambda: cfutures.ProcessPoolExecutor(2),
           lambda ex, n: fan_out(ex.submit, n))
    yield ("process 20k no-ops, options(priority=1) on each", 20_000,
           lambda: cfutures.ProcessPoolExecutor(2), lambda: cfutures.ProcessPoolExecutor(2),
           (lambda ex, n: fan_out(ex.options(priority=1).submit, n), lambda ex, n: fan_out(ex.submit, n)))


def measure(n, make_option, make_plain, work):
    work_option, work_plain = work if isinstance(work, tuple) else (work, work)
    with make_option() as with_option, make_plain() as plain:
        work_option(with_option, n // 10)  # warm up: workers started, caches filled
        work_plain(plain, n // 10)
        times = {"option": [], "plain": []}
        for _ in range(ROUNDS):
            for name, ex, fn in (("option", with_option, work_option), ("plain", plain, work_plain)):
                start = time.perf_counter()
                fn(ex, n)
                times[name].append((time.perf_counter() - start) / n * 1e9)
    return {name: sorted(t)[ROUNDS // 2] for name, t in times.items()}


def main(argv):
    wanted = argv[1] if len(argv) > 1 else ""
    print(f"{'row':50} {'option ns':>10} {'plain ns':>10} {'ratio':>7}")
    for name, n, make_option, make_plain, work in rows():
        if wanted not in name:
            continue
        m = measure(n, make_option, make_plain, work)
        print(f"{name:50} {m['option']:10.0f} {m['plain']:10.0f} {m['option'] / m['plain']:7.2f}")


if __name__ == "__main__":
    main(sys.argv)
