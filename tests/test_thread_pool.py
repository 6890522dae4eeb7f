"""ThreadPoolExecutor behaviour, run against concurrent.futures and cfutures alike."""

import asyncio
import concurrent.futures
import os
import re
import resource
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest


def mul(x, y):
    return x * y


def capture(*args, **kwargs):
    return args, kwargs


def test_is_a_stdlib_thread_pool(thread_executor):
    ex = thread_executor(2)
    assert isinstance(ex, concurrent.futures.ThreadPoolExecutor)
    assert isinstance(ex, concurrent.futures.Executor)
    assert isinstance(ex.submit(mul, 2, 3), concurrent.futures.Future)






def test_task_exception_comes_back_with_traceback(thread_executor):
    def fails():
        raise ValueError("in task")

    f = thread_executor(1).submit(fails)
    with pytest.raises(ValueError, match="in task") as info:
        f.result(timeout=10)
    assert "fails" in "".join(__import__("traceback").format_tb(info.value.__traceback__))


def test_base_exception_in_task_fails_only_its_future(thread_executor):
    def exits():
        raise SystemExit(3)

    ex = thread_executor(1)
    assert isinstance(ex.submit(exits).exception(timeout=10), SystemExit)
    assert ex.submit(mul, 3, 3).result(timeout=10) == 9


def test_default_max_workers(thread_executor):
    cpus = os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()
    assert thread_executor()._max_workers == min(32, (cpus or 1) + 4)


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_max_workers(thread_executor, bad):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        thread_executor(bad)


def test_initializer_not_callable(thread_executor):
    with pytest.raises(TypeError, match="initializer must be a callable"):
        thread_executor(1, initializer=3)


def test_thread_names_default_and_prefix(thread_executor):
    ex = thread_executor(3)
    list(ex.map(time.sleep, [0.05] * 3))
    assert all(re.fullmatch(r"ThreadPoolExecutor-\d+_[0-2]", t.name) for t in ex._threads)
    ex2 = thread_executor(2, thread_name_prefix="Special")
    names = set()
    barrier = threading.Barrier(2)

    def record():
        barrier.wait(timeout=10)
        names.add(threading.current_thread().name)

    for f in [ex2.submit(record), ex2.submit(record)]:
        f.result(timeout=10)
    assert names == {"Special_0", "Special_1"}
    assert names <= {t.name for t in threading.enumerate()}


def test_initializer_runs_in_each_worker(thread_executor):
    seen = threading.local()

    def init(value):
        seen.value = value

    ex = thread_executor(2, initializer=init, initargs=("ready",))
    assert ex.submit(lambda: seen.value).result(timeout=10) == "ready"


def test_failing_initializer_breaks_the_pool(thread_executor, caplog):
    def init():
        raise ValueError("init failed")

    ex = thread_executor(2, initializer=init)
    with caplog.at_level("CRITICAL", logger="concurrent.futures"):
        f = ex.submit(mul, 1, 2)
        with pytest.raises(concurrent.futures.thread.BrokenThreadPool):
            f.result(timeout=10)
    deadline = time.monotonic() + 5
    while not ex._broken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "initializer failed" in ex._broken
    with pytest.raises(concurrent.futures.BrokenExecutor):
        ex.submit(mul, 1, 2)
    assert "Exception in initializer" in caplog.text


def test_idle_worker_is_reused(thread_executor):
    if thread_executor.module is concurrent.futures and not getattr(sys, "_is_gil_enabled", bool)():
        pytest.skip("gh-117344: the stdlib's pool may start a second worker without the GIL")
    ex = thread_executor()
    for i in range(5):
        assert ex.submit(mul, i, 2).result(timeout=10) == 2 * i
    assert len(ex._threads) == 1


def test_saturation_starts_max_workers(thread_executor):
    ex = thread_executor(4)
    sem = threading.Semaphore(0)
    fs = [ex.submit(sem.acquire) for _ in range(40)]
    assert len(ex._threads) == 4
    for _ in fs:
        sem.release()
    for f in fs:
        f.result(timeout=10)




def test_shutdown_waits_for_queued_work(thread_executor):
    ex = thread_executor(2)
    fs = [ex.submit(time.sleep, 0.01) for _ in range(20)]
    ex.shutdown(wait=True)
    assert all(f.done() and f.exception() is None for f in fs)
    assert not any(t.is_alive() for t in ex._threads)


def test_shutdown_cancel_futures(thread_executor):
    ex = thread_executor(1)
    gate = threading.Event()
    first = ex.submit(gate.wait)
    rest = [ex.submit(mul, i, i) for i in range(10)]
    threading.Timer(0.1, gate.set).start()
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result() is True
    assert all(f.cancelled() for f in rest)


def test_shutdown_no_wait_still_finishes(thread_executor):
    ex = thread_executor(2)
    fs = [ex.submit(time.sleep, 0.02) for _ in range(6)]
    ex.shutdown(wait=False)
    for t in list(ex._threads):
        t.join(10)
    assert all(f.done() for f in fs)




def test_dropped_executor_lets_its_threads_exit(thread_executor):
    ex = thread_executor.module.ThreadPoolExecutor(3)
    results = ex.map(abs, range(-5, 5))
    threads = set(ex._threads)
    del ex
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert list(results) == [abs(v) for v in range(-5, 5)]


def test_no_stale_reference_to_task_arguments(thread_executor):
    class Thing:
        def method(self):
            pass

    ex = thread_executor(1)
    obj = Thing()
    ref = weakref.ref(obj)
    ex.submit(obj.method)
    del obj
    # On a free-threaded build a worker's release of what this thread made is merged only when
    # this thread runs Python code again (biased reference counting): poll in short steps. Not
    # with a weakref callback that sets an Event: the object can die inside Event.wait(), whose
    # lock the callback then takes again (a deadlock, seen on 3.13t).
    deadline = time.monotonic() + 10
    while ref() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ref() is None




def test_map_submits_without_iteration(thread_executor):
    done = []
    ex = thread_executor(2)
    ex.map(done.append, range(10))
    ex.shutdown(wait=True)
    assert sorted(done) == list(range(10))


def test_map_cancels_the_rest_when_closed(thread_executor):
    ex = thread_executor(1)
    gate = threading.Event()
    blocker = ex.submit(gate.wait)
    gen = ex.map(mul, [1, 2, 3], [1, 1, 1], timeout=0.05)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(gen)
    gen.close()
    gate.set()
    blocker.result(timeout=10)
    ex.shutdown(wait=True)






def test_map_buffersize_runs_in_bounded_memory(extended_executor):
    # An eager map of a million items would hold a million futures (hundreds of MB).
    ex = extended_executor(2)
    n = 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = 0
    for value in ex.map(abs, range(n), buffersize=100):
        total += value
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert total == n * (n - 1) // 2
    assert grown_kib < 30_000


def test_run_in_executor_and_set_default_executor(thread_executor):
    ex = thread_executor(2)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ex)
        a = await loop.run_in_executor(ex, mul, 6, 7)
        b = await loop.run_in_executor(None, mul, 2, 3)
        return a, b

    assert asyncio.run(main()) == (42, 6)


def test_cancelling_asyncio_side_cancels_pending_future(thread_executor):
    ex = thread_executor(1)
    gate = threading.Event()
    blocker = ex.submit(gate.wait)

    async def main():
        pending = ex.submit(mul, 1, 1)
        wrapped = asyncio.wrap_future(pending)
        wrapped.cancel()
        await asyncio.sleep(0.05)
        return pending

    pending = asyncio.run(main())
    gate.set()
    blocker.result(timeout=10)
    assert pending.cancelled()


def test_many_threads_submitting_concurrently(thread_executor):
    ex = thread_executor(4)
    errors = []

    def client(k):
        try:
            fs = [ex.submit(mul, k, i) for i in range(500)]
            assert [f.result(timeout=30) for f in fs] == [k * i for i in range(500)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    clients = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    assert not errors


def test_no_task_stays_queued_while_a_worker_sleeps(thread_executor):
    # The pattern of a hang seen in dask's test suite: bursts of tiny tasks submitted one at a
    # time (some waited for at once), then two tasks that need each other running. A worker
    # woken for a task that the other worker took first must not miss the next wake-up.
    ex = thread_executor(2)
    deadline = time.monotonic() + 3
    rounds = 0
    while time.monotonic() < deadline or rounds < 50:
        rounds += 1
        for i in range(rounds % 7):
            f = ex.submit(mul, i, 1)
            if i % 3 == 0:
                f.result(timeout=10)
        barrier = threading.Barrier(2, timeout=10)
        pair = [ex.submit(barrier.wait) for _ in range(2)]
        for f in pair:
            f.result(timeout=20)  # BrokenBarrierError here: one of them stayed queued


def _run_python(futures_module, code):
    prelude = f"import {futures_module} as futures\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
def test_interpreter_exit_finishes_pending_work(impl):
    proc = _run_python(impl, """
        import time
        import sys
        def work(msg):
            time.sleep(0.3)
            sys.stdout.write(msg + "\\n")  # one write: the workers run concurrently
            sys.stdout.flush()
        ex = futures.ThreadPoolExecutor(2)
        ex.submit(work, "apple")
        ex.submit(work, "banana")
        ex.submit(work, "cherry")
    """)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert sorted(proc.stdout.split()) == ["apple", "banana", "cherry"]


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
def test_submit_during_interpreter_shutdown(impl):
    proc = _run_python(impl, """
        import atexit
        @atexit.register
        def late():
            try:
                ex.submit(id, None)
            except RuntimeError as exc:
                print(exc)
        ex = futures.ThreadPoolExecutor(2)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cannot schedule new futures after interpreter shutdown"


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
def test_new_executor_in_forked_child(impl):
    proc = _run_python(impl, """
        import os, threading
        ex = futures.ThreadPoolExecutor(2)
        busy = threading.Event()
        ex.submit(busy.wait, 0.5)
        pid = os.fork()
        if pid == 0:
            with futures.ThreadPoolExecutor(2) as child_ex:
                ok = list(child_ex.map(abs, [-1, -2, -3])) == [1, 2, 3]
                ok = ok and futures.wait([child_ex.submit(abs, -4)]).done.pop().result() == 4
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        ex.shutdown()
    """)
    assert proc.stdout.strip() == "0", proc.stderr


def _resubmit(pool):
    try:
        pool.submit(_resubmit, pool)
    except RuntimeError:
        pass  # the pool shut down


def test_busy_pool_does_not_starve_other_threads(thread_executor):
    # A worker running an endless stream of tiny tasks must still let the GIL go: every
    # time.sleep(0) below gives the GIL away and must get it back within a switch interval or so.
    ex = thread_executor(1)
    ex.submit(_resubmit, ex)
    t0 = time.monotonic()
    for _ in range(50):
        time.sleep(0)
    assert time.monotonic() - t0 < 10
    ex.shutdown(wait=True)


def _odd_fails(i):
    if i % 7 == 0:
        raise ValueError(i)
    return i * 2


def test_concurrent_submitters_cancellers_and_waiters_settle_every_future(thread_executor):
    # The stress run of issue 16: on a free-threaded build (CI runs the suite on 3.13t with
    # PYTHON_GIL=0) nothing serialises these threads but the pool's and the futures' own locks.
    futures_module = thread_executor.module
    ex = thread_executor(4)
    made, callbacks, errors = [], [], []
    lock = threading.Lock()
    stop = threading.Event()
    per_submitter = 1500

    def submitter(base):
        try:
            for i in range(base, base + per_submitter):
                f = ex.submit(_odd_fails, i)
                f.add_done_callback(callbacks.append)
                with lock:
                    made.append((i, f))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def canceller():
        k = 0
        while not stop.is_set():
            with lock:
                batch = [f for _, f in made[k::13][:50]]
            for f in batch:
                f.cancel()
            k = (k + 1) % 13

    def waiter():
        while not stop.is_set():
            with lock:
                batch = [f for _, f in made[-200:]]
            futures_module.wait(batch, timeout=0.05, return_when=futures_module.FIRST_COMPLETED)
            try:
                for f in futures_module.as_completed(batch, timeout=0.05):
                    f.done()
            except futures_module.TimeoutError:
                pass

    submitters = [threading.Thread(target=submitter, args=(k * per_submitter,)) for k in range(4)]
    others = [threading.Thread(target=canceller) for _ in range(2)]
    others += [threading.Thread(target=waiter) for _ in range(2)]
    for t in submitters + others:
        t.start()
    for t in submitters:
        t.join(timeout=60)
    stop.set()
    for t in others:
        t.join(timeout=60)
    ex.shutdown(wait=True)
    assert not errors
    assert len(made) == 4 * per_submitter
    for i, f in made:
        assert f.done()
        if f.cancelled():
            continue
        if i % 7 == 0:
            assert isinstance(f.exception(timeout=0), ValueError)
        else:
            assert f.result(timeout=0) == i * 2
    # Each future's callback ran exactly once.
    assert len(callbacks) == len(made)
    assert len({id(f) for f in callbacks}) == len(made)
