"""cfutures.dask on several hosts: a scheduler and 3 workers, each in a network namespace of its
own (tests/netns_hosts.py), so that every task and result crosses real TCP between distinct
addresses; then a host lost in the middle of the work: its processes killed, its link taken
down, its link down until the scheduler gives up on it and then up again, its link down for a
moment.

What a lost host must do to the executor: with Dask's retries (allowed-failures 3) the work
completes, every result once; without (allowed-failures 0) only tasks that the lost host held
fail (the one it was running, at least), with cfutures.WorkerDied naming its address; either way
no future stays pending and the executor goes on with the hosts that are left. A host that is
back before the scheduler gives up on it loses nothing.

Needs root (network namespaces): skipped otherwise, with the reason.
"""

import concurrent.futures
import itertools
import threading
import time
import uuid

import pytest

distributed = pytest.importorskip("distributed")

import cfutures  # noqa: E402
from cfutures.dask import DaskExecutor  # noqa: E402
from dask_helpers import (  # noqa: E402
    append_line_after, check_submits_and_remote_traceback, counted, initialize)
from netns_hosts import hosts  # noqa: E402,F401  (the module's fixture)
from netns_hosts import (  # noqa: E402  (importable by the hosts' processes)
    set_allowed_failures, slow_square, where, where_and_initializations, where_item)
from process_helpers import mul  # noqa: E402


@pytest.fixture
def executors(hosts):
    """Makes DaskExecutors on the hosts' cluster; shuts them down after the test."""
    made = []

    def make(**kwargs):
        ex = DaskExecutor(client=hosts.client, **kwargs)
        made.append(ex)
        return ex
    yield make
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)


def _until(predicate, timeout=30, what="a condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _workers(hosts):
    """The addresses of the hosts' workers now."""
    return {hosts.worker_address(i) for i in (1, 2, 3)}


# --- the executor contract across hosts ----------------------------------------------------

def test_tasks_run_on_distinct_hosts_each_initialized_once(hosts, executors):
    tag = uuid.uuid4().hex
    ex = executors(initializer=initialize, initargs=(tag,))
    outcomes = [f.result(timeout=60) for f in
                [ex.submit(where_and_initializations, 0.3) for _ in range(9)]]
    addresses = {address for address, _, _ in outcomes}
    assert addresses <= _workers(hosts) and len(addresses) >= 2, addresses
    for address, pid, initializations in outcomes:
        assert [t for t, p in initializations if t == tag] == [tag], (address, pid)
        assert [p for t, p in initializations if t == tag] == [pid]
    # One process per host: an address is always the same pid.
    assert len({(a, p) for a, p, _ in outcomes}) == len(addresses)


def test_submit_and_exceptions_with_the_remote_traceback(executors):
    ex = executors()
    check_submits_and_remote_traceback(ex, timeout=60)
    assert ex.submit(mul, 3, 3).result(timeout=60) == 9  # the executor goes on


def test_map_chunks_travel_to_several_hosts(hosts, executors):
    ex = executors()
    assert list(ex.map(mul, range(1000), range(1000), chunksize=37)) == [
        i * i for i in range(1000)]
    results = list(ex.map(where_item, range(60), itertools.repeat(0.05), chunksize=10))
    assert [x for x, _ in results] == list(range(60))
    chunks = [{a for _, a in results[i:i + 10]} for i in range(0, 60, 10)]
    assert all(len(c) == 1 for c in chunks)  # a chunk is one task: one host
    assert set.union(*chunks) <= _workers(hosts) and len(set.union(*chunks)) >= 2


def test_map_buffersize_bounds_what_is_taken_from_the_input(executors):
    ex = executors()
    taken = []
    results = ex.map(mul, counted(taken), itertools.repeat(3), chunksize=5, buffersize=3)
    assert [next(results) for _ in range(40)] == [3 * i for i in range(40)]
    assert len(taken) <= 5 * (3 + 8 + 1)  # 3 chunks in flight beyond the 8 consumed
    results.close()


def test_cancel_in_the_executor_queue_and_at_the_scheduler(hosts, executors, tmp_path):
    path = str(tmp_path / "log")
    ex = executors(max_workers=10)
    futures = [ex.submit(append_line_after, 1.5, path, str(i)) for i in range(14)]
    # 3 workers of one thread hold 2 tasks each (worker-saturation 1.1); 4 wait at the
    # scheduler; 4 in the executor.
    _until(lambda: sum(map(len, hosts.client.processing().values())) == 6, what="6 processing")
    cancelled = [f.cancel() for f in futures]
    assert cancelled.count(False) == 6
    assert cancelled[10:] == [True] * 4
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    with open(path) as f:
        ran = set(f.read().split())
    for i, (f, c) in enumerate(zip(futures, cancelled)):
        assert f.cancelled() == c
        assert (str(i) in ran) != c, i


def test_shutdown_waits_or_cancels_what_has_not_started(hosts, executors, tmp_path):
    ex = executors()
    futures = [ex.submit(where, 0.1) for _ in range(12)]
    ex.shutdown(wait=True)
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(mul, 1, 1)

    path = str(tmp_path / "log")
    ex = executors()
    futures = [ex.submit(append_line_after, 0.5, path, str(i)) for i in range(16)]
    _until(lambda: sum(map(len, hosts.client.processing().values())) == 6, what="6 processing")
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in futures)
    cancelled = [f.cancelled() for f in futures]
    assert 16 - 6 - 3 <= sum(cancelled) <= 10
    with open(path) as f:
        ran = set(f.read().split())
    assert ran == {str(i) for i, c in enumerate(cancelled) if not c}


# --- a host lost in the middle of the work -------------------------------------------------

LOST = 2  # the host the tests lose (worker 2 of 1, 2, 3)

# How a host is lost: its processes killed; its link down for good; its link down until the
# scheduler has removed the worker (5 to 6 s after its last heartbeat, see
# netns_hosts.CLUSTER_CONFIG), then up again
# (the worker, back, hears that the scheduler forgot it and shuts down); its link down for 1 s
# only, well within the 5 s the scheduler waits for a silent worker (TCP retransmits what was
# sent meanwhile: nothing is lost).
LOSSES = ["kill", "link_down", "partition", "blip"]


class Loss:
    """Loses host LOST as ``how`` says (start()); finish() joins what start() left running and
    brings the host back as it was."""

    def __init__(self, hosts, how):
        self.hosts, self.how = hosts, how
        self.thread = None
        self.errors = []
        self.started = False

    def start(self):
        self.started = True
        if self.how == "kill":
            self.hosts.kill(LOST)
            return
        self.hosts.link_down(LOST)
        if self.how in ("partition", "blip"):
            self.thread = threading.Thread(target=self._link_up_later, name="link-up-later")
            self.thread.start()

    def _link_up_later(self):
        try:
            if self.how == "partition":
                address = self.hosts.worker_address(LOST)
                self.hosts.wait_until(lambda: address not in self.hosts.scheduler_workers(), 30,
                                      f"the scheduler to remove {address}")
            else:
                time.sleep(1)
            self.hosts.link_up(LOST)
        except BaseException as exc:
            self.errors.append(exc)

    @property
    def host_survives(self):
        return self.how == "blip"

    def finish(self):
        if self.thread is not None:
            self.thread.join(40)
        assert not self.errors, self.errors
        if self.started and not self.host_survives:
            self.hosts.revive(LOST)


@pytest.fixture(params=LOSSES)
def loss(request, hosts):
    made = Loss(hosts, request.param)
    yield made
    made.finish()


@pytest.fixture
def no_retries(hosts):
    """The scheduler gives up on a task at the first death of its worker (allowed-failures 0)
    for the test."""
    previous = hosts.client.run_on_scheduler(set_allowed_failures, 0)
    yield
    hosts.client.run_on_scheduler(set_allowed_failures, previous)


def _processing_on(hosts, i):
    return set(hosts.client.processing().get(hosts.worker_address(i), ()))


def _goes_on_with_the_hosts_left(hosts, ex, loss):
    """Tasks submitted now run, on the hosts left (the lost one too if it survived)."""
    addresses = {f.result(timeout=60)[0] for f in [ex.submit(where, 0.05) for _ in range(6)]}
    expected = {hosts.worker_address(i) for i in (1, 2, 3)
                if i != LOST or loss.host_survives}
    assert addresses <= expected and len(addresses) >= 1


def test_a_map_survives_a_lost_host_with_retries(hosts, executors, loss):
    ex = executors()
    n = 10_000
    out = {}

    def consume():
        try:
            out["results"] = list(ex.map(slow_square, range(n), itertools.repeat(0.0005),
                                         chunksize=500))
        except BaseException as exc:
            out["error"] = exc
    consumer = threading.Thread(target=consume, name="map-consumer")
    started = time.monotonic()
    consumer.start()
    try:
        _until(lambda: _processing_on(hosts, LOST), what="a chunk on the host")
        time.sleep(0.5)  # mid-way: the host has run chunks and holds some, more are to come
        loss.start()
    finally:
        consumer.join(90)
    assert not consumer.is_alive(), "the map did not end"
    assert "error" not in out, out.get("error")
    assert out["results"] == [x * x for x in range(n)]  # each result once, in order
    print(f"{loss.how}: the map took {time.monotonic() - started:.1f} s")
    _goes_on_with_the_hosts_left(hosts, ex, loss)


def test_without_retries_only_the_lost_hosts_tasks_fail(hosts, executors, loss, no_retries):
    ex = executors()
    futures = [ex.submit(where, 2.0) for _ in range(6)]
    keys = [f._task.key for f in futures]
    _until(lambda: sum(map(len, hosts.client.processing().values())) == 6, what="6 processing")
    time.sleep(0.5)
    held = _processing_on(hosts, LOST)  # running one, the next waiting in the worker
    assert held, hosts.client.processing()
    ended = {}
    for key, f in zip(keys, futures):
        f.add_done_callback(lambda f, key=key: ended.setdefault(key, time.monotonic()))
    started = time.monotonic()
    loss.start()
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    failed = {key for key, f in zip(keys, futures) if f.exception() is not None}
    address = hosts.worker_address(LOST)
    for key, f in zip(keys, futures):
        error = f.exception()
        if error is None:
            assert f.result()[0] != address or loss.host_survives
        else:
            assert type(error) is cfutures.WorkerDied, repr(error)
            assert isinstance(error.__cause__, distributed.KilledWorker)
            assert address in str(error), str(error)
    if loss.host_survives:
        assert not failed
    else:
        assert failed and failed <= held, (failed, held)
    print(f"{loss.how}: {len(failed)} of {len(held)} tasks the host held failed "
          f"{', '.join(f'{ended[k] - started:.1f}' for k in sorted(failed))} s after the loss, "
          f"all done in {time.monotonic() - started:.1f} s")
    _goes_on_with_the_hosts_left(hosts, ex, loss)
