"""map() with chunksize for every process executor: the parent's side (chunks of arguments, one
task each, and the results flattened in order) and the worker's (process_chunk).

Pure Python over submit(), so that ProcessPoolExecutor, its options() views, DaskExecutor and a
portable build's pool (cfutures/_portable.py) share it; a worker that runs chunks imports this
module and nothing else of cfutures' beyond its loop.
"""

import functools
import itertools


def chunks(iterables, chunksize):
    """Up to chunksize arguments at a time, one task each: the items themselves when there is one
    iterable (cheaper to make and to pickle than 1-tuples), argument tuples otherwise."""
    if len(iterables) == 1 and type(iterables[0]) in (list, tuple, range):
        # A slice is made in C (of a range, another range: a few bytes to pickle). Indexes are
        # read as the chunks are made, as an iterator over the sequence would read them.
        sequence = iterables[0]
        start = 0
        while start < len(sequence):
            yield sequence[start:start + chunksize]
            start += chunksize
        return
    arguments = iter(iterables[0]) if len(iterables) == 1 else zip(*iterables)
    while True:
        chunk = tuple(itertools.islice(arguments, chunksize))
        if not chunk:
            return
        yield chunk


def _draining(items):
    """The items of a list in order, each dropped from the list as it is yielded."""
    items.reverse()
    return map(items.pop, itertools.repeat(-1, len(items)))


def flatten(lists):
    """Yields the items of each list in order, dropping each reference as it goes (as the
    stdlib's _chain_from_iterable_of_lists), with no Python frame per item."""
    yield from itertools.chain.from_iterable(map(_draining, lists))


def map_in_chunks(executor, fn, iterables, timeout, chunksize, buffersize):
    """ProcessPoolExecutor.map through `executor` (the executor, a view of it, a DaskExecutor, or
    a portable build's pool): chunks of arguments, one task each, results flattened in order."""
    if chunksize < 1:
        raise ValueError("chunksize must be >= 1.")
    from . import _base  # here: a worker that imports this module for process_chunk needs none
    run_chunk = process_chunk if len(iterables) == 1 else process_chunk_of_tuples
    results = _base.Executor.map(executor, functools.partial(run_chunk, fn),
                                 chunks(iterables, chunksize),
                                 timeout=timeout, buffersize=buffersize)
    return flatten(results)


def process_chunk(fn, chunk):
    """One chunk of a map() over one iterable, run by the worker (which imports this module, not
    cfutures.process, to run it)."""
    return list(map(fn, chunk))


def process_chunk_of_tuples(fn, chunk):
    """One chunk of a map() over several iterables."""
    return list(itertools.starmap(fn, chunk))
