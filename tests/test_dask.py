"""cfutures.dask: what DaskExecutor does beyond the executor contract (which
test_executor_contract.py runs on it too), on a real Dask cluster (tests/dask_cluster.py:
distributed.LocalCluster on 127.0.0.1, in a child process, for the module). Tests that compare
with the stdlib run the same body on the stdlib's ProcessPoolExecutor (ids ``stdlib-process``
and ``dask``).
"""

import asyncio
import concurrent.futures
import concurrent.futures.process
import itertools
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import uuid

import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import cfutures  # noqa: E402
from cfutures.dask import DaskExecutor  # noqa: E402
from dask_helpers import (  # noqa: E402  (importable by the cluster's workers, see conftest)
    append_line, append_line_after, check_submits_and_remote_traceback, counted, first_byte, initializations, initialize, key_of_current_task,
    kill_own_worker, length, unpicklable_result, wait_for_file, worker_env)
from dask_cluster import WORKERS, DaskFactory, client, cluster  # noqa: E402,F401  (fixtures)
from process_helpers import fails, mul, sleep_and_return  # noqa: E402

BrokenProcessPool = concurrent.futures.process.BrokenProcessPool
@pytest.fixture
def dask_executor(client):
    factory = DaskFactory(client)
    yield factory
    factory.close()


@pytest.fixture(params=["stdlib-process", "dask"])
def remote_executor(request, client):
    """An executor factory: the stdlib's ProcessPoolExecutor, or DaskExecutor on the cluster."""
    if request.param == "dask":
        factory = DaskFactory(client)
    else:
        made = []

        def factory(**kwargs):
            ex = concurrent.futures.ProcessPoolExecutor(WORKERS, **kwargs)
            made.append(ex)
            return ex
        factory.close = lambda: [ex.shutdown(cancel_futures=True) for ex in made]
    yield factory
    factory.close()


def _until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- the stdlib's semantics, side by side -----------------------------------------------------

def test_submit_result_and_exception_with_remote_traceback(remote_executor):
    ex = remote_executor()
    check_submits_and_remote_traceback(ex, timeout=30)


def test_map_in_order_with_chunks_and_several_iterables(remote_executor):
    ex = remote_executor()
    assert list(ex.map(mul, range(50), range(50), chunksize=7)) == [i * i for i in range(50)]
    assert list(ex.map(mul, [], [])) == []
    with pytest.raises(ValueError):
        ex.map(mul, [1], [1], chunksize=0)






def test_unpicklable_argument_fails_the_future(remote_executor):
    ex = remote_executor()
    future = ex.submit(length, threading.Lock())
    assert isinstance(future.exception(timeout=30), TypeError)
    assert ex.submit(mul, 2, 3).result(timeout=30) == 6


def test_unpicklable_result_fails_the_future(remote_executor):
    ex = remote_executor()
    error = ex.submit(unpicklable_result).exception(timeout=30)
    assert isinstance(error, TypeError) and "pickle" in str(error)






def test_every_submit_runs_even_identical_ones(remote_executor, tmp_path):
    ex = remote_executor()
    path = str(tmp_path / "log")
    futures = [ex.submit(append_line, path, "same") for _ in range(5)]
    assert [f.result(timeout=30) for f in futures] == ["same"] * 5
    with open(path) as f:
        assert f.read().splitlines() == ["same"] * 5
    assert len({ex.submit(uuid.uuid4).result(timeout=30) for _ in range(3)}) == 3


def test_arguments_are_captured_at_submit(dask_executor):
    # The stdlib's process pool pickles in a feeder thread, later: a race there, a rule here.
    ex = dask_executor(max_workers=1)
    blocker = ex.submit(sleep_and_return, 0.5, None)
    small, large = [1, 2, 3], bytearray(b"a" * 300_000)
    f_small, f_large = ex.submit(sum, small), ex.submit(first_byte, large)
    small.append(100)
    large[0] = ord("b")
    blocker.result(timeout=30)
    assert (f_small.result(timeout=30), f_large.result(timeout=30)) == (6, ord("a"))


# --- what only the Dask executor has ----------------------------------------------------------

def test_map_sends_each_chunk_as_one_task(dask_executor):
    ex = dask_executor()
    results = list(ex.map(key_of_current_task, range(100), chunksize=30))
    assert [x for x, _ in results] == list(range(100))
    keys = [key for _, key in results]
    assert len(set(keys)) == 4
    assert all(len(set(keys[i:i + 30])) == 1 for i in range(0, 100, 30))
    assert all(key.startswith("key_of_current_task-") for key in keys)


def test_map_buffersize_bounds_what_is_taken_from_the_input(dask_executor):
    ex = dask_executor()
    taken = []
    results = ex.map(mul, counted(taken), itertools.repeat(2), chunksize=5, buffersize=3)
    assert [next(results) for _ in range(12)] == [2 * i for i in range(12)]
    # 3 chunks in flight, one more taken each time one is consumed.
    assert len(taken) <= 5 * (3 + 3)
    results.close()


def test_a_large_argument_shared_by_many_tasks_is_sent_once(dask_executor, monkeypatch):
    ex = dask_executor()
    scatters = []
    scatter = ex._client.scatter
    monkeypatch.setattr(ex._client, "scatter", lambda *a, **k: scatters.append(1) or scatter(*a, **k))
    data = b"x" * 1_000_000
    # The workers are busy meanwhile: a task that ended before the next submit would let its
    # blob go (as it should), and the next would send it again (a loaded machine did that).
    busy = [ex.submit(sleep_and_return, 0.5, None) for _ in range(WORKERS)]
    futures = [ex.submit(length, data) for _ in range(10)]
    assert [f.result(timeout=30) for f in futures] == [len(data)] * 10
    assert [f.result(timeout=30) for f in busy] == [None] * WORKERS
    assert len(scatters) == 1
    # Another content is another blob; no blob is kept once no task uses it.
    assert ex.submit(length, b"y" * 1_000_000).result(timeout=30) == 1_000_000
    assert len(scatters) == 2
    _until(lambda: not ex._blobs)


def _count_calls(monkeypatch, obj, name, log):
    original = getattr(obj, name)

    def counting(*args, **kwargs):
        log.append((name, args, kwargs))
        return original(*args, **kwargs)
    monkeypatch.setattr(obj, name, counting)


def test_a_burst_of_submits_reaches_the_scheduler_in_batches(dask_executor, monkeypatch):
    """Submits close together go as one Client.map per batch (at most _SEND_BATCH tasks), and
    results that end close together come with one gather: one message per task cost the
    scheduler more than the tasks. Each task still runs once, with its own key."""
    ex = dask_executor()
    calls = []
    for name in ("map", "submit", "gather"):
        _count_calls(monkeypatch, ex._client, name, calls)
    n = 500
    futures = [ex.submit(mul, i, 2) for i in range(n)]
    assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(n)]
    sends = [c for c in calls if c[0] in ("map", "submit")]
    batches = [len(c[1][1]) if c[0] == "map" else 1 for c in sends]
    assert sum(batches) == n and max(batches) <= cfutures.dask._SEND_BATCH
    assert len(sends) < n // 5, batches
    gathers = [c for c in calls if c[0] == "gather"]
    assert sum(len(c[1][0]) for c in gathers) == n and len(gathers) < n // 2, len(gathers)


def test_a_burst_mixing_shared_blobs_and_plain_calls(dask_executor):
    ex = dask_executor()
    data = b"x" * 1_000_000
    futures = [ex.submit(length, data) if i % 7 == 0 else ex.submit(mul, i, 1)
               for i in range(200)]
    assert [f.result(timeout=60) for f in futures] == \
        [len(data) if i % 7 == 0 else i for i in range(200)]
    _until(lambda: not ex._blobs)


def test_cancel_during_a_burst_ends_every_future_and_runs_no_cancelled_task(dask_executor,
                                                                            tmp_path):
    path = str(tmp_path / "log")
    ex = dask_executor()
    futures = [ex.submit(append_line, path, str(i)) for i in range(300)]
    cancelled = [f.cancel() if i % 2 else False for i, f in enumerate(futures)]
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    with open(path) as f:
        ran = f.read().split()
    assert sorted(ran) == sorted(set(ran))  # none twice
    for i, (f, c) in enumerate(zip(futures, cancelled)):
        assert f.cancelled() == c, i
        assert (str(i) in ran) != c, i
    assert ex.stats().cancelled == sum(cancelled)


def test_a_batch_the_client_refuses_fails_its_tasks_and_the_executor_goes_on(dask_executor,
                                                                             monkeypatch):
    ex = dask_executor()
    refusal = RuntimeError("refused")
    refused = []
    original = ex._client.map

    def refuse_once(*args, **kwargs):
        if not refused:
            refused.append(len(args[1]))
            raise refusal
        return original(*args, **kwargs)
    monkeypatch.setattr(ex._client, "map", refuse_once)
    futures = [ex.submit(mul, i, 1) for i in range(50)]
    concurrent.futures.wait(futures, timeout=60)
    failed = [f for f in futures if f.exception(timeout=0) is not None]
    assert refused and len(failed) == refused[0]
    for f in failed:
        assert isinstance(f.exception(), BrokenProcessPool)
        assert f.exception().__cause__ is refusal and "could not take the task" in str(f.exception())
    assert all(f.result() == i for i, f in enumerate(futures) if f not in failed)
    assert ex.submit(mul, 3, 4).result(timeout=30) == 12


def test_cancel_in_the_executor_queue_and_at_the_scheduler(dask_executor, tmp_path):
    path = str(tmp_path / "log")
    ex = dask_executor(max_workers=WORKERS + 2)
    futures = [ex.submit(append_line_after, 0.5, path, str(i)) for i in range(WORKERS + 6)]
    _until(lambda: sum(1 for _ in ex._client.processing().values()) and all(
        len(keys) for keys in ex._client.processing().values()))
    time.sleep(0.2)
    cancelled = [f.cancel() for f in futures]
    # The ones in the executor's queue always cancel; the first ones are held by workers.
    assert cancelled[-4:] == [True] * 4
    assert cancelled[:WORKERS] == [False] * WORKERS
    concurrent.futures.wait(futures, timeout=30)
    with open(path) as f:
        ran = set(f.read().split())
    for i, (f, c) in enumerate(zip(futures, cancelled)):
        assert f.cancelled() == c and f.done()
        assert (str(i) in ran) != c, i


def test_cancel_of_a_running_task_is_false(dask_executor):
    ex = dask_executor()
    future = ex.submit(sleep_and_return, 1, "done")
    _until(lambda: any(ex._client.processing().values()))
    time.sleep(0.2)
    assert not future.cancel()
    assert future.result(timeout=30) == "done"
    assert not future.cancel()


def test_a_future_turns_running_when_its_task_starts_and_cannot_be_cancelled(dask_executor,
                                                                             tmp_path):
    release = str(tmp_path / "release")
    ex = dask_executor(max_workers=WORKERS + 1)
    futures = [ex.submit(wait_for_file, release, i) for i in range(WORKERS + 3)]
    _until(lambda: sum(f.running() for f in futures) == WORKERS)
    running = [f for f in futures if f.running()]
    assert futures[-1] not in running  # in the executor's queue
    assert [f.cancel() for f in running] == [False] * WORKERS
    assert futures[-1].cancel()
    s = ex.stats()
    assert (s.submitted, s.running, s.cancelled, s.completed) == (WORKERS + 3, WORKERS, 1, 0)
    assert s.queued == 2 and s.with_dask == 1  # one held by the scheduler, one by the executor
    with open(release, "w"):
        pass
    assert sorted(f.result(timeout=30) for f in futures if not f.cancelled()) == \
        list(range(WORKERS + 2))
    assert not any(f.running() for f in futures)


def test_starts_are_reported_in_batches_not_one_message_per_task(dask_executor):
    ex = dask_executor()
    n = 300
    assert [f.result(timeout=60) for f in [ex.submit(mul, i, 1) for i in range(n)]] == \
        list(range(n))
    topic = cfutures._dask_remote.START_TOPIC
    reports = [msg[ex._token] for _, msg in ex._client.get_events(topic)
               if ex._token in msg]
    seen = sorted(seq for seqs in reports for seq in seqs)
    assert seen == sorted(set(seen)) and len(seen) > n // 2  # a few may still be on their way
    # Fewer reports than tasks (how many fewer depends on the load: 123 for 296 starts seen).
    assert len(reports) < len(seen), (len(reports), len(seen))


def test_the_worker_plugin_sends_one_report_per_interval():
    """TaskStartReporter alone, on a stand-in worker: 100 starts within one interval are one
    report; keys that are not the executor's, and other transitions, are not reported."""
    from cfutures._dask_remote import START_TOPIC, TaskStartReporter, task_key

    class Worker:
        def __init__(self):
            self.due, self.events = [], []
            self.loop = self

        def call_later(self, delay, callback):
            self.due.append(callback)

        def log_event(self, topic, msg):
            self.events.append((topic, msg))

    worker = Worker()
    reporter = TaskStartReporter()
    reporter.setup(worker)
    for seq in range(100):
        reporter.transition(task_key("mul", "cafe", seq), "ready", "executing")
        reporter.transition(task_key("mul", "cafe", seq), "executing", "memory")
    reporter.transition("mul-0123abcd", "ready", "executing")  # someone else's task
    reporter.transition(task_key("f", "beef", 7), "ready", "executing")
    assert len(worker.due) == 1 and worker.events == []
    worker.due.pop()()
    assert worker.events == [(START_TOPIC, {"cafe": list(range(100)), "beef": [7]})]
    worker.due.clear()
    reporter.transition(task_key("mul", "cafe", 100), "ready", "executing")
    assert len(worker.due) == 1  # the next interval


def test_stats_count_the_tasks_and_the_cluster(dask_executor):
    ex = dask_executor()
    assert ex.submit(mul, 2, 3).result(timeout=30) == 6
    with pytest.raises(ValueError):
        ex.submit(fails).result(timeout=30)
    ex.submit(mul, threading.Lock(), 1).exception(timeout=30)  # fails at submit: no pickle
    s = ex.stats()
    assert isinstance(s, cfutures.ExecutorStats) and isinstance(s, tuple)
    assert (s.submitted, s.queued, s.running, s.completed, s.failed, s.cancelled) == \
        (3, 0, 0, 1, 2, 0)
    assert (s.workers, s.threads, s.with_dask) == (WORKERS, WORKERS, 0)
    assert 0 <= s.idle_workers <= WORKERS
    assert "with_dask=0" in repr(s) and s._asdict()["threads"] == WORKERS
    ex.shutdown()
    assert ex.stats()[:6] == s[:6]


def test_shutdown_cancel_futures(dask_executor, tmp_path):
    path = str(tmp_path / "log")
    ex = dask_executor()
    futures = [ex.submit(append_line_after, 0.3, path, str(i)) for i in range(12)]
    _until(lambda: any(ex._client.processing().values()))
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in futures)
    cancelled = [f for f in futures if f.cancelled()]
    assert 12 - 2 * (WORKERS + 1) <= len(cancelled) < 12
    with open(path) as f:
        ran = set(f.read().split())
    assert ran == {str(i) for i, f in enumerate(futures) if not f.cancelled()}


def test_shutdown_without_wait_lets_the_work_finish(dask_executor):
    ex = dask_executor()
    futures = [ex.submit(sleep_and_return, 0.2, i) for i in range(4)]
    ex.shutdown(wait=False)
    assert [f.result(timeout=30) for f in futures] == list(range(4))


def test_futures_mix_with_other_executors_in_waits_callbacks_and_asyncio(dask_executor):
    ex = dask_executor()
    with cfutures.ThreadPoolExecutor(2) as threads, \
            concurrent.futures.ThreadPoolExecutor(2) as std_threads:
        mixed = [ex.submit(sleep_and_return, 0.3, "dask"), threads.submit(time.sleep, 0.1),
                 std_threads.submit(time.sleep, 0.05)]
        seen = []
        mixed[0].add_done_callback(lambda f: seen.append(f.result()))
        for wait in (cfutures.wait, concurrent.futures.wait):
            done, not_done = wait(mixed, timeout=30)
            assert not not_done
        order = list(cfutures.as_completed([ex.submit(sleep_and_return, 0.5, "slow"),
                                            threads.submit(sleep_and_return, 0, "fast")],
                                           timeout=30))
        assert [f.result() for f in order] == ["fast", "slow"]
        assert [f.result() for f in concurrent.futures.as_completed(mixed, timeout=30)]
        assert seen == ["dask"]
        assert isinstance(mixed[0], concurrent.futures.Future)

    async def main():
        return await asyncio.wrap_future(ex.submit(mul, 3, 4))
    assert asyncio.run(main()) == 12


def test_a_killed_worker_fails_its_task_with_a_clear_error(dask_executor):
    ex = dask_executor()
    future = ex.submit(kill_own_worker)
    with pytest.raises(cfutures.WorkerDied, match="Dask worker at tcp://127.0.0.1:[0-9]+ "
                       "running this task died") as info:
        future.result(timeout=60)
    assert isinstance(info.value, BrokenProcessPool)
    assert isinstance(info.value.__cause__, distributed.KilledWorker)
    # The executor goes on (Dask restarts the worker).
    assert ex.submit(mul, 2, 2).result(timeout=60) == 4
    ex._client.wait_for_workers(WORKERS, timeout=60)


def _one_worker_local_cluster():
    os.environ["CFUTURES_DASK_WORKERS"] = "1"
    try:
        return cfutures.dask.start_local_cluster()
    finally:
        del os.environ["CFUTURES_DASK_WORKERS"]


def test_losing_the_scheduler_ends_every_future(client):
    doomed = _one_worker_local_cluster()
    try:
        ex = DaskExecutor(doomed.address, max_workers=2)
        futures = [ex.submit(sleep_and_return, 1, i) for i in range(5)]
        _until(lambda: ex._client.processing() and any(ex._client.processing().values()))
        os.kill(doomed._child.pid, signal.SIGKILL)
        done, not_done = concurrent.futures.wait(futures, timeout=60)
        assert not not_done
        for future in futures:
            assert isinstance(future.exception(), BrokenProcessPool)
            assert "scheduler-connection-lost" in str(future.exception())
        ex.shutdown()
    finally:
        doomed.close()


def test_a_crashed_local_cluster_says_so_with_its_stacks(capfd):
    crashing = _one_worker_local_cluster()
    try:
        with open(f"/proc/{crashing._child.pid}/maps") as maps:
            assert "_cfutures" not in maps.read()  # the compiled module is not loaded there
        os.kill(crashing._child.pid, signal.SIGSEGV)
        _until(lambda: crashing._child.poll() is not None)
    finally:
        crashing.close()
    err = capfd.readouterr().err
    assert "(most recent call first)" in err  # faulthandler's stack of each thread
    assert f"local Dask cluster (process {crashing._child.pid}) had ended by SIGSEGV" in err


def test_initializer_runs_once_per_worker_process_before_its_tasks(dask_executor):
    ex = dask_executor(initializer=initialize, initargs=("hello",))
    results = [ex.submit(initializations).result(timeout=30) for _ in range(6)]
    for inits in results:
        assert [tag for tag, pid in inits].count("hello") == 1
    other = dask_executor(initializer=initialize, initargs=("again",))
    assert ("again" in [t for t, _ in other.submit(initializations).result(timeout=30)])


# The in-process cluster's HTTP server leaves a socket to the garbage collector (Dask's, not ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_owned_local_cluster_is_closed_at_shutdown(client):
    with DaskExecutor(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as ex:
        assert ex.submit(mul, 5, 5).result(timeout=60) == 25
        client = ex._client
        cluster = client.cluster
        # Dask's profiler reads other threads' frames, which crashes free-threaded 3.13.
        profiling = not cfutures._dask_remote.FRAMES_OF_OTHER_THREADS_UNSAFE
        assert [("profile" in w.periodic_callbacks) for w in cluster.workers.values()] == [
            profiling]
    assert client.status == "closed"
    assert cluster.status.name == "closed"


def test_the_cluster_cfutures_starts_profiles_only_where_reading_frames_is_safe(client):
    unsafe = (bool(sysconfig.get_config_var("Py_GIL_DISABLED")) and sys.version_info < (3, 14))
    assert cfutures._dask_remote.FRAMES_OF_OTHER_THREADS_UNSAFE is unsafe
    assert cfutures._dask_remote.cluster_config().get(
        "distributed.worker.profile.enabled", True) is not unsafe
    # The module's cluster is cfutures.dask.start_local_cluster's (run --dask local).
    key = "distributed.worker.profile.enabled"
    assert set(client.run(dask.config.get, key).values()) == {not unsafe}
    assert client.run_on_scheduler(dask.config.get, key) is not unsafe


def test_bad_arguments(client):
    with pytest.raises(TypeError):
        DaskExecutor("tcp://127.0.0.1:1", client=client)
    with pytest.raises(ValueError):
        DaskExecutor(client=client, max_workers=0)
    with pytest.raises(TypeError):
        DaskExecutor(client=client, initializer=3)


# --- without distributed, and without asking for it -------------------------------------------

def _python(code, env=None, timeout=120):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_import_cfutures_does_not_import_dask():
    out = _python("""
        import sys, cfutures
        cfutures.ThreadPoolExecutor, cfutures.ProcessPoolExecutor
        print('dask' in sys.modules, 'distributed' in sys.modules)
    """)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_missing_distributed_is_an_import_error_naming_the_extra():
    out = _python("""
        import sys
        sys.modules['distributed'] = None
        from cfutures.dask import DaskExecutor
        try:
            DaskExecutor()
        except ImportError as e:
            print(e)
    """)
    assert "pip install 'cfutures[dask]'" in out.stdout, out.stderr


# --- python -m cfutures run --dask, CFUTURES_DASK ---------------------------------------------

SCRIPT = """
import concurrent.futures, os, sys, warnings
import dask_helpers

def square(x):
    return x * x

state = {}

def remember(value):
    global loaded
    loaded = value

def use_loaded(x):
    return loaded + x

if __name__ == "__main__":
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = concurrent.futures.ProcessPoolExecutor(2, mp_context=None, max_tasks_per_child=2)
    print("class", type(ex).__module__, isinstance(ex, concurrent.futures.ProcessPoolExecutor))
    print("warnings", len(caught), "max_tasks_per_child" in str(caught[0].message))
    with ex:
        print("map", list(ex.map(square, range(5), chunksize=2)))
        print("env", ex.submit(dask_helpers.worker_env, "CFUTURES_DASK").result(),
              ex.submit(dask_helpers.worker_env, "CFUTURES_INSTALL").result())
        print("worker", ex.submit(os.getpid).result() != os.getpid())
    with concurrent.futures.ProcessPoolExecutor(initializer=remember, initargs=(40,)) as ex:
        print("initializer", list(ex.map(use_loaded, [1, 2])))
    import cfutures
    print("cfutures", cfutures.ProcessPoolExecutor is concurrent.futures.ProcessPoolExecutor)
    try:
        concurrent.futures.ProcessPoolExecutor(task_timeout=1)
    except NotImplementedError as e:
        print("timeout", "task_timeout" in str(e))
    print("args", sys.argv[1:])
"""

EXPECTED = ["class cfutures.dask True", "warnings 1 True", "map [0, 1, 4, 9, 16]",
            "env None None", "worker True", "initializer [41, 42]", "cfutures True",
            "timeout True", "args ['a', 'b']"]


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("CFUTURES_DASK", "CFUTURES_INSTALL")}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_a_client_cfutures_made_stops_its_start_reports_before_it_closes(monkeypatch):
    calls = []

    class Client:
        def unsubscribe_topic(self, topic):
            calls.append(("unsubscribe", topic))

        def close(self):
            calls.append(("close",))

    made = Client()
    cfutures.dask._listening_clients.add(made)
    cfutures.dask._close_made_client(made)
    assert calls == [("unsubscribe", "cfutures-task-starts"), ("close",)]
    # The shared client of CFUTURES_DASK (`run --dask`) closes the same way at exit.
    registered = []
    monkeypatch.setattr(cfutures.dask.atexit, "register", lambda *a: registered.append(a))
    monkeypatch.setattr(cfutures.dask, "_connect", lambda *a: made)
    monkeypatch.setattr(cfutures.dask, "_shared", None)
    monkeypatch.setenv("CFUTURES_DASK", "tcp://127.0.0.1:1")
    assert cfutures.dask._shared_client() is made
    assert registered == [(cfutures.dask._close_made_client, made)]


def test_run_dask_local_runs_an_unmodified_script_on_its_own_cluster(tmp_path):
    from conftest import live_processes
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "-m", "cfutures", "run", "--dask", "local",
                             str(script), "a", "b"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=_clean_env(CFUTURES_DASK_WORKERS="1"))
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert stdout.splitlines() == EXPECTED, stderr
    # A start report on its way to a client that closed made the scheduler log a CRITICAL
    # traceback into the run (1 run in 6, before the clients unsubscribed first).
    assert "CRITICAL" not in stderr, stderr
    # The cluster's processes (all in the run's session) end with the run.
    _until(lambda: not live_processes(4, proc.pid))


EXIT_SCRIPT = """
import concurrent.futures, time

def slow(x):
    time.sleep(0.3)
    print("ran", x, flush=True)
    return x

if __name__ == "__main__":
    ex = concurrent.futures.ProcessPoolExecutor(2)
    futures = [ex.submit(slow, i) for i in range(3)]
    futures[0].add_done_callback(lambda f: print("callback", f.result(), flush=True))
    print("leaving", flush=True)
"""


def test_work_left_running_at_exit_completes_and_tasks_print_to_the_runs_stdout(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(EXIT_SCRIPT)
    out = subprocess.run([sys.executable, "-m", "cfutures", "run", "--dask", "local",
                          str(script)], capture_output=True, text=True, timeout=120,
                         env=_clean_env(CFUTURES_DASK_WORKERS="1"))
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == ["callback 0", "leaving", "ran 0", "ran 1", "ran 2"]
    assert "Traceback" not in out.stderr, out.stderr


def test_cfutures_dask_variable_routes_process_pools_to_a_cluster(cluster, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), "a", "b"], capture_output=True,
                         text=True, timeout=120, env=_clean_env(CFUTURES_DASK=cluster.address))
    assert out.stdout.splitlines() == EXPECTED, out.stderr
