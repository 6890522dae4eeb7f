# Types of cfutures._base: the stdlib's concurrent.futures types, with cfutures' classes.
import concurrent.futures
import logging
import queue
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    ALL_COMPLETED as ALL_COMPLETED,
    FIRST_COMPLETED as FIRST_COMPLETED,
    FIRST_EXCEPTION as FIRST_EXCEPTION,
    BrokenExecutor as BrokenExecutor,
    CancelledError as CancelledError,
    InvalidStateError as InvalidStateError,
    TimeoutError as TimeoutError,
)
from concurrent.futures._base import (
    CANCELLED as CANCELLED,
    CANCELLED_AND_NOTIFIED as CANCELLED_AND_NOTIFIED,
    FINISHED as FINISHED,
    PENDING as PENDING,
    RUNNING as RUNNING,
    DoneAndNotDoneFutures as DoneAndNotDoneFutures,
    Error as Error,
)
from typing import Any, TypeVar, overload

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:
    from typing_extensions import ParamSpec

from ._cfutures import FutureBase

_T = TypeVar("_T")
_P = ParamSpec("_P")
_S1 = TypeVar("_S1")
_S2 = TypeVar("_S2")

LOGGER: logging.Logger

class Future(FutureBase, concurrent.futures.Future[_T]):
    """A native future; an instance of concurrent.futures.Future."""

class QueueFull(queue.Full): ...

class _ExecutorOptions:
    """A view of an executor whose submit() and map() apply executor.options()'s options."""
    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]: ...
    def map(
        self, fn: Callable[..., _T], *iterables: Iterable[Any], timeout: float | None = None,
        chunksize: int = 1, buffersize: int | None = None,
    ) -> Iterator[_T]: ...
    def __getattr__(self, name: str) -> Any: ...

# A named tuple of eight ints, with workers_replaced and calls_inlined outside the tuple
# (cfutures/_base.py).
class ExecutorStats(tuple[int, int, int, int, int, int, int, int]):
    _fields: tuple[str, str, str, str, str, str, str, str]
    def __new__(
        cls, submitted: int, queued: int, running: int, completed: int, failed: int,
        cancelled: int, workers: int, idle_workers: int, *, workers_replaced: int = 0,
        calls_inlined: int = 0,
    ) -> ExecutorStats: ...
    @property
    def submitted(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def idle_workers(self) -> int: ...
    workers_replaced: int
    calls_inlined: int
    @classmethod
    def _make(cls, iterable: Iterable[int]) -> ExecutorStats: ...
    def _asdict(self) -> dict[str, int]: ...
    def _replace(self, **changes: int) -> ExecutorStats: ...

class Executor(concurrent.futures.Executor):
    def stats(self) -> ExecutorStats: ...
    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]: ...
    @overload
    def map(
        self, fn: Callable[[_S1], _T], iterable: Iterable[_S1], /, *, timeout: float | None = None,
        chunksize: int = 1, buffersize: int | None = None,
    ) -> Iterator[_T]: ...
    @overload
    def map(
        self, fn: Callable[[_S1, _S2], _T], iterable: Iterable[_S1], iterable2: Iterable[_S2], /, *,
        timeout: float | None = None, chunksize: int = 1, buffersize: int | None = None,
    ) -> Iterator[_T]: ...
    @overload
    def map(
        self, fn: Callable[..., _T], iterable: Iterable[Any], iterable2: Iterable[Any],
        /, *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_T]: ...

def wait(
    fs: Iterable[concurrent.futures.Future[_T]], timeout: float | None = None,
    return_when: str = "ALL_COMPLETED",
) -> DoneAndNotDoneFutures[_T]: ...
def as_completed(
    fs: Iterable[concurrent.futures.Future[_T]], timeout: float | None = None,
) -> Iterator[concurrent.futures.Future[_T]]: ...
