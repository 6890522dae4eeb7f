"""The executor contract: the stdlib's semantics that every executor keeps, written once and run
over every executor, as CPython's create_executor_tests does: thread, process (fork, spawn,
forkserver), interpreter and Dask, each on the stdlib too where the stdlib has it (ids such as
``stdlib-thread``, ``cfutures-process-spawn``, ``cfutures-interpreter``, ``cfutures-dask``).

What one executor does beyond the contract is tested in its own file: test_thread_pool.py,
test_process_pool.py (and test_process_extras.py), test_interpreter_pool.py, test_dask.py.

Tasks are builtins and stdlib functions (pow, divmod, int, time.sleep): they pickle by name into
every kind of worker, a subinterpreter included, whose sys.path lacks the tests' directory.
"""

import asyncio
import concurrent.futures
import concurrent.futures.process
import concurrent.futures.thread
import importlib.util
import multiprocessing
import sys
import time

import pytest

import cfutures
from conftest import IMPLS, STDLIB_HAS_BUFFERSIZE

HAS_DASK = importlib.util.find_spec("distributed") is not None
if HAS_DASK:
    from dask_cluster import DaskFactory, client, cluster  # noqa: F401  (fixtures)

WORKERS = 2


def _kinds():
    kinds = [f"{impl}-thread" for impl in IMPLS]
    kinds += [f"{impl}-process-{method}" for impl in IMPLS for method in ("fork", "spawn", "forkserver")]
    if sys.version_info >= (3, 12):  # cfutures' InterpreterPoolExecutor; the stdlib's is 3.14+
        kinds += [f"{impl}-interpreter" for impl in IMPLS
                  if impl == "cfutures" or hasattr(concurrent.futures, "InterpreterPoolExecutor")]
    if HAS_DASK:
        kinds.append("cfutures-dask")
    return kinds


class Executors:
    """Makes executors of one kind (`make(**kwargs)`, two workers each) and shuts every one it
    made down after the test."""

    def __init__(self, kind, request):
        self.kind = kind
        impl, what, *method = kind.split("-")
        self.module = IMPLS[impl]
        self.made = []
        # What a broken executor raises: the stdlib's class for its kind (the process pool's
        # for Dask, which stands in for it).
        if what == "thread":
            self._new = lambda **kw: self.module.ThreadPoolExecutor(WORKERS, **kw)
            self.broken_type = concurrent.futures.thread.BrokenThreadPool
        elif what == "process":
            context = multiprocessing.get_context(method[0])
            self._new = lambda **kw: self.module.ProcessPoolExecutor(WORKERS, mp_context=context, **kw)
            self.broken_type = concurrent.futures.process.BrokenProcessPool
        elif what == "interpreter":
            self._new = lambda **kw: self.module.InterpreterPoolExecutor(WORKERS, **kw)
            self.broken_type = cfutures.interpreter.BrokenInterpreterPool  # the stdlib's, 3.14+
        else:
            self._new = DaskFactory(request.getfixturevalue("client"))
            self.broken_type = concurrent.futures.process.BrokenProcessPool
        self.extended = impl == "cfutures" or STDLIB_HAS_BUFFERSIZE  # map(buffersize=)

    def __call__(self, **kwargs):
        ex = self._new(**kwargs)
        self.made.append(ex)
        return ex

    def close(self):
        for ex in self.made:
            ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module", params=_kinds())
def kind(request):
    # Module-scoped, so that tests run grouped by kind and a Dask cluster (started here, for
    # the group) is up before a test's leak check takes its baseline.
    if request.param.endswith("dask"):
        request.getfixturevalue("client")
    return request.param


@pytest.fixture
def executors(kind, request):
    made = Executors(kind, request)
    yield made
    made.close()


def test_is_an_executor_whose_futures_are_futures(executors):
    ex = executors()
    assert isinstance(ex, concurrent.futures.Executor)
    f = ex.submit(pow, 2, 3)
    assert isinstance(f, concurrent.futures.Future)
    assert f.result(timeout=60) == 8


def test_submit_passes_positional_and_keyword_arguments(executors):
    ex = executors()
    assert ex.submit(int, "ff", base=16).result(timeout=60) == 255
    # fn is positional-only: keywords named fn or self are the call's.
    assert ex.submit(dict, fn=1, self=2).result(timeout=60) == {"fn": 1, "self": 2}
    with pytest.raises(TypeError):
        ex.submit(fn=pow, base=2, exp=3)
    with pytest.raises(TypeError):
        ex.submit()


def test_an_exception_comes_back_with_its_type(executors):
    ex = executors()
    f = ex.submit(divmod, 1, 0)
    assert type(f.exception(timeout=60)) is ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        f.result(timeout=60)
    assert ex.submit(pow, 3, 2).result(timeout=60) == 9  # the executor goes on


def test_map_in_order_with_several_iterables_and_chunks(executors):
    ex = executors()
    squares = [i * i for i in range(20)]
    assert list(ex.map(pow, range(20), [2] * 20)) == squares
    assert list(ex.map(pow, range(20), [2] * 25, chunksize=3)) == squares  # the shortest wins
    assert list(ex.map(pow, [], [])) == []


def test_map_raises_the_first_failure_in_order(executors):
    results = executors().map(divmod, [1, 1, 1], [2, 0, 5])
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(executors):
    with pytest.raises(concurrent.futures.TimeoutError):
        list(executors().map(time.sleep, [0, 1], timeout=0.3))


def test_map_buffersize_takes_the_input_as_results_are_taken(executors):
    if not executors.extended:
        pytest.skip("map(buffersize=) is the stdlib's from 3.14")
    ex = executors()
    with pytest.raises(TypeError, match="buffersize must be an integer or None"):
        ex.map(abs, [1], buffersize=1.5)
    with pytest.raises(ValueError, match="buffersize must be None or > 0"):
        ex.map(abs, [1], buffersize=0)
    consumed = []

    def source():
        for i in range(50):
            consumed.append(i)
            yield i

    results = ex.map(abs, source(), buffersize=5)
    assert len(consumed) == 5
    assert next(results) == 0
    assert len(consumed) == 6
    assert list(results) == list(range(1, 50))


def test_futures_work_with_wait_as_completed_and_asyncio(executors):
    ex = executors()
    fs = [ex.submit(pow, 2, i) for i in range(5)]
    done, not_done = executors.module.wait(fs, timeout=60)
    assert len(done) == 5 and not not_done
    assert sorted(f.result() for f in executors.module.as_completed(fs, timeout=60)) == [1, 2, 4, 8, 16]

    async def main():
        return await asyncio.get_running_loop().run_in_executor(ex, pow, 3, 3)
    assert asyncio.run(main()) == 27


def test_submit_after_shutdown_is_refused(executors):
    ex = executors()
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(pow, 1, 1)
    ex.shutdown()  # twice is fine


def test_a_with_block_shuts_the_executor_down(executors):
    with executors() as ex:
        f = ex.submit(pow, 6, 2)
    assert f.done() and f.result() == 36
    with pytest.raises(RuntimeError):
        ex.submit(pow, 1, 1)


def test_shutdown_waits_for_the_queued_work(executors):
    ex = executors()
    fs = [ex.submit(time.sleep, 0.01) for _ in range(12)]
    ex.shutdown(wait=True)
    assert all(f.done() and f.exception() is None for f in fs)


def test_shutdown_cancel_futures_cancels_what_has_not_started(executors):
    ex = executors()
    running = [ex.submit(time.sleep, 0.5) for _ in range(WORKERS)]
    queued = [ex.submit(pow, i, 2) for i in range(30)]
    time.sleep(0.2)
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.result() is None for f in running)
    assert all(f.done() for f in queued)
    assert any(f.cancelled() for f in queued)
    assert all(f.result() == i * i for i, f in enumerate(queued) if not f.cancelled())


def test_a_failing_initializer_breaks_the_executor(executors):
    ex = executors(initializer=int, initargs=("not a number",))
    broken = executors.broken_type
    with pytest.raises(broken):
        ex.submit(pow, 1, 1).result(timeout=60)
    with pytest.raises(broken):  # refused at submit, or failed: never run
        ex.submit(pow, 1, 1).result(timeout=60)
