"""Programs whose ``threading`` gevent or eventlet monkey-patched (cfutures/_green.py).

Each case runs in a subprocess (patching is for the whole process, for good). The programs print
what they see; the tests compare that with what the stdlib gives, and check the one
GreenThreadWarning. Skipped where the library is not installed (gevent has no free-threaded
wheels).
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.native

PATCH = {
    "gevent": "from gevent import monkey; monkey.patch_all()",
    "eventlet": "import eventlet; eventlet.monkey_patch()",
}
SLEEP = {"gevent": "import gevent; green_sleep = gevent.sleep",
         "eventlet": "import eventlet; green_sleep = eventlet.sleep"}


def library(name):
    # Found, not imported: the patching libraries import with side effects and warnings.
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (the test extra leaves it out where it has no "
                    f"wheel, e.g. free-threaded Pythons)")
    return name


@pytest.fixture(params=["gevent", "eventlet"])
def green(request):
    return library(request.param)


def run(body, *args, env=None, timeout=60):
    script = textwrap.dedent(body)
    full_env = {k: v for k, v in os.environ.items() if k != "CFUTURES_INSTALL"}
    full_env.update({"PYTHONWARNINGS": "ignore::DeprecationWarning"}, **(env or {}))
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    assert proc.returncode == 0, proc.stderr
    return proc


def warnings_in(stderr):
    return [line for line in stderr.splitlines() if "GreenThreadWarning" in line]


# What a patched program does with concurrent.futures: a pool whose tasks sleep cooperatively,
# while another greenlet keeps ticking (it would stall if a wait blocked the hub).
PROGRAM = """
    import sys, warnings
    lib = sys.argv[1]
    exec({patch}[lib])
    exec({sleep}[lib])
    {before}
    import concurrent.futures as cf
    ticks = []
    def ticker():
        for _ in range(20):
            ticks.append(1)
            green_sleep(0.005)
    spawn = __import__("gevent").spawn if lib == "gevent" else __import__("eventlet").spawn
    t = spawn(ticker)
    with cf.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda i: (green_sleep(0.01), i * i)[1], range(8)))
        f = cf.Future()
        spawn(lambda: (green_sleep(0.01), f.set_result("green")))
        got = f.result(timeout=10)
    t.join() if lib == "gevent" else t.wait()
    print(results == [i * i for i in range(8)], got, len(ticks) == 20,
          cf.ThreadPoolExecutor.__module__)
"""


def program(before=""):
    return PROGRAM.format(patch=PATCH, sleep=SLEEP, before=before)


def test_a_patched_program_with_the_stdlib(green):
    proc = run(program(), green)
    assert proc.stdout.split() == ["True", "green", "True", "concurrent.futures.thread"]


def test_install_leaves_the_stdlib_in_a_patched_program(green):
    proc = run(program(before="import cfutures; cfutures.install(); "
                              "assert not cfutures.installed()"), green)
    assert proc.stdout.split() == ["True", "green", "True", "concurrent.futures.thread"]
    [warning] = warnings_in(proc.stderr)
    assert f"monkey-patched by {green}" in warning and "install() left" in warning


def test_patched_after_install_gets_the_stdlib_back(green):
    # As `python -m cfutures run` or CFUTURES_INSTALL=1 do: installed at start-up, before the
    # program patches.
    proc = run(program(), green, env={"CFUTURES_INSTALL": "1"})
    assert proc.stdout.split() == ["True", "green", "True", "concurrent.futures.thread"]
    [warning] = warnings_in(proc.stderr)
    assert f"monkey-patched by {green}" in warning and "was undone" in warning


def test_cfutures_run_in_a_patched_program(green, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(program()))
    proc = subprocess.run([sys.executable, "-m", "cfutures", "run", str(script), green],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "green", "True", "concurrent.futures.thread"]
    assert len(warnings_in(proc.stderr)) == 1


@pytest.mark.parametrize("executor", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_a_native_executor_made_directly_is_the_stdlibs(green, executor):
    # Its threads would be greenlets running the native loops, which block the hub for good.
    proc = run(f"""
        import sys
        exec({PATCH}[sys.argv[1]])
        import concurrent.futures, cfutures
        if __name__ == "__main__":
            for _ in range(2):
                with cfutures.{executor}(1) as ex:
                    print(ex.submit(pow, 2, 5).result(timeout=30),
                          isinstance(ex, concurrent.futures.{executor}))
            try:
                cfutures.{executor}(1).stats()
            except NotImplementedError as e:
                print("refused:", e)

            class Mine(cfutures.{executor}):
                pass
            try:
                Mine(1)
            except RuntimeError as e:
                print("subclass:", e)
    """, green)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["32 True", "32 True"]
    assert lines[2].startswith("refused:") and f"monkey-patched by {green}" in lines[2]
    assert lines[3].startswith("subclass:") and "subclass concurrent.futures" in lines[3]
    [warning] = warnings_in(proc.stderr)
    assert f"cfutures.{executor} in a program whose threading is monkey-patched by {green}" \
        in warning


def test_no_warning_without_patching(green):
    proc = run(f"""
        import {green}  # imported, not patched
        import cfutures
        cfutures.install()
        import concurrent.futures as cf
        with cf.ThreadPoolExecutor(1) as ex:
            print(ex.submit(pow, 2, 5).result(), cfutures.installed(), type(ex).__module__)
    """)
    assert proc.stdout.split() == ["32", "True", "cfutures.thread"]
    assert warnings_in(proc.stderr) == []


# futurist's GreenFuture: a Future subclass given eventlet's green Condition, in a program that is
# not patched.
GREEN_FUTURE = """
    import eventlet
    from eventlet.green import threading as green_threading
    import {impl} as futures

    class GreenFuture(futures.Future):
        def __init__(self):
            super().__init__()
            self._condition = green_threading.Condition()
"""


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
def test_a_green_future_waits_cooperatively_without_patching(impl):
    # Its result() must yield to the hub (a native wait would never return: the greenlet that
    # completes it could not run).
    library("eventlet")
    proc = run(GREEN_FUTURE.format(impl=impl) + """
    f = GreenFuture()
    eventlet.spawn_after(0.02, f.set_result, 42)
    print(f.result(timeout=10))
    g = GreenFuture()
    eventlet.spawn_after(0.02, g.set_exception, ValueError("x"))
    print(type(g.exception(timeout=10)).__name__)
    h = GreenFuture()
    eventlet.spawn_after(0.02, h.cancel)
    try:
        h.result(timeout=10)
    except futures.CancelledError:
        print("cancelled")
    """)
    assert proc.stdout.split() == ["42", "ValueError", "cancelled"]


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
def test_green_waits_that_return_out_of_order(impl):
    # Two greenlets of one thread wait inside result(); the first to enter returns first while
    # the second is still inside. A method dispatched by pybind11 aborted there ("terminate
    # called ... loader_life_support: internal error", futurist's green delayed executor): its
    # per-thread stack of call frames must unwind in call order.
    library("eventlet")
    proc = run(GREEN_FUTURE.format(impl=impl) + """
    first, second = GreenFuture(), GreenFuture()
    a = eventlet.spawn(lambda: first.result(timeout=10))
    b = eventlet.spawn(lambda: second.exception(timeout=10))
    eventlet.sleep(0.01)
    first.set_result(1)
    print(a.wait())
    second.set_exception(ValueError("v"))
    print(repr(b.wait()))
    """)
    assert proc.stdout.split() == ["1", "ValueError('v')"]
