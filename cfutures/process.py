"""ProcessPoolExecutor: cfutures' side of concurrent.futures.process.

The native process pool is not written yet (issue 3): until then this module re-exports the
stdlib's ProcessPoolExecutor, whose futures are stdlib futures. cfutures.wait and
cfutures.as_completed accept them. Recorded in tests/deviations.py.
"""

from concurrent.futures.process import (  # noqa: F401
    BrokenProcessPool,
    ProcessPoolExecutor,
    _check_system_limits,
)
