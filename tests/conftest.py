"""One suite, two implementations: fixtures that bind each test to concurrent.futures and cfutures.

* ``futures`` parametrises a test over both modules (ids ``stdlib`` and ``cfutures``).
* ``thread_executor`` gives an executor factory over both (``stdlib-thread``, ``cfutures-thread``)
  that shuts every executor it made down after the test.
* ``extended`` is for names cfutures offers on every Python but the stdlib only from some version
  on (3.14's map(buffersize=)): it includes the stdlib only where the stdlib has them.
* Known deviations (tests/deviations.py) become strict xfails; a fixed deviation fails loudly.
* After each test, no thread or child process it started may still run (checked, with a grace
  period).
* CFUTURES_STDLIB_SIDE=0 deselects the stdlib's side of the parametrised tests: they check the
  tests' expectations against that Python's stdlib, not cfutures, so the CI matrix runs them in
  its full sessions only (3.9, 3.11, 3.13t, 3.15; see noxfile.py).
"""

import concurrent.futures
import multiprocessing
import os
import re
import sys
import threading
import time

import pytest

import cfutures

sys.path.insert(0, os.path.dirname(__file__))
# Worker processes started by spawn or forkserver import test helpers (process_helpers) by name.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [os.path.dirname(os.path.abspath(__file__))] + [p for p in [os.environ.get("PYTHONPATH")] if p])
import deviations  # noqa: E402

IMPLS = {"stdlib": concurrent.futures, "cfutures": cfutures}
STDLIB_HAS_BUFFERSIZE = sys.version_info >= (3, 14)


@pytest.fixture(params=list(IMPLS))
def futures(request):
    return IMPLS[request.param]


@pytest.fixture(params=["stdlib", "cfutures"] if STDLIB_HAS_BUFFERSIZE else ["cfutures"])
def extended(request):
    return IMPLS[request.param]


class ExecutorFactory:
    def __init__(self, module):
        self.module, self.made = module, []

    def __call__(self, *args, **kwargs):
        ex = self.module.ThreadPoolExecutor(*args, **kwargs)
        self.made.append(ex)
        return ex

    def close(self):
        for ex in self.made:
            ex.shutdown(wait=True, cancel_futures=True)


def _executor_fixture(request, module):
    factory = ExecutorFactory(module)
    yield factory
    factory.close()


@pytest.fixture(params=["stdlib-thread", "cfutures-thread"])
def thread_executor(request):
    yield from _executor_fixture(request, IMPLS[request.param.split("-")[0]])


@pytest.fixture(params=["cfutures-thread"] + (["stdlib-thread"] if STDLIB_HAS_BUFFERSIZE else []))
def extended_executor(request):
    yield from _executor_fixture(request, IMPLS[request.param.split("-")[0]])


class ProcessExecutorFactory(ExecutorFactory):
    def __init__(self, module, method):
        super().__init__(module)
        self.method = method
        self.context = multiprocessing.get_context(method)

    def __call__(self, *args, **kwargs):
        kwargs.setdefault("mp_context", self.context)
        ex = self.module.ProcessPoolExecutor(*args, **kwargs)
        self.made.append(ex)
        return ex


# cfutures' own process pools (the opt-in features' tests), by start method.
@pytest.fixture(params=["forkserver", "spawn", "fork"])
def cf_process(request):
    factory = ProcessExecutorFactory(cfutures, request.param)
    yield factory
    factory.close()


@pytest.fixture
def cf_forkserver():
    factory = ProcessExecutorFactory(cfutures, "forkserver")
    yield factory
    factory.close()


PROCESS_PARAMS = [f"{impl}-process-{method}" for impl in IMPLS
                  for method in ("fork", "spawn", "forkserver")]


def _process_factory(request):
    impl, _, method = request.param.split("-")
    factory = ProcessExecutorFactory(IMPLS[impl], method)
    yield factory
    factory.close()


@pytest.fixture(params=PROCESS_PARAMS)
def process_executor(request):
    yield from _process_factory(request)


# terminate_workers()/kill_workers() and map(buffersize=) exist in the stdlib from 3.14 only.
@pytest.fixture(params=[p for p in PROCESS_PARAMS
                        if p.startswith("cfutures") or STDLIB_HAS_BUFFERSIZE])
def extended_process_executor(request):
    yield from _process_factory(request)


def _stdlib_side(item):
    params = getattr(item, "callspec", None)
    return params is not None and any(
        isinstance(v, str) and (v == "stdlib" or v.startswith("stdlib-")) for v in params.params.values())


# Modules that import cfutures' native parts at their top cannot even be collected in a portable
# build (see pytest_collection_modifyitems).
collect_ignore = [] if cfutures.NATIVE else ["test_pickling.py"]


def _cfutures_side_of_a_parity_test(item, nodeids):
    """Whether item is cfutures' side of a test that also runs on the stdlib's side."""
    name, bracket, params = item.nodeid.partition("[")
    twin = re.sub(r"(?<![\w])cfutures(?![\w])", "stdlib", params)
    return twin != params and name + bracket + twin in nodeids


def pytest_collection_modifyitems(config, items):
    if not cfutures.NATIVE:
        # A portable build (cfutures/_portable.py; noxfile.py's portable session): cfutures'
        # side is the stdlib's own pools there, so the parity tests run (their cfutures side
        # must give the stdlib's outcomes, deviations included), and the tests of what only
        # the native core has (its extensions, internals, start-up) are skipped.
        nodeids = {item.nodeid for item in items}
        native_only = pytest.mark.skip(reason="needs cfutures' native core (cfutures.NATIVE "
                                              "is False: a portable build)")
        for item in items:
            if item.get_closest_marker("native") or (
                    not _stdlib_side(item) and not item.get_closest_marker("portable")
                    and not _cfutures_side_of_a_parity_test(item, nodeids)):
                item.add_marker(native_only)
    if os.environ.get("CFUTURES_STDLIB_SIDE") == "0":
        deselected = [item for item in items if _stdlib_side(item)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not _stdlib_side(item)]
    for item in items if cfutures.NATIVE else ():
        reason = deviations.parity_reason(item.name)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
        reason = deviations.parity_skip_reason(item.name)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _processes_with(field, value):
    """(pid, state) of the processes whose /proc stat `field` (after the command: 1 is the
    parent's pid, 4 the session) equals `value`."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[field]) == value:
                yield int(entry), fields[0]


def live_processes(field, value):
    """Pids of live (not zombie) processes whose /proc stat `field` equals `value`."""
    return {pid for pid, state in _processes_with(field, value) if state != "Z"}


def zombie_children():
    """Pids of this process's children that exited and were not reaped."""
    return {pid for pid, state in _processes_with(1, os.getpid()) if state == "Z"}


def _child_pids():
    return live_processes(1, os.getpid())


def _multiprocessing_helpers():
    """multiprocessing's own long-lived helpers (started on first use, kept for the process)."""
    pids = set()
    forkserver = sys.modules.get("multiprocessing.forkserver")
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    for obj, attr in ((getattr(forkserver, "_forkserver", None), "_forkserver_pid"),
                      (getattr(tracker, "_resource_tracker", None), "_pid")):
        pid = getattr(obj, attr, None)
        if pid:
            pids.add(pid)
    return pids


@pytest.fixture(autouse=True)
def no_leaks():
    """No thread or child process that a test started may outlive it (with a grace period)."""
    threads_before = set(threading.enumerate())
    children_before = _child_pids()
    yield
    deadline = time.monotonic() + 10
    leaked = []
    for t in set(threading.enumerate()) - threads_before:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            leaked.append(t.name)
    assert not leaked, f"threads still running after the test: {leaked}"
    children = _child_pids() - children_before - _multiprocessing_helpers()
    while children and time.monotonic() < deadline:
        time.sleep(0.05)
        children = _child_pids() - children_before - _multiprocessing_helpers()
    assert not children, f"child processes still running after the test: {sorted(children)}"


def pytest_terminal_summary(terminalreporter):
    mod = sys.modules.get("test_upstream") or next(
        (m for n, m in sys.modules.items() if n.endswith("test_upstream")), None)
    for summary in getattr(mod, "SUMMARIES", []):
        terminalreporter.write_line(summary)
