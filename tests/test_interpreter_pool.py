"""InterpreterPoolExecutor, run against concurrent.futures and cfutures alike where the stdlib has
it (3.14+), and cfutures in subinterpreters (3.12+).

Tasks are builtins (pow, os.write, _interpreters.get_current): a subinterpreter imports what it
unpickles with the sys.path it started with, which lacks the tests' directory.
"""

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import time

import pytest

import cfutures
import concurrent.futures

HAS_POOL = hasattr(concurrent.futures, "InterpreterPoolExecutor")
needs_pool = pytest.mark.skipif(not HAS_POOL, reason="InterpreterPoolExecutor is 3.14+")


@pytest.fixture(params=["stdlib", "cfutures"])
def interpreter_pool(request):
    if not HAS_POOL:
        pytest.skip("InterpreterPoolExecutor is 3.14+")
    module = {"stdlib": concurrent.futures, "cfutures": cfutures}[request.param]
    made = []

    def make(*args, **kwargs):
        ex = module.InterpreterPoolExecutor(*args, **kwargs)
        made.append(ex)
        return ex
    make.module = module
    yield make
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)


def _interpreters_alive():
    import _interpreters
    return len(_interpreters.list_all())


def test_exists_where_the_stdlib_has_it():
    assert hasattr(cfutures, "InterpreterPoolExecutor") == HAS_POOL
    assert ("InterpreterPoolExecutor" in cfutures.__all__) == HAS_POOL
    if not HAS_POOL:
        with pytest.raises(ImportError):
            from cfutures import InterpreterPoolExecutor  # noqa: F401


@needs_pool
def test_is_a_stdlib_interpreter_pool_and_thread_pool():
    with cfutures.InterpreterPoolExecutor(1) as ex:
        assert isinstance(ex, concurrent.futures.InterpreterPoolExecutor)
        assert isinstance(ex, concurrent.futures.ThreadPoolExecutor)
        assert type(ex.submit(pow, 2, 3)) is cfutures.Future


def test_submit_map_and_each_worker_owns_one_interpreter(interpreter_pool):
    import _interpreters
    ex = interpreter_pool(1)
    assert ex.submit(pow, 2, 10).result(timeout=60) == 1024
    assert list(ex.map(pow, [2, 3], [3, 2], timeout=60)) == [8, 9]
    ids = {ex.submit(_interpreters.get_current).result(timeout=60)[0] for _ in range(5)}
    main = _interpreters.get_main()[0]
    assert len(ids) == 1 and main not in ids  # created once, reused, not the main interpreter


def test_an_exception_keeps_its_type_with_the_remote_failure_as_cause(interpreter_pool):
    from concurrent import interpreters
    error = interpreter_pool(1).submit(int, "x").exception(timeout=60)
    assert type(error) is ValueError and "invalid literal" in str(error)
    assert type(error.__cause__) is interpreters.ExecutionFailed
    assert error.__cause__.excinfo.type.__name__ == "ValueError"


def test_the_initializer_runs_once_in_each_worker_interpreter(interpreter_pool):
    r, w = os.pipe()
    try:
        ex = interpreter_pool(2, initializer=os.write, initargs=(w, b"i"))
        fs = [ex.submit(pow, 2, i) for i in range(20)]
        assert [f.result(timeout=60) for f in fs] == [2 ** i for i in range(20)]
        workers = len(ex._threads)
        ex.shutdown(wait=True)
        os.set_blocking(r, False)
        assert os.read(r, 100) == b"i" * workers
    finally:
        os.close(r)
        os.close(w)


def test_a_failing_initializer_breaks_the_pool(interpreter_pool, caplog):
    from concurrent.futures.interpreter import BrokenInterpreterPool
    ex = interpreter_pool(1, initializer=int, initargs=("x",))
    with pytest.raises(BrokenInterpreterPool):
        ex.submit(pow, 2, 2).result(timeout=60)
    deadline = time.monotonic() + 30
    while not ex._broken and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(BrokenInterpreterPool):
        ex.submit(pow, 2, 2)
    assert "Exception in initializer" in caplog.text


def test_scripts_and_unshareable_calls_are_refused(interpreter_pool):
    import _interpreters
    ex = interpreter_pool(1)
    with pytest.raises(TypeError, match="scripts not supported"):
        ex.submit("pass")
    spam = True
    f = ex.submit(lambda: spam)
    with pytest.raises(_interpreters.NotShareableError):
        f.result(timeout=60)


def test_asyncio_run_in_executor(interpreter_pool):
    async def main():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(interpreter_pool(1), pow, 3, 3)
    assert asyncio.run(main()) == 27


def test_shutdown_and_a_dropped_pool_close_their_interpreters(interpreter_pool):
    before = _interpreters_alive()
    ex = interpreter_pool(2)
    list(ex.map(pow, range(10), range(10)))
    assert _interpreters_alive() > before
    ex.shutdown(wait=True)
    assert _interpreters_alive() == before
    ex = interpreter_pool.module.InterpreterPoolExecutor(1)  # dropped without shutdown
    ex.submit(pow, 2, 2).result(timeout=60)
    del ex
    gc.collect()
    deadline = time.monotonic() + 30
    while _interpreters_alive() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _interpreters_alive() == before


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


@needs_pool
def test_install_swaps_the_interpreter_module_too():
    proc = _python("""
        import concurrent.futures, concurrent.futures.interpreter as std, cfutures
        cfutures.install()
        import concurrent.futures.interpreter as mod
        assert mod is cfutures.interpreter, mod
        assert concurrent.futures.InterpreterPoolExecutor is cfutures.InterpreterPoolExecutor
        with concurrent.futures.InterpreterPoolExecutor(1) as ex:
            assert type(ex.submit(pow, 2, 2)) is cfutures.Future
        cfutures.uninstall()
        import concurrent.futures.interpreter as mod
        assert mod is std, mod
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


SUBINTERPRETER = """
    import sys
    try:
        import _interpreters as interpreters
    except ImportError:
        import _xxsubinterpreters as interpreters
    run = getattr(interpreters, "exec", None) or interpreters.run_string
    interp = interpreters.create()
    error = run(interp, {code!r})
    print("error:", error, file=sys.stderr)
    interpreters.destroy(interp)
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="own-GIL subinterpreters are 3.12+")
def test_in_a_subinterpreter_cfutures_gives_the_stdlibs_names():
    # CPython refuses the native module in a subinterpreter: cfutures' names are then the
    # stdlib's own, so a task's module that imports cfutures still loads there. (No pool runs
    # here: CPython 3.12.1 itself aborts at exit after a thread pool ran in a subinterpreter.)
    code = textwrap.dedent("""
        import concurrent.futures, cfutures
        assert cfutures._IN_SUBINTERPRETER
        assert cfutures.ThreadPoolExecutor is concurrent.futures.ThreadPoolExecutor
        assert cfutures.Future is concurrent.futures.Future
        try:
            import cfutures.thread
        except ImportError as exc:
            assert "cannot be loaded in a subinterpreter" in str(exc), exc
        else:
            raise AssertionError("cfutures.thread imported in a subinterpreter")
        print("sub ok")
    """)
    proc = _python(SUBINTERPRETER.format(code=code))
    assert proc.returncode == 0 and "sub ok" in proc.stdout, proc.stderr
    assert "error: None" in proc.stderr, proc.stderr
    assert not cfutures._IN_SUBINTERPRETER


@pytest.mark.skipif(sys.version_info < (3, 12), reason="own-GIL subinterpreters are 3.12+")
def test_the_auto_install_hook_leaves_subinterpreters_alone():
    # The .pth hook runs at every interpreter's start-up; in a subinterpreter it printed
    # "Error processing line 1 of cfutures-autoinstall.pth" with an ImportError.
    code = "import concurrent.futures, sys; print(concurrent.futures.__name__, 'cfutures' in sys.modules)"
    proc = _python(SUBINTERPRETER.format(code=code), CFUTURES_INSTALL="1")
    assert proc.returncode == 0, proc.stderr
    assert "Error processing" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "error: None" in proc.stderr, proc.stderr
