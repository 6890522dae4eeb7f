"""One suite, two implementations: fixtures that bind each test to concurrent.futures and cfutures.

* ``futures`` parametrises a test over both modules (ids ``stdlib`` and ``cfutures``).
* ``thread_executor`` gives an executor factory over both (``stdlib-thread``, ``cfutures-thread``)
  that shuts every executor it made down after the test.
* ``extended`` is for names cfutures offers on every Python but the stdlib only from some version
  on (3.14's map(buffersize=)): it includes the stdlib only where the stdlib has them.
* Known deviations (tests/deviations.py) become strict xfails; a fixed deviation fails loudly.
* After each test, no thread or child process it started may still run (checked, with a grace
  period).
"""

import concurrent.futures
import os
import sys
import threading
import time

import pytest

import cfutures

sys.path.insert(0, os.path.dirname(__file__))
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
    def __init__(self, module, kind):
        self.module, self.kind, self.made = module, kind, []

    def __call__(self, *args, **kwargs):
        ex = self.module.ThreadPoolExecutor(*args, **kwargs)
        self.made.append(ex)
        return ex

    def close(self):
        for ex in self.made:
            ex.shutdown(wait=True, cancel_futures=True)


def _executor_fixture(request, module):
    factory = ExecutorFactory(module, "thread")
    yield factory
    factory.close()


@pytest.fixture(params=["stdlib-thread", "cfutures-thread"])
def thread_executor(request):
    yield from _executor_fixture(request, IMPLS[request.param.split("-")[0]])


@pytest.fixture(params=["cfutures-thread"] + (["stdlib-thread"] if STDLIB_HAS_BUFFERSIZE else []))
def extended_executor(request):
    yield from _executor_fixture(request, IMPLS[request.param.split("-")[0]])


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = deviations.parity_reason(item.name)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
        reason = deviations.parity_skip_reason(item.name)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _child_pids():
    me = str(os.getpid())
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                pids.add(int(entry))
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
    children = _child_pids() - children_before
    while children and time.monotonic() < deadline:
        time.sleep(0.05)
        children = _child_pids() - children_before
    assert not children, f"child processes still running after the test: {sorted(children)}"


def pytest_terminal_summary(terminalreporter):
    mod = sys.modules.get("test_upstream") or next(
        (m for n, m in sys.modules.items() if n.endswith("test_upstream")), None)
    for summary in getattr(mod, "SUMMARIES", []):
        terminalreporter.write_line(summary)
