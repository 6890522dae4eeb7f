# Types of cfutures._progress.
from collections.abc import Iterable, Iterator
from typing import TypeVar

_T = TypeVar("_T")

def progress(iterable: Iterable[_T], total: int | None = None, desc: str | None = None) -> Iterator[_T]: ...
