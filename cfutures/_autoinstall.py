"""Run at interpreter start-up by ``cfutures-autoinstall.pth`` when CFUTURES_INSTALL=1 is set, or
CFUTURES_DASK (process pools then run on that Dask cluster: cfutures.dask).

This is how a program started with cfutures installed passes it on to the Python processes it
starts (subprocesses, spawned workers), whose command lines cannot be changed. Without the
variable the .pth costs one dictionary lookup.

CFUTURES_TEST_PATH (used by the CPython test-suite harness) names a directory to add to the
``test`` package's path, for interpreters whose own ``test`` package lacks test_concurrent_futures
(Debian ships it separately, in libpython3.X-testsuite).
"""

import os


def _main():
    extra = os.environ.get("CFUTURES_TEST_PATH")
    if extra:
        try:
            import test
            if extra not in test.__path__:
                test.__path__.append(extra)
        except ImportError:
            pass
    import cfutures
    if cfutures._IN_SUBINTERPRETER:
        return  # a subinterpreter's start-up: cfutures runs in the main interpreter only
    from cfutures._install import install
    install()


_main()
