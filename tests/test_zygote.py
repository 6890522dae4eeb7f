"""An opt-in option that replaces workers (on_worker_death="replace", task_timeout=,
cancel_running=True, max_worker_memory=) keeps the start method the user gets: under 'fork' the
replacements are forked by the pool's zygote (cfutures/_zygote.py), a copy of the program made
with the first workers, before the pool's threads start. Before, such pools switched to
forkserver, and a script without a main guard, or read from stdin, failed with the option and
ran without it (issue 30)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import cfutures

pytestmark = pytest.mark.native

OPTIONS = {
    "on_worker_death": 'on_worker_death="replace"',
    "task_timeout": "task_timeout=30",
    "cancel_running": "cancel_running=True",
    "max_worker_memory": "max_worker_memory=1 << 40",
}

# No main guard, as many scripts have: under 'fork' the module body runs once, with or without
# an option.
SCRIPT = """
import multiprocessing, os, signal, sys
import cfutures
multiprocessing.set_start_method("fork", force=True)
print("body runs in", "the main process" if multiprocessing.parent_process() is None else "a worker")
ex = cfutures.ProcessPoolExecutor(1{options})
print("start method", ex._mp_context.get_start_method())
if {kill}:
    pid = ex.submit(os.getpid).result()
    try:
        ex.submit(os.kill, pid, signal.SIGKILL).result()
    except Exception as exc:
        print(type(exc).__name__)
print("result", ex.submit(abs, -3).result())
ex.shutdown()
print("children left", multiprocessing.active_children())
"""


def run(source, *, stdin=False, timeout=60):
    if stdin:
        cmd, kwargs = [sys.executable, "-"], {"input": source}
    else:
        cmd, kwargs = [sys.executable, "-c", source], {}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.mark.parametrize("option", OPTIONS)
def test_an_option_keeps_fork_and_a_script_without_main_guard_runs_once(option):
    plain = run(SCRIPT.format(options="", kill=False))
    opted = run(SCRIPT.format(options=", " + OPTIONS[option], kill=option == "on_worker_death"))
    assert plain.returncode == 0, plain.stderr
    assert opted.returncode == 0, opted.stderr
    expected = ["body runs in the main process", "start method fork", "result 3", "children left []"]
    assert plain.stdout.splitlines() == expected
    if option == "on_worker_death":  # and a worker that died was replaced
        expected.insert(2, "WorkerDied")
    assert opted.stdout.splitlines() == expected, opted.stderr


def test_a_script_on_stdin_with_cloudpickle_and_a_timeout_runs():
    pytest.importorskip("cloudpickle")
    source = textwrap.dedent("""
        import multiprocessing
        import cfutures
        multiprocessing.set_start_method("fork", force=True)
        with cfutures.ProcessPoolExecutor(1, pickler="cloudpickle", task_timeout=5) as ex:
            print(ex.submit(lambda x: x * 2, 21).result())
    """)
    proc = run(source, stdin=True)
    assert (proc.returncode, proc.stdout) == (0, "42\n"), proc.stderr


def make_fork_pool(**options):
    return cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), **options)


STATE = {"set before the pool": False}


def read_state():
    return STATE["set before the pool"], os.getppid()


def test_a_replacement_is_a_fork_of_the_program_as_the_pool_started():
    STATE["set before the pool"] = True
    try:
        with make_fork_pool(on_worker_death="replace") as ex:
            first_pid = ex.submit(os.getpid).result(timeout=60)
            assert ex.submit(read_state).result(timeout=60) == (True, os.getpid())
            zygote = ex._host.zygote
            assert zygote.process.is_alive()
            with pytest.raises(cfutures.WorkerDied, match="killed by signal 9"):
                ex.submit(os.kill, first_pid, signal.SIGKILL).result(timeout=60)
            # The replacement: the zygote's child, with the program's state of the pool's start.
            assert ex.submit(read_state).result(timeout=60) == (True, zygote.process.pid)
            (worker,) = ex._processes.values()
            assert worker.pid != first_pid and worker.is_alive() and worker.exitcode is None
    finally:
        STATE["set before the pool"] = False


def test_a_pool_without_replacing_options_has_no_zygote():
    with make_fork_pool() as ex:
        ex.submit(abs, -1).result(timeout=60)
        assert ex._host.zygote is None
    with cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                      task_timeout=30) as ex:
        ex.submit(abs, -1).result(timeout=60)
        assert ex._host.zygote is None  # spawn and forkserver start replacements as they are


def test_the_zygote_leaves_with_the_pool_and_reports_exit_codes():
    ex = make_fork_pool(task_timeout=1)
    try:
        ex.submit(abs, -1).result(timeout=60)
        zygote = ex._host.zygote
        with pytest.raises(cfutures.TaskTimeout):
            ex.submit(signal.pause).result(timeout=60)
        ex.submit(abs, -1).result(timeout=60)  # on the replacement, the zygote's child
        (worker,) = ex._processes.values()
        assert isinstance(worker, cfutures._zygote.ZygoteWorker)
        with pytest.raises(cfutures.TaskTimeout):
            ex.submit(signal.pause).result(timeout=60)
        worker.join(30)
        assert worker.exitcode is not None and worker.exitcode < 0  # stopped by a signal
    finally:
        ex.shutdown()
    assert zygote.process.exitcode == 0
    assert multiprocessing.active_children() == []


def test_terminate_workers_reaches_workers_the_zygote_forked():
    ex = make_fork_pool(on_worker_death="replace")
    pid = ex.submit(os.getpid).result(timeout=60)
    with pytest.raises(cfutures.WorkerDied):
        ex.submit(os.kill, pid, signal.SIGKILL).result(timeout=60)
    ex.submit(abs, -1).result(timeout=60)
    zygote = ex._host.zygote
    ex.terminate_workers()
    # The pool's manager joins the zygote once the workers are gone: wait for the manager (a
    # second join of the same Process from this thread would race it for the exit status).
    ex.shutdown(wait=True)
    assert zygote.process.exitcode == 0
    assert multiprocessing.active_children() == []


def test_a_dead_zygote_breaks_the_pool_with_its_cause():
    with make_fork_pool(on_worker_death="replace") as ex:
        pid = ex.submit(os.getpid).result(timeout=60)
        zygote = ex._host.zygote
        os.kill(zygote.process.pid, signal.SIGKILL)
        zygote.process.join(30)
        with pytest.raises(cfutures.WorkerDied):
            ex.submit(os.kill, pid, signal.SIGKILL).result(timeout=60)
        with pytest.raises(cfutures.process.BrokenProcessPool, match="zygote .* is gone"):
            ex.submit(abs, -1).result(timeout=60)
    assert multiprocessing.active_children() == []
