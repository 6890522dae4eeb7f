"""ProcessPoolExecutor behaviour, run against concurrent.futures and cfutures alike, under the
fork, spawn and forkserver start methods (ids like ``cfutures-process-spawn``)."""

import collections
import concurrent.futures
import concurrent.futures.process
import functools
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

BrokenProcessPool = concurrent.futures.process.BrokenProcessPool


from process_helpers import (  # noqa: E402  (importable by spawned workers, see conftest)
    Unpicklable, buffer_lengths, crash_with, describe_array, exits, fails, forge_own_answer,
    frame_header, getpid,
    hard_exit, identity, init_fails, make_arrays, make_bytes, mul, nested_buffers, nested_list,
    record_outcome, returns_unpicklable, segfault, sleep_and_return, wait_for_path,
    write_to_own_channel)


def test_is_a_stdlib_process_pool(process_executor):
    ex = process_executor(1)
    assert isinstance(ex, concurrent.futures.ProcessPoolExecutor)
    assert isinstance(ex.submit(mul, 2, 3), concurrent.futures.Future)




@pytest.mark.parametrize("make", [list, tuple, lambda r: r, iter], ids=["list", "tuple", "range", "iterator"])
@pytest.mark.parametrize("chunksize", [1, 3, 7, 100])
def test_map_in_chunks_of_any_input(process_executor, make, chunksize):
    # One iterable is chunked from its items (sequences sliced), several as argument tuples.
    ex = process_executor(2)
    expected = [i for i in range(20)]
    assert list(ex.map(identity, make(range(20)), chunksize=chunksize)) == expected
    assert list(ex.map(identity, make(range(0)), chunksize=chunksize)) == []
    assert list(ex.map(mul, make(range(20)), range(25), chunksize=chunksize)) == [i * i for i in range(20)]
    assert list(ex.map(identity, make([(1, 2), (3,)]), chunksize=chunksize)) == [(1, 2), (3,)]
    assert list(ex.map(mul, chunksize=chunksize)) == []


def test_map_result_is_a_generator_that_lets_each_item_go(process_executor):
    # As the stdlib's: a generator (close() works), and an item yielded and dropped by the
    # caller is freed before the rest of its chunk is consumed.
    ex = process_executor(1)
    results = ex.map(make_bytes, [10] * 6, chunksize=6)
    first = next(results)
    assert first == b"\x01" * 10
    results.close()
    with pytest.raises(StopIteration):
        next(results)
    results = ex.map(nested_list, [3] * 6, chunksize=6)
    probe = next(results)
    # Only the caller's name holds it: as many references as a fresh local (3.14 counts one
    # fewer than before, getrefcount's argument being borrowed).
    fresh = [[[[]]]]
    assert sys.getrefcount(probe) == sys.getrefcount(fresh)


def test_remote_exception_keeps_type_and_traceback_text(process_executor):
    f = process_executor(1).submit(fails)
    with pytest.raises(ValueError, match="in worker") as info:
        f.result(timeout=60)
    cause = info.value.__cause__
    assert type(cause).__name__ == "_RemoteTraceback"
    assert "fails" in str(cause) and "in worker" in str(cause)


def test_system_exit_fails_only_its_future(process_executor):
    ex = process_executor(1)
    assert isinstance(ex.submit(exits).exception(timeout=60), SystemExit)
    assert ex.submit(mul, 2, 2).result(timeout=60) == 4


def test_unpicklable_argument_fails_only_its_future(process_executor):
    ex = process_executor(1)
    with pytest.raises(pickle.PicklingError):
        ex.submit(identity, Unpicklable()).result(timeout=60)
    assert ex.submit(mul, 3, 3).result(timeout=60) == 9


def test_unpicklable_result_fails_only_its_future(process_executor):
    ex = process_executor(1)
    with pytest.raises(pickle.PicklingError):
        ex.submit(returns_unpicklable).result(timeout=60)
    assert ex.submit(mul, 4, 4).result(timeout=60) == 16


@pytest.mark.parametrize("crash", [hard_exit, segfault], ids=["os_exit", "segfault"])
def test_crashing_worker_breaks_the_pool(process_executor, crash):
    ex = process_executor(2)
    ex.submit(mul, 1, 1).result(timeout=60)
    t0 = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        ex.submit(crash).result(timeout=60)
    assert time.monotonic() - t0 < 30
    with pytest.raises(BrokenProcessPool):
        ex.submit(mul, 1, 1)


def test_killed_worker_breaks_pending_futures(process_executor):
    ex = process_executor(2)
    fs = [ex.submit(sleep_and_return, 5, i) for i in range(4)]
    pid = next(iter(ex._processes))
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    for f in fs:
        with pytest.raises(BrokenProcessPool):
            f.result(timeout=60)
    # Detected from the exit itself, well before the 5 s tasks would have finished.
    assert time.monotonic() - t0 < 4


@pytest.mark.native
def test_a_worker_exit_names_the_process_and_its_exit_code_as_the_cause(process_executor):
    # gh-139462: the stdlib from 3.15, cfutures on every Python.
    if process_executor.module is concurrent.futures and sys.version_info < (3, 15):
        pytest.skip("the stdlib gives this cause from 3.15 on")
    ex = process_executor(1)
    error = ex.submit(hard_exit).exception(timeout=60)
    assert isinstance(error, BrokenProcessPool)
    if process_executor.module is concurrent.futures and error.__cause__ is None:
        # The stdlib reads the exit codes without waiting for the process (Process.exitcode
        # may still be None then): it can give no cause (seen under fork in CI). cfutures reaps
        # the worker first.
        return
    assert isinstance(error.__cause__, concurrent.futures.process._RemoteTraceback)
    assert re.search(r"Process \d+ terminated abruptly with exit code 7", error.__cause__.tb)


def test_failing_initializer_breaks_the_pool(process_executor):
    ex = process_executor(1, initializer=init_fails)
    with pytest.raises(BrokenProcessPool):
        ex.submit(mul, 1, 1).result(timeout=60)


def test_bad_arguments(process_executor):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        process_executor(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        process_executor(1, initializer=5)


def test_max_tasks_per_child(process_executor):
    if process_executor.module is concurrent.futures and sys.version_info < (3, 11):
        pytest.skip("the stdlib has max_tasks_per_child from 3.11 on (cfutures on every Python)")
    if process_executor.method == "fork":
        with pytest.raises(ValueError, match="incompatible with the 'fork'"):
            process_executor(1, max_tasks_per_child=2)
        return
    ex = process_executor(1, max_tasks_per_child=2)
    pids = [ex.submit(getpid).result(timeout=60) for _ in range(4)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2]


@pytest.mark.native
def test_concurrent_first_submits_start_one_manager(process_executor):
    # Several threads submitting to a fresh pool at once once started a manager thread each
    # (two managers drove one pool and corrupted the heap).
    for _ in range(3):
        ex = process_executor(2)
        barrier = threading.Barrier(6)
        submitted = []

        def submit():
            barrier.wait()
            submitted.append(ex.submit(mul, 3, 4))

        threads = [threading.Thread(target=submit) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [f.result(timeout=60) for f in submitted] == [12] * 6
        if process_executor.module is not concurrent.futures:
            managers = [t for t in threading.enumerate()
                        if t.name.startswith("cfutures-process-pool-")]
            assert managers == [ex._executor_manager_thread]
        ex.shutdown(wait=True)




def test_shutdown_cancel_futures_fails_none_of_the_queued(process_executor):
    # 926 of 1,000 queued futures with done-callbacks once ended with BrokenProcessPool: while
    # shutdown ran the callbacks of what it had taken from the queue, the manager stopped and
    # failed the jobs still in its table.
    ex = process_executor(2)
    outcomes = []
    fs = [ex.submit(sleep_and_return, 0.001, i) for i in range(1000)]
    for f in fs:
        f.add_done_callback(functools.partial(record_outcome, outcomes))
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in fs)
    assert len(outcomes) == 1000
    assert set(outcomes) <= {"cancelled", "result"}, collections.Counter(outcomes)
    # Only what workers had already taken ran: most of the queue (a loaded CI machine once let
    # the stdlib's workers take 119 before the cancel).
    assert outcomes.count("cancelled") > 500


def test_argument_nested_too_deeply(process_executor):
    f = process_executor(1).submit(identity, nested_list(100_000))
    exc = f.exception(timeout=60)
    assert type(exc) is RecursionError
    # The stdlib's shape (its queue feeder's _on_queue_feeder_error): the traceback text as the
    # cause, no context.
    assert type(exc.__cause__).__name__ == "_RemoteTraceback"
    assert "RecursionError" in str(exc.__cause__)
    assert exc.__context__ is None


def test_queued_large_arguments_hold_memory_in_flight_only(process_executor):
    # Queued tasks sharing one 8 MiB argument, or each with its own: the memory that crosses
    # processes is bounded by what is in flight, not by what is queued (86 copies of a shared
    # argument were once held, one per queued task).
    ex = process_executor(1)
    ex.submit(mul, 1, 1).result(timeout=60)
    gate = ex.submit(sleep_and_return, 1.0, None)
    while not gate.running():
        time.sleep(0.01)
    shmem_before = _shmem_kib()
    shared = os.urandom(8 << 20)
    fs = [ex.submit(len, shared) for _ in range(100)]  # 800 MiB if copied per task
    time.sleep(0.3)
    assert _shmem_kib() - shmem_before < 150 << 10, "more than 150 MiB of shared memory"
    assert [f.result(timeout=120) for f in fs] == [8 << 20] * 100
    gate = ex.submit(sleep_and_return, 1.0, None)
    while not gate.running():
        time.sleep(0.01)
    fs = [ex.submit(len, bytearray(8 << 20)) for _ in range(24)]  # 192 MiB queued
    time.sleep(0.3)
    assert _shmem_kib() - shmem_before < 150 << 10, "more than 150 MiB of shared memory"
    assert [f.result(timeout=120) for f in fs] == [8 << 20] * 24


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "after-short-tasks"])
def test_short_tasks_never_wait_behind_a_long_one_while_a_worker_is_free(process_executor, tmp_path, warm):
    # One long task, then short ones: the other worker runs every short task while the long one
    # still runs. Tasks sent ahead to the busy worker used to wait for it: on a fresh pool, and
    # after short tasks (which make the pool send tasks ahead) even with prefetch adapted to task
    # times, until the pool learnt to ask them back.
    ex = process_executor(2)
    if warm:
        assert list(ex.map(mul, range(200), range(200))) == [i * i for i in range(200)]
    release = tmp_path / "release"
    long = ex.submit(wait_for_path, str(release))
    shorts = [ex.submit(sleep_and_return, 0.02, i) for i in range(40)]
    try:
        assert [f.result(timeout=60) for f in shorts] == list(range(40))
        assert not long.done()
    finally:
        release.touch()
    assert long.result(timeout=60) is True


def _shmem_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    return 0


def test_no_worker_outlives_shutdown(process_executor):
    ex = process_executor(2)
    pids = {ex.submit(getpid).result(timeout=60) for _ in range(4)} | set(ex._processes)
    ex.shutdown(wait=True)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, and reaped (a zombie would still answer)


def test_large_bytes_argument(process_executor):
    data = os.urandom(1024) * (8 * 1024)  # 8 MiB
    ex = process_executor(1)
    assert ex.submit(len, data).result(timeout=60) == len(data)
    assert ex.submit(identity, data).result(timeout=60) == data


def test_calls_around_the_size_of_a_copied_payload(process_executor):
    # The parent copies a pickled call of up to 4 KiB out of its bytes object and sends the
    # bytes object itself beyond that (make_job): both sides of the boundary arrive whole.
    ex = process_executor(2)
    sizes = range(3_900, 4_300, 7)
    payloads = [bytes([n % 251]) * n for n in sizes]
    assert list(ex.map(identity, payloads)) == payloads
    assert [f.result(timeout=60) for f in [ex.submit(len, p) for p in payloads]] == list(sizes)


def _shared_memory_held():
    """What this process holds of memory shared with workers: memfds still open (and, from
    before memfds, names in /dev/shm). Attachments are mapped, never kept open."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:cfutures"):
                fds.add(fd)
        except OSError:
            pass
    return fds | {n for n in os.listdir("/dev/shm") if n.startswith("cfutures-")}


def test_large_payloads_leave_no_shared_memory(process_executor):
    before = _shared_memory_held()
    big = bytearray(3 << 20)
    ex = process_executor(1)
    assert ex.submit(len, big).result(timeout=60) == len(big)
    assert ex.submit(make_bytes, 2 << 20).result(timeout=60) == b"\x01" * (2 << 20)
    with pytest.raises(BrokenProcessPool):
        ex.submit(crash_with, bytes(big)).result(timeout=60)
    assert _shared_memory_held() == before


def test_numpy_arrays_round_trip(process_executor):
    np = pytest.importorskip("numpy")
    before = _shared_memory_held()
    ex = process_executor(1)
    a = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: an out-of-band buffer
    assert ex.submit(describe_array, a).result(timeout=60) == (a.sum(), a.shape, True, True)
    assert ex.submit(describe_array, np.ones((1 << 16, 4), order="F")).result(timeout=60) == (
        float(1 << 18), (1 << 16, 4), True, True)
    assert ex.submit(describe_array, np.ones((1 << 16, 4))).result(timeout=60) == (
        float(1 << 18), (1 << 16, 4), True, False)
    arrays = ex.submit(make_arrays, 1 << 18).result(timeout=60)
    assert arrays["range"][-1] == (1 << 18) - 1 and arrays["range"].flags.writeable
    arrays["range"][0] = 7  # writable, as a copy through the pipe is
    assert arrays["fortran"].shape == (1 << 18, 2) and arrays["fortran"].sum() == 2 * (1 << 18)
    del arrays
    assert _shared_memory_held() == before


def test_large_buffers_nested_in_objects(process_executor):
    before = _shared_memory_held()
    ex = process_executor(1)
    n = 2 << 20
    shared = b"\x04" * n
    call = {"list": [shared, shared, b"x"], "tuple": (bytearray(n),)}
    assert ex.submit(buffer_lengths, call).result(timeout=60) == {"list": [n, n, 1], "tuple": [n]}
    assert ex.submit(identity, call).result(timeout=60) == call
    result = ex.submit(nested_buffers, n).result(timeout=60)
    assert result == nested_buffers(n)
    assert type(result["ba"][0]) is bytearray
    assert _shared_memory_held() == before


def test_terminate_and_kill_workers(extended_process_executor):
    for method in ("terminate_workers", "kill_workers"):
        ex = extended_process_executor(2)
        f = ex.submit(sleep_and_return, 10, None)
        time.sleep(0.2)
        pids = list(ex._processes)
        getattr(ex, method)()
        with pytest.raises(BrokenProcessPool):
            f.result(timeout=30)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.05)
        assert not pids


def test_terminate_workers_ends_the_queued_work_of_a_max_tasks_pool(extended_process_executor):
    # CPython 3.14.10 checks this through the stdlib's private _force_shutting_down flag (see
    # tests/deviations.py): once terminate_workers() runs, a worker leaving at its task limit is
    # not replaced, and no future is left pending.
    if extended_process_executor.method == "fork":
        pytest.skip("max_tasks_per_child does not take the fork start method")
    ex = extended_process_executor(1, max_tasks_per_child=1)
    fs = [ex.submit(sleep_and_return, 1, i) for i in range(4)]
    deadline = time.monotonic() + 30
    while not fs[0].running() and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = list(ex._processes)
    ex.terminate_workers()
    # Not wait(): a future cancelled by shutdown(cancel_futures=True) stays CANCELLED, which
    # wait() does not count as done (the stdlib's rule, which cfutures keeps).
    for f in fs:
        assert f.cancelled() or isinstance(f.exception(timeout=30), BrokenProcessPool), f
    deadline = time.monotonic() + 10
    while [p for p in pids if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def test_force_shutdown_refuses_an_unknown_operation(extended_process_executor):
    # 3.15's (and 3.14.10's) rule: nothing is stopped, the pool goes on.
    if not hasattr(extended_process_executor.module.ProcessPoolExecutor, "_force_shutdown"):
        pytest.skip("this stdlib has no _force_shutdown")
    ex = extended_process_executor(1)
    with pytest.raises(ValueError, match="Unsupported operation"):
        ex._force_shutdown("stop")
    assert ex.submit(mul, 2, 3).result(timeout=30) == 6


def test_terminate_and_kill_workers_go_through_force_shutdown(extended_process_executor):
    # CPython 3.14's suite replaces _force_shutdown and checks the keyword it is given.
    from unittest import mock
    for method, operation in (("terminate_workers", "terminate"), ("kill_workers", "kill")):
        ex = extended_process_executor(1)
        ex._force_shutdown = mock.Mock()
        getattr(ex, method)()
        ex._force_shutdown.assert_called_once_with(operation=operation)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_script_ending_without_shutdown_leaves_no_process(tmp_path, impl, method):
    pidfile = tmp_path / "pids"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, os, time
        import {impl} as futures

        def record(path):
            with open(path, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            return os.getpid()

        if __name__ == "__main__":
            ex = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("{method}"))
            ex.submit(record, {str(pidfile)!r}).result()
            ex.submit(time.sleep, 0.2)
            print("done")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    pids = [int(p) for p in pidfile.read_text().split()]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _kill_pool_process(tmp_path, body):
    """Runs a cfutures script (`body`, its pool's `method` a format field) that prints worker
    pids on its first line and then sleeps; kills it with SIGKILL once they are printed, and
    asserts that every worker leaves (no orphan) within 15 s."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert pids, "the script printed no worker pids"
        time.sleep(0.3)  # the long task is running in one of them
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_leave_when_the_pool_process_is_killed(tmp_path, method):
    # cfutures only: the stdlib's workers may wait forever for a parent killed with SIGKILL (or
    # by the OOM killer). Here an idle worker leaves at once, a busy one is sent SIGTERM.
    _kill_pool_process(tmp_path, f"""
        import multiprocessing, os, sys, time
        import cfutures

        if __name__ == "__main__":
            ex = cfutures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("{method}"))
            pids = {{ex.submit(os.getpid).result() for _ in range(20)}}
            busy = ex.submit(time.sleep, 600)
            while not busy.running():
                time.sleep(0.01)
            print(" ".join(map(str, pids)), flush=True)
            time.sleep(600)
    """)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_killing_the_pool_process_leaves_no_shared_memory(tmp_path, method):
    # cfutures only (the stdlib sends arguments through a pipe). Once, 38 segments (152 MiB)
    # stayed in /dev/shm after the pool process was killed with large arguments queued: memory
    # that crosses processes must die with them.
    shmem_before = _shmem_kib()
    _kill_pool_process(tmp_path, f"""
        import multiprocessing, os, time
        import cfutures

        if __name__ == "__main__":
            ex = cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("{method}"))
            busy = ex.submit(time.sleep, 600)
            while not busy.running():
                time.sleep(0.01)
            queued = [ex.submit(len, bytearray(4 << 20)) for _ in range(20)]
            time.sleep(0.5)  # some are in flight: their memfds in the socket, or the worker
            print(" ".join(map(str, ex._processes)), flush=True)
            time.sleep(600)
    """)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("cfutures-")]
    assert _shmem_kib() - shmem_before < 16 << 10, "shared memory outlived its processes"


@pytest.mark.parametrize("impl", ["concurrent.futures", "cfutures"])
def test_ctrl_c_while_waiting_then_shutdown(tmp_path, impl):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import signal, time
        import {impl} as futures

        if __name__ == "__main__":
            # Started from a background job, the process inherits SIGINT ignored.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            ex = futures.ProcessPoolExecutor(2)
            f = ex.submit(time.sleep, 3)
            ex.submit(time.sleep, 0).result()  # a worker is up
            print("waiting", flush=True)
            start = time.monotonic()
            try:
                f.result()
            except KeyboardInterrupt:
                print(f"interrupted {{time.monotonic() - start:.2f}}", flush=True)
            ex.shutdown(wait=True, cancel_futures=True)
            print("shut down", f.done(), flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "waiting\n"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("interrupted"), (out, err)
    assert float(lines[0].split()[1]) < 2.0  # not at the end of the task
    assert lines[1] == "shut down True"
    assert proc.returncode == 0, err


def test_asyncio_run_in_executor_and_cancellation(process_executor):
    import asyncio
    ex = process_executor(1)

    async def main():
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(ex, mul, 6, 7)
        blocker = ex.submit(sleep_and_return, 1.0, "done")
        queued = [ex.submit(mul, 1, i) for i in range(40)]  # behind the blocker
        wrapped = asyncio.wrap_future(queued[-1])
        wrapped.cancel()
        await asyncio.sleep(0.05)
        return value, blocker, queued

    value, blocker, queued = asyncio.run(main())
    assert value == 42
    assert queued[-1].cancelled()
    assert blocker.result(timeout=60) == "done"
    assert [f.result(timeout=60) for f in queued[:-1]] == list(range(39))


# --- cfutures only: its frame protocol, attacked from inside a task ---------------------------

@pytest.fixture(params=["fork", "spawn", "forkserver"])
def cfutures_process_executor(request):
    import cfutures
    from conftest import ProcessExecutorFactory
    factory = ProcessExecutorFactory(cfutures, request.param)
    yield factory
    factory.close()


def _rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.parametrize("hostile, cause", [
    (frame_header(5, 0, 0), "an Exiting message it was not entitled to"),  # spoofed "exiting"
    ("00" * 40, "wrong magic"),
    (frame_header(3, 12345, 4) + "80044e2e", "a job it was not given"),
    (frame_header(3, 12345, 0xFFFFFFF0), "a job it was not given"),  # judged by its header
    (frame_header(3, 1, 16, attachments=2) + "00" * 16, "attachments did not arrive"),
], ids=["spoofed-exiting", "garbage", "unknown-job", "unknown-job-huge", "missing-attachments"])
def test_frames_a_task_forges_break_the_pool_naming_the_cause(cfutures_process_executor, hostile, cause):
    ex = cfutures_process_executor(2)
    assert ex.submit(mul, 2, 3).result(timeout=60) == 6
    f = ex.submit(write_to_own_channel, hostile)
    with pytest.raises(BrokenProcessPool, match=cause):
        f.result(timeout=30)
    with pytest.raises(BrokenProcessPool, match=cause):
        ex.submit(mul, 1, 1)


def test_a_header_announcing_4_gib_allocates_nothing_and_hangs_nothing(cfutures_process_executor):
    # Once: the parent allocated 4 GiB, its manager thread died on bad_alloc, later submits hung.
    # Here the header is even plausible (the task's own job), so only its bytes can tell.
    ex = cfutures_process_executor(1)
    assert ex.submit(mul, 2, 3).result(timeout=60) == 6
    rss = _rss_kib()
    f = ex.submit(forge_own_answer, 0xFFFFFFF0, "00" * 10)
    time.sleep(0.5)
    assert _rss_kib() - rss < 64 << 10  # not 4 GiB
    assert not f.done()
    # The forged header swallowed the real answer; shutdown stops the worker, and the half
    # frame it leaves breaks the pool instead of leaving the future pending forever.
    ex.shutdown(wait=True)
    with pytest.raises(BrokenProcessPool, match="middle of a frame"):
        f.result(timeout=0)


class _ContextStartingOneProcess:
    """A multiprocessing context whose second Process() fails (out of processes, say)."""

    def __init__(self, context):
        self._context, self._made = context, 0

    def __getattr__(self, name):
        return getattr(self._context, name)

    def Process(self, *args, **kwargs):
        self._made += 1
        if self._made > 1:
            raise OSError("cannot start more processes")
        return self._context.Process(*args, **kwargs)


def test_a_replacement_worker_that_cannot_start_breaks_the_pool():
    # cfutures only (it reaches into the pool's host). The queue waited forever for a worker
    # that the manager failed to start (the error was only written as unraisable).
    import cfutures
    import multiprocessing
    ex = cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"),
                                      max_tasks_per_child=1)
    try:
        ex._host.mp_context = _ContextStartingOneProcess(ex._host.mp_context)
        fs = [ex.submit(mul, i, 1) for i in range(3)]
        assert fs[0].result(timeout=60) == 0
        for f in fs[1:]:  # the worker left after one task and could not be replaced
            # One line naming the error (pybind11's message carried a rendered traceback).
            with pytest.raises(BrokenProcessPool, match=r"^A worker process could not be started "
                               r"\(OSError: cannot start more processes\); the process pool is "
                               r"not usable anymore$"):
                f.result(timeout=30)
    finally:
        ex.shutdown(wait=True)


def test_concurrent_first_submits_ask_the_host_for_one_manager(monkeypatch):
    # cfutures only. The native side saw that no manager was started, called the host to start
    # it (Python code, during which other threads run) and only then marked it started: every
    # first submit meanwhile asked for one too (only a lock in the host kept a second manager
    # thread out).
    import cfutures
    import cfutures.process
    import multiprocessing
    calls = []
    start = cfutures.process._PoolHost.start

    def slow_start(host, workers, manager):
        if manager is not None:
            calls.append(manager)
            time.sleep(0.3)  # the GIL is free: the other submits run meanwhile
        return start(host, workers, manager)

    monkeypatch.setattr(cfutures.process._PoolHost, "start", slow_start)
    ex = cfutures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
    try:
        barrier = threading.Barrier(4)
        submitted = []

        def submit():
            barrier.wait(30)
            submitted.append(ex.submit(mul, 3, 4))

        threads = [threading.Thread(target=submit) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [f.result(timeout=60) for f in submitted] == [12] * 4
        assert len(calls) == 1
    finally:
        ex.shutdown(wait=True)


class _ContextStartingNoProcess(_ContextStartingOneProcess):
    """A multiprocessing context whose every Process() fails."""

    def Process(self, *args, **kwargs):
        raise OSError("cannot start any process")


class _Argument:
    pass


@pytest.mark.parametrize("how", ["shutdown", "dropped"])
def test_a_pool_whose_first_worker_cannot_start_keeps_no_call(how):
    # cfutures only. submit() raised the start error after its job was recorded, and with no
    # manager ever started nothing released the job: its future and call (fn, args, kwargs)
    # leaked when the executor went, shut down or dropped.
    import gc
    import weakref
    import cfutures
    import multiprocessing
    context = _ContextStartingNoProcess(multiprocessing.get_context("forkserver"))
    ex = cfutures.ProcessPoolExecutor(1, mp_context=context)
    argument = _Argument()
    gone = weakref.ref(argument)
    with pytest.raises(OSError, match="cannot start any process"):
        ex.submit(identity, argument)
    del argument
    if how == "shutdown":
        ex.shutdown(wait=True)
    del ex
    gc.collect()
    assert gone() is None


def test_a_first_submit_calls_back_into_python_once():
    # cfutures only. The first submit of a plain call pickles it natively (C pickle, no Python
    # frame) and starts its worker and the manager thread in one call to the host; a later one
    # that needs no worker calls no Python code at all.
    import cfutures
    import multiprocessing
    ex = cfutures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    try:
        depth, entered = 0, []

        def profile(frame, event, arg):
            nonlocal depth
            if event == "call":
                if depth == 0:
                    entered.append(frame.f_code.co_name)
                depth += 1
            elif event == "return":
                depth -= 1

        sys.setprofile(profile)
        try:
            first = ex.submit(mul, 2, 3)
            second = ex.submit(mul, 3, 4)
        finally:
            sys.setprofile(None)
        assert entered == ["start"]
        assert (first.result(timeout=60), second.result(timeout=60)) == (6, 12)
    finally:
        ex.shutdown(wait=True)
