"""ProcessPoolExecutor(max_worker_memory=BYTES) (cfutures, opt-in): after each task, a worker
whose resident memory exceeds the bound (even after a garbage collection) exits cleanly and is
replaced; no task fails, the tasks sent ahead to it run elsewhere, and stats() counts the
replacements. The default pool reads no RSS. cfutures only: the stdlib has no such option.

The leaking task (process_helpers.leak) keeps LEAK_MB MiB per call in a module-level list of its
worker, every page written (so resident), and reports its worker's RSS right after."""

import multiprocessing
import pickle

import pytest

import cfutures
from conftest import ProcessExecutorFactory
from process_helpers import hoard, leak, mul, resident_bytes, statm_opened  # noqa: E402

MiB = 1 << 20
LEAK_MB = 20
# Past the bound plus one task's growth, what a worker's RSS may also hold: the bytes object's
# header and page rounding (kilobytes), the answer being pickled, and pymalloc arenas and
# imports a first task brings into a fresh worker (a few MiB, measured 0-2 MiB).
SLACK = 8 * MiB


def baseline(make):
    """The RSS of a fresh worker of `make`'s start method once it ran a task (without a bound)."""
    ex = make(1)
    rss = ex.submit(leak, -1, 0).result(timeout=60)[1]
    ex.shutdown(wait=True)
    return rss


# --- the argument ------------------------------------------------------------------------------

def test_bad_values_are_refused(cf_forkserver):
    for bad in (0, -1, -(1 << 40)):
        with pytest.raises(ValueError, match="max_worker_memory must be a positive number of bytes"):
            cf_forkserver(1, max_worker_memory=bad)
    for bad in ("1", 1.5, float(1 << 30), True, False, [1]):
        with pytest.raises(TypeError, match="max_worker_memory must be an integer number of bytes"):
            cf_forkserver(1, max_worker_memory=bad)


def test_the_portable_build_refuses_it():
    from cfutures import _portable
    with pytest.raises(NotImplementedError, match=r"max_worker_memory=1073741824\) needs cfutures' native core"):
        _portable.ProcessPoolExecutor(1, max_worker_memory=1 << 30)


def test_without_mp_context_the_pool_keeps_the_default_start_method():
    # Replacements under 'fork' come from the pool's zygote (tests/test_zygote.py).
    with cfutures.ProcessPoolExecutor(1, max_worker_memory=1 << 40) as ex:
        assert ex._mp_context.get_start_method() == multiprocessing.get_start_method()
        assert ex._max_worker_memory == 1 << 40
        assert ex.submit(mul, 6, 7).result(timeout=60) == 42


def test_the_default_pool_reads_no_rss(cf_forkserver):
    ex = cf_forkserver(1)
    assert ex._host.max_worker_memory is None  # what the worker's main gets: no bound
    assert ex.submit(statm_opened).result(timeout=60) is False
    bounded = cf_forkserver(1, max_worker_memory=1 << 40)
    assert bounded.submit(statm_opened).result(timeout=60) is True  # the control: it is seen
    assert bounded.stats().workers_replaced == 0  # far under the bound: nothing left


def test_the_default_pool_never_measures_under_fork(monkeypatch):
    # Under fork the worker runs this process's modules as patched: a bound-less pool that
    # tried to measure would break (the measure raises in the worker).
    from cfutures import _process_worker

    def forbidden():
        raise AssertionError("a pool without max_worker_memory read its RSS")
    monkeypatch.setattr(_process_worker, "_open_statm", forbidden)
    with cfutures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as ex:
        assert list(ex.map(mul, range(50), range(50))) == [i * i for i in range(50)]
        assert ex.stats().workers_replaced == 0


# --- workers that grow -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_rss_stays_under_the_bound_plus_one_task(method):
    make = ProcessExecutorFactory(cfutures, method)
    try:
        bound = baseline(make) + 100 * MiB
        ex = make(2, max_worker_memory=bound)
        n = 48
        results = [f.result(timeout=60) for f in [ex.submit(leak, i, LEAK_MB) for i in range(n)]]
        assert sorted(i for i, _, _ in results) == list(range(n))  # each exactly once
        worst = max(rss for _, rss, _ in results)
        assert worst <= bound + LEAK_MB * MiB + SLACK, (worst - bound) / MiB
        # A worker holds about 5 leaks before it passes the bound: 48 need several workers.
        assert len({pid for _, _, pid in results}) >= 4
        s = ex.stats()
        assert s.workers_replaced >= 2
        assert (s.submitted, s.completed, s.failed, s.cancelled) == (n, n, 0, 0)
    finally:
        make.close()


def test_tasks_sent_ahead_to_a_retiring_worker_run_once(cf_process):
    # One worker, many fast tasks (so that tasks are sent ahead to it), every 50th leaking: it
    # passes the bound every second leak, with tasks in flight behind the one that leaked.
    bound = baseline(cf_process) + 30 * MiB
    ex = cf_process(1, max_worker_memory=bound)
    n = 1000
    fs = [ex.submit(leak, i, LEAK_MB if i % 50 == 49 else 0) for i in range(n)]
    results = [f.result(timeout=60) for f in fs]
    assert [i for i, _, _ in results] == list(range(n))
    s = ex.stats()
    assert (s.submitted, s.completed, s.failed, s.cancelled) == (n, n, 0, 0)
    assert s.workers_replaced >= 5
    assert len({pid for _, _, pid in results}) >= 5


def test_tasks_asked_back_from_a_leaving_worker_run_once(cf_forkserver):
    # Two workers and bursts of fast tasks with a few that leak or hoard objects (so that the
    # collection before a worker leaves takes milliseconds): tasks sent ahead are asked back
    # (Revoke) from workers that are about to leave, some while they collect. Whatever comes
    # back first (Revoked before Exiting, or the exit), each task runs once.
    bound = baseline(cf_forkserver) + 60 * MiB
    ex = cf_forkserver(2, max_worker_memory=bound)
    results = []
    for burst in range(12):
        fs = []
        for i in range(burst * 100, burst * 100 + 100):
            if i % 50 == 7:
                fs.append(ex.submit(hoard, i, 200_000))
            elif i % 25 == 3:
                fs.append(ex.submit(leak, i, LEAK_MB))
            else:
                fs.append(ex.submit(leak, i, 0))
        results += [f.result(timeout=60)[0] for f in fs]
    assert sorted(results) == list(range(1200))
    s = ex.stats()
    assert (s.completed, s.failed, s.cancelled) == (1200, 0, 0)
    assert s.workers_replaced >= 3


def test_shutdown_waits_for_tasks_sent_again(cf_forkserver):
    # Retirements during shutdown(wait=True): the tasks they give back still run.
    bound = baseline(cf_forkserver) + 30 * MiB
    ex = cf_forkserver(1, max_worker_memory=bound)
    fs = [ex.submit(leak, i, LEAK_MB if i % 20 == 19 else 0) for i in range(200)]
    ex.shutdown(wait=True)
    assert [f.result(timeout=0) for f in fs] and sorted(f.result()[0] for f in fs) == list(range(200))
    assert ex.stats().workers_replaced >= 3


def test_with_max_tasks_per_child_both_replace(cf_forkserver):
    bound = baseline(cf_forkserver) + 50 * MiB
    ex = cf_forkserver(2, max_tasks_per_child=7, max_worker_memory=bound)
    fs = [ex.submit(leak, i, LEAK_MB if i % 3 == 0 else 0) for i in range(60)]
    assert sorted(f.result(timeout=60)[0] for f in fs) == list(range(60))
    s = ex.stats()
    assert s.failed == 0 and s.completed == 60
    assert s.workers_replaced >= 60 // 7 - 2


def test_with_task_timeout_and_on_worker_death(cf_forkserver):
    # The other opt-in options that replace workers, together with the bound.
    bound = baseline(cf_forkserver) + 40 * MiB
    ex = cf_forkserver(2, max_worker_memory=bound, task_timeout=30, on_worker_death="replace")
    fs = [ex.submit(leak, i, LEAK_MB if i % 10 == 0 else 0) for i in range(300)]
    assert sorted(f.result(timeout=60)[0] for f in fs) == list(range(300))
    assert ex.stats().failed == 0 and ex.stats().workers_replaced >= 3


# --- stats -------------------------------------------------------------------------------------

def test_stats_unpack_into_eight_names_and_carry_the_replacements(cf_forkserver):
    ex = cf_forkserver(1, max_tasks_per_child=1)
    assert [ex.submit(mul, i, 1).result(timeout=60) for i in range(3)] == [0, 1, 2]
    s = ex.stats()
    submitted, queued, running, completed, failed, cancelled, workers, idle_workers = s
    assert (submitted, completed, len(s)) == (3, 3, 8)
    assert s.workers_replaced >= 2
    assert f"workers_replaced={s.workers_replaced}, calls_inlined=0)" in repr(s)
    assert s._asdict()["workers_replaced"] == s.workers_replaced
    assert pickle.loads(pickle.dumps(s)).workers_replaced == s.workers_replaced
