"""pytest plugin for the child process that runs CPython's test_concurrent_futures on cfutures.

Loaded by tests/test_upstream.py with ``-p cfutures_upstream_plugin``. CFUTURES_INSTALL=1 in the
environment has already redirected concurrent.futures to cfutures at start-up (the .pth hook),
here and in every interpreter the suite starts; this plugin checks that, and skips the tests
listed in tests/deviations.py with their reasons.
"""

import sys

import pytest

import deviations


def pytest_configure(config):
    import concurrent.futures

    import cfutures
    if concurrent.futures is not cfutures:
        raise pytest.UsageError("concurrent.futures is not redirected to cfutures "
                                "(is CFUTURES_INSTALL=1 set and cfutures installed?)")


def _upstream_id(item):
    # "test.test_concurrent_futures.test_wait::ThreadPoolWaitTest::test_timeout" style.
    module = item.module.__name__ if item.module else "?"
    parts = [module] + [p.name for p in item.listchain()[-2:]]
    return "::".join(parts)


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = deviations.upstream_skip_reason(_upstream_id(item))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"cfutures: {reason}"))
