# Types of cfutures.thread.
import concurrent.futures.thread
from collections.abc import Callable
from concurrent.futures.thread import BrokenThreadPool as BrokenThreadPool
from typing import Any, Literal

from ._base import Executor, _ExecutorOptions

class ThreadPoolExecutor(Executor, concurrent.futures.thread.ThreadPoolExecutor):
    def __init__(
        self, max_workers: int | None = None, thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (), *,
        max_queue: int | None = None, context: Literal["submit"] | None = None,
    ) -> None: ...
    def options(
        self, *, priority: int = 0, block: bool = True, block_timeout: float | None = None,
    ) -> _ExecutorOptions: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
