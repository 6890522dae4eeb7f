#!/usr/bin/env bash
# Installs what the test suite needs and runs all of it:
#   * Debian packages: libpython3.11-testsuite (CPython's test_concurrent_futures, which pyenv's
#     3.11 lacks) and doctest-dev (the C++ core tests);
#   * for the default python3 and for the newest CPython on the machine that ships
#     test_concurrent_futures: a fresh venv, `pip install '.[test]'`, `pytest`.
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

# The newest CPython (other than the default) whose stdlib ships test_concurrent_futures.
newest_with_suite() {
  local default_version root
  default_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for py in $(ls -d "$root"/versions/3.*/bin/python3 2>/dev/null | sort -V -r); do
    v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    [ "$v" = "$default_version" ] && return 0
    if ls -d "$(dirname "$py")"/../lib/python"$v"/test/test_concurrent_futures* >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
}

run_with() {  # run_with PYTHON VENV [env assignments...] -- [pytest args]
  local python=$1 venv=$2; shift 2
  echo "=== $("$python" --version) in $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check '.[test]'
  local assignments=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do assignments+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  env "${assignments[@]}" "$venv/bin/pytest" "$@"
}

run_with python3 .venv -- "$@"
second=$(newest_with_suite || true)
if [ -n "$second" ]; then
  run_with "$second" .venv-newest CFUTURES_CORE_TESTS=0 -- "$@"
else
  echo "=== no second CPython with test_concurrent_futures on this machine"
fi
