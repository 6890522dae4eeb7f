# Types of cfutures.process.
import concurrent.futures.process
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool as BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any, Literal

from ._base import Executor, _ExecutorOptions

class TaskTimeout(Exception): ...

class WorkerDied(BrokenProcessPool):
    exitcode: int | None
    def __init__(self, message: str, exitcode: int | None = None) -> None: ...

class ProcessPoolExecutor(Executor, concurrent.futures.process.ProcessPoolExecutor):
    def __init__(
        self, max_workers: int | None = None, mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (), *,
        max_tasks_per_child: int | None = None, task_timeout: float | None = None,
        cancel_running: bool = False, on_worker_death: Literal["break", "replace"] = "break",
        pickler: Literal["cloudpickle"] | None = None, max_queue: int | None = None,
        max_worker_memory: int | None = None,
    ) -> None: ...
    def options(
        self, *, task_timeout: float | None = None, priority: int = 0, block: bool = True,
        block_timeout: float | None = None,
    ) -> _ExecutorOptions: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
    def terminate_workers(self) -> None: ...
    def kill_workers(self) -> None: ...
