"""cfutures' Executor.stats() (beyond the stdlib) on both pools: the counts, their identities,
under concurrent submitters and cancellers too."""

import concurrent.futures
import copy
import pickle
import threading
import time

import pytest

import cfutures
from conftest import ProcessExecutorFactory
from process_helpers import fails, mul, sleep_and_return, Unpicklable, identity


def identity_holds(s):
    return s.submitted == s.queued + s.running + s.completed + s.failed + s.cancelled


@pytest.fixture(params=["thread", "process"])
def make(request):
    if request.param == "thread":
        made = []

        def factory(n, **kwargs):
            ex = cfutures.ThreadPoolExecutor(n, **kwargs)
            made.append(ex)
            return ex
        yield factory
        for ex in made:
            ex.shutdown(wait=True, cancel_futures=True)
    else:
        factory = ProcessExecutorFactory(cfutures, "forkserver")
        yield factory
        factory.close()


def test_names():
    assert "ExecutorStats" not in cfutures.__all__
    s = cfutures.ExecutorStats(1, 2, 3, 4, 5, 6, 7, 8)
    assert s._fields == ("submitted", "queued", "running", "completed", "failed", "cancelled",
                         "workers", "idle_workers")
    assert s.idle_workers == 8

    class Custom(cfutures.Executor):
        def submit(self, fn, /, *args, **kwargs):
            raise NotImplementedError
    with pytest.raises(NotImplementedError, match="keeps no statistics"):
        Custom().stats()


def test_workers_replaced_and_calls_inlined_are_outside_the_tuple():
    s = cfutures.ExecutorStats(1, 2, 3, 4, 5, 6, 7, 8, workers_replaced=9)
    submitted, queued, running, completed, failed, cancelled, workers, idle_workers = s
    assert (submitted, idle_workers, len(s), tuple(s)) == (1, 8, 8, (1, 2, 3, 4, 5, 6, 7, 8))
    assert s.workers_replaced == 9
    assert cfutures.ExecutorStats(*range(8)).workers_replaced == 0
    assert cfutures.ExecutorStats._make(range(8)).workers_replaced == 0
    assert repr(s) == ("ExecutorStats(submitted=1, queued=2, running=3, completed=4, failed=5, "
                       "cancelled=6, workers=7, idle_workers=8, workers_replaced=9, "
                       "calls_inlined=0)")
    assert list(s._asdict().items())[-3:] == [("idle_workers", 8), ("workers_replaced", 9),
                                              ("calls_inlined", 0)]
    inlined = s._replace(calls_inlined=2)
    assert (inlined.calls_inlined, inlined.workers_replaced, inlined != s) == (2, 9, True)
    assert pickle.loads(pickle.dumps(inlined)).calls_inlined == 2
    with pytest.raises(TypeError, match="unexpected keyword arguments: threads"):
        cfutures.ExecutorStats(*range(8), threads=1)
    assert s._replace(queued=0) == cfutures.ExecutorStats(1, 0, 3, 4, 5, 6, 7, 8, workers_replaced=9)
    assert s._replace(workers_replaced=0).workers_replaced == 0
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(s, protocol))
        assert (type(back), back, back.workers_replaced) == (cfutures.ExecutorStats, s, 9)
    assert copy.copy(s).workers_replaced == copy.deepcopy(s).workers_replaced == 9
    # Equal stats count the same replacements; against a plain tuple, the tuple's equality.
    assert s != cfutures.ExecutorStats(1, 2, 3, 4, 5, 6, 7, 8)
    assert s == (1, 2, 3, 4, 5, 6, 7, 8) and hash(s) == hash((1, 2, 3, 4, 5, 6, 7, 8))


def test_a_thread_pool_replaces_no_worker():
    with cfutures.ThreadPoolExecutor(2) as ex:
        list(ex.map(abs, range(100)))
        assert ex.stats().workers_replaced == 0


def test_a_fresh_pool(make):
    s = make(2).stats()
    assert s == cfutures.ExecutorStats(0, 0, 0, 0, 0, 0, 0, 0)


def test_counts_by_outcome(make):
    ex = make(1)
    gate = ex.submit(sleep_and_return, 0.5, "gate")
    queued = [ex.submit(mul, i, 2) for i in range(4)]
    bad = ex.submit(fails)
    time.sleep(0.2)
    s = ex.stats()
    assert identity_holds(s)
    assert s.submitted == 6 and s.running >= 1 and s.queued + s.running == 6
    assert queued[1].cancel()
    s = ex.stats()
    assert s.cancelled == 1  # counted when cancelled, not when a worker comes to it
    assert identity_holds(s)
    cfutures.wait([gate, bad] + queued)
    s = ex.stats()
    assert (s.submitted, s.queued, s.running, s.completed, s.failed, s.cancelled) == (6, 0, 0, 4, 1, 1)
    assert s.workers == 1


def test_after_every_future_is_done_nothing_is_queued_or_running(make):
    ex = make(2)
    for _ in range(5):
        fs = [ex.submit(identity, i) for i in range(200)]
        cfutures.wait(fs)
        s = ex.stats()
        assert s.queued == 0 and s.running == 0
        assert identity_holds(s)


def test_identity_under_concurrent_submitters_and_cancellers(make):
    ex = make(2)
    stop = threading.Event()
    futures, samples, errors = [], [], []

    def submitter():
        try:
            for i in range(300):
                futures.append(ex.submit(identity, i))
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def canceller():
        while not stop.is_set():
            for f in futures[-20:]:
                f.cancel()
            time.sleep(0.001)

    def sampler():
        while not stop.is_set():
            samples.append(ex.stats())

    threads = [threading.Thread(target=submitter) for _ in range(3)]
    helpers = [threading.Thread(target=canceller), threading.Thread(target=sampler)]
    for t in threads + helpers:
        t.start()
    for t in threads:
        t.join(60)
    cfutures.wait(futures, timeout=60)
    stop.set()
    for t in helpers:
        t.join(60)
    assert not errors
    assert samples and all(identity_holds(s) for s in samples)
    assert all(s.queued + s.running + s.completed + s.failed + s.cancelled <= 900 for s in samples)
    s = ex.stats()
    assert s.submitted == 900 and s.queued == 0 and s.running == 0
    assert s.cancelled == sum(f.cancelled() for f in futures)
    assert s.completed == sum(not f.cancelled() for f in futures)


def test_shutdown_cancel_futures_counts_the_cancelled(make):
    ex = make(1)
    fs = [ex.submit(sleep_and_return, 0.05, i) for i in range(20)]
    time.sleep(0.1)
    ex.shutdown(wait=True, cancel_futures=True)
    s = ex.stats()
    assert identity_holds(s) and s.queued == 0 and s.running == 0
    assert s.cancelled == sum(f.cancelled() for f in fs) > 0


def test_process_pool_counts_what_cfutures_adds(tmp_path):
    factory = ProcessExecutorFactory(cfutures, "forkserver")
    try:
        ex = factory(2, cancel_running=True, on_worker_death="replace")
        with pytest.raises(Exception):
            ex.submit(identity, Unpicklable()).result(timeout=60)  # fails at submit
        timed_out = ex.options(task_timeout=0.3).submit(sleep_and_return, 30, 0)
        running = ex.submit(sleep_and_return, 30, 1)
        while not running.running():
            time.sleep(0.01)
        time.sleep(0.2)
        assert running.cancel()
        with pytest.raises(cfutures.TaskTimeout):
            timed_out.result(timeout=60)
        assert ex.submit(mul, 2, 3).result(timeout=60) == 6
        s = ex.stats()
        assert (s.submitted, s.queued, s.running, s.completed, s.failed, s.cancelled) == (4, 0, 0, 1, 2, 1)
    finally:
        factory.close()


def test_a_running_task_cancelled_as_its_answer_comes_is_counted_once():
    # cancel() of a running task racing its answer: the pool's decision to stop it and the
    # stopper's taking it out of the job table were two steps, between which (on a free-threaded
    # build) the answer could take the job: counted Cancelled and Completed.
    import random
    factory = ProcessExecutorFactory(cfutures, "forkserver")
    try:
        ex = factory(2, cancel_running=True)
        rng = random.Random(7)
        fs = []
        for i in range(60):
            f = ex.submit(sleep_and_return, 0.005, i)
            while not f.running() and not f.done():
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.003, 0.007))  # around when the answer comes
            f.cancel()
            fs.append(f)
        concurrent.futures.wait(fs, timeout=60)
        s = ex.stats()
        assert identity_holds(s) and s.queued == 0 and s.running == 0
        assert s.cancelled == sum(f.cancelled() for f in fs)
        assert s.completed == sum(not f.cancelled() for f in fs)
    finally:
        factory.close()
