import pytest


@pytest.mark.parametrize("workload", [
    "process_submit_result", "process_submit_result_timed", "process_round_trip", "process_map_chunks",
    "process_big_argument",
    "process_big_array", "process_startup_fork", "process_startup_spawn",
    "process_startup_forkserver"])
def test_process_pool(run_workload, workload):
    assert run_workload(workload) > 0
