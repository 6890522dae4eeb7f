"""cfutures' own: which calls and answers send their buffers as attachments (cfutures._pickling).

The parity tests check that values arrive intact with either implementation; these check that
cfutures really takes the attachment path where it should, and only there. Attachments are
handed over as the receiver would get them (buffers over the same bytes), without a process."""

import io
import pickle
import random

import pytest

from cfutures import _pickling

MiB = 1 << 20


def _ship(obj, call=False):
    """(attachments made, object as the receiver gets it)."""
    payload, attachments = _pickling.dumps_call(*obj) if call else _pickling.dumps(obj)
    received = [bytearray(a) for a in attachments]  # what a private mapping would give
    return len(attachments), _pickling.loads(bytes(payload), received)


@pytest.mark.parametrize("obj, attachments", [
    (b"x" * MiB, 1),  # top level: out of band
    ({"k": [b"x" * MiB]}, 1),
    ([bytearray(2 * MiB), b"y" * (MiB - 1)], 2),  # the rest of the pickle is large too
    ((random.randbytes(3 * MiB), random.randbytes(100), random.randbytes(1 << 17)), 1),
    ([bytes(MiB)] * 3, 1),  # one object met three times: one attachment
    ({"s": "z" * (4 * MiB)}, 1),  # a large pickle travels as an attachment itself
    (list(range(300_000)), 1),
    (["s" * (1 << 17), "t" * (1 << 18), b"q" * (1 << 16), bytearray(MiB)], 1),
    (memoryview(b"m" * (2 * MiB)), 1),
    (b"small", 0),
])
def test_large_buffers_become_attachments(obj, attachments):
    made, back = _ship(obj)
    assert made == attachments
    assert back == obj and type(back) is type(obj)


def test_large_top_level_arguments_go_out_of_band():
    big = bytearray(b"a" * (2 * MiB))
    made, back = _ship((len, (big, b"small"), {"k": b"b" * MiB}), call=True)
    assert made == 2
    assert back == (len, (big, b"small"), {"k": b"b" * MiB})
    assert type(back[1][0]) is bytearray


def test_out_of_band_buffers_become_attachments():
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
    payload, attachments = _pickling.dumps((len, (b"x" * 1000,), {}))
    assert attachments == () and pickle.loads(payload) == (len, (b"x" * 1000,), {})


def test_attachments_are_bounded_per_frame():
    obj = [bytes([i]) * MiB for i in range(_pickling.MAX_ATTACHMENTS + 5)]
    made, back = _ship(obj)
    assert made == _pickling.MAX_ATTACHMENTS  # the rest travel in the payload
    assert back == obj


def _plain_function(*args, **kwargs):
    return args, kwargs


@pytest.mark.parametrize("obj, attachments", [
    (None, 0), (3, 0), ("s", 0), (b"b", 0), (2.5, 0), (True, 0), (1j, 0),
    ((_plain_function, (1, "a", 2.0, b"x", None), {"k": 4}), 0),  # a plain call
    ((_plain_function, (), {}), 0),
    ("z" * (2 * MiB), 1),  # plain but large: still an attachment
    (b"y" * (2 * MiB), 1),
    ((_plain_function, tuple(b"x" * (MiB // 4) for _ in range(5)), {}), 1),  # large in total
    ((_plain_function, ([1],), {}), 0),  # not plain (a list argument): the general path
])
def test_plain_objects_take_the_fast_path_with_the_same_result(obj, attachments):
    # The fast path (pickle.dumps, no Pickler set up) must give what the general one would.
    made, back = _ship(obj)
    assert made == attachments
    assert back == obj
    if not attachments:
        payload, _ = _pickling.dumps(obj)
        general = io.BytesIO()
        pickler = pickle.Pickler(general, _pickling.PROTOCOL)
        pickler.dispatch_table = _pickling._dispatch_table()
        pickler.dump(obj)
        assert bytes(payload) == general.getvalue()
