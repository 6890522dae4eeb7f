import asyncio
import concurrent.futures
import multiprocessing
import queue

import cfutures
from cfutures import (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, BrokenExecutor,
                      CancelledError, Executor, Future, InvalidStateError, ProcessPoolExecutor,
                      ThreadPoolExecutor, TimeoutError, as_completed, wait)
from cfutures.process import BrokenProcessPool
from cfutures.thread import BrokenThreadPool


def square(x: int) -> int:
    return x * x


def join(a: str, b: int) -> str:
    return a * b


def run(executor: Executor) -> int:
    f: Future[int] = executor.submit(square, 3)
    g: Future[str] = executor.submit(join, "a", b=2)
    done, not_done = wait([f], timeout=1.0, return_when=FIRST_COMPLETED)
    total: int = sum(x.result() for x in done) + len(not_done)
    for h in as_completed([f], timeout=2):
        total += h.result()
    squares: list[int] = list(executor.map(square, range(5), buffersize=2))
    pairs: list[str] = list(executor.map(join, ["x"], [3], timeout=None, chunksize=1))
    return total + sum(squares) + len(pairs) + len(g.result())


def main() -> None:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="t") as ex:
        run(ex)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=10) as px:
        run(px)
        px.terminate_workers()
        px.kill_workers()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             task_timeout=30.0, on_worker_death="replace",
                             cancel_running=True, pickler="cloudpickle",
                             max_worker_memory=1 << 40) as tx:
        timed = tx.options(task_timeout=10)
        five: int = timed.submit(square, 2).result() + sum(timed.map(square, [1], chunksize=1))
        assert five == 5
    extras: tuple[type[BaseException], ...] = (cfutures.TaskTimeout, cfutures.WorkerDied)
    assert extras
    with ThreadPoolExecutor(2, max_queue=8, context="submit") as bounded:
        urgent: Future[int] = bounded.options(priority=-1, block_timeout=5.0).submit(square, 4)
        mapped: list[int] = list(bounded.options(block=True).map(square, [1, 2]))
        try:
            bounded.options(block=False).submit(square, 1).result()
        except cfutures.QueueFull as full:
            assert isinstance(full, queue.Full)
        assert urgent.result() == 16 and mapped == [1, 4]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_queue=4) as bp:
        assert bp.options(priority=2, block_timeout=1).submit(square, 3).result() == 9
    with ThreadPoolExecutor(2) as counted:
        done: list[int] = [f.result() for f in cfutures.progress([counted.submit(square, 3)])]
        stats: cfutures.ExecutorStats = counted.stats()
        assert done == [9] and stats.completed == 1 and stats.workers_replaced == 0
        submitted, *_, idle_workers = stats
        replaced: int = stats.workers_replaced
        assert submitted == 1 and replaced == 0 and stats._asdict()["idle_workers"] == idle_workers
    plain: concurrent.futures.Future[int] = Future()
    plain.set_result(1)
    assert isinstance(plain, concurrent.futures.Future)
    errors: tuple[type[BaseException], ...] = (BrokenExecutor, CancelledError, InvalidStateError,
                                               TimeoutError, BrokenProcessPool, BrokenThreadPool)
    assert len({ALL_COMPLETED, FIRST_EXCEPTION}) == 2 and errors

    async def in_loop() -> int:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor() as ex:
            loop.set_default_executor(ex)
            return await loop.run_in_executor(ex, square, 4) + await asyncio.wrap_future(
                ex.submit(square, 2))

    asyncio.run(in_loop())
    cfutures.install()
    assert cfutures.installed()
    cfutures.uninstall()
    version: str = cfutures.__version__
    print(version)


def on_a_cluster(address: str) -> list[int]:
    """Type-checked only (it needs a Dask scheduler at `address`)."""
    from cfutures.dask import DaskExecutor, DaskFuture
    with DaskExecutor(address, max_workers=4) as ex:
        future: DaskFuture[int] = ex.submit(square, 3)
        return [future.result(), *ex.map(square, range(10), chunksize=5, buffersize=2)]


if __name__ == "__main__":
    main()
