"""The Dask rows: cfutures.dask.DaskExecutor against Dask's own APIs, on one cluster, and
BASELINES, what their "stdlib" side measures.

These rows are there only when `distributed` is installed. Their "stdlib" side is not the
stdlib: it is the Dask API named in the row (ROW_BASELINES; the table says so in a footnote and
the --json rows under "baseline"). Both sides of a row run on the same cluster in the same run: a
2-worker LocalCluster that runner.run() starts before the first Dask row and closes after the last
(a row measured alone, by runner.measure() or pytest-benchmark, starts its own). Every
measurement waits until the scheduler holds no task (what the previous one released), makes its
executor and warms it with one no-op outside the clock; the timed part maps identity over the
items and consumes every result, or (the submit rows) submits identity once per item, one task
each, and consumes every result as it completes.
"""

import contextlib
import time

from cfutures._bench.tasks import identity, noop

DASK_CHUNKSIZE = 1000
DASK_IDLE_SECONDS = 30.0  # at most this long waiting for the scheduler to forget earlier tasks

_dask_client = None  # the Client of the cluster that dask_cluster() holds open, if any


@contextlib.contextmanager
def dask_cluster():
    """A 2-worker LocalCluster (worker processes, one thread each) and a Client on it, workers
    up and warm; the one already open if there is one."""
    global _dask_client
    if _dask_client is not None:
        yield _dask_client
        return
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        client.run(_dask_worker_warm)  # the modules the tasks need, imported in every worker
        _dask_client = client
        try:
            yield client
        finally:
            _dask_client = None


def _dask_worker_warm():
    import cfutures._dask_remote  # noqa: F401  (this module is imported by unpickling us)


def _scheduler_task_count(dask_scheduler):
    return len(dask_scheduler.tasks)


def _dask_idle(client):
    deadline = time.monotonic() + DASK_IDLE_SECONDS
    while client.run_on_scheduler(_scheduler_task_count) and time.monotonic() < deadline:
        time.sleep(0.01)


def _dask_executor_map(client, n):
    """cfutures.dask.DaskExecutor(client=client).map(identity, items, chunksize=1000)."""
    from cfutures.dask import DaskExecutor
    _dask_idle(client)
    with DaskExecutor(client=client) as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        for last in ex.map(identity, range(n), chunksize=DASK_CHUNKSIZE):
            pass
        elapsed = time.perf_counter() - t0
    assert last == n - 1
    return n / elapsed


def _dask_get_executor_map(client, n):
    """client.get_executor().map(identity, items): Dask's Executor, one task per item (its map
    takes no chunksize)."""
    _dask_idle(client)
    with client.get_executor() as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        for last in ex.map(identity, range(n)):
            pass
        elapsed = time.perf_counter() - t0
    assert last == n - 1
    return n / elapsed


def _dask_client_map(client, n):
    """client.gather(client.map(identity, items, pure=False)): one task per item."""
    _dask_idle(client)
    client.submit(noop, pure=False).result()
    t0 = time.perf_counter()
    results = client.gather(client.map(identity, range(n), pure=False))
    elapsed = time.perf_counter() - t0
    assert len(results) == n and results[-1] == n - 1
    return n / elapsed


def _dask_executor_submits(client, n):
    """DaskExecutor(client=client).submit(identity, i) for each item, then every result through
    cfutures.as_completed: one task per item."""
    import cfutures
    from cfutures.dask import DaskExecutor
    _dask_idle(client)
    with DaskExecutor(client=client) as ex:
        ex.submit(noop).result()
        t0 = time.perf_counter()
        futures = [ex.submit(identity, i) for i in range(n)]
        total = 0
        for future in cfutures.as_completed(futures):
            total += future.result()
        elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2
    return n / elapsed


def _dask_client_submits(client, n):
    """client.submit(identity, i, pure=False) for each item, then client.gather(futures)."""
    _dask_idle(client)
    client.submit(noop, pure=False).result()
    t0 = time.perf_counter()
    futures = [client.submit(identity, i, pure=False) for i in range(n)]
    results = client.gather(futures)
    elapsed = time.perf_counter() - t0
    assert len(results) == n and results[-1] == n - 1
    return n / elapsed


def dask_submit_vs_client_submit(impl, n):
    """n single DaskExecutor.submit calls, results through cfutures.as_completed ("cfutures"),
    against n client.submit calls and one client.gather (in the "stdlib" slot), on the 2-worker
    LocalCluster (tasks per second)."""
    with dask_cluster() as client:
        return (_dask_executor_submits if impl == "cfutures" else _dask_client_submits)(client, n)


def dask_submit_vs_client_submit_long(impl, n):
    """dask_submit_vs_client_submit, the row of the long run (its own name for --only and for
    the pytest-benchmark drivers, which find a row by its function)."""
    return dask_submit_vs_client_submit(impl, n)


def dask_vs_get_executor(impl, n):
    """DaskExecutor.map(chunksize=1000) ("cfutures") against client.get_executor().map
    (in the "stdlib" slot) on the 2-worker LocalCluster (items per second)."""
    with dask_cluster() as client:
        return (_dask_executor_map if impl == "cfutures" else _dask_get_executor_map)(client, n)


def dask_vs_client_map(impl, n):
    """DaskExecutor.map(chunksize=1000) ("cfutures") against client.gather(client.map(...))
    (in the "stdlib" slot) on the 2-worker LocalCluster (items per second)."""
    with dask_cluster() as client:
        return (_dask_executor_map if impl == "cfutures" else _dask_client_map)(client, n)


# What the "stdlib" side of each row measures (ROW_BASELINES).
_DASK_SIDES = ("; the cfutures column is cfutures.dask.DaskExecutor(client=client).map(identity, "
               f"items, chunksize={DASK_CHUNKSIZE}), one task per chunk; both on one "
               "LocalCluster(n_workers=2, threads_per_worker=1, processes=True) in the same run, "
               "every result consumed")
_DASK_SUBMITS = ("Dask's client.submit(identity, i, pure=False) for each item, then "
                 "client.gather(futures); the cfutures column is cfutures.dask.DaskExecutor("
                 "client=client).submit(identity, i) for each item, then cfutures.as_completed("
                 "futures); one task per item either way, both on one LocalCluster(n_workers=2, "
                 "threads_per_worker=1, processes=True) in the same run, every result consumed")
BASELINES = {
    "dask_vs_get_executor": "Dask's client.get_executor().map(identity, items), one Dask task per "
                            "item (its map takes no chunksize)" + _DASK_SIDES,
    "dask_vs_client_map": "Dask's client.gather(client.map(identity, items, pure=False)), one "
                          "Dask task per item" + _DASK_SIDES,
    "dask_submit_vs_client_submit": _DASK_SUBMITS,
    "dask_submit_vs_client_submit_long": _DASK_SUBMITS,
}
