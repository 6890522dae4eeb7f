# Types of cfutures.interpreter (Python 3.12+).
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from .thread import BrokenThreadPool, ThreadPoolExecutor

if sys.version_info >= (3, 14):
    import concurrent.futures.interpreter
    from concurrent.futures.interpreter import BrokenInterpreterPool as BrokenInterpreterPool
    from concurrent.interpreters import ExecutionFailed as ExecutionFailed
    from concurrent.interpreters import NotShareableError as NotShareableError

    class InterpreterPoolExecutor(ThreadPoolExecutor,
                                  concurrent.futures.interpreter.InterpreterPoolExecutor): ...
else:
    class BrokenInterpreterPool(BrokenThreadPool): ...

    class ExecutionFailed(Exception):
        excinfo: SimpleNamespace
        def __init__(self, excinfo: SimpleNamespace) -> None: ...

    class NotShareableError(Exception): ...

    class InterpreterPoolExecutor(ThreadPoolExecutor):
        def __init__(
            self, max_workers: int | None = None, thread_name_prefix: str = "",
            initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = (),
        ) -> None: ...

class WorkerContext:
    @classmethod
    def prepare(cls, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> tuple[
        Callable[[], WorkerContext],
        Callable[[Callable[..., object], tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]]: ...
    def __init__(self, initdata: tuple[Any, ...] | None) -> None: ...
    def initialize(self) -> None: ...
    def finalize(self) -> None: ...
    def run(self, task: tuple[Any, ...]) -> Any: ...
