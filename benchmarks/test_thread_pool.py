import pytest


@pytest.mark.parametrize("workload", ["thread_submit_result", "thread_round_trip", "thread_map"])
def test_thread_pool(run_workload, workload):
    assert run_workload(workload) > 0
