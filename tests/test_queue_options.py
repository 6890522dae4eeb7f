"""cfutures' opt-in queue options on both pools: back-pressure (max_queue, options(block=,
block_timeout=), cfutures.QueueFull), priorities (options(priority=)), and on the thread pool the
context per task (context="submit"). cfutures only: the stdlib has none of these; with the
defaults every behaviour stays the stdlib's (the parity suites check that)."""

import asyncio
import contextvars
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import cfutures
from conftest import ExecutorFactory, ProcessExecutorFactory
from process_helpers import sleep_and_return  # noqa: E402  (importable by spawned workers)


@pytest.fixture(params=["thread", "process"])
def pool(request):
    """A factory of cfutures pools of either kind (processes by forkserver)."""
    factory = (ExecutorFactory(cfutures) if request.param == "thread"
               else ProcessExecutorFactory(cfutures, "forkserver"))
    factory.kind = request.param
    yield factory
    factory.close()


class Gate:
    """Keeps a one-worker pool busy until opened: a thread pool's task waits on an Event; a
    process pool's worker sleeps (the pool cannot share an Event with it)."""

    def __init__(self, pool, ex):
        self.kind, self.ex = pool.kind, ex
        self.event = threading.Event()
        self.future = ex.submit(self.event.wait, 30) if self.kind == "thread" else ex.submit(time.sleep, 1.0)
        wait_until(lambda: ex.stats().running == 1)

    def open(self):
        self.event.set()


def wait_until(predicate, limit=30):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# --- back-pressure ----------------------------------------------------------------------------

def test_submit_blocks_while_max_queue_tasks_wait_then_goes_on(pool):
    ex = pool(1, max_queue=2)
    gate = Gate(pool, ex)
    queued = [ex.submit(abs, -i) for i in range(2)]
    assert ex.stats().queued == 2
    threading.Timer(0.3, gate.open).start()
    began = time.monotonic()
    late = ex.submit(abs, -7)
    assert time.monotonic() - began > 0.1  # it waited for room
    assert late.result(timeout=30) == 7
    assert [f.result(timeout=30) for f in queued] == [0, 1]


def test_a_blocked_submit_lets_other_threads_run(pool):
    ex = pool(1, max_queue=1)
    gate = Gate(pool, ex)
    ex.submit(abs, 1)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)  # Python code: needs the GIL the blocked submitter released
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    threading.Timer(0.3, gate.open).start()
    ex.submit(abs, 2).result(timeout=30)
    stop.set()
    t.join()
    assert len(ticks) > 10


def test_block_false_raises_queue_full_at_once(pool):
    ex = pool(1, max_queue=1)
    gate = Gate(pool, ex)
    ex.submit(abs, 1)
    began = time.monotonic()
    with pytest.raises(cfutures.QueueFull, match=r"1 tasks wait to start \(max_queue\)") as info:
        ex.options(block=False).submit(abs, 2)
    assert time.monotonic() - began < 0.5
    assert isinstance(info.value, queue.Full)
    assert ex.stats().submitted == 2  # the refused task was never counted
    gate.open()


def test_block_timeout_waits_that_long_then_raises_queue_full(pool):
    ex = pool(1, max_queue=1)
    gate = Gate(pool, ex)
    queued = ex.submit(abs, 1)
    began = time.monotonic()
    with pytest.raises(cfutures.QueueFull, match="block_timeout=0.3"):
        ex.options(block_timeout=0.3).submit(abs, 2)
    assert 0.25 < time.monotonic() - began < 5
    gate.open()
    queued.result(timeout=30)
    # With room, the same view submits at once.
    assert ex.options(block_timeout=0.3).submit(abs, -3).result(timeout=30) == 3


def test_shutdown_wakes_blocked_submitters_with_the_stdlibs_error(pool):
    ex = pool(1, max_queue=1)
    gate = Gate(pool, ex)
    ex.submit(abs, 1)
    errors = []

    def submitter():
        try:
            ex.submit(abs, 2)
        except RuntimeError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=submitter) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    ex.shutdown(wait=False)
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert errors == ["cannot schedule new futures after shutdown"] * 5
    gate.open()


def test_map_keeps_to_the_bound_and_submits_as_results_are_taken(pool):
    ex = pool(2, max_queue=4)
    pulled = []

    def items():
        for i in range(200):
            pulled.append(i)
            yield i

    results = ex.map(abs, items())
    assert len(pulled) <= 4  # not the whole input at once
    assert list(results) == list(range(200))


def test_many_submitters_against_a_slow_pool(pool):
    """Memory stays flat (never more than the bound waits), every submit returns once with its
    own future, and every future gets its result."""
    ex = pool(2, max_queue=5)
    per_thread, threads = (60, 6) if pool.kind == "thread" else (25, 4)
    got = [[] for _ in range(threads)]
    most_queued = 0
    stop = threading.Event()

    def sampler():
        nonlocal most_queued
        while not stop.is_set():
            most_queued = max(most_queued, ex.stats().queued)
            time.sleep(0.001)

    def submitter(k):
        for i in range(per_thread):
            got[k].append(ex.submit(sleep_and_return, 0.002, (k, i)))

    watcher = threading.Thread(target=sampler)
    watcher.start()
    workers = [threading.Thread(target=submitter, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    stop.set()
    watcher.join()
    assert most_queued <= 5
    for k in range(threads):
        assert len(got[k]) == per_thread
        assert [f.result(timeout=60) for f in got[k]] == [(k, i) for i in range(per_thread)]
    stats = ex.stats()
    assert stats.submitted == stats.completed == threads * per_thread


def test_ctrl_c_interrupts_a_blocked_submit(tmp_path):
    script = textwrap.dedent("""
        import signal, sys, threading, time, cfutures
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ex = cfutures.ThreadPoolExecutor(1, max_queue=1)
        gate = threading.Event()
        ex.submit(gate.wait)
        ex.submit(abs, 1)
        print("blocking", flush=True)
        try:
            ex.submit(abs, 2)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        gate.set()
        print(ex.submit(abs, -3).result(), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "blocking"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out.split() == ["interrupted", "3"]
    assert proc.returncode == 0


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("3", TypeError)])
def test_max_queue_is_checked(pool, bad, error):
    with pytest.raises(error, match="max_queue"):
        pool(1, max_queue=bad)


@pytest.mark.parametrize("options, error", [
    ({"block": 0}, TypeError), ({"block_timeout": -1}, ValueError),
    ({"block_timeout": "1"}, TypeError), ({"block": False, "block_timeout": 1}, ValueError),
    ({"priority": 1.0}, TypeError), ({"priority": True}, TypeError), ({"priority": 2**31}, ValueError),
])
def test_options_are_checked(pool, options, error):
    ex = pool(1)
    with pytest.raises(error):
        ex.options(**options)


def test_an_unbounded_pool_never_raises_queue_full(pool):
    ex = pool(1)
    futures = [ex.options(block=False).submit(abs, -i) for i in range(300)]
    assert [f.result(timeout=60) for f in futures] == list(range(300))


# --- priorities -------------------------------------------------------------------------------

def test_a_saturated_pool_starts_a_higher_priority_task_next(pool):
    ex = pool(1)
    gate = Gate(pool, ex)
    low = [ex.submit(time.monotonic) for _ in range(10)]
    high = ex.options(priority=-1).submit(time.monotonic)
    gate.open()
    assert high.result(timeout=30) < min(f.result(timeout=30) for f in low)


def test_lower_priority_first_equal_priorities_in_submission_order(pool):
    ex = pool(1)
    gate = Gate(pool, ex)
    plan = [(5, "e"), (0, "a"), (-2, "x"), (0, "b"), (5, "f"), (-2, "y"), (0, "c")]
    futures = [(ex.options(priority=p) if p else ex).submit(time.monotonic) for p, _ in plan]
    gate.open()
    started = sorted(zip((f.result(timeout=30) for f in futures), (name for _, name in plan)))
    assert [name for _, name in started] == ["x", "y", "a", "b", "c", "e", "f"]


def test_map_with_a_priority_goes_before_the_queued_tasks(pool):
    ex = pool(1)
    gate = Gate(pool, ex)
    queued = [ex.submit(time.monotonic) for _ in range(5)]
    urgent = ex.options(priority=-1).map(time.clock_gettime, [time.CLOCK_MONOTONIC] * 4, chunksize=2)
    gate.open()
    urgent = list(urgent)
    assert max(urgent) < min(f.result(timeout=30) for f in queued)


def test_the_work_queue_view_and_stats_follow_the_priorities():
    ex = cfutures.ThreadPoolExecutor(1)
    gate = threading.Event()
    try:
        ex.submit(gate.wait, 30)
        wait_until(lambda: ex.stats().running == 1)
        ex.submit(abs, -1)
        urgent = ex.options(priority=-3).submit(abs, -2)
        ex.options(priority=4).submit(abs, -3)
        assert ex._work_queue.qsize() == 3
        assert ex.stats().queued == 3
        item = ex._work_queue.get_nowait()  # the next to start: the priority -3 task
        assert item.future is urgent
        assert ex.stats().queued == 2
    finally:
        gate.set()
        ex.shutdown()
    assert ex.stats().completed == 3 and ex.stats().cancelled == 1


# --- options() views ---------------------------------------------------------------------------

def test_the_chained_form_works_as_the_stdlibs_chained_submit(pool):
    make = cfutures.ThreadPoolExecutor if pool.kind == "thread" else cfutures.ProcessPoolExecutor
    assert make(1).options(priority=1).submit(abs, -1).result(timeout=60) == 1
    assert list(make(1).options(priority=1).map(abs, [-1, -2], timeout=60)) == [1, 2]


def test_a_view_has_no_shutdown_and_its_with_is_the_executors(pool):
    ex = pool(1)
    view = ex.options(priority=2)
    with pytest.raises(AttributeError, match="shut down the executor itself"):
        view.shutdown
    with view as same:
        assert same is view
        assert same.submit(abs, -4).result(timeout=60) == 4
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)


# --- context per task (thread pool) -------------------------------------------------------------

REQUEST_ID = contextvars.ContextVar("REQUEST_ID", default="unset")


def read_and_change():
    seen = REQUEST_ID.get()
    REQUEST_ID.set("changed by the task")
    return seen


def test_context_submit_runs_each_task_in_a_copy_of_the_submitters_context():
    ex = cfutures.ThreadPoolExecutor(2, context="submit")
    try:
        results = {}

        def request(n):
            REQUEST_ID.set(f"request-{n}")
            results[n] = ex.submit(read_and_change).result(timeout=30)
            assert REQUEST_ID.get() == f"request-{n}"  # the task's change stays in its copy

        threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {n: f"request-{n}" for n in range(8)}
        # A task's change is not seen by the next task of the same submitter either.
        REQUEST_ID.set("main")
        assert [ex.submit(read_and_change).result(timeout=30) for _ in range(3)] == ["main"] * 3
    finally:
        ex.shutdown()


def test_context_submit_through_run_in_executor():
    ex = cfutures.ThreadPoolExecutor(2, context="submit")

    async def handler(n):
        REQUEST_ID.set(f"task-{n}")
        return await asyncio.get_running_loop().run_in_executor(ex, REQUEST_ID.get)

    async def main():
        return await asyncio.gather(*(handler(n) for n in range(5)))

    try:
        assert asyncio.run(main()) == [f"task-{n}" for n in range(5)]
    finally:
        ex.shutdown()


def test_by_default_tasks_run_in_their_workers_context_as_in_the_stdlib():
    """context=None: the stdlib's behaviour, whatever it is on this Python (a worker thread of
    3.14's free-threaded build inherits the context of the thread that started it)."""
    import concurrent.futures

    def observe(module):
        out = []

        def run():
            REQUEST_ID.set("submitter")
            with module.ThreadPoolExecutor(1) as ex:
                out.append(ex.submit(read_and_change).result(timeout=30))
                out.append(ex.submit(REQUEST_ID.get).result(timeout=30))

        t = threading.Thread(target=run)
        t.start()
        t.join()
        return out

    assert observe(cfutures) == observe(concurrent.futures)


def test_context_is_checked():
    with pytest.raises(ValueError, match="context must be None or 'submit'"):
        cfutures.ThreadPoolExecutor(1, context="thread")


@pytest.mark.portable
def test_the_portable_build_refuses_the_options_by_name():
    from cfutures import _portable
    for make, name in ((lambda: _portable.ThreadPoolExecutor(1, max_queue=2), "max_queue=2"),
                       (lambda: _portable.ThreadPoolExecutor(1, context="submit"), "context='submit'"),
                       (lambda: _portable.ProcessPoolExecutor(1, max_queue=2), "max_queue=2")):
        with pytest.raises(NotImplementedError, match=name):
            make()
    with _portable.ThreadPoolExecutor(1) as ex, pytest.raises(NotImplementedError, match="options"):
        ex.options(priority=1)
