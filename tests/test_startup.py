"""What importing cfutures loads: a process pool's start-up includes its imports (a spawned or
forkserver worker imports cfutures._process_worker before its first task; a short script pays for
`import cfutures`), so each module loads only when something needs it. Checked by the modules a
fresh interpreter has afterwards, not by timing."""

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("concurrent.futures", "concurrent.futures._base", "concurrent.futures.process",
         "logging", "queue")


def modules_after(code):
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("code", ["import cfutures", "import cfutures._process_worker"])
def test_the_package_and_the_worker_loop_load_no_stdlib_pool(code):
    loaded = modules_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_public_names_still_resolve_lazily():
    loaded = modules_after(
        "import cfutures, concurrent.futures as cf\n"
        "ns = {}\nexec('from cfutures import *', ns)\n"
        "assert sorted(k for k in ns if not k.startswith('__')) == sorted(cfutures.__all__)\n"
        "assert set(cf.__all__) <= set(cfutures.__all__)\n"
        "assert cfutures.CancelledError is cf.CancelledError\n"
        "assert cfutures.FIRST_COMPLETED is cf.FIRST_COMPLETED\n"
        "assert set(cfutures.__all__) <= set(dir(cfutures))")
    assert "cfutures._base" in loaded


def test_a_pool_process_does_not_load_the_worker_loop_or_semaphores():
    loaded = modules_after("import cfutures\nex = cfutures.ProcessPoolExecutor(2)\nex.shutdown()")
    assert "cfutures._process_worker" not in loaded
    assert "multiprocessing.synchronize" not in loaded  # the stdlib's queues need it, ours not


def test_a_spawned_worker_running_map_chunks_loads_only_its_loop():
    # The pool runs in a `python -c` parent: a spawned child re-imports the parent's main script
    # when it has a file (pytest's, which imports logging on 3.9), which is not the worker's doing.
    tests = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {tests!r})\n"
        "import json, multiprocessing, cfutures, process_helpers\n"
        "with cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as ex:\n"
        "    (loaded,) = ex.map(process_helpers.loaded_modules, [0], chunksize=2)\n"
        "print(json.dumps(loaded))")], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert "cfutures._process_worker" in loaded
    assert not loaded & {"cfutures.process", *HEAVY}, sorted(loaded & set(HEAVY))


def test_the_native_module_registers_bindings_on_first_use():
    out = subprocess.run([sys.executable, "-c", (
        "import cfutures._process_worker, cfutures._cfutures as c\n"
        "print(sorted(k for k in vars(c) if not k.startswith('__')))\n"
        "print(c.ThreadPoolBase.__name__, c.FutureBase.__name__)\n"
        "print('Subinterpreter' in dir(c) or __import__('sys').version_info < (3, 12))\n"
        "try:\n    c.no_such_name\nexcept AttributeError as e:\n    print('AttributeError', e)\n")],
        capture_output=True, text=True, timeout=60, check=True)
    registered, names, in_dir, missing = out.stdout.splitlines()
    assert "WorkerChannel" in registered and "FutureBase" not in registered, registered
    assert names == "ThreadPoolBase FutureBase"
    assert in_dir == "True"
    assert "no_such_name" in missing


RACE_FIRST_USE = """
import threading
import cfutures._cfutures as c
start = threading.Barrier(9)
errors = []
def poller():  # finds the class in the module's dict, never through __getattr__
    start.wait()
    for _ in range(200000):
        cls = vars(c).get("AsCompleted")
        if cls is not None:
            try:
                cls([]).close()
            except BaseException as e:
                errors.append(repr(e))
            return
def trigger():
    start.wait()
    c.AsCompleted
threads = [threading.Thread(target=poller) for _ in range(8)] + [threading.Thread(target=trigger)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""


@pytest.mark.parametrize("run", range(5))
def test_a_binding_appears_only_once_complete(run):
    # Free-threaded builds (PYTHON_GIL=0): threads that found a class in the module while the
    # first user was still registering it got "No constructor defined!", missing methods, or an
    # abort in instance allocation (9 runs in 10 failed here). With the GIL this cannot happen.
    out = subprocess.run([sys.executable, "-c", RACE_FIRST_USE], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "[]", "")


def test_first_use_of_a_base_name_binds_them_all():
    # A daemon thread's first `futures.as_completed` must not run the import system while the
    # interpreter finalizes (3.13t hung there under load); the stdlib's names are plain
    # attributes, and after any one of them so are cfutures'.
    out = subprocess.run([sys.executable, "-c", (
        "import cfutures\ncfutures.Future\n"
        "print(all(n in vars(cfutures) for n in ('as_completed', 'wait', 'TimeoutError', "
        "'CancelledError', 'FIRST_COMPLETED')))")], capture_output=True, text=True, timeout=60,
        check=True)
    assert out.stdout.strip() == "True"
