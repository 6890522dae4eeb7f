import pytest


# The bytes per future are in the report's extra_info; the timing is not the point.
@pytest.mark.parametrize("workload", ["memory_per_pending_future", "memory_per_plain_future"])
def test_memory(run_workload, workload):
    assert run_workload(workload) > 0
