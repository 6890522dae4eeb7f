# Types of cfutures.dask.
import concurrent.futures.process
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.context import BaseContext
from typing import Any, Literal, TypeVar

from ._base import Executor, ExecutorStats, Future

_T = TypeVar("_T")

class DaskFuture(Future[_T]): ...

class DaskExecutorStats(ExecutorStats):
    with_dask: int
    threads: int

class DaskExecutor(Executor):
    def __init__(
        self, address: str | None = None, *, client: Any = None, max_workers: int | None = None,
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
        **client_kwargs: Any,
    ) -> None: ...
    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> DaskFuture[_T]: ...
    def map(
        self, fn: Callable[..., _T], *iterables: Iterable[Any], timeout: float | None = None,
        chunksize: int = 1, buffersize: int | None = None,
    ) -> Iterator[_T]: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
    def stats(self) -> DaskExecutorStats: ...

class ProcessPoolExecutor(DaskExecutor, concurrent.futures.process.ProcessPoolExecutor):
    def __init__(
        self, max_workers: int | None = None, mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (), *,
        max_tasks_per_child: int | None = None, task_timeout: float | None = None,
        cancel_running: bool = False, on_worker_death: Literal["break", "replace"] = "break",
        pickler: Literal["cloudpickle"] | None = None,
    ) -> None: ...

class LocalClusterProcess:
    address: str
    def close(self) -> None: ...

def start_local_cluster() -> LocalClusterProcess: ...
def routed() -> bool: ...
