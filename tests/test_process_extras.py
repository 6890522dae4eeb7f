"""cfutures' opt-in process-pool features beyond the stdlib: task_timeout (and options()),
on_worker_death="replace". cfutures only: the stdlib has none of these."""

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

import cfutures
from conftest import ProcessExecutorFactory, zombie_children
from process_helpers import (  # noqa: E402  (importable by spawned workers, see conftest)
    exits, getpid, hard_exit, init_fails, kill_self, make_bytes, mul, sleep_and_return,
    sleep_then_write)

BrokenProcessPool = concurrent.futures.process.BrokenProcessPool


def shm_entries():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


# --- the names ---------------------------------------------------------------------------------

def test_new_names_are_cfutures_attributes_only():
    assert issubclass(cfutures.WorkerDied, BrokenProcessPool)
    # Neither the builtin nor concurrent.futures' (a distinct class before 3.11).
    assert not issubclass(cfutures.TaskTimeout, (TimeoutError, concurrent.futures.TimeoutError))
    for name in ("TaskTimeout", "WorkerDied"):
        assert name not in cfutures.__all__
        assert not hasattr(concurrent.futures, name)


def test_worker_died_pickles_with_its_exit_code():
    e = pickle.loads(pickle.dumps(cfutures.WorkerDied("gone", -9)))
    assert (type(e), e.args, e.exitcode) == (cfutures.WorkerDied, ("gone",), -9)


def test_bad_options(cf_forkserver):
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="task_timeout"):
            cf_forkserver(1, task_timeout=bad)
    with pytest.raises(TypeError, match="task_timeout"):
        cf_forkserver(1, task_timeout="1")
    with pytest.raises(ValueError, match="on_worker_death"):
        cf_forkserver(1, on_worker_death="ignore")
    ex = cf_forkserver(1)
    with pytest.raises(ValueError, match="task_timeout"):
        ex.options(task_timeout=0)


def test_defaults_keep_the_stdlib_behaviour(cf_forkserver):
    ex = cf_forkserver(2)
    assert ex.submit(sleep_and_return, 0.5, 1).result(timeout=60) == 1
    with pytest.raises(BrokenProcessPool) as info:
        ex.submit(kill_self, signal.SIGKILL).result(timeout=60)
    assert type(info.value) is BrokenProcessPool


# --- task_timeout ------------------------------------------------------------------------------

def test_a_task_past_its_timeout_is_stopped_and_the_pool_goes_on(cf_process, tmp_path):
    ex = cf_process(2, task_timeout=1)
    ex.submit(mul, 1, 1).result(timeout=60)  # workers started
    marker = tmp_path / "ran"
    t0 = time.monotonic()
    stuck = ex.submit(sleep_then_write, 30, str(marker))
    with pytest.raises(cfutures.TaskTimeout):
        stuck.result(timeout=60)
    assert time.monotonic() - t0 < 20
    assert not marker.exists()  # its worker was killed, not left running
    assert [ex.submit(mul, i, 2).result(timeout=60) for i in range(4)] == [0, 2, 4, 6]


def test_the_clock_starts_when_the_task_starts(cf_forkserver):
    # One worker: each task waits for the one before it, longer than the timeout, and is not
    # stopped for that.
    ex = cf_forkserver(1, task_timeout=1.5)
    fs = [ex.submit(sleep_and_return, 0.6, i) for i in range(4)]
    assert [f.result(timeout=60) for f in fs] == [0, 1, 2, 3]


def test_tasks_sent_ahead_to_a_stopped_worker_run_normally(cf_forkserver):
    ex = cf_forkserver(1)
    # Many quick tasks first, so that the pool sends tasks ahead to its worker.
    assert sum(ex.map(mul, range(200), range(200))) == sum(i * i for i in range(200))
    timed = ex.options(task_timeout=0.5)
    stuck = timed.submit(sleep_and_return, 30, "late")
    behind = [ex.submit(mul, i, 3) for i in range(20)]
    with pytest.raises(cfutures.TaskTimeout):
        stuck.result(timeout=60)
    assert [f.result(timeout=60) for f in behind] == [i * 3 for i in range(20)]


def test_a_timeout_racing_completion_gives_exactly_one_outcome(cf_forkserver):
    ex = cf_forkserver(2)
    timed = ex.options(task_timeout=0.05)
    fs = [timed.submit(sleep_and_return, 0.04 + (i % 5) * 0.005, i) for i in range(60)]
    outcomes = {"result": 0, "timeout": 0}
    for i, f in enumerate(fs):
        try:
            assert f.result(timeout=60) == i
            outcomes["result"] += 1
        except cfutures.TaskTimeout:
            outcomes["timeout"] += 1
        assert f.done() and not f.cancelled()
    assert sum(outcomes.values()) == 60
    assert ex.submit(mul, 2, 2).result(timeout=60) == 4


def test_many_timeouts_leak_no_worker_zombie_or_shm(cf_forkserver):
    shm_before = shm_entries()
    ex = cf_forkserver(2, task_timeout=0.1)
    big = make_bytes(1 << 20)  # travels as an attachment (a memfd, not /dev/shm)
    fs = [ex.submit(sleep_and_return, 10, i) for i in range(12)]
    fs += [ex.submit(sleep_and_return, 10, big) for _ in range(4)]
    for f in fs:
        with pytest.raises(cfutures.TaskTimeout):
            f.result(timeout=60)
    assert len(ex._processes) <= 2
    ex.shutdown(wait=True)
    deadline = time.monotonic() + 10
    # Reaped: no zombie child either (live_processes() leaves zombies out, so look for them).
    while time.monotonic() < deadline and zombie_children():
        time.sleep(0.05)
    assert zombie_children() == set()
    assert shm_entries() <= shm_before


def test_options_map_times_each_chunk_and_keeps_maps_own_timeout(cf_forkserver):
    ex = cf_forkserver(2)
    timed = ex.options(task_timeout=5)
    assert list(timed.map(mul, range(10), range(10), chunksize=3)) == [i * i for i in range(10)]
    # Chunks of 2 tasks of 0.4 s: each chunk takes 0.8 s, past its 0.6 s.
    with pytest.raises(cfutures.TaskTimeout):
        list(ex.options(task_timeout=0.6).map(sleep_and_return, [0.4] * 4, range(4), chunksize=2))
    # map()'s own timeout is the stdlib's: a TimeoutError for the whole iteration.
    with pytest.raises(concurrent.futures.TimeoutError):
        list(timed.map(sleep_and_return, [3], [1], timeout=0.2))


def test_timeouts_while_map_buffersize_streams(cf_forkserver):
    ex = cf_forkserver(2)
    consumed = []

    def inputs():
        for i in range(12):
            consumed.append(i)
            yield i

    timed = ex.options(task_timeout=0.5)
    it = timed.map(sleep_and_return, [0.01 if i != 5 else 10 for i in range(12)], inputs(),
                   buffersize=3)
    got = []
    with pytest.raises(cfutures.TaskTimeout):
        for x in it:
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    assert len(consumed) <= 5 + 3 + 1  # the buffer bounded how far the input was read


def test_the_view_does_not_keep_the_executor_alive(cf_forkserver):
    ex = cf_forkserver(1)
    view = ex.options(task_timeout=5)
    assert view.submit(mul, 3, 3).result(timeout=60) == 9
    assert view._max_workers == 1  # the executor's attributes read through
    assert "task_timeout=5" in repr(view)


def test_shutdown_wait_false_with_timed_tasks(cf_forkserver):
    ex = cf_forkserver(2, task_timeout=0.5)
    fs = [ex.submit(sleep_and_return, 10, 0), ex.submit(sleep_and_return, 0.1, 1)]
    time.sleep(0.2)
    ex.shutdown(wait=False)
    with pytest.raises(cfutures.TaskTimeout):
        fs[0].result(timeout=60)
    assert fs[1].result(timeout=60) == 1


# --- on_worker_death="replace" -----------------------------------------------------------------

@pytest.mark.parametrize("how,exitcode", [
    ((kill_self, signal.SIGKILL), -signal.SIGKILL),
    ((kill_self, signal.SIGSEGV), -signal.SIGSEGV),
    ((hard_exit,), 7),
], ids=["sigkill", "segfault", "os_exit"])
def test_a_dying_worker_fails_only_its_task(cf_process, how, exitcode):
    ex = cf_process(2, on_worker_death="replace")
    before = ex.submit(getpid).result(timeout=60)
    others = [ex.submit(sleep_and_return, 0.3, i) for i in range(6)]
    with pytest.raises(cfutures.WorkerDied) as info:
        ex.submit(*how).result(timeout=60)
    assert info.value.exitcode == exitcode
    assert isinstance(info.value, BrokenProcessPool)
    assert [f.result(timeout=60) for f in others] == list(range(6))
    assert ex.submit(mul, 6, 7).result(timeout=60) == 42
    assert before is not None


def test_replace_with_max_tasks_per_child(cf_forkserver):
    ex = cf_forkserver(2, on_worker_death="replace", max_tasks_per_child=2)
    pids = {ex.submit(getpid).result(timeout=60) for _ in range(6)}
    assert len(pids) >= 3
    with pytest.raises(cfutures.WorkerDied):
        ex.submit(kill_self, signal.SIGKILL).result(timeout=60)
    assert [ex.submit(mul, i, i).result(timeout=60) for i in range(5)] == [i * i for i in range(5)]


def test_replace_still_breaks_on_a_failing_initializer(cf_forkserver):
    ex = cf_forkserver(1, on_worker_death="replace", initializer=init_fails)
    with pytest.raises(BrokenProcessPool) as info:
        ex.submit(mul, 1, 1).result(timeout=60)
    assert not isinstance(info.value, cfutures.WorkerDied)


def test_system_exit_in_a_task_is_its_exception_not_a_death(cf_forkserver):
    ex = cf_forkserver(1, on_worker_death="replace")
    with pytest.raises(SystemExit):
        ex.submit(exits).result(timeout=60)
    assert ex.submit(mul, 2, 5).result(timeout=60) == 10


# --- cancel_running ----------------------------------------------------------------------------

def wait_running(f, limit=30):
    deadline = time.monotonic() + limit
    while not f.running() and not f.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f.running()


def test_cancel_running_stops_the_task_and_fires_callbacks_and_waiters(cf_process, tmp_path):
    ex = cf_process(2, cancel_running=True)
    marker = tmp_path / "ran"
    f = ex.submit(sleep_then_write, 3, str(marker))
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
    waiter = cfutures.as_completed([f], timeout=60)
    stdlib_waited = []
    import threading
    t = threading.Thread(target=lambda: stdlib_waited.append(
        concurrent.futures.wait([f], timeout=60)))
    t.start()
    wait_running(f)
    assert f.cancel() is True
    assert f.cancelled() and f.done()
    with pytest.raises(concurrent.futures.CancelledError):
        f.result(timeout=1)
    assert seen == [True]
    assert next(waiter) is f
    t.join(60)
    assert len(stdlib_waited[0].done) == 1
    assert f.cancel() is True  # cancelled already
    time.sleep(3.5)
    assert not marker.exists()  # stopped, not left running
    assert ex.submit(mul, 3, 4).result(timeout=60) == 12


def test_concurrent_cancels_of_a_running_task_all_succeed(cf_process):
    # cancel() calls racing on a running task: one stops it, and the others must answer True
    # too, once it is cancelled (they used to answer False on a free-threaded build, where they
    # run at once), with the callbacks run once.
    import threading
    ex = cf_process(2, cancel_running=True)
    for _ in range(10):
        f = ex.submit(sleep_and_return, 30, 1)
        seen = []
        f.add_done_callback(lambda fut: seen.append(fut.cancelled()))
        wait_running(f)
        barrier = threading.Barrier(3)
        answers = []

        def cancel():
            barrier.wait(timeout=30)
            answers.append(f.cancel())
        threads = [threading.Thread(target=cancel) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert answers == [True, True, True]
        assert seen == [True]
    assert ex.submit(mul, 3, 4).result(timeout=60) == 12


def test_a_second_cancel_blocks_while_the_first_stops_the_task(cf_forkserver, monkeypatch):
    # The first cancel() releases the call's arguments, which may run Python code for any time
    # (here one second, sleeping). A second cancel() meanwhile waits for its outcome: blocked,
    # not yielding in a loop (it used to burn a CPU for that second).
    import threading
    import process_helpers
    monkeypatch.setattr(process_helpers, "RELEASING", threading.Event())
    ex = cf_forkserver(1, cancel_running=True)
    f = ex.submit(sleep_and_return, 30, process_helpers.SlowToRelease(1.0))
    wait_running(f)
    answers = []
    first = threading.Thread(target=lambda: answers.append(f.cancel()))
    first.start()
    assert process_helpers.RELEASING.wait(30)
    cpu = time.thread_time()
    answers.append(f.cancel())
    cpu = time.thread_time() - cpu
    first.join(60)
    assert answers == [True, True]
    assert cpu < 0.2, f"the second cancel() used {cpu:.2f} s of CPU while it waited"


def test_without_cancel_running_a_running_task_cannot_be_cancelled(cf_forkserver):
    ex = cf_forkserver(1)
    f = ex.submit(sleep_and_return, 0.5, 1)
    wait_running(f)
    assert f.cancel() is False
    assert f.result(timeout=60) == 1


def test_cancel_of_a_finished_task_is_refused(cf_forkserver):
    ex = cf_forkserver(1, cancel_running=True)
    f = ex.submit(mul, 2, 2)
    assert f.result(timeout=60) == 4
    assert f.cancel() is False
    assert f.result() == 4


def test_cancel_racing_completion_gives_exactly_one_outcome(cf_forkserver):
    ex = cf_forkserver(2, cancel_running=True)
    fs = [ex.submit(sleep_and_return, 0.02 * (i % 4), i) for i in range(40)]
    results = {}
    for i, f in enumerate(fs):
        time.sleep(0.01)
        cancelled = f.cancel()
        if cancelled:
            assert f.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                f.result(timeout=60)
        else:
            results[i] = f.result(timeout=60)
            assert results[i] == i
    assert ex.submit(mul, 5, 5).result(timeout=60) == 25


def test_cancelling_tasks_sent_ahead_leaves_the_others_alone(cf_forkserver):
    ex = cf_forkserver(1, cancel_running=True)
    assert sum(ex.map(mul, range(200), range(200))) == sum(i * i for i in range(200))
    first = ex.submit(sleep_and_return, 0.5, "first")
    behind = [ex.submit(sleep_and_return, 0.01, i) for i in range(10)]
    wait_running(first)
    cancelled = [f for f in behind[::2] if f.cancel()]
    assert all(f.cancelled() for f in cancelled)
    assert first.result(timeout=60) == "first"
    for i, f in enumerate(behind):
        if f not in cancelled:
            assert f.result(timeout=60) == i


def test_cancel_while_map_buffersize_streams(cf_forkserver):
    # A running task cancelled (its worker killed) while a map streams on the same workers: the
    # map's tasks sent to that worker run again elsewhere, and the map yields every item.
    ex = cf_forkserver(2, cancel_running=True)
    assert sum(ex.map(mul, range(100), range(100))) == sum(i * i for i in range(100))
    it = ex.map(sleep_and_return, [0.02] * 60, range(60), buffersize=6)
    got = [next(it) for _ in range(5)]
    victim = ex.submit(sleep_and_return, 30, "victim")
    wait_running(victim)
    assert victim.cancel() is True
    got += list(it)
    assert got == list(range(60))


# --- pickler="cloudpickle" ---------------------------------------------------------------------

def test_cloudpickle_sends_lambdas_and_closures_and_brings_them_back(cf_process):
    pytest.importorskip("cloudpickle")
    ex = cf_process(2, pickler="cloudpickle")
    offset = 40
    assert ex.submit(lambda x: x + offset, 2).result(timeout=60) == 42
    assert list(ex.map(lambda x, y: x * y, range(5), range(5), chunksize=2)) == [0, 1, 4, 9, 16]
    make_adder = ex.submit(lambda n: (lambda x: x + n), 5).result(timeout=60)
    assert make_adder(1) == 6  # a lambda as the answer
    big = bytes(range(256)) * 8192  # 2 MiB: an attachment, through cloudpickle's pickler too
    assert ex.submit(lambda b: (len(b), b[-1]), big).result(timeout=60) == (len(big), 255)
    with pytest.raises(ZeroDivisionError):
        ex.submit(lambda: 1 / 0).result(timeout=60)


def test_cloudpickle_with_numpy_buffers_out_of_band(cf_forkserver):
    pytest.importorskip("cloudpickle")
    np = pytest.importorskip("numpy")
    ex = cf_forkserver(1, pickler="cloudpickle")
    a = np.arange(1 << 18, dtype=np.float64)
    assert ex.submit(lambda arr: float(arr.sum()), a).result(timeout=60) == float(a.sum())
    back = ex.submit(lambda n: np.ones(n), 1 << 18).result(timeout=60)
    assert back.shape == (1 << 18,) and back.sum() == 1 << 18


def test_a_function_of_an_unimportable_main_needs_cloudpickle(tmp_path):
    pytest.importorskip("cloudpickle")
    code = (
        "import multiprocessing, cfutures\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "ctx = multiprocessing.get_context('spawn')\n"
        "with cfutures.ProcessPoolExecutor(1, mp_context=ctx, pickler={pickler}) as ex:\n"
        "    try:\n"
        "        print('result', ex.submit(double, 21).result(timeout=60))\n"
        "    except Exception as e:\n"
        "        print('error', type(e).__name__)\n")
    outputs = {}
    for pickler in ("None", "'cloudpickle'"):
        # `python -c`: a spawned worker cannot import this __main__ by name.
        run = subprocess.run([sys.executable, "-c", code.format(pickler=pickler)],
                             capture_output=True, text=True, timeout=120)
        outputs[pickler] = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert outputs["'cloudpickle'"] == "result 42"
    assert not outputs["None"].startswith("result")


def test_pickler_without_cloudpickle_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cloudpickle", None)
    with pytest.raises(ImportError, match=r"cfutures\[cloudpickle\]"):
        cfutures.ProcessPoolExecutor(1, pickler="cloudpickle")
    with pytest.raises(ValueError, match="pickler"):
        cfutures.ProcessPoolExecutor(1, pickler="dill")
