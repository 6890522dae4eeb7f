"""Locating CPython's test_concurrent_futures for an interpreter."""

import importlib.util
import os
import sys

DEBIAN_TESTSUITE = "/usr/lib/python{0}.{1}/test"


def locate():
    """Returns (extra_test_path or None, description) or raises LookupError with the reason.

    The suite is a module up to 3.11 and a package from 3.12. The interpreter's own ``test``
    package is tried first; pyenv builds ship it without test_concurrent_futures, so for them
    Debian's libpython3.X-testsuite (same minor version) is used.
    """
    try:
        if importlib.util.find_spec("test.test_concurrent_futures") is not None:
            return None, "the interpreter's test package"
    except ImportError:
        pass
    debian = DEBIAN_TESTSUITE.format(*sys.version_info[:2])
    if (os.path.exists(os.path.join(debian, "test_concurrent_futures.py"))
            or os.path.isdir(os.path.join(debian, "test_concurrent_futures"))):
        return debian, f"Debian's testsuite in {debian}"
    raise LookupError(f"no test_concurrent_futures for Python {sys.version_info[0]}."
                      f"{sys.version_info[1]} (install libpython{sys.version_info[0]}."
                      f"{sys.version_info[1]}-testsuite)")
