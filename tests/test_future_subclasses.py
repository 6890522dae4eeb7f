"""The private patterns real Future subclasses use, on concurrent.futures and cfutures alike.

Green-thread executors give their futures a cooperative Condition (``self._condition = ...``),
wrappers override set_result()/set_exception() or _invoke_callbacks(), helpers read ``_state``
under ``_condition``, and some code replaces ``_waiters``. Each test asserts the stdlib's outcome;
on cfutures, a future that assigns ``_condition`` or ``_waiters`` runs the stdlib's own methods
(src/bindings/future.hpp, "the stdlib's mode"), and one that does not keeps the native path.
"""

import concurrent.futures
import threading
import time

import pytest

from conftest import IMPLS

CF_BASE = concurrent.futures._base


class RecordingCondition:
    """A Condition with the interface the stdlib's Future uses, counting what goes through it."""

    def __init__(self):
        self._cond = threading.Condition()
        self.entered = 0
        self.waits = 0
        self.notified = 0

    def acquire(self, *args):
        return self._cond.acquire(*args)

    def release(self):
        self._cond.release()

    def __enter__(self):
        self.entered += 1
        return self._cond.__enter__()

    def __exit__(self, *exc):
        return self._cond.__exit__(*exc)

    def wait(self, timeout=None):
        self.waits += 1
        return self._cond.wait(timeout)

    def notify(self, n=1):
        self._cond.notify(n)

    def notify_all(self):
        self.notified += 1
        self._cond.notify_all()


def own_condition_future(futures):
    class OwnConditionFuture(futures.Future):
        def __init__(self):
            super().__init__()
            self._condition = RecordingCondition()
    return OwnConditionFuture()


def later(delay, fn, *args):
    t = threading.Timer(delay, fn, args)
    t.start()
    return t


# -- a subclass that assigns _condition ---------------------------------------------------------

def test_own_condition_is_kept(futures):
    f = own_condition_future(futures)
    assert isinstance(f._condition, RecordingCondition)
    assert not f.done() and not f.running() and not f.cancelled()


def test_own_condition_result_waits_through_it(futures):
    f = own_condition_future(futures)
    cond = f._condition
    later(0.05, f.set_result, 42)
    assert f.result(timeout=10) == 42
    assert cond.waits == 1 and cond.notified == 1


def test_own_condition_exception_waits_through_it(futures):
    f = own_condition_future(futures)
    cond = f._condition
    err = ValueError("boom")
    later(0.05, f.set_exception, err)
    assert f.exception(timeout=10) is err
    with pytest.raises(ValueError):
        f.result()
    assert cond.waits == 1 and cond.notified == 1


def test_own_condition_timeout(futures):
    f = own_condition_future(futures)
    with pytest.raises(futures.TimeoutError):
        f.result(timeout=0.01)
    assert f._condition.waits == 1


def test_own_condition_callbacks(futures):
    f = own_condition_future(futures)
    seen = []
    f.add_done_callback(lambda fut: seen.append(("before", fut.result())))
    f.set_result(7)
    f.add_done_callback(lambda fut: seen.append(("after", fut.result())))
    assert seen == [("before", 7), ("after", 7)]


def test_own_condition_cancel_and_notify(futures):
    f = own_condition_future(futures)
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
    assert f.cancel() and f.cancelled() and f.done()
    assert f._condition.notified == 1
    assert f.set_running_or_notify_cancel() is False
    assert f._state == CF_BASE.CANCELLED_AND_NOTIFIED
    assert seen == [True]
    with pytest.raises(futures.CancelledError):
        f.result(timeout=0)


def test_own_condition_running_then_set(futures):
    f = own_condition_future(futures)
    assert f.set_running_or_notify_cancel() is True
    assert f.running() and not f.cancel()
    f.set_result(None)
    with pytest.raises(futures.InvalidStateError):
        f.set_result(1)
    with pytest.raises(futures.InvalidStateError):
        f.set_exception(ValueError())


def test_own_condition_repr(futures):
    f = own_condition_future(futures)
    f.set_result(3)
    assert repr(f).startswith("<OwnConditionFuture at 0x") and "returned int" in repr(f)


@pytest.mark.parametrize("how", ["wait", "as_completed"])
@pytest.mark.parametrize("waiter", IMPLS)
def test_own_condition_with_either_wait(futures, waiter, how):
    # The future of one implementation, waited for with the other's wait()/as_completed() too.
    wait_module = IMPLS[waiter]
    fs = [own_condition_future(futures) for _ in range(3)]
    plain = futures.Future()
    for i, f in enumerate(fs + [plain]):
        later(0.02 * (i + 1), f.set_result, i)
    if how == "wait":
        done, not_done = wait_module.wait(fs + [plain], timeout=10)
        assert len(done) == 4 and not not_done
    else:
        got = sorted(f.result() for f in wait_module.as_completed(fs + [plain], timeout=10))
        assert got == [0, 1, 2, 3]
    for f in fs:
        assert len(f._waiters) == 0


def test_own_condition_first_exception(futures):
    fs = [own_condition_future(futures) for _ in range(2)]
    later(0.02, fs[1].set_exception, ValueError())
    done, not_done = futures.wait(fs, timeout=10, return_when=futures.FIRST_EXCEPTION)
    assert done == {fs[1]} and not_done == {fs[0]}


@pytest.mark.parametrize("outcome", ["result", "exception", "cancel"])
def test_a_thread_pool_completes_a_future_given_its_own_condition(thread_executor, outcome):
    ex = thread_executor(1)
    gate = threading.Event()
    ex.submit(gate.wait, 10)  # holds the worker while the next future is changed
    f = ex.submit(pow, 2, 5) if outcome != "exception" else ex.submit(int, "x")
    f._condition = RecordingCondition()
    if outcome == "cancel":
        assert f.cancel()
    gate.set()
    if outcome == "result":
        assert f.result(timeout=10) == 32
    elif outcome == "exception":
        assert isinstance(f.exception(timeout=10), ValueError)
    else:
        with pytest.raises(concurrent.futures.CancelledError):
            f.result(timeout=10)
    assert f._condition.notified == 1


def test_a_process_pool_completes_a_future_given_its_own_condition(process_executor):
    ex = process_executor(1)
    ex.submit(pow, 1, 1).result(timeout=60)
    fs = [ex.submit(time.sleep, 0.05)] + [ex.submit(pow, 3, i) for i in range(3)]
    for f in fs:
        f._condition = RecordingCondition()
    assert [f.result(timeout=60) for f in fs] == [None, 1, 3, 9]
    assert all(f._condition.notified == 1 for f in fs)
    crash = ex.submit(divmod, 1, 0)
    crash._condition = RecordingCondition()
    with pytest.raises(ZeroDivisionError):
        crash.result(timeout=60)


def test_shutdown_cancels_futures_given_their_own_condition(thread_executor):
    ex = thread_executor(1)
    gate = threading.Event()
    ex.submit(gate.wait, 10)
    queued = [ex.submit(pow, 2, i) for i in range(3)]
    for f in queued:
        f._condition = RecordingCondition()
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert all(f.cancelled() for f in queued)
    assert all(f._condition.notified == 1 for f in queued)


def test_assigning_the_condition_back(futures):
    f = futures.Future()
    original = f._condition
    f._condition = RecordingCondition()
    f._condition = original
    later(0.02, f.set_result, 1)
    assert f.result(timeout=10) == 1


# -- a subclass that calls the stdlib's Future.__init__ itself ---------------------------------

def test_a_subclass_running_the_stdlibs_init(futures):
    class Reinitialised(futures.Future):
        def __init__(self):
            super().__init__()
            concurrent.futures.Future.__init__(self)  # a fresh Condition, and _waiters = []

    f = Reinitialised()
    later(0.02, f.set_result, "x")
    assert futures.wait([f], timeout=10).done == {f}
    assert f.result() == "x"


# -- a subclass that overrides set_result / set_exception and calls super ----------------------

def test_overridden_setters_calling_super(futures, thread_executor):
    calls = []

    class Wrapping(futures.Future):
        def set_result(self, result):
            calls.append(("result", result))
            super().set_result(result * 2)

        def set_exception(self, exception):
            calls.append(("exception", type(exception).__name__))
            super().set_exception(RuntimeError(str(exception)))

    a, b = Wrapping(), Wrapping()
    seen = []
    a.add_done_callback(lambda f: seen.append(f.result()))
    later(0.02, a.set_result, 21)
    later(0.04, b.set_exception, ValueError("v"))
    done, _ = futures.wait([a, b], timeout=10)
    assert done == {a, b}
    assert a.result() == 42 and seen == [42]
    assert isinstance(b.exception(), RuntimeError) and str(b.exception()) == "v"
    assert calls == [("result", 21), ("exception", "ValueError")]


def test_overridden_setters_in_the_stdlibs_mode(futures):
    calls = []

    class Both(futures.Future):
        def __init__(self):
            super().__init__()
            self._condition = RecordingCondition()

        def set_result(self, result):
            calls.append(result)
            super().set_result(result)

    f = Both()
    later(0.02, f.set_result, 5)
    assert f.result(timeout=10) == 5 and calls == [5]


# -- a subclass that overrides _invoke_callbacks -----------------------------------------------

@pytest.mark.parametrize("transition", ["set_result", "set_exception", "cancel"])
def test_overridden_invoke_callbacks(futures, transition):
    invoked = []

    class Hooked(futures.Future):
        def _invoke_callbacks(self):
            invoked.append(self._state)
            super()._invoke_callbacks()

    f = Hooked()
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.done()))
    if transition == "set_result":
        f.set_result(1)
    elif transition == "set_exception":
        f.set_exception(ValueError())
    else:
        f.cancel()
    assert invoked == [CF_BASE.CANCELLED if transition == "cancel" else CF_BASE.FINISHED]
    assert seen == [True]


# -- a subclass that reads _state under _condition ---------------------------------------------

@pytest.mark.parametrize("own_condition", [False, True])
def test_reading_state_under_the_condition(futures, own_condition):
    class Inspecting(futures.Future):
        def __init__(self):
            super().__init__()
            if own_condition:
                self._condition = RecordingCondition()

        def snapshot(self):
            with self._condition:
                return self._state, self._result, self._exception

        def wait_until_done(self, timeout):
            deadline = time.monotonic() + timeout
            with self._condition:
                while self._state not in (CF_BASE.FINISHED, CF_BASE.CANCELLED_AND_NOTIFIED,
                                          CF_BASE.CANCELLED):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._condition.wait(left)
                return True

    f = Inspecting()
    assert f.snapshot() == (CF_BASE.PENDING, None, None)
    later(0.05, f.set_result, "r")
    assert f.wait_until_done(10)
    assert f.snapshot() == (CF_BASE.FINISHED, "r", None)


# -- a subclass that replaces _waiters ---------------------------------------------------------

class LoggingList(list):
    def __init__(self):
        super().__init__()
        self.appended = 0

    def append(self, item):
        self.appended += 1
        super().append(item)


@pytest.mark.parametrize("waiter", IMPLS)
def test_replaced_waiters(futures, waiter):
    class OwnWaiters(futures.Future):
        def __init__(self):
            super().__init__()
            self._waiters = LoggingList()

    fs = [OwnWaiters() for _ in range(2)]

    def once_waited_on(f, complete, *args):
        # Completes `f` once wait() has registered with it: a future done before wait() looks
        # at it gets no waiter (seen under load with fixed delays).
        deadline = time.monotonic() + 10
        while not f._waiters.appended and time.monotonic() < deadline:
            time.sleep(0.005)
        complete(*args)
    later(0, once_waited_on, fs[0], fs[0].set_result, 0)
    later(0, once_waited_on, fs[1], fs[1].set_exception, ValueError())
    done, not_done = IMPLS[waiter].wait(fs, timeout=10)
    assert done == set(fs) and not not_done
    assert all(isinstance(f._waiters, LoggingList) and f._waiters.appended == 1 for f in fs)
    assert all(len(f._waiters) == 0 for f in fs)


def test_replaced_waiters_told_of_a_notified_cancel(futures):
    class OwnWaiters(futures.Future):
        def __init__(self):
            super().__init__()
            self._waiters = LoggingList()

    f = OwnWaiters()
    got = []
    it = futures.as_completed([f], timeout=10)
    t = threading.Thread(target=lambda: got.extend(it))
    t.start()
    deadline = time.monotonic() + 10
    while not f._waiters and time.monotonic() < deadline:
        time.sleep(0.005)
    f.cancel()
    f.set_running_or_notify_cancel()
    t.join(10)
    assert got == [f]


# -- what stays native -------------------------------------------------------------------------

@pytest.mark.native
def test_a_future_that_assigns_neither_keeps_the_native_path():
    import cfutures
    f = cfutures.Future()
    assert type(f._condition).__name__ == "_ConditionView"
    assert type(f._waiters).__name__ == "_WaiterList"
    g = own_condition_future(cfutures)
    assert type(g._waiters).__name__ == "_WaiterList"  # the views stay for what is not replaced


@pytest.mark.native
def test_a_future_in_the_stdlibs_mode_is_collected():
    import gc
    import weakref
    import cfutures
    f = own_condition_future(cfutures)
    f._condition.cycle = f  # a cycle through the condition: the collector must see it
    f._waiters = [f]
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


@pytest.mark.native
def test_thread_pool_worker_survives_a_future_completed_by_hand():
    # The stdlib's worker thread dies of the InvalidStateError (its pool of one then hangs);
    # cfutures reports it as unraisable and the worker goes on.
    import sys
    import cfutures
    reported = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: reported.append(u.exc_type)
    try:
        with cfutures.ThreadPoolExecutor(1) as ex:
            holder = []
            ready = threading.Event()

            def finishes_itself():
                ready.wait(10)
                holder[0].set_result("by hand")
                return "from the call"

            f = ex.submit(finishes_itself)
            holder.append(f)
            ready.set()
            assert f.result(timeout=10) == "by hand"
            assert ex.submit(pow, 2, 3).result(timeout=10) == 8
            assert len(ex._threads) == 1
    finally:
        sys.unraisablehook = old_hook
    assert reported == [concurrent.futures.InvalidStateError]

