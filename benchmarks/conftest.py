"""pytest-benchmark drivers: each workload of cfutures._bench, once per implementation (the stdlib,
cfutures, and in test_peers.py each peer of ``bench --peers``), grouped by workload so that
pytest-benchmark prints them side by side. ``python -m cfutures bench`` runs the same workloads
and prints the ratios. ``--bench-quick`` takes the sizes of ``bench --quick``, one round each
(a smoke run)."""

import pytest

from cfutures._bench import peers, runner, tasks, workloads


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true",
                     help="the sizes of `python -m cfutures bench --quick`, one round per test")


@pytest.fixture(params=list(tasks.IMPLS))
def impl(request):
    return request.param


@pytest.fixture
def measure(benchmark, request):
    """measure("thread_round_trip", impl) -> the measurement, recorded in extra_info."""
    quick = request.config.getoption("--bench-quick")

    def run(function_name, impl):
        name, _fn, size, quick_size, unit = next(w for w in workloads.WORKLOADS
                                                 if w[1].__name__ == function_name)[:5]
        if function_name == "process_big_array":
            pytest.importorskip("numpy")
        if impl in peers.PEERS:
            peer = peers.PEERS[impl]
            note = peer.note(function_name)
            if note:
                pytest.skip(f"{impl}: {note}")
            if peer.module != "multiprocessing":
                pytest.importorskip(peer.module)
        benchmark.group = name
        # Start-up rows sample a fresh interpreter each: the issue asks for at least 5.
        rounds = 1 if quick else (peers.STARTUP_MIN_REPEAT
                                  if function_name.startswith("process_startup_") else 3)
        result = benchmark.pedantic(runner.measure, args=(impl, function_name,
                                                          quick_size if quick else size),
                                    rounds=rounds, iterations=1)
        benchmark.extra_info[unit] = result
        return result
    return run


@pytest.fixture
def run_workload(measure, impl):
    """run_workload("thread_round_trip") -> the measurement on the stdlib or cfutures."""
    return lambda function_name: measure(function_name, impl)
