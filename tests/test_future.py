"""Future behaviour, run against concurrent.futures and cfutures alike."""

import concurrent.futures
import gc
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import weakref

import pytest


def test_new_future_is_pending(futures):
    f = futures.Future()
    assert not f.done() and not f.running() and not f.cancelled()
    assert re.fullmatch(r"<Future at 0x[0-9a-f]+ state=pending>", repr(f))


def test_is_a_stdlib_future(futures):
    f = futures.Future()
    assert isinstance(f, concurrent.futures.Future)
    assert isinstance(f, futures.Future)


def test_exception_classes_are_the_stdlibs(futures):
    for name in ("CancelledError", "TimeoutError", "InvalidStateError", "BrokenExecutor"):
        assert getattr(futures, name) is getattr(concurrent.futures, name)


def test_same_public_names(futures):
    expected = tuple(concurrent.futures.__all__)
    if futures is not concurrent.futures and sys.version_info >= (3, 12) and \
            "InterpreterPoolExecutor" not in expected:
        expected += ("InterpreterPoolExecutor",)  # cfutures has it from 3.12, the stdlib from 3.14
    assert tuple(futures.__all__) == expected
    for name in futures.__all__:
        assert getattr(futures, name) is not None


def test_generic_alias(futures):
    alias = futures.Future[int]
    assert alias.__origin__ is futures.Future and alias.__args__ == (int,)


def test_set_result_then_result(futures):
    f = futures.Future()
    f.set_result(42)
    assert f.done() and f.result() == 42 and f.exception() is None
    assert re.fullmatch(r"<Future at 0x[0-9a-f]+ state=finished returned int>", repr(f))


def test_set_exception_then_result_raises(futures):
    f = futures.Future()
    err = ValueError("boom")
    f.set_exception(err)
    assert f.exception() is err
    with pytest.raises(ValueError, match="boom") as info:
        f.result()
    assert info.value is err
    assert re.fullmatch(r"<Future at 0x[0-9a-f]+ state=finished raised ValueError>", repr(f))


@pytest.mark.parametrize("second", ["set_result", "set_exception"])
def test_second_set_raises_invalid_state(futures, second):
    f = futures.Future()
    f.set_result(1)
    with pytest.raises(futures.InvalidStateError,
                       match=r"FINISHED: <Future at 0x[0-9a-f]+ state=finished returned int>"):
        getattr(f, second)(ValueError() if second == "set_exception" else 2)
    assert f.result() == 1


def test_set_after_cancel_raises_invalid_state(futures):
    f = futures.Future()
    assert f.cancel()
    with pytest.raises(futures.InvalidStateError, match="CANCELLED"):
        f.set_result(1)


def test_cancel_transitions(futures):
    f = futures.Future()
    assert f.cancel() and f.cancelled() and f.done()
    assert f.cancel()  # cancelling twice still answers True
    assert re.fullmatch(r"<Future at 0x[0-9a-f]+ state=cancelled>", repr(f))
    with pytest.raises(futures.CancelledError):
        f.result(timeout=0)
    with pytest.raises(futures.CancelledError):
        f.exception(timeout=0)
    assert f.set_running_or_notify_cancel() is False
    assert f.cancelled()


def test_running_future_cannot_be_cancelled(futures):
    f = futures.Future()
    assert f.set_running_or_notify_cancel() is True
    assert f.running() and not f.cancel()
    assert re.fullmatch(r"<Future at 0x[0-9a-f]+ state=running>", repr(f))
    f.set_result(None)
    assert not f.running() and not f.cancel()


def test_set_running_on_finished_future_raises(futures, caplog):
    f = futures.Future()
    f.set_result(1)
    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        with pytest.raises(RuntimeError, match="Future in unexpected state"):
            f.set_running_or_notify_cancel()
    assert "in unexpected state" in caplog.text


@pytest.mark.parametrize("method", ["result", "exception"])
def test_timeout_raises_stdlib_timeout_error(futures, method):
    f = futures.Future()
    t0 = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        getattr(f, method)(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(concurrent.futures.TimeoutError):
        getattr(f, method)(timeout=0)
    with pytest.raises(concurrent.futures.TimeoutError):
        getattr(f, method)(timeout=-1)


def test_timeout_must_be_a_number(futures):
    f = futures.Future()
    with pytest.raises(TypeError):
        f.result(timeout="0.1")


def test_result_wakes_when_set_from_another_thread(futures):
    f = futures.Future()
    threading.Timer(0.05, f.set_result, ("late",)).start()
    assert f.result(timeout=10) == "late"


def test_result_wakes_when_cancelled_from_another_thread(futures):
    f = futures.Future()
    threading.Timer(0.05, f.cancel).start()
    with pytest.raises(futures.CancelledError):
        f.result(timeout=10)


def test_result_releases_the_gil(futures):
    f = futures.Future()
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        with pytest.raises(concurrent.futures.TimeoutError):
            f.result(timeout=0.3)
        seen = counter[0]
    finally:
        stop.set()
        t.join()
    # A waiter that held the GIL would leave the spinning thread almost no time to run.
    assert seen > 10_000


def test_ctrl_c_interrupts_result_promptly(futures):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    f = futures.Future()
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            f.result(timeout=20)
        assert time.monotonic() - t0 < 2
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)


def test_done_callbacks_run_once_in_order(futures):
    f = futures.Future()
    calls = []
    f.add_done_callback(lambda fut: calls.append(("a", fut)))
    f.add_done_callback(lambda fut: calls.append(("b", fut)))
    f.set_result(1)
    assert calls == [("a", f), ("b", f)]
    f.add_done_callback(lambda fut: calls.append(("late", fut)))
    assert calls[-1] == ("late", f) and len(calls) == 3


def test_done_callback_runs_in_completing_thread(futures):
    f = futures.Future()
    where = []
    f.add_done_callback(lambda fut: where.append(threading.current_thread()))
    t = threading.Thread(target=f.set_result, args=(1,))
    t.start()
    t.join()
    assert where == [t]


def test_done_callback_on_cancel(futures):
    f = futures.Future()
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
    f.cancel()
    f.cancel()
    assert seen == [True]


def test_raising_callback_is_logged_and_others_still_run(futures, caplog):
    f = futures.Future()
    ran = []

    def bad(fut):
        raise ZeroDivisionError("in callback")

    f.add_done_callback(bad)
    f.add_done_callback(lambda fut: ran.append(True))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f.set_result(1)
        f.add_done_callback(bad)
    assert ran == [True]
    records = [r for r in caplog.records if r.name == "concurrent.futures"]
    assert len(records) == 2
    assert all("exception calling callback for" in r.getMessage() for r in records)
    assert all(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in records)


def test_callback_base_exception_propagates(futures):
    f = futures.Future()

    def interrupt(fut):
        raise KeyboardInterrupt

    f.add_done_callback(interrupt)
    with pytest.raises(KeyboardInterrupt):
        f.set_result(1)
    assert f.result() == 1


def test_cycle_through_callback_is_collected(futures):
    f = futures.Future()
    f.add_done_callback(lambda fut, keep=f: None)  # the future reachable from its own callback
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


def test_cycle_through_result_is_collected(futures):
    f = futures.Future()
    box = [f]
    f.set_result(box)
    ref = weakref.ref(f)
    del f, box
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("pool", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_a_pools_future_releases_its_result_when_it_dies(futures, pool):
    # The pools make their futures without pybind11's table of live instances (new_future); the
    # C++ state must still die with the Python object, and the result with it, without a
    # collection.
    # The results are sets: a builtin (a worker started by forkserver or spawn cannot import
    # this test module) that a weak reference can watch.
    with getattr(futures, pool)(1) as ex:
        fs = [ex.submit(set, (i,)) for i in range(50)]
        refs = [weakref.ref(f.result()) for f in fs]
    assert all(r() is not None for r in refs)
    del fs
    assert [r for r in refs if r() is not None] == []


def test_exception_keeps_its_traceback(futures):
    def inner():
        raise KeyError("deep")

    f = futures.Future()
    try:
        inner()
    except KeyError as exc:
        f.set_exception(exc)
    with pytest.raises(KeyError) as info:
        f.result()
    assert "inner" in "".join(__import__("traceback").format_tb(info.value.__traceback__))


def test_direct_state_edits_inside_condition(futures):
    # CPython's own suite (and code written against the stdlib's internals) does this.
    f = futures.Future()
    result = []
    t = threading.Thread(target=lambda: result.append(f.exception(timeout=10)))
    t.start()
    time.sleep(0.1)
    with f._condition:
        f._state = futures._base.FINISHED if hasattr(futures, "_base") else "FINISHED"
        f._exception = OSError("edited")
        f._condition.notify_all()
    t.join()
    assert isinstance(result[0], OSError)
    assert f._state == "FINISHED"


# `future._condition` is a lock: while one thread holds it, other threads' transitions wait.
# The stdlib's own wait() and as_completed() rely on that when handed any future.
def test_condition_keeps_other_threads_transitions_out(futures):
    f = futures.Future()
    finished = threading.Event()

    def complete():
        f.set_result(1)
        finished.set()

    with f._condition:
        t = threading.Thread(target=complete)
        t.start()
        assert not finished.wait(0.2)
        assert f._state == "PENDING"
    assert finished.wait(10)
    t.join()
    assert f.result(timeout=0) == 1


def test_condition_acquire_blocking_and_timeout(futures):
    f = futures.Future()
    cond = f._condition
    held, release = threading.Event(), threading.Event()

    def holder():
        with f._condition:
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    try:
        assert cond.acquire(False) is False
        t0 = time.monotonic()
        assert cond.acquire(True, 0.05) is False
        assert time.monotonic() - t0 >= 0.04
    finally:
        release.set()
        t.join()
    assert cond.acquire(True, 10) is True
    assert cond.acquire() is True  # re-entrant, like the stdlib's RLock
    cond.release()
    cond.release()
    with pytest.raises(RuntimeError):
        cond.release()


def test_condition_wait_lets_the_transition_in(futures):
    f = futures.Future()
    with f._condition:
        with f._condition:  # nested: wait() must release every level
            threading.Timer(0.05, f.set_result, [7]).start()
            assert f._condition.wait(10)
            assert f._state == "FINISHED"
    assert f.result(timeout=0) == 7


def test_result_inside_own_condition(futures):
    done = futures.Future()
    done.set_exception(KeyError("x"))
    with done._condition:
        assert isinstance(done.exception(), KeyError)
    pending = futures.Future()
    with pending._condition:
        with pytest.raises(futures.TimeoutError):
            pending.result(timeout=0.01)
        threading.Timer(0.05, pending.set_result, [3]).start()
        assert pending.result(timeout=10) == 3


def test_waiters_list(futures):
    f = futures.Future()

    class Recorder:
        def __init__(self):
            self.calls = []

        def add_result(self, fut):
            self.calls.append(("result", fut))

    r = Recorder()
    f._waiters.append(r)
    assert len(f._waiters) == 1 and list(f._waiters) == [r] and r in f._waiters
    f.set_result(1)
    assert r.calls == [("result", f)]
    f._waiters.remove(r)
    assert len(f._waiters) == 0
    with pytest.raises(ValueError):
        f._waiters.remove(r)


def test_asyncio_wrap_future(futures):
    import asyncio

    async def main():
        f = futures.Future()
        wrapped = asyncio.wrap_future(f)
        asyncio.get_running_loop().call_later(0.01, f.set_result, 7)
        return await wrapped

    assert asyncio.run(main()) == 7


def test_a_collection_while_a_new_subclass_makes_its_first_instance(futures):
    # pybind11 tracks a new instance for the collector before it allocates the instance's layout,
    # and the first instance of a new Python subclass fills pybind11's type cache, which makes
    # objects and can collect: the collector then read a zeroed instance (a segfault in CI, the
    # wheel session on 3.11). With a collection at every allocation, any such gap shows.
    code = (f"import gc, {futures.__name__} as m\n"
            "gc.set_threshold(1)\n"
            "for i in range(50):\n"
            "    Sub = type(f'Sub{i}', (m.Future,), {'_invoke_callbacks': m.Future._invoke_callbacks})\n"
            "    f = Sub()\n"
            "    f.add_done_callback(lambda f: None)\n"
            "    f.set_result(i)\n"
            "gc.set_threshold(700)\n"
            "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])
