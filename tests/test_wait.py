"""wait() and as_completed(), run against concurrent.futures and cfutures alike, including futures
of the other implementation (cfutures' functions must accept the stdlib's futures)."""

import concurrent.futures
import gc
import itertools
import threading
import time
import weakref

import pytest

import cfutures


def done_future(futures, result=None, exception=None):
    f = futures.Future()
    if exception is not None:
        f.set_exception(exception)
    else:
        f.set_result(result)
    return f


def cancelled_and_notified(futures):
    f = futures.Future()
    f.cancel()
    f.set_running_or_notify_cancel()
    return f


def later(delay, fn, *args):
    t = threading.Timer(delay, fn, args)
    t.start()
    return t


# Each implementation's wait()/as_completed() must accept futures of both kinds, in any mix.
@pytest.fixture(params=["same", "mixed"])
def make(request, futures):
    kinds = [futures] if request.param == "same" else [cfutures, concurrent.futures]
    cycle = itertools.cycle(kinds)
    return lambda: next(cycle).Future()


def test_all_completed(futures, make):
    fs = [make() for _ in range(6)]
    for i, f in enumerate(fs):
        later(0.01 * i, f.set_result, i)
    done, not_done = futures.wait(fs, timeout=10)
    assert done == set(fs) and not not_done
    assert isinstance(futures.wait(fs), concurrent.futures._base.DoneAndNotDoneFutures)


def test_first_completed(futures, make):
    slow, fast = make(), make()
    later(0.05, fast.set_result, 1)
    done, not_done = futures.wait([slow, fast], timeout=10,
                                  return_when=futures.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}


def test_first_completed_some_already_done(futures, make):
    a = make()
    a.set_result(1)
    b = make()
    done, not_done = futures.wait([a, b], return_when=futures.FIRST_COMPLETED)
    assert done == {a} and not_done == {b}


def test_first_exception(futures, make):
    ok, bad, slow = make(), make(), make()
    later(0.01, ok.set_result, 1)
    later(0.05, bad.set_exception, ValueError())
    done, not_done = futures.wait([ok, bad, slow], timeout=10,
                                  return_when=futures.FIRST_EXCEPTION)
    assert done == {ok, bad} and not_done == {slow}


def test_first_exception_without_exceptions_waits_for_all(futures, make):
    fs = [make() for _ in range(3)]
    for i, f in enumerate(fs):
        later(0.01 * (i + 1), f.set_result, i)
    done, not_done = futures.wait(fs, timeout=10, return_when=futures.FIRST_EXCEPTION)
    assert done == set(fs) and not not_done


def test_plain_cancelled_is_not_done_for_wait(futures):
    # CANCELLED counts only once notified (set_running_or_notify_cancel), as in the stdlib.
    c = futures.Future()
    c.cancel()
    n = cancelled_and_notified(futures)
    done, not_done = futures.wait([c, n], timeout=0)
    assert done == {n} and not_done == {c}


def test_wait_wakes_on_notified_cancellation(futures):
    c = futures.Future()
    c.cancel()
    later(0.05, c.set_running_or_notify_cancel)
    done, _ = futures.wait([c], timeout=10)
    assert done == {c}


def test_timeout_returns_what_is_done(futures, make):
    a, b = make(), make()
    a.set_result(1)
    t0 = time.monotonic()
    done, not_done = futures.wait([a, b], timeout=0.1)
    assert 0.08 <= time.monotonic() - t0 < 5
    assert done == {a} and not_done == {b}


def test_duplicates_and_any_iterable(futures):
    f = done_future(futures, 1)
    g = futures.Future()
    done, not_done = futures.wait(itertools.chain([f, f], (x for x in [g, g])), timeout=0)
    assert done == {f} and not_done == {g}
    assert futures.wait(set(), timeout=0) == (set(), set())


def test_invalid_return_when(futures):
    with pytest.raises(ValueError, match="Invalid return condition"):
        futures.wait([futures.Future()], timeout=0, return_when="SOMETIMES")


def test_non_future_raises_attribute_error(futures):
    with pytest.raises(AttributeError):
        futures.wait([1, 2], timeout=0)


def test_as_completed_yields_in_completion_order(futures, make):
    fs = [make() for _ in range(5)]
    order = [3, 0, 4, 1, 2]
    for k, i in enumerate(order):
        later(0.03 * (k + 1), fs[i].set_result, i)
    got = [f.result() for f in futures.as_completed(fs, timeout=10)]
    assert got == order


def test_as_completed_finished_first_then_pending(futures, make):
    done = [make() for _ in range(3)]
    for f in done:
        f.set_result(0)
    pending = make()
    later(0.05, pending.set_result, 1)
    seen = list(futures.as_completed(done + [pending], timeout=10))
    assert set(seen[:3]) == set(done) and seen[3] is pending


def test_as_completed_timeout_message(futures):
    fs = [done_future(futures, 1), futures.Future(), futures.Future(), cancelled_and_notified(futures)]
    running = futures.Future()
    running.set_running_or_notify_cancel()
    fs.append(running)
    with pytest.raises(futures.TimeoutError) as info:
        list(futures.as_completed(fs, timeout=0.05))
    assert str(info.value) == "3 (of 5) futures unfinished"


def test_as_completed_duplicates(futures):
    f = futures.Future()
    later(0.02, f.set_result, 1)
    assert list(futures.as_completed(itertools.repeat(f, 3), timeout=10)) == [f]


def test_as_completed_is_lazy_generator(futures):
    gen = futures.as_completed([futures.Future()], timeout=0)
    assert hasattr(gen, "send") and hasattr(gen, "close")
    gen.close()


def test_as_completed_does_not_keep_yielded_futures(futures):
    fs = [futures.Future() for _ in range(4)]
    fs[0].set_result(0)
    refs = []
    for f in futures.as_completed(fs, timeout=10):
        refs.append(weakref.ref(f))
        fs.remove(f)
        del f
        gc.collect()
        assert refs[-1]() is None
        if fs:
            fs[0].set_result(1)
    assert len(refs) == 4


def test_as_completed_with_executor(thread_executor):
    ex = thread_executor(4)
    fs = [ex.submit(time.sleep, 0.01 * (i % 3)) for i in range(20)]
    assert set(thread_executor.module.as_completed(fs, timeout=10)) == set(fs)


# The stdlib's wait() and as_completed() on futures of cfutures' pools: they reach into
# _condition, _state and _waiters, which cfutures futures provide.
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_stdlib_functions_on_cfutures_pool_futures(pool):
    ex = (cfutures.ThreadPoolExecutor(2) if pool == "thread"
          else cfutures.ProcessPoolExecutor(2))
    with ex:
        fs = [ex.submit(time.sleep, 0.01 * (i % 3)) for i in range(12)]
        done, not_done = concurrent.futures.wait(fs, timeout=30)
        assert done == set(fs) and not not_done
        fs = [ex.submit(pow, 2, i) for i in range(12)]
        got = sorted(f.result() for f in concurrent.futures.as_completed(fs, timeout=30))
        assert got == [2 ** i for i in range(12)]
        bad = ex.submit(divmod, 1, 0)
        slow = ex.submit(time.sleep, 0.5)
        done, not_done = concurrent.futures.wait([bad, slow], timeout=30,
                                                 return_when=concurrent.futures.FIRST_EXCEPTION)
        assert bad in done


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_stdlib_wait_hears_of_pool_cancellations(pool):
    # A cancelled queued future is "notified" by the pool when its turn comes: the stdlib's
    # waiters must hear of it, whichever thread sees it (the process pool's manager has no GIL).
    ex = (cfutures.ThreadPoolExecutor(1) if pool == "thread"
          else cfutures.ProcessPoolExecutor(1))
    with ex:
        ex.submit(time.sleep, 0.01).result(timeout=30)  # the worker is up
        blocker = ex.submit(time.sleep, 0.3)
        # The process pool hands a few tasks to a busy worker ahead of time; those run.
        queued = [f for f in [ex.submit(time.sleep, 0) for _ in range(40)] if f.cancel()]
        assert queued
        done, not_done = concurrent.futures.wait(queued + [blocker], timeout=30)
        assert done == set(queued + [blocker]) and not not_done


@pytest.mark.parametrize("fn", ["wait", "as_completed"])
def test_stdlib_functions_count_each_cfutures_completion_once(fn):
    # Completions racing the stdlib's snapshot of the states: none lost, none counted twice.
    for _ in range(20):
        fs = [cfutures.Future() for _ in range(40)]

        def complete(part):
            for f in part:
                f.set_result(None)

        threads = [threading.Thread(target=complete, args=(fs[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        if fn == "wait":
            done, not_done = concurrent.futures.wait(fs, timeout=30)
            assert done == set(fs) and not not_done
        else:
            seen = list(concurrent.futures.as_completed(fs, timeout=30))
            assert len(seen) == len(fs) and set(seen) == set(fs)
        for t in threads:
            t.join()
        assert all(len(f._waiters) == 0 for f in fs)


def test_process_future_inside_an_edit_starts_after_it():
    with cfutures.ProcessPoolExecutor(1) as ex:
        ex.submit(time.sleep, 0.01).result(timeout=30)
        blocker = ex.submit(time.sleep, 0.2)
        # Enough tasks ahead of f that it is still queued (not handed to the worker) below.
        ahead = [ex.submit(pow, 1, 1) for _ in range(30)]
        f = ex.submit(pow, 3, 3)
        with f._condition:
            assert f._state == "PENDING"
            concurrent.futures.wait(ahead + [blocker], timeout=30)
            time.sleep(0.1)  # the manager tries to start f meanwhile
            assert f._state == "PENDING"
        assert f.result(timeout=30) == 27


def test_waiting_on_a_list_another_thread_changes(futures):
    # On a free-threaded build wait() read the items of the caller's list without references,
    # while another thread appended (reallocating it) and popped (dropping the last reference).
    fs = [done_future(futures, i) for i in range(64)]
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            fs.append(done_future(futures, -1))
            fs.pop()
            fs.extend(done_future(futures, -2) for _ in range(32))
            del fs[64:]

    t = threading.Thread(target=churn)
    t.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            done, not_done = futures.wait(fs, timeout=0)
            assert not not_done
            assert sum(1 for _ in futures.as_completed(fs, timeout=5)) >= 64
    finally:
        stop.set()
        t.join()
