# Types of cfutures: the names of concurrent.futures, with cfutures' classes and functions.
from ._base import (
    ALL_COMPLETED as ALL_COMPLETED,
    FIRST_COMPLETED as FIRST_COMPLETED,
    FIRST_EXCEPTION as FIRST_EXCEPTION,
    BrokenExecutor as BrokenExecutor,
    CancelledError as CancelledError,
    Executor as Executor,
    Future as Future,
    InvalidStateError as InvalidStateError,
    TimeoutError as TimeoutError,
    as_completed as as_completed,
    wait as wait,
)

from .process import ProcessPoolExecutor as ProcessPoolExecutor
from ._base import ExecutorStats as ExecutorStats
from ._base import QueueFull as QueueFull
from ._progress import progress as progress
from .process import TaskTimeout as TaskTimeout
from .process import WorkerDied as WorkerDied
from ._green import GreenThreadWarning as GreenThreadWarning
from .thread import ThreadPoolExecutor as ThreadPoolExecutor

import sys
if sys.version_info >= (3, 12):
    from .interpreter import InterpreterPoolExecutor as InterpreterPoolExecutor

__version__: str
# Whether the native core was built (False: a portable build, whose executors are the stdlib's).
NATIVE: bool
__all__: tuple[str, ...]

def install() -> None: ...
def uninstall() -> None: ...
def installed() -> bool: ...
