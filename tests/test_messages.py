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


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_cancel_running_takes_a_boolean(value):
    with pytest.raises(TypeError, match="cancel_running must be True or False"):
        cfutures.ProcessPoolExecutor(1, cancel_running=value)


def test_task_timeout_names_the_task_and_its_limit():
    import multiprocessing
    from process_helpers import sleep_and_return
    with cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"),
                                      task_timeout=5) as ex:
        stuck = ex.options(task_timeout=0.3).submit(sleep_and_return, 30, "x" * 500)
        with pytest.raises(cfutures.TaskTimeout) as info:
            stuck.result(timeout=60)
    message = str(info.value)
    assert "process_helpers.sleep_and_return(30, 'xxx" in message
    assert "task_timeout of 0.3 s" in message
    assert len(message) < 200  # the arguments are cut short


def test_worker_died_names_the_task():
    import multiprocessing
    from process_helpers import kill_self
    import signal
    with cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"),
                                      on_worker_death="replace") as ex:
        with pytest.raises(cfutures.WorkerDied, match=r"running the task process_helpers.kill_self\(9\) died "
                                                      r"\(killed by signal 9\)"):
            ex.submit(kill_self, 9).result(timeout=60)
