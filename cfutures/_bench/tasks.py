"""What every row shares: the two implementations a row compares (IMPLS, _module), the tasks the
pools run (noop, identity) and the round-trip loop. Worker processes unpickle noop and identity
from here, so this module stays small."""

import concurrent.futures
import time

import cfutures

IMPLS = {"stdlib": "concurrent.futures", "cfutures": "cfutures"}


def _module(name):
    return concurrent.futures if name == "stdlib" else cfutures


def noop():
    pass


def identity(x):
    return x


def _round_trips(ex, n, fn=noop, *args):
    for _ in range(20):
        ex.submit(fn, *args).result()
    t0 = time.perf_counter()
    for _ in range(n):
        ex.submit(fn, *args).result()
    return (time.perf_counter() - t0) / n
