"""InterpreterPoolExecutor, run against concurrent.futures and cfutures alike where the stdlib has
it (3.14+), cfutures' alone on 3.12 and 3.13, and cfutures in subinterpreters (3.12+).

Tasks are builtins (pow, os.write, eval): a subinterpreter imports what it unpickles with the
sys.path it started with, which lacks the tests' directory.
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

STDLIB_HAS_POOL = hasattr(concurrent.futures, "InterpreterPoolExecutor")  # 3.14+
HAS_POOL = sys.version_info >= (3, 12)  # cfutures': own-GIL subinterpreters exist from 3.12
needs_pool = pytest.mark.skipif(not HAS_POOL, reason="InterpreterPoolExecutor is 3.12+")
needs_stdlib_pool = pytest.mark.skipif(not STDLIB_HAS_POOL,
                                       reason="the stdlib's InterpreterPoolExecutor is 3.14+")

# What a task evaluates (eval is a builtin: it pickles) to learn which interpreter runs it.
CURRENT_INTERPRETER = ("int(__import__('_interpreters').get_current()[0])" if sys.version_info >= (3, 13)
                       else "int(__import__('_xxsubinterpreters').get_current())")


@pytest.fixture(params=["stdlib", "cfutures"])
def interpreter_pool(request):
    if request.param == "stdlib" and not STDLIB_HAS_POOL:
        pytest.skip("the stdlib's InterpreterPoolExecutor is 3.14+")
    if not HAS_POOL:
        pytest.skip("InterpreterPoolExecutor is 3.12+")
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
    return len(_interpreters_module().list_all())


def _interpreters_module():
    try:
        import _interpreters  # 3.13+
    except ImportError:
        import _xxsubinterpreters as _interpreters
    return _interpreters


def test_exists_from_3_12():
    assert hasattr(cfutures, "InterpreterPoolExecutor") == HAS_POOL
    assert ("InterpreterPoolExecutor" in cfutures.__all__) == HAS_POOL
    if not HAS_POOL:
        with pytest.raises(ImportError):
            from cfutures import InterpreterPoolExecutor  # noqa: F401


@needs_stdlib_pool
def test_is_a_stdlib_interpreter_pool_and_thread_pool():
    with cfutures.InterpreterPoolExecutor(1) as ex:
        assert isinstance(ex, concurrent.futures.InterpreterPoolExecutor)
        assert isinstance(ex, concurrent.futures.ThreadPoolExecutor)
        assert type(ex.submit(pow, 2, 3)) is cfutures.Future


def test_submit_map_and_each_worker_owns_one_interpreter(interpreter_pool):
    ex = interpreter_pool(1)
    assert ex.submit(pow, 2, 10).result(timeout=60) == 1024
    assert list(ex.map(pow, [2, 3], [3, 2], timeout=60)) == [8, 9]
    ids = {ex.submit(eval, CURRENT_INTERPRETER).result(timeout=60) for _ in range(5)}
    main = eval(CURRENT_INTERPRETER)
    assert len(ids) == 1 and main not in ids  # created once, reused, not the main interpreter


def test_options_submit_and_map_run_in_the_workers_interpreter():
    if not HAS_POOL:
        pytest.skip("InterpreterPoolExecutor is 3.12+")
    with cfutures.InterpreterPoolExecutor(1) as ex:
        urgent = ex.options(priority=-1)
        ids = {urgent.submit(eval, CURRENT_INTERPRETER).result(timeout=60),
               *urgent.map(eval, [CURRENT_INTERPRETER] * 3, timeout=60)}
        assert len(ids) == 1 and eval(CURRENT_INTERPRETER) not in ids


def test_an_exception_keeps_its_type_with_the_remote_failure_as_cause(interpreter_pool):
    from cfutures.interpreter import ExecutionFailed  # the stdlib's where it has one (3.14+)
    error = interpreter_pool(1).submit(int, "x").exception(timeout=60)
    assert type(error) is ValueError and "invalid literal" in str(error)
    assert type(error.__cause__) is ExecutionFailed
    assert error.__cause__.excinfo.type.__name__ == "ValueError"
    assert "Uncaught in the interpreter" in str(error.__cause__)
    assert "Traceback (most recent call last)" in str(error.__cause__)


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
    from cfutures.interpreter import BrokenInterpreterPool  # the stdlib's where it has one
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
    from cfutures.interpreter import NotShareableError  # the stdlib's where it has one
    ex = interpreter_pool(1)
    with pytest.raises(TypeError, match="scripts not supported"):
        ex.submit("pass")
    spam = True
    f = ex.submit(lambda: spam)
    with pytest.raises(NotShareableError):
        f.result(timeout=60)
    with pytest.raises(NotShareableError):  # a result that cannot come back
        ex.submit(eval, "__import__('sys')").result(timeout=60)
    assert ex.submit(pow, 2, 2).result(timeout=60) == 4  # the worker goes on




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
    # From 3.12 on, also where the stdlib has no InterpreterPoolExecutor (3.12, 3.13): install()
    # exposes cfutures' there, and uninstall() takes it away again.
    proc = _python("""
        import concurrent.futures, cfutures
        try:
            import concurrent.futures.interpreter as std
        except ImportError:
            std = None
        cfutures.install()
        import concurrent.futures.interpreter as mod
        assert mod is cfutures.interpreter, mod
        assert concurrent.futures.InterpreterPoolExecutor is cfutures.InterpreterPoolExecutor
        from concurrent.futures import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as ex:
            assert type(ex.submit(pow, 2, 2)) is cfutures.Future
        cfutures.uninstall()
        if std is None:
            assert not hasattr(concurrent.futures, "InterpreterPoolExecutor")
            try:
                import concurrent.futures.interpreter
            except ImportError:
                pass
            else:
                raise AssertionError("concurrent.futures.interpreter after uninstall()")
        else:
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


@needs_pool
def test_a_running_call_leaves_the_main_interpreter_free():
    # The worker thread releases the main interpreter's GIL while its subinterpreter computes:
    # the main thread runs Python meanwhile.
    with cfutures.InterpreterPoolExecutor(1) as ex:
        ex.submit(pow, 2, 2).result(timeout=60)  # the subinterpreter exists
        f = ex.submit(eval, "sum(i * i for i in range(3_000_000))")
        spins = 0
        while not f.done():
            spins += 1
        assert f.result(timeout=60) == sum(i * i for i in range(3_000_000))
    assert spins > 1000


@needs_pool
def test_a_task_may_import_cfutures_and_gets_the_stdlibs_names():
    with cfutures.InterpreterPoolExecutor(1) as ex:
        f = ex.submit(eval, "__import__('cfutures').ThreadPoolExecutor.__module__")
        assert f.result(timeout=60) == "concurrent.futures.thread"


@needs_pool
def test_exit_with_a_live_pool_is_clean():
    # A pool never shut down is drained and its interpreters ended at exit. (Not fork: CPython
    # itself crashes a child forked while subinterpreters exist, with the stdlib's pool too.)
    proc = _python("""
        import cfutures
        ex = cfutures.InterpreterPoolExecutor(2)
        assert ex.submit(pow, 2, 5).result(timeout=60) == 32
        late = [ex.submit(pow, 2, i) for i in range(10)]
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert "Fatal" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@needs_pool
def test_a_subinterpreter_is_used_only_by_its_own_thread():
    from cfutures import _cfutures, interpreter
    import threading
    sub = _cfutures.Subinterpreter(*interpreter._worker_source())
    try:
        errors = []
        t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, sub.call, b"")))
        t.start()
        t.join(60)
        assert errors and "thread that created it" in str(errors[0].value)
    finally:
        sub.close()
    assert sub.closed
    with pytest.raises(RuntimeError, match="closed"):
        sub.call(b"")


class PicklesHereOnly:
    """Pickled by reference to this module, which a subinterpreter cannot import (the tests'
    directory is not on the sys.path it started with)."""


def test_a_call_that_cannot_be_unpickled_there_fails_as_not_shareable(interpreter_pool):
    from cfutures.interpreter import NotShareableError
    ex = interpreter_pool(1)
    with pytest.raises(NotShareableError, match="args not shareable") as caught:
        ex.submit(pow, PicklesHereOnly(), 2).result(timeout=60)
    assert "unpickled" in str(caught.value.__cause__)
    assert ex.submit(pow, 2, 3).result(timeout=60) == 8


def test_a_stateless_local_function_crosses_by_its_code(interpreter_pool):
    # As 3.14's interpreters send functions: no closure, no globals but builtins.
    def task(a, b):
        import math
        return math.gcd(a, b) + len("ab")
    ex = interpreter_pool(1)
    assert ex.submit(task, 12, 18).result(timeout=60) == 8

    def reads_a_global():
        return CURRENT_INTERPRETER
    from cfutures.interpreter import NotShareableError
    with pytest.raises(NotShareableError):
        ex.submit(reads_a_global).result(timeout=60)


def test_functions_of_the_main_script_run_in_the_workers_own_copy_of_it(interpreter_pool, tmp_path):
    # Each subinterpreter loads the script as __mp_main__ (its `if __name__ == "__main__":`
    # block does not run there), as multiprocessing's spawned workers do; the initializer's
    # global is the subinterpreter's own. (3.14's stdlib pool gives "uninitialized" here: it
    # sends `init`, which reads no global, by its code with throwaway globals.)
    if interpreter_pool.module is not cfutures:
        pytest.skip("cfutures' rule (multiprocessing's)")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import {interpreter_pool.module.__name__} as futures

        STATUS = "uninitialized"

        def init(x):
            global STATUS
            STATUS = x

        def get_status():
            return STATUS

        if __name__ == "__main__":
            with futures.InterpreterPoolExecutor(1, initializer=init,
                                                 initargs=("initialized",)) as ex:
                print(ex.submit(get_status).result(timeout=60))
            print(STATUS)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["initialized", "uninitialized"], proc.stdout
