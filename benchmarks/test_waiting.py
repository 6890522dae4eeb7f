import pytest


@pytest.mark.parametrize("workload", ["as_completed_finished", "wait_finished", "as_completed_live"])
def test_waiting(run_workload, workload):
    assert run_workload(workload) > 0
