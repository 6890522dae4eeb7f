#!/usr/bin/env bash
# The Debian packages the test suite needs beyond PyPI, installed when missing (the one place that
# knows them; nox's sessions call this, and so can you, once, before the fast `pytest`):
#   * doctest-dev: the headers of the C++ core's tests (tests/test_core_cpp.py);
#   * gdb: the stacks a hung C++ test case prints before it aborts (tests/cpp/main.cpp);
#   * libpython3.11-testsuite: CPython's test_concurrent_futures for 3.11, which pyenv's 3.11
#     lacks (tests/test_upstream.py, tests/upstream/suite.py).
# Without root it only warns: the tests that need a missing package skip themselves.
set -euo pipefail

need=()
[ -e /usr/lib/python3.11/test/test_concurrent_futures.py ] || need+=(libpython3.11-testsuite)
[ -e /usr/include/doctest/doctest.h ] || need+=(doctest-dev)
command -v gdb >/dev/null || need+=(gdb)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "warning: missing Debian packages ${need[*]} (the tests that need them will skip)" >&2
fi
