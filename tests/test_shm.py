"""cfutures' own: which pickles move their buffers to shared memory (cfutures._shm).

The parity tests check that values arrive intact with either implementation; these check that
cfutures really takes the shared-memory path where it should, and only there."""

import pickle
import random

import pytest

from cfutures import _pickling, _shm

MiB = 1 << 20


def _ship(obj):
    """(segments made, object as the receiver gets it)."""
    names = []
    data = _pickling.dumps(obj, 5, names)
    try:
        return len(names), pickle.loads(data)
    finally:
        _shm.unlink(names)


@pytest.mark.parametrize("obj, segments", [
    (b"x" * MiB, 0),  # the top level is prepare_call's job, not dumps'
    ({"k": [b"x" * MiB]}, 1),
    ([bytearray(2 * MiB), b"y" * (MiB - 1)], 1),
    ((random.randbytes(3 * MiB), random.randbytes(100), random.randbytes(1 << 17)), 1),
    ([bytes(MiB)] * 3, 1),  # one object met three times: one segment
    ({"s": "z" * (4 * MiB)}, 0),
    (list(range(300_000)), 0),
    (["s" * (1 << 17), "t" * (1 << 18), b"q" * (1 << 16), bytearray(MiB)], 1),
])
def test_nested_large_bytes_go_to_shared_memory(obj, segments):
    if isinstance(obj, bytes):
        obj = [obj]  # nested one level: still found
        segments = 1
    made, back = _ship(obj)
    assert made == segments
    assert back == obj and type(back) is type(obj)


def test_out_of_band_buffers_go_to_shared_memory():
    np = pytest.importorskip("numpy")
    a, small = np.arange(MiB // 8, dtype=np.float64), np.arange(10)
    made, back = _ship([a, small, a[::2]])  # a[::2] is not contiguous: pickled in band
    assert made == 1
    assert (back[0] == a).all() and (back[1] == small).all() and (back[2] == a[::2]).all()
    assert back[0].flags.writeable


def test_read_only_arrays_stay_read_only():
    # Protocol 5 on every Python, as the stdlib from 3.14 (see the deviations registry).
    np = pytest.importorskip("numpy")
    for n in (10, MiB):
        a = np.arange(n)
        a.flags.writeable = False
        assert not _ship(a)[1].flags.writeable


def test_bare_pickle_buffer_arrives_as_a_buffer():
    made, back = _ship([pickle.PickleBuffer(bytearray(b"q" * (2 * MiB)))])
    assert made == 1
    assert bytes(back[0]) == b"q" * (2 * MiB)
    assert pickle.loads(pickle.dumps(back[0], 5)) == bytearray(b"q" * (2 * MiB))


def test_small_calls_are_plain_pickles():
    names = []
    data = _pickling.dumps((len, (b"x" * 1000,), {}), 5, names)
    assert names == [] and pickle.loads(data) == (len, (b"x" * 1000,), {})


def test_without_room_in_dev_shm_buffers_go_through_the_pipe(monkeypatch):
    np = pytest.importorskip("numpy")

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_shm._posixshmem, "shm_open", full)
    obj = [np.arange(MiB), {"k": b"x" * (2 * MiB)}]
    made, back = _ship(obj)
    assert made == 0
    assert (back[0] == obj[0]).all() and back[1] == obj[1]
    call, names = _shm.prepare_call(len, (b"y" * (2 * MiB),), {})
    assert names == [] and call == (len, (b"y" * (2 * MiB),), {})
