"""The rows of `python -m cfutures bench --peers` on each peer (multiprocessing.Pool, loky, pebble,
mpire, joblib); the stdlib's and cfutures' cells come from the other files, in the same groups.
A peer that is not installed, or has no equivalent of a row, is skipped with the reason."""

import pytest

from cfutures._bench import peers


@pytest.mark.parametrize("peer", list(peers.PEERS))
@pytest.mark.parametrize("workload", peers.PEER_ROWS)
def test_peer(measure, workload, peer):
    assert measure(workload, peer) > 0
