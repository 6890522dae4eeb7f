"""ProcessPoolExecutor: cfutures' side of concurrent.futures.process.

The native process pool is not written yet (issue 3): until then this module forwards to the
stdlib's concurrent.futures.process (ProcessPoolExecutor, BrokenProcessPool and the module's
internals), whose futures are stdlib futures; cfutures.wait and cfutures.as_completed accept them.
Recorded in tests/deviations.py.
"""

from concurrent.futures import process as _std_process
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor  # noqa: F401


def __getattr__(name):
    return getattr(_std_process, name)
