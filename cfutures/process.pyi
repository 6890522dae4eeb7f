# Types of cfutures.process.
import concurrent.futures.process
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool as BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any

from ._base import Executor

class ProcessPoolExecutor(Executor, concurrent.futures.process.ProcessPoolExecutor):
    def __init__(
        self, max_workers: int | None = None, mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (), *,
        max_tasks_per_child: int | None = None,
    ) -> None: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
    def terminate_workers(self) -> None: ...
    def kill_workers(self) -> None: ...
