"""Plain-future operations of cfutures, nanoseconds per operation (median of 5 rounds).

For comparing two builds of cfutures (a change against the commit before it), which the
side-by-side table of ``python -m cfutures bench`` (the stdlib against cfutures) cannot do:
install each build in a venv of its own, then run this file with each venv's python in turn,
several times, and compare the medians of each row:

    for i in 1 2 3 4 5; do for v in old new; do /tmp/bench-$v/bin/python benchmarks/future_ops.py; done; done

Issue 27's closing note used it to show that futures which never assign ``_condition`` did not
get slower.
"""

import time

import cfutures


def median_ns_per_op(fn, n, rounds=5):
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn(n)
        times.append((time.perf_counter_ns() - start) / n)
    return sorted(times)[rounds // 2]


def create_set_result(n):
    for _ in range(n):
        f = cfutures.Future()
        f.set_result(1)
        f.result()


def callback_then_result(n):
    def callback(f):
        pass
    for _ in range(n):
        f = cfutures.Future()
        f.add_done_callback(callback)
        f.set_result(1)


def state_checks(n):
    f = cfutures.Future()
    f.set_result(1)
    for _ in range(n):
        f.done()
        f.cancelled()
        f.running()


def main():
    with cfutures.ThreadPoolExecutor(4) as four, cfutures.ThreadPoolExecutor(1) as one:
        def submit_then_results(n):
            fs = [four.submit(int) for _ in range(n)]
            for f in fs:
                f.result()

        def round_trips(n):
            for _ in range(n):
                one.submit(int).result()

        def wait_for_done(n):
            fs = [cfutures.Future() for _ in range(1000)]
            for f in fs:
                f.set_result(None)
            for _ in range(n // 1000):
                cfutures.wait(fs)

        rows = [("future create+set_result+result", create_set_result, 200_000),
                ("add_done_callback+set_result", callback_then_result, 200_000),
                ("done/cancelled/running", state_checks, 300_000),
                ("thread submit+result 4 workers", submit_then_results, 100_000),
                ("wait(1000 done futures)", wait_for_done, 200_000),
                ("thread round trip 1 worker", round_trips, 20_000)]
        for name, fn, n in rows:
            print(f"{name}\t{median_ns_per_op(fn, n):.1f}")


if __name__ == "__main__":
    main()
