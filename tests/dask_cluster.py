"""The Dask cluster the tests run on, and an executor factory on it: module-scoped fixtures that
test modules import (test_dask.py, test_executor_contract.py; each module gets its own cluster).

The cluster runs in a child process (cfutures.dask.start_local_cluster, as `run --dask local`
does): its workers are not this process's children, so a worker killed by a test and restarted
by Dask is no leak. Import this module only where distributed is installed.
"""

import os

import distributed
import pytest

import cfutures.dask
from cfutures.dask import DaskExecutor
from dask_helpers import length
from process_helpers import fails, mul

WORKERS = 2  # worker processes of the module's cluster, one thread each


@pytest.fixture(scope="module")
def cluster():
    os.environ["CFUTURES_DASK_WORKERS"] = str(WORKERS)
    try:
        local = cfutures.dask.start_local_cluster()
    finally:
        del os.environ["CFUTURES_DASK_WORKERS"]
    yield local
    local.close()


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster.address) as client:
        client.wait_for_workers(WORKERS, timeout=60)
        # Threads Dask starts on first use (and keeps) start here, not in a test (no_leaks).
        distributed.utils._offload_executor.submit(int).result()
        with DaskExecutor(client=client) as ex:
            list(ex.map(mul, range(4), range(4), chunksize=2))
            ex.submit(fails).exception()
            ex.submit(length, b"x" * 200_000).result()
        yield client


class DaskFactory:
    def __init__(self, client):
        self.client, self.made = client, []

    def __call__(self, **kwargs):
        ex = DaskExecutor(client=self.client, **kwargs)
        self.made.append(ex)
        return ex

    def close(self):
        for ex in self.made:
            ex.shutdown(wait=True, cancel_futures=True)
