"""Messages and validation a user meets in the first hour: options given to the wrong pool, or
of the wrong type, say so."""

import pytest

import cfutures


@pytest.mark.parametrize("option, value", [("task_timeout", 1), ("cancel_running", True),
                                           ("on_worker_death", "replace"), ("pickler", "cloudpickle"),
                                           ("max_tasks_per_child", 3)])
def test_a_thread_pool_given_a_process_option_says_whose_option_it_is(option, value):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{option}': {option} is an "
                                        f"option of ProcessPoolExecutor"):
        cfutures.ThreadPoolExecutor(1, **{option: value})


def test_an_unknown_keyword_keeps_pythons_message():
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        cfutures.ThreadPoolExecutor(1, colour="red")


def test_stats_count_no_idle_worker_while_tasks_wait():
    with cfutures.ThreadPoolExecutor(4) as ex:
        futures = [ex.submit(pow, 2, n) for n in range(3000)]
        samples = []
        while not futures[-1].done():
            samples.append(ex.stats())
        for f in futures:
            f.result()
    assert samples
    assert all(s.idle_workers == 0 for s in samples if s.queued > 0), [s for s in samples if s.queued][:3]
    after = ex.stats()
    assert after.queued == 0 and after.idle_workers <= after.workers
