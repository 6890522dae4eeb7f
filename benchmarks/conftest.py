"""pytest-benchmark drivers: each workload of cfutures._bench, once per implementation, grouped by
workload so that pytest-benchmark prints the two side by side. ``python -m cfutures bench`` runs
the same workloads and prints the ratios."""

import pytest

from cfutures import _bench


@pytest.fixture(params=list(_bench.IMPLS))
def impl(request):
    return request.param


@pytest.fixture
def run_workload(benchmark, impl):
    """run_workload("thread_round_trip") -> the measurement, recorded in extra_info."""
    def run(function_name):
        name, fn, size, _quick, unit = next(w for w in _bench.WORKLOADS
                                            if w[1].__name__ == function_name)[:5]
        benchmark.group = name
        result = benchmark.pedantic(fn, args=(impl, size), rounds=3, iterations=1)
        benchmark.extra_info[unit] = result
        return result
    return run
