#!/usr/bin/env bash
# Installs what the test suite needs and runs it on every CPython >= 3.9 the machine has:
#   * Debian packages: libpython3.11-testsuite (CPython's test_concurrent_futures, which pyenv's
#     3.11 lacks) and doctest-dev (the C++ core tests);
#   * the whole suite (`pip install '.[test]'`, `pytest`, CPython's test_concurrent_futures
#     included) for the default python3, the oldest CPython and the newest one that ships
#     test_concurrent_futures;
#   * the parity tests alone (`pip install . pytest pytest-timeout`, no upstream suite, no
#     third-party extras) for every other CPython >= 3.9 under pyenv.
# Each Python gets a fresh venv, .venv for the default one and .venv-X.Y for the others.
# Usage: bash tests/run.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -e /usr/lib/python3.11/test/test_concurrent_futures.py ] || need+=(libpython3.11-testsuite)
[ -e /usr/include/doctest/doctest.h ] || need+=(doctest-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "warning: missing Debian packages ${need[*]} (their tests will be skipped)" >&2
  fi
fi

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
has_suite() { ls -d "$(dirname "$1")"/../lib/python"$2"/test/test_concurrent_futures* >/dev/null 2>&1; }

default_version=$(version_of python3)
# One interpreter per X.Y >= 3.9 under pyenv, oldest first (the default's version excluded).
others=()
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for py in $(ls -d "$root"/versions/3.*/bin/python3 2>/dev/null | sort -V); do
  v=$(version_of "$py") || continue
  [ "$(printf '%s\n3.9\n' "$v" | sort -V | head -1)" = 3.9 ] || continue
  [ "$v" = "$default_version" ] && continue
  others+=("$v=$py")
done

oldest=""; newest=""
[ ${#others[@]} -gt 0 ] && oldest=${others[0]%%=*}
for entry in "${others[@]}"; do
  has_suite "${entry#*=}" "${entry%%=*}" && newest=${entry%%=*}
done

run_with() {  # run_with PYTHON VENV full|parity [pytest args]
  local python=$1 venv=$2 scope=$3; shift 3
  echo "=== $("$python" --version): $scope suite in $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if [ "$scope" = full ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check '.[test]'
    "$venv/bin/pytest" "$@"
  else
    "$venv/bin/pip" install -q --disable-pip-version-check . pytest pytest-timeout
    "$venv/bin/python" -m cfutures info
    "$venv/bin/pytest" --ignore=tests/test_upstream.py "$@"
  fi
}

run_with python3 .venv full "$@"
for entry in "${others[@]}"; do
  v=${entry%%=*}
  if [ "$v" = "$oldest" ] || [ "$v" = "$newest" ]; then scope=full; else scope=parity; fi
  # The C++ core does not depend on the Python version: its tests run once, with the default.
  CFUTURES_CORE_TESTS=0 run_with "${entry#*=}" ".venv-$v" "$scope" "$@"
done
