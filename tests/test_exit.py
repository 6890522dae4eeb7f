"""Interpreter exit, run in subprocesses against concurrent.futures and cfutures (ids ``stdlib``,
``cfutures``): daemon threads still waiting on futures, pools fed from daemon threads, work still
queued, Ctrl-C while the interpreter waits for pool work, sys.exit() and uncaught exceptions.

During finalization CPython ends a thread that tries to take the GIL back by unwinding it
(pthread_exit, a forced unwind; 3.14 parks it instead): an unwind through a ``noexcept`` frame or
through a destructor that re-takes the GIL calls std::terminate. So every test here asserts the
stdlib's exit status and output, and that no run ever ends on a signal (SIGABRT, SIGSEGV) or
prints "terminate called" / "Fatal Python error". Racy cases run several copies at once.

Each script gets the implementation as ``sys.argv[1]`` and a variant as ``sys.argv[2]``. In the
Ctrl-C cases the script prints ``at exit`` when it reaches the waiting point; the test sends
SIGINT to it shortly after.
"""

import functools
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from conftest import live_processes

IMPLS = ["stdlib", "cfutures"]
RUNS = 5             # copies of each racy script, run at once
SIGINT_DELAY = 0.3   # seconds between the "at exit" marker and SIGINT
TIMEOUT = 30         # per batch of runs: a hang fails the test, it does not block the suite
CRASH_MARKERS = ("terminate called", "Fatal Python error", "core dumped", "Segmentation fault",
                 "Aborted")

PRELUDE = textwrap.dedent("""\
    import sys
    if sys.argv[1] == "stdlib":
        import concurrent.futures as futures
    else:
        import cfutures as futures
    variant = sys.argv[2]

    def say(*words):
        sys.stdout.write(" ".join(map(str, words)) + "\\n")  # one write: threads print at once
        sys.stdout.flush()
""")

STDLIB_HANGS = ("the stdlib hangs here (3.9 to 3.13): the KeyboardInterrupt ends its exit hook, "
                "then multiprocessing's exit handler and its manager thread join worker "
                "processes that never leave")


class Run:
    def __init__(self, returncode, stdout, stderr, elapsed, stray):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.elapsed, self.stray = elapsed, stray

    def lines(self, optional=()):
        """stdout's lines, sorted (threads print in any order), without the optional ones."""
        return sorted(line for line in self.stdout.splitlines() if line not in optional)

    def __repr__(self):
        return (f"<exit status {self.returncode} after {self.elapsed:.1f}s\n"
                f"--- stdout:\n{self.stdout}--- stderr:\n{self.stderr}>")


def _session_members(sid):
    """Live processes of session `sid` (worker processes a script left behind)."""
    return sorted(live_processes(4, sid))


def _read(path):
    # A handle of our own: seeking the child's (shared offset) would make it overwrite its output.
    with open(path, errors="replace") as f:
        return f.read()


def run_script(body, impl, variant="", *, runs=RUNS, sigint=False, timeout=TIMEOUT):
    """Runs `runs` copies of PRELUDE + body at once (``python -c``); returns a Run for each.

    Each copy gets a session of its own (so that nothing it leaves behind escapes: processes
    still alive 10 s after it exited are reported in Run.stray, then killed). With `sigint`, each
    copy gets SIGINT SIGINT_DELAY seconds after it printed its "at exit" line; with
    sigint="group", its whole process group does, worker processes included, as a terminal's
    Ctrl-C. A copy still running after `timeout` is killed and fails the test as a hang."""
    script = PRELUDE + textwrap.dedent(body)
    procs = []
    tmp = tempfile.TemporaryDirectory()
    try:
        for k in range(runs):
            # Files, not pipes: worker processes a script leaves behind would keep a pipe open.
            out_path = os.path.join(tmp.name, f"{k}.out")
            err_path = os.path.join(tmp.name, f"{k}.err")
            with open(out_path, "w") as out, open(err_path, "w") as err:
                proc = subprocess.Popen([sys.executable, "-c", script, impl, variant],
                                        stdout=out, stderr=err, start_new_session=True)
            procs.append({"proc": proc, "out": out_path, "err": err_path, "start": time.monotonic(),
                          "marker": None, "signalled": False, "end": None})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = False
            for p in procs:
                if p["end"] is not None:
                    continue
                if p["proc"].poll() is not None:
                    p["end"] = time.monotonic()
                    continue
                pending = True
                if sigint and not p["signalled"]:
                    if p["marker"] is None:
                        if "at exit\n" in _read(p["out"]):
                            p["marker"] = time.monotonic()
                    elif time.monotonic() - p["marker"] >= SIGINT_DELAY:
                        (os.killpg if sigint == "group" else os.kill)(p["proc"].pid, signal.SIGINT)
                        p["signalled"] = True
            if not pending:
                break
            time.sleep(0.01)
        results = []
        for p in procs:
            proc = p["proc"]
            if p["end"] is None:  # hung
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            stray_deadline = time.monotonic() + 10
            stray = _session_members(proc.pid)
            while stray and time.monotonic() < stray_deadline:
                time.sleep(0.05)
                stray = _session_members(proc.pid)
            elapsed = (p["end"] or time.monotonic()) - p["start"]
            results.append(Run(proc.returncode if p["end"] is not None else "hang",
                               _read(p["out"]), _read(p["err"]), elapsed, stray))
        return results
    finally:
        for p in procs:
            if p["proc"].poll() is None:
                p["proc"].kill()
                p["proc"].wait()
            for pid in _session_members(p["proc"].pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        tmp.cleanup()


@functools.lru_cache(maxsize=None)
def keyboard_interrupt_status():
    """The exit status of a script ended by an uncaught KeyboardInterrupt, on this Python
    (-SIGINT from 3.8: the interpreter re-raises SIGINT on itself after finalizing)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import signal\n"
         "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
         "raise KeyboardInterrupt"], capture_output=True, text=True, timeout=TIMEOUT)
    assert "KeyboardInterrupt" in proc.stderr
    return proc.returncode


def assert_no_crash(runs, status):
    """Every run ended by itself, with `status`, without a crash report or a stray process."""
    for run in runs:
        assert run.returncode != "hang", run
        assert [m for m in CRASH_MARKERS if m in run.stderr] == [], run
        assert run.returncode == status, run
        assert not run.stray, f"processes still running after the script exited: {run.stray}"


def assert_clean_exit(runs, lines, optional=()):
    """Every run exited with status 0, printed nothing on stderr, and printed `lines` (in any
    order; the `optional` ones may be missing)."""
    assert_no_crash(runs, 0)
    for run in runs:
        assert run.stderr == "", run
        assert run.lines(optional) == sorted(lines), run


# -- (a) daemon threads waiting with short timeouts, and untimed waits woken during exit -------

TIMEOUT_LOOPS = """
    import threading, time
    f = futures.Future()
    def loop():
        while True:
            try:
                if variant == "result":
                    f.result(timeout=0.001)
                elif variant == "exception":
                    f.exception(timeout=0.001)
                elif variant == "wait":
                    futures.wait([f], timeout=0.001)
                else:
                    list(futures.as_completed([f], timeout=0.001))
            except futures.TimeoutError:
                pass
    for _ in range(4):
        threading.Thread(target=loop, daemon=True).start()
    time.sleep(0.1)
    say("main done")
"""


@pytest.mark.parametrize("wait", ["result", "exception", "wait", "as_completed"])
@pytest.mark.parametrize("impl", IMPLS)
def test_daemon_threads_waiting_with_timeouts(impl, wait):
    runs = run_script(TIMEOUT_LOOPS, impl, wait)
    assert_clean_exit(runs, ["main done"])


PING_PONG = """
    import threading, time
    box = [futures.Future()]
    def waiter():
        while True:
            f = box[0]
            if variant == "wait":
                futures.wait([f])
            elif variant == "as_completed":
                list(futures.as_completed([f]))
            else:
                f.result()
    def setter():
        while True:
            f = box[0]
            box[0] = futures.Future()
            f.set_result(None)
            time.sleep(0)
    for _ in range(3):
        threading.Thread(target=waiter, daemon=True).start()
    threading.Thread(target=setter, daemon=True).start()
    time.sleep(0.1)
    say("main done")
"""


@pytest.mark.parametrize("wait", ["result", "wait", "as_completed"])
@pytest.mark.parametrize("impl", IMPLS)
def test_daemon_threads_woken_without_timeout(impl, wait):
    # Daemon threads in untimed waits, woken by another daemon thread at any moment: some wake
    # up while the interpreter finalizes.
    runs = run_script(PING_PONG, impl, wait)
    assert_clean_exit(runs, ["main done"])


# -- (b) pools created and fed from a daemon thread --------------------------------------------

DAEMON_FED_THREAD_POOL = """
    import threading, time
    def task(i):
        for _ in range(10):
            time.sleep(0.005)
        say("task", i)
    fed = threading.Event()
    def feeder():
        ex = futures.ThreadPoolExecutor(2)
        for i in range(20):
            ex.submit(task, i)
        fed.set()
        if variant == "keep":
            threading.Event().wait()  # a daemon service that never returns, holding its pool
    threading.Thread(target=feeder, daemon=True).start()
    fed.wait()
    say("main done")
"""


@pytest.mark.parametrize("feeder", ["keep", "drop"])
@pytest.mark.parametrize("impl", IMPLS)
def test_thread_pool_fed_from_a_daemon_thread_runs_every_task(impl, feeder):
    # The stdlib's workers started from a daemon thread are daemonic too, but its exit hook joins
    # every worker: all 20 queued tasks run before the interpreter finalizes.
    runs = run_script(DAEMON_FED_THREAD_POOL, impl, feeder)
    assert_clean_exit(runs, ["main done"] + [f"task {i}" for i in range(20)])


DAEMON_FED_PROCESS_POOL = """
    import threading
    fed = threading.Event()
    def feeder():
        ex = futures.ProcessPoolExecutor(2)
        for i in range(20):
            ex.submit(pow, i, 2).add_done_callback(lambda f: say("result", f.result()))
        fed.set()
        if variant == "keep":
            threading.Event().wait()
    if __name__ == "__main__":
        threading.Thread(target=feeder, daemon=True).start()
        fed.wait()
        say("main done")
"""


@pytest.mark.parametrize("feeder", ["keep", "drop"])
@pytest.mark.parametrize("impl", IMPLS)
def test_process_pool_fed_from_a_daemon_thread_runs_every_task(impl, feeder):
    runs = run_script(DAEMON_FED_PROCESS_POOL, impl, feeder, runs=3)
    assert_clean_exit(runs, ["main done"] + [f"result {i * i}" for i in range(20)])


# -- (c) Ctrl-C while the interpreter waits at exit for pool work ------------------------------

CTRL_C_AT_EXIT_THREAD = """
    import signal, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ex = futures.ThreadPoolExecutor(4)
    if variant == "many":
        for i in range(200):
            ex.submit(time.sleep, 0.01)
    else:
        ex.submit(time.sleep, 1.5)
        for i in range(3):
            ex.submit(abs, -i)
    threading._register_atexit(lambda: say("at exit"))  # runs before the pool's exit hook
    say("main done")
"""

CTRL_C_AT_EXIT_PROCESS = """
    import signal, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if __name__ == "__main__":
        ex = futures.ProcessPoolExecutor(2)
        ex.submit(abs, -1).result()
        if variant == "many":
            for i in range(200):
                ex.submit(time.sleep, 0.01)
        else:
            ex.submit(time.sleep, 1.5)
        threading._register_atexit(lambda: say("at exit"))  # runs before the pool's exit hook
        say("main done")
"""


def assert_interrupted_at_exit(runs):
    # The KeyboardInterrupt escapes threading's exit hooks: reported as ignored, exit status 0.
    assert_no_crash(runs, 0)
    for run in runs:
        assert run.lines() == ["at exit", "main done"], run
        assert "Exception ignored" in run.stderr and "KeyboardInterrupt" in run.stderr, run


@pytest.mark.parametrize("work", ["one_long_task", "many"])
@pytest.mark.parametrize("impl", IMPLS)
def test_ctrl_c_while_exit_waits_for_thread_pool(impl, work):
    runs = run_script(CTRL_C_AT_EXIT_THREAD, impl, work, sigint=True)
    assert_interrupted_at_exit(runs)


@pytest.mark.native
@pytest.mark.parametrize("work", ["one_long_task", "many"])
@pytest.mark.parametrize("impl", [
    pytest.param("stdlib", marks=pytest.mark.skip(reason=STDLIB_HANGS)), "cfutures"])
def test_ctrl_c_while_exit_waits_for_process_pool(impl, work):
    # As the stdlib does with a thread pool (it hangs with a process pool): the interrupt is
    # reported, the interpreter exits with status 0, within a few seconds.
    runs = run_script(CTRL_C_AT_EXIT_PROCESS, impl, work, sigint=True)
    assert_interrupted_at_exit(runs)
    assert all(run.elapsed < 15 for run in runs), runs


# A done-callback still sleeping when the interrupted exit finalizes: CPython ends the pool's
# thread from inside the callback when its sleep ends. The unwind must stop where cfutures
# called the callback: on its way up, the process pool's manager used to drop the result it
# held, detached from the interpreter ("Fatal Python error: PyThreadState_Get", 3.11 and 3.13t).
# Finalization is kept busy meanwhile by a collected cycle whose __del__ sleeps.
CALLBACK_IN_FINALIZATION = """
    import gc, os, signal, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)

    class Linger:
        def __del__(self, sleep=time.sleep):
            sleep(1.5)

    class Result:
        def __del__(self):
            pass

    def result_soon():
        time.sleep(0.2)
        return Result()

    def slow_callback(f):
        f._result = None  # the manager's own reference is now the last one
        say("callback")
        time.sleep(0.5)

    if __name__ == "__main__":
        gc.disable()
        linger = Linger()
        linger.cycle = linger  # collected by finalization only
        del linger
        if variant == "process":
            ex = futures.ProcessPoolExecutor(1)
        else:
            ex = futures.ThreadPoolExecutor(1)
        ex.submit(abs, -1).result()
        ex.submit(result_soon).add_done_callback(slow_callback)
        threading._register_atexit(lambda: say("at exit"))
        say("main done")
"""


@pytest.mark.parametrize("impl, kind", [
    ("stdlib", "thread"), ("cfutures", "thread"),
    pytest.param("stdlib", "process", marks=pytest.mark.skip(reason=STDLIB_HANGS)),
    pytest.param("cfutures", "process", marks=pytest.mark.native)])
def test_callback_running_when_finalization_ends_its_thread(impl, kind):
    runs = run_script(CALLBACK_IN_FINALIZATION, impl, kind, sigint=True)
    assert_no_crash(runs, 0)
    for run in runs:
        assert run.lines(optional=["callback"]) == ["at exit", "main done"], run

# Ctrl-C from a terminal reaches the worker too: it answers at once with its own
# KeyboardInterrupt, before the main thread's wait noticed the signal. The local one must be
# raised from result(), with its traceback (cfutures printed the remote one, then Python's
# "lost sys.stderr" object dump, 4 runs in 4).
CTRL_C_TO_GROUP_IN_RESULT = """
    import signal, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if __name__ == "__main__":
        ex = futures.ProcessPoolExecutor(1)
        ex.submit(abs, -1).result()
        f = ex.submit(time.sleep, 20)
        say("at exit")
        f.result()
"""


@pytest.mark.parametrize("impl", IMPLS)
def test_ctrl_c_to_the_process_group_during_result(impl):
    runs = run_script(CTRL_C_TO_GROUP_IN_RESULT, impl, runs=3, sigint="group")
    for run in runs:
        assert run.returncode == -signal.SIGINT, run
        assert not run.stray, run.stray
        assert "lost sys.stderr" not in run.stderr, run
        # One traceback: the local KeyboardInterrupt, raised from result().
        assert run.stderr.startswith("Traceback") and run.stderr.count("Traceback") == 1, run
        assert run.stderr.rstrip().endswith("\nKeyboardInterrupt"), run


# -- (d) Ctrl-C during shutdown(wait=True) -----------------------------------------------------

CTRL_C_IN_SHUTDOWN = """
    import signal, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kind, work = variant.split("-")
    if __name__ == "__main__":
        if kind == "process":
            ex = futures.ProcessPoolExecutor(2)
        else:
            ex = futures.ThreadPoolExecutor(2)
        ex.submit(abs, -1).result()
        if work == "many":
            for i in range(200):
                ex.submit(time.sleep, 0.01)
        else:
            ex.submit(time.sleep, 1.5)
        say("at exit")  # the marker: shutting down now
        ex.shutdown(wait=True)
        say("shut down")
"""


def assert_keyboard_interrupt(runs):
    # The KeyboardInterrupt ends the script as an uncaught one does, with its traceback.
    assert_no_crash(runs, keyboard_interrupt_status())
    for run in runs:
        assert run.lines() == ["at exit"], run
        assert "Traceback" in run.stderr and "KeyboardInterrupt" in run.stderr, run
        assert "Exception ignored" not in run.stderr, run
        assert run.elapsed < 15, run


@pytest.mark.parametrize("work", ["one_long_task", "many"])
@pytest.mark.parametrize("impl", IMPLS)
def test_ctrl_c_during_thread_pool_shutdown(impl, work):
    runs = run_script(CTRL_C_IN_SHUTDOWN, impl, f"thread-{work}", sigint=True)
    assert_keyboard_interrupt(runs)


@pytest.mark.native
@pytest.mark.parametrize("work", ["one_long_task", "many"])
@pytest.mark.parametrize("impl", [
    pytest.param("stdlib", marks=pytest.mark.skipif(sys.version_info < (3, 13), reason=(
        "the stdlib hangs here before 3.13: the KeyboardInterrupt leaves shutdown() half done, "
        "and the interpreter's exit joins worker processes that never leave"))),
    "cfutures"])
def test_ctrl_c_during_process_pool_shutdown(impl, work):
    # The stdlib from 3.13: the task still running finishes, then the KeyboardInterrupt ends the
    # script (before 3.13 it hangs; cfutures must not).
    runs = run_script(CTRL_C_IN_SHUTDOWN, impl, f"process-{work}", sigint=True)
    assert_keyboard_interrupt(runs)


# -- (e, f) daemon threads blocked in shutdown(wait=True) or on a running future ---------------

DAEMON_IN_SHUTDOWN = """
    import threading, time
    def task():
        time.sleep(0.3)
        say("task done")
    entered = threading.Event()
    def closer():
        if variant == "process":
            ex = futures.ProcessPoolExecutor(1)
            ex.submit(time.sleep, 0.3).add_done_callback(lambda f: say("task done"))
        else:
            ex = futures.ThreadPoolExecutor(1)
            ex.submit(task)
        entered.set()
        ex.shutdown(wait=True)
        say("shut down")
    if __name__ == "__main__":
        threading.Thread(target=closer, daemon=True).start()
        entered.wait()
        time.sleep(0.05)
        say("main done")
"""


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("impl", IMPLS)
def test_daemon_thread_blocked_in_shutdown(impl, kind):
    # The exit hook lets the task finish; whether the daemon thread gets to print "shut down"
    # before the interpreter finalizes is a race (with the stdlib too).
    runs = run_script(DAEMON_IN_SHUTDOWN, impl, kind, runs=3)
    assert_clean_exit(runs, ["main done", "task done"], optional={"shut down"})


DAEMON_WAITS_ON_RUNNING_FUTURE = """
    import threading, time
    def task():
        time.sleep(0.3)
        say("task done")
    if __name__ == "__main__":
        if variant == "process":
            ex = futures.ProcessPoolExecutor(1)
            f = ex.submit(time.sleep, 0.3)
            f.add_done_callback(lambda f: say("task done"))
        else:
            ex = futures.ThreadPoolExecutor(1)
            f = ex.submit(task)
        def waiter(wait):
            wait()
            time.sleep(0.05)
            say("waiter woke")
        for wait in (f.result, lambda: futures.wait([f]), lambda: list(futures.as_completed([f]))):
            threading.Thread(target=waiter, args=(wait,), daemon=True).start()
        say("main done")
"""


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("impl", IMPLS)
def test_daemon_threads_waiting_on_a_running_future(impl, kind):
    # result(), wait() and as_completed() without timeout in daemon threads; the future
    # completes while the interpreter exits.
    runs = run_script(DAEMON_WAITS_ON_RUNNING_FUTURE, impl, kind)
    assert_clean_exit(runs, ["main done", "task done"], optional={"waiter woke"})


DAEMON_SUBMIT_LOOP = """
    import threading, time
    def loop(ex):
        while True:
            try:
                ex.submit(abs, -1).result(timeout=5)
            except RuntimeError:  # cannot schedule new futures after interpreter shutdown
                return
    if __name__ == "__main__":
        if variant == "process":
            ex = futures.ProcessPoolExecutor(2)
        else:
            ex = futures.ThreadPoolExecutor(2)
        ex.submit(abs, -1).result()
        for _ in range(2):
            threading.Thread(target=loop, args=(ex,), daemon=True).start()
        time.sleep(0.1)
        say("main done")
"""


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("impl", IMPLS)
def test_daemon_threads_submitting_when_main_ends(impl, kind):
    runs = run_script(DAEMON_SUBMIT_LOOP, impl, kind)
    assert_clean_exit(runs, ["main done"])


# Daemon threads that call into Python from inside cfutures' native code when the main thread
# ends: a submit that starts a worker thread (threading.Thread.start), a wait() on the stdlib's
# own futures (their condition's acquire and release), and the first use of a name that
# registers its bindings. An unwind through the submit aborted or crashed 1 run in 5 (3.11,
# 3.13t; CI's run of the daemon-submit test above caught it once).
DAEMON_CALLS_PYTHON = """
    import concurrent.futures as stdlib_futures
    import threading, time
    def start_pools():
        while True:
            try:
                futures.ThreadPoolExecutor(1).submit(abs, -1)
            except RuntimeError:  # can't start new thread / cannot schedule new futures
                return
    def wait_foreign():
        done = stdlib_futures.Future()
        done.set_result(1)
        pending = stdlib_futures.Future()
        while True:
            futures.wait([done, pending], timeout=0)
    if __name__ == "__main__":
        # The modules behind these names are imported here, not in the daemon threads: CPython
        # itself crashes when a daemon thread imports while the main thread finalizes, 3.12
        # most (it frees the import lock under the waiting thread). With the stdlib alone,
        # 3 daemon threads importing a few modules each while main ends: SIGSEGV in 14 of
        # 300 runs on 3.12.1, 1 of 300 on 3.11.7, 0 of 300 on 3.13.0. wait()'s bindings
        # are still registered by a daemon thread, on its first call.
        futures.ThreadPoolExecutor, futures.wait
        for _ in range(2):
            threading.Thread(target=start_pools, daemon=True).start()
        threading.Thread(target=wait_foreign, daemon=True).start()
        time.sleep(0.05)
        say("main done")
"""


@pytest.mark.skipif(
    sys.version_info < (3, 14) and not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="3.13t's own finalization deadlocks or crashes with daemon threads running Python code "
           "(the stdlib's pool fails this test there too, about 1 run in 12)")
@pytest.mark.parametrize("impl", IMPLS)
def test_daemon_threads_calling_python_from_native_code_when_main_ends(impl):
    runs = run_script(DAEMON_CALLS_PYTHON, impl, runs=2 * RUNS)
    assert_clean_exit(runs, ["main done"])


# A pool whose replacements its zygote forks (cfutures, opt-in, under 'fork'), never shut down:
# the zygote and the workers it forked leave with the program, also when Ctrl-C interrupts the
# exit's wait for the pool.
ZYGOTE_AT_EXIT = """
    import multiprocessing, os, signal, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    multiprocessing.set_start_method("fork", force=True)
    ex = futures.ProcessPoolExecutor(2, on_worker_death="replace")  # no main guard: fork
    pid = ex.submit(os.getpid).result()
    try:
        ex.submit(os.kill, pid, signal.SIGKILL).result()
    except futures.WorkerDied:
        say("replaced", ex.submit(abs, -1).result())
    if variant == "ctrl-c":
        ex.submit(time.sleep, 1.5)
        threading._register_atexit(lambda: say("at exit"))
    say("main done")
"""


@pytest.mark.native
def test_a_zygote_never_shut_down_leaves_with_the_program():
    runs = run_script(ZYGOTE_AT_EXIT, "cfutures", "plain", runs=3)
    assert_clean_exit(runs, ["main done", "replaced 1"])


@pytest.mark.native
def test_ctrl_c_while_exit_waits_for_a_pool_with_a_zygote():
    runs = run_script(ZYGOTE_AT_EXIT, "cfutures", "ctrl-c", runs=3, sigint=True)
    assert_no_crash(runs, 0)
    for run in runs:
        assert run.lines() == ["at exit", "main done", "replaced 1"], run
        assert "KeyboardInterrupt" in run.stderr, run


# -- (h, j) work still queued at exit, failing callbacks, sys.exit() and uncaught exceptions ---

QUEUED_AT_EXIT = """
    import time
    def task(i):
        time.sleep(0.01)
        return i * i
    def callback(f):
        say("result", f.result())
        if f.result() % 2:
            raise ValueError("callback failed")
    if __name__ == "__main__":
        if variant == "process":
            ex = futures.ProcessPoolExecutor(2)
            for i in range(20):
                ex.submit(pow, i, 2).add_done_callback(callback)
        else:
            ex = futures.ThreadPoolExecutor(2)
            for i in range(20):
                ex.submit(task, i).add_done_callback(callback)
        say("main done")
"""


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("impl", IMPLS)
def test_pool_never_shut_down_finishes_its_queue(impl, kind):
    # Results are delivered (and callbacks run, the failing ones logged) while the interpreter
    # exits.
    runs = run_script(QUEUED_AT_EXIT, impl, kind, runs=3)
    assert_no_crash(runs, 0)
    expected = sorted(["main done"] + [f"result {i * i}" for i in range(20)])
    for run in runs:
        assert run.lines() == expected, run
        assert run.stderr.count("exception calling callback for") == 10, run
        assert run.stderr.count("ValueError: callback failed") == 10, run


MAIN_ENDS_WHILE_POOL_WORKS = """
    import time
    kind, how = variant.split("-")
    def task(i):
        time.sleep(0.05)
        say("task", i)
    if __name__ == "__main__":
        if kind == "process":
            ex = futures.ProcessPoolExecutor(2)
            for i in range(6):
                ex.submit(time.sleep, 0.05).add_done_callback(lambda f, i=i: say("task", i))
        else:
            ex = futures.ThreadPoolExecutor(2)
            for i in range(6):
                ex.submit(task, i)
        if how == "exit":
            sys.exit(3)
        raise RuntimeError("main failed")
"""


@pytest.mark.parametrize("how", ["exit", "raise"])
@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("impl", IMPLS)
def test_main_thread_ends_abruptly_while_pool_works(impl, kind, how):
    runs = run_script(MAIN_ENDS_WHILE_POOL_WORKS, impl, f"{kind}-{how}", runs=2)
    assert_no_crash(runs, 3 if how == "exit" else 1)
    for run in runs:
        assert run.lines() == sorted(f"task {i}" for i in range(6)), run
        if how == "exit":
            assert run.stderr == "", run
        else:
            assert "Traceback" in run.stderr and "RuntimeError: main failed" in run.stderr, run
