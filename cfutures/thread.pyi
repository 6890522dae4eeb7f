# Types of cfutures.thread.
import concurrent.futures.thread
from collections.abc import Callable
from concurrent.futures.thread import BrokenThreadPool as BrokenThreadPool
from typing import Any

from ._base import Executor

class ThreadPoolExecutor(Executor, concurrent.futures.thread.ThreadPoolExecutor):
    def __init__(
        self, max_workers: int | None = None, thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
    ) -> None: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
