"""The private attributes real code reads and writes, and the patterns it uses them in, on both
implementations: ThreadPoolExecutor's _work_queue, _idle_semaphore, _threads and
_adjust_thread_count(); ProcessPoolExecutor's _pending_work_items, _processes, _shutdown_thread
and _executor_manager_thread; Future's _state, _result, _exception, _done_callbacks and
_invoke_callbacks() in subclasses written like the stdlib's own methods (pebble's ProcessFuture).
"""

import os
import queue
import sys
import threading
import time
from concurrent.futures import process as std_process
from concurrent.futures import thread as std_thread

import pytest

import process_helpers

# 3.14 gives a work item a task tuple (fn, args, kwargs); earlier versions keep the three.
WORK_ITEM_TAKES_TASK = "task" in std_thread._WorkItem.__init__.__code__.co_varnames


def call_of(item):
    return item.task if WORK_ITEM_TAKES_TASK else (item.fn, item.args, item.kwargs)


def blocked_pool(futures, n_queued, workers=1):
    """A thread pool whose `workers` workers wait on an event, with n_queued tasks queued behind."""
    ex = futures.ThreadPoolExecutor(workers)
    gate = threading.Event()
    started = threading.Barrier(workers + 1)

    def hold():
        started.wait(10)
        gate.wait(10)

    running = [ex.submit(hold) for _ in range(workers)]
    started.wait(10)
    queued = [ex.submit(pow, 2, i) for i in range(n_queued)]
    return ex, gate, running, queued


# --- ThreadPoolExecutor ------------------------------------------------------------------------

def test_work_queue_is_a_simple_queue_counting_queued_tasks(futures):
    ex, gate, running, queued = blocked_pool(futures, 5)
    try:
        assert isinstance(ex._work_queue, queue.SimpleQueue)
        assert ex._work_queue.qsize() == 5 and not ex._work_queue.empty()
    finally:
        gate.set()
        ex.shutdown()
    assert [f.result() for f in queued] == [2 ** i for i in range(5)]


def test_draining_the_work_queue_cancels_the_queued_tasks(futures):
    # What shutdown helpers do: take every queued work item off, and cancel its future.
    ex, gate, running, queued = blocked_pool(futures, 4)
    taken = []
    try:
        while True:
            try:
                item = ex._work_queue.get_nowait()
            except queue.Empty:
                break
            assert type(item) is std_thread._WorkItem
            taken.append(item)
            assert item.future.cancel()
        assert [item.future for item in taken] == queued
        assert call_of(taken[1]) == (pow, (2, 1), {})
        assert ex._work_queue.qsize() == 0 and ex._work_queue.empty()
    finally:
        gate.set()
        ex.shutdown()
    assert running[0].result() is None
    assert all(f.cancelled() for f in queued)


def test_the_work_queue_of_cfutures_cannot_be_replaced():
    import cfutures
    ex = cfutures.ThreadPoolExecutor(1)
    view = ex._work_queue
    assert ex._work_queue is view
    with pytest.raises(AttributeError, match="cannot be replaced"):
        ex._work_queue = queue.PriorityQueue()
    ex.shutdown()


def test_a_work_item_taken_off_the_queue_can_be_put_back(futures):
    ex, gate, running, queued = blocked_pool(futures, 2)
    try:
        item = ex._work_queue.get(timeout=5)
        ex._work_queue.put(item)
        with pytest.raises(queue.Empty):
            futures.ThreadPoolExecutor(1)._work_queue.get(timeout=0.01)
    finally:
        gate.set()
    assert queued[0].result(timeout=10) == 1
    ex.shutdown()


def test_idle_semaphore_counts_idle_workers_no_task_claims(futures):
    ex = futures.ThreadPoolExecutor(3)
    try:
        assert isinstance(ex._idle_semaphore, threading.Semaphore)
        barrier = threading.Barrier(3)
        for f in [ex.submit(barrier.wait, 10) for _ in range(3)]:
            f.result(timeout=10)
        # Every worker has finished its task: all three are idle.
        deadline = time.monotonic() + 10
        while ex._idle_semaphore._value != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex._idle_semaphore._value == 3
        gate = threading.Event()
        held = ex.submit(gate.wait, 10)
        # A submit claims one idle worker at once.
        assert ex._idle_semaphore._value == 2
        gate.set()
        held.result(timeout=10)
    finally:
        ex.shutdown()


def test_threads_holds_every_worker_started(futures):
    ex = futures.ThreadPoolExecutor(4, thread_name_prefix="held")
    barrier = threading.Barrier(5)
    fs = [ex.submit(barrier.wait, 10) for _ in range(4)]
    barrier.wait(10)
    for f in fs:
        f.result(timeout=10)
    assert len(ex._threads) == 4
    assert all(isinstance(t, threading.Thread) and t.name.startswith("held_") for t in ex._threads)
    ex.shutdown()
    assert len(ex._threads) == 4 and not any(t.is_alive() for t in ex._threads)


def test_adjust_thread_count_starts_workers_ahead_of_tasks(futures):
    # Warm-up code calls it by hand: on a fresh pool each call starts one worker, up to the
    # maximum.
    ex = futures.ThreadPoolExecutor(2)
    for _ in range(3):
        ex._adjust_thread_count()
    assert len(ex._threads) == 2
    assert ex.submit(pow, 3, 2).result(timeout=10) == 9
    ex.shutdown()


def test_thread_pool_attributes_keep_their_meaning(futures):
    def init(x):
        pass

    ex = futures.ThreadPoolExecutor(3, "prefix", initializer=init, initargs=(1,))
    assert (ex._max_workers, ex._thread_name_prefix) == (3, "prefix")
    if hasattr(futures.ThreadPoolExecutor(1), "_initializer"):  # up to 3.13
        assert (ex._initializer, ex._initargs) == (init, (1,))
    assert ex._shutdown is False and ex._broken is False
    with ex._shutdown_lock:
        pass
    ex.shutdown()
    assert ex._shutdown is True


# --- ProcessPoolExecutor -----------------------------------------------------------------------

def test_pending_work_items_map_work_ids_to_work_items(process_executor):
    ex = process_executor(1)
    first = ex.submit(process_helpers.sleep_and_return, 0.5, "first")
    second = ex.submit(process_helpers.mul, 6, y=7)
    items = ex._pending_work_items
    assert isinstance(items, dict) and len(items) == 2
    assert all(isinstance(work_id, int) for work_id in items)
    by_future = {item.future: item for item in items.values()}
    assert set(by_future) == {first, second}
    assert all(type(item) is std_process._WorkItem for item in items.values())
    item = by_future[second]
    assert (item.fn, item.args, item.kwargs) == (process_helpers.mul, (6,), {"y": 7})
    assert second.result(timeout=30) == 42 and first.result(timeout=30) == "first"
    assert ex._pending_work_items == {}


def test_terminating_the_processes_breaks_the_pool_promptly(process_executor):
    ex = process_executor(2)
    fs = [ex.submit(time.sleep, 60) for _ in range(4)]
    deadline = time.monotonic() + 30
    while len(ex._processes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the sleeps have started
    assert ex._shutdown_thread is False
    started = time.monotonic()
    # A copy (dict.copy() is one step, also on a free-threaded build): the manager thread
    # removes the workers it reaps from the live dict (the stdlib's does too), which a loop over
    # it met on 3.13t ("dictionary changed size during iteration").
    for p in ex._processes.copy().values():
        p.terminate()
    for f in fs:
        with pytest.raises(std_process.BrokenProcessPool):
            f.result(timeout=20)
    assert time.monotonic() - started < 10
    ex._executor_manager_thread.join(20)
    assert not ex._executor_manager_thread.is_alive()
    assert ex._shutdown_thread is True and ex._broken
    with pytest.raises(std_process.BrokenProcessPool):
        ex.submit(int)


def test_shutdown_thread_and_manager_thread(process_executor):
    ex = process_executor(1)
    assert ex.submit(process_helpers.identity, 5).result(timeout=30) == 5
    assert ex._shutdown_thread is False
    manager = ex._executor_manager_thread
    assert isinstance(manager, threading.Thread) and manager.is_alive()
    processes = list(ex._processes.values())
    with ex._shutdown_lock:
        pass
    ex.shutdown(wait=False)
    assert ex._shutdown_thread is True and ex._processes is None
    manager.join(30)
    assert not manager.is_alive()
    assert all(not p.is_alive() for p in processes)


# --- Future subclasses -------------------------------------------------------------------------

def pebble_like(futures):
    """A Future subclass whose cancel() is written like pebble's ProcessFuture.cancel(): it
    cancels running futures too, through the stdlib's internals."""
    base = futures._base if hasattr(futures, "_base") else sys.modules["concurrent.futures._base"]

    class StoppableFuture(futures.Future):
        def cancel(self):
            with self._condition:
                if self._state == base.FINISHED:
                    return False
                if self._state in (base.CANCELLED, base.CANCELLED_AND_NOTIFIED):
                    return True
                self._state = base.CANCELLED
                self._condition.notify_all()
            self._invoke_callbacks()
            return True

    return StoppableFuture


def test_subclass_cancelling_a_running_future_through_the_internals(futures):
    f = pebble_like(futures)()
    seen = []
    f.add_done_callback(seen.append)
    assert len(f._done_callbacks) == 1
    assert f.set_running_or_notify_cancel()
    outcome = []

    def wait_for_it():
        try:
            f.result(timeout=10)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.05)  # the waiter is blocked in exception()
    assert f.cancel() is True
    waiter.join(10)
    assert not waiter.is_alive()
    assert f.cancelled() and f.done() and seen == [f]
    assert len(outcome) == 1 and isinstance(outcome[0], futures.CancelledError)
    with pytest.raises(futures.CancelledError):
        f.result(timeout=0)
    assert f.cancel() is True and seen == [f]


def test_subclass_finishing_a_future_by_hand(futures):
    f = futures.Future()
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    with f._condition:
        f._result = 5
        f._state = "FINISHED"
        f._condition.notify_all()
    f._invoke_callbacks()
    assert f.result(timeout=0) == 5 and f.exception(timeout=0) is None and seen == [5]
    g = futures.Future()
    with g._condition:
        g._exception = ValueError("x")
        g._state = "FINISHED"
    assert isinstance(g.exception(timeout=0), ValueError) and g._exception is g.exception()
    with pytest.raises(ValueError):
        g.result(timeout=0)


def test_done_callbacks_is_a_list_of_the_pending_callbacks(futures):
    f = futures.Future()

    class Listener:
        def __init__(self):
            self.calls = 0

        def on_done(self, fut):
            self.calls += 1

    listener = Listener()
    f.add_done_callback(listener.on_done)
    f._done_callbacks.append(listener.on_done)  # appended raw: runs at completion like any other
    assert len(f._done_callbacks) == 2 and f._done_callbacks[0] == listener.on_done
    assert listener.on_done in f._done_callbacks and list(f._done_callbacks)[1] == listener.on_done
    f._done_callbacks.remove(listener.on_done)  # equal, not the same bound-method object
    assert len(f._done_callbacks) == 1
    with pytest.raises(ValueError):
        f._done_callbacks.remove(print)
    f.set_result(None)
    assert listener.calls == 1
    g = futures.Future()
    g.add_done_callback(listener.on_done)
    g._done_callbacks = []
    g.set_result(None)
    assert listener.calls == 1


def test_invoke_callbacks_logs_exceptions_and_goes_on(futures, caplog):
    f = futures.Future()
    seen = []
    f.add_done_callback(lambda fut: 1 / 0)
    f.add_done_callback(seen.append)
    with f._condition:
        f._state = "CANCELLED"
    with caplog.at_level("ERROR", logger="concurrent.futures"):
        f._invoke_callbacks()
    assert seen == [f] and "exception calling callback" in caplog.text


def test_subclass_overriding_invoke_callbacks_is_called_by_the_transitions(futures):
    calls = []

    class Deferred(futures.Future):
        def _invoke_callbacks(self):
            calls.append(self._state)
            super()._invoke_callbacks()

    seen = []
    for finish in (lambda f: f.set_result(1), lambda f: f.set_exception(ValueError()),
                   lambda f: f.cancel()):
        f = Deferred()
        f.add_done_callback(seen.append)
        finish(f)
    assert calls == ["FINISHED", "FINISHED", "CANCELLED"] and len(seen) == 3


# --- pytest with warnings as errors ------------------------------------------------------------

@pytest.mark.parametrize("how", ["env", "plugin"])
def test_pytest_with_warnings_as_errors_and_cfutures_installed(tmp_path, how):
    import subprocess
    (tmp_path / "test_uses_futures.py").write_text(
        "import concurrent.futures\n"
        "def test_installed():\n"
        "    assert concurrent.futures.Future.__module__.startswith('cfutures')\n"
        "    with concurrent.futures.ThreadPoolExecutor(1) as ex:\n"
        "        assert ex.submit(pow, 2, 5).result() == 32\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    env = dict(os.environ)
    args = [sys.executable, "-m", "pytest", "-W", "error", "-q", "-p", "no:cacheprovider",
            # An editable install (pip install -e) imports scikit-build-core's redirecting module
            # at start-up, and pytest warns that it cannot rewrite that one: not cfutures' doing.
            "-W", "ignore:Module already imported so cannot be rewritten; _editable_skbc"]
    if how == "env":
        env["CFUTURES_INSTALL"] = "1"  # what `python -m cfutures run` sets
    else:
        args.append("--cfutures")
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
