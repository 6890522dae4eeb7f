"""pytest plugin for the child process that runs CPython's test_concurrent_futures on cfutures.

Loaded by tests/test_upstream.py with ``-p cfutures_upstream_plugin``. CFUTURES_INSTALL=1 in the
environment has already redirected concurrent.futures to cfutures at start-up (the .pth hook),
here and in every interpreter the suite starts. This plugin checks that, skips the tests listed
in tests/deviations.py with their reasons, and writes one JSON line per test (module, test,
outcome, message) to $CFUTURES_UPSTREAM_REPORT for the parent to summarise.
"""

import json
import os

import pytest

import deviations

_ids = {}  # nodeid -> (upstream module, upstream test id)


def pytest_configure(config):
    import concurrent.futures

    import cfutures
    if not cfutures.installed() or concurrent.futures.Future is not cfutures.Future:
        raise pytest.UsageError("concurrent.futures is not redirected to cfutures "
                                "(is CFUTURES_INSTALL=1 set and cfutures installed?)")


def _upstream_id(item):
    # "test.test_concurrent_futures.test_wait::ThreadPoolWaitTest::test_timeout" style.
    module = item.module.__name__ if item.module else "?"
    parts = [module] + [p.name for p in item.listchain()[-2:]]
    return "::".join(parts)


def pytest_collection_modifyitems(config, items):
    for item in items:
        _ids[item.nodeid] = (item.module.__name__ if item.module else "?", _upstream_id(item))
        reason = deviations.upstream_skip_reason(_upstream_id(item))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"cfutures: {reason}"))


def pytest_runtest_logreport(report):
    path = os.environ.get("CFUTURES_UPSTREAM_REPORT")
    if not path or report.nodeid not in _ids:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed):
        if report.skipped:
            outcome = "skipped"
            message = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        else:
            outcome = "passed" if report.passed else "failed"
            message = "" if report.passed else str(report.longrepr)[-3000:]
        module, test_id = _ids[report.nodeid]
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"module": module, "test": test_id, "when": report.when,
                                "outcome": outcome, "message": message}) + "\n")
