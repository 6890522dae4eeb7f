#!/usr/bin/env bash
# Interpreters that pyenv does not give us, fetched or built on first use and cached:
#
#   bash tests/pythons.sh 3.14     # Debian unstable's python3.14 binary packages, made to run here
#   bash tests/pythons.sh 3.15     # the same for python3.15
#   bash tests/pythons.sh 3.13t    # CPython 3.13 free-threaded, built from Debian trixie's source
#
# The LAST line of stdout is the path of an executable python that starts directly (no wrapper, no
# environment variables), so that sys.executable works for subprocesses and for multiprocessing's
# spawn and forkserver workers. Everything else goes to stderr. The cache lives in
# ${CFUTURES_PYTHONS:-$HOME/.cache/cfutures/pythons}/VERSION/ (never in the checkout, never in pyenv's
# versions folder); a second call only checks a marker file and prints the same path.
#
# How 3.14 / 3.15 are made to run on Debian bookworm:
#   * a private apt state under CACHE/apt (own sources.list, lists and archives; the system's dpkg
#     status and sources are neither read nor written) on the Debian mirror this machine already uses;
#   * `apt-get download` of the interpreter's packages (with the -testsuite package: CPython's own
#     test.test_concurrent_futures, and -venv + python3-pip-whl for ensurepip) and of unstable's
#     libraries, glibc included (the binaries need glibc >= 2.38; bookworm has 2.36), then
#     `dpkg-deb -x` of all of them into CACHE/VERSION, so the packages' /usr is CACHE/VERSION/usr;
#   * patchelf (the system's, else Debian's own from the host's release, extracted into CACHE/tools):
#     the python binary gets the extracted ld-linux-x86-64.so.2 as its program interpreter, and the
#     binary and every shared object outside glibc itself (libpython, libssl, the lib-dynload
#     extension modules, ...) get DT_RPATH = the extracted library directory. DT_RPATH (not RUNPATH)
#     takes precedence over LD_LIBRARY_PATH, so a stray LD_LIBRARY_PATH cannot mix in bookworm's
#     libraries, and the executable's DT_RPATH also serves extension modules built later against
#     this interpreter (their libstdc++ etc. still come from the host, which a newer glibc runs fine);
#   * relocation: CPython finds its prefix from the binary's location (getpath's landmark search for
#     lib/python3.X/os.py), so sys.prefix, sys.path and sysconfig.get_paths() (include, purelib, ...)
#     already point into CACHE/VERSION/usr. What does not follow is the build-time data recorded
#     with prefix /usr: sysconfig's config vars (INCLUDEPY, LIBDIR, LIBPL, WHEEL_PKG_DIR, ... in
#     _sysconfigdata_*.py, _sysconfig_vars_*.json and build-details*.json, plus the config Makefile
#     and python-3.X.pc). setuptools' get_python_inc() reads INCLUDEPY, and Debian's ensurepip takes
#     pip from WHEEL_PKG_DIR (else it would pick bookworm's pip 23 from /usr/share/python-wheels),
#     so those files are rewritten once, the conda way: a whole /usr/... path token is replaced by
#     CACHE/VERSION/usr/... when that path exists in the extracted tree (so the host's tools such as
#     /usr/bin/install and the host's tzdata paths stay as they are). No sitecustomize, no symlinks
#     in system directories. The python3.X-config shell script is relocatable by itself; the
#     #!/usr/bin/python3.X lines of the scripts in usr/bin are pointed at the cached binary.
# Debian's patches stay in effect: the base interpreter's default scheme is "posix_local"
# (.../usr/local/lib/python3.X/dist-packages) and pip refuses to install into it (EXTERNALLY-MANAGED),
# but in a venv the "venv" scheme applies: make a venv (`$PY -m venv DIR`) and use its pip.
# Not covered: glibc's iconv modules (gconv) are looked up at the compiled-in /usr path, i.e. the
# host's; Python's codecs do not use them.
#
# 3.13t: Debian 13 (trixie)'s python3.13 source package (`apt-get source --download-only`, the deb-src
# entry of the same private state); its upstream tarball (python3.13_3.13.5.orig.tar.xz, which still
# bundles ensurepip's pip wheel) is unpacked with tar WITHOUT Debian's patches, which target Debian's
# /usr layout (dist-packages, posix_local scheme, ensurepip disabled) and would fight the
# --prefix/--with-ensurepip=install build; then
#   ./configure --disable-gil --prefix=CACHE/3.13t --with-ensurepip=install && make -j2 && make install
# (several minutes on 2 cores; the build tree is removed afterwards, the source tarball is kept). It needs gcc, make
# and the -dev packages of the extension modules (installed from the host's apt sources when run as root, else checked below). `bash tests/pythons.sh 3.13t
# --fetch-only` stops after download and unpacking; `--cached` prints the path only if the
# interpreter is already there (exit status 1 otherwise), fetching and building nothing.
#
# Environment: CFUTURES_PYTHONS (cache root), CFUTURES_DEBIAN_MIRROR (default: the host's Debian
# mirror from /etc/apt/sources.list{,.d}), CFUTURES_PYTHONS_JOBS (make -j, default 2).
set -euo pipefail

exec 3>&1 1>&2 # stdout is for the path only: everything else goes to stderr
log() { printf 'pythons.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

VERSION=${1:-}
MODE=${2:-}
case $VERSION in
  3.14 | 3.15) KIND=debian ;;
  3.13t) KIND=source ;;
  *) die "usage: bash tests/pythons.sh {3.14|3.15|3.13t} [--fetch-only|--cached]" ;;
esac
case $MODE in "" | --fetch-only | --cached) ;; *) die "unknown option $MODE" ;; esac

CACHE=${CFUTURES_PYTHONS:-$HOME/.cache/cfutures/pythons}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd -P)
DEST=$CACHE/$VERSION
if [ $KIND = debian ]; then PY=$DEST/usr/bin/python$VERSION; else PY=$DEST/bin/python3.13t; fi

# Fast path: a finished cache entry.
done_already() { [ -f "$DEST/.complete" ] && [ -x "$PY" ] && [ "$(cat "$DEST/.complete")" = "$PY" ]; }
if done_already; then echo "$PY" >&3; exit 0; fi
# --cached: the path if it is there, else exit status 1 (nothing fetched or built).
[ "$MODE" != --cached ] || exit 1

# Where the cache must not be.
pyenv_versions=$(realpath -m "${PYENV_ROOT:-$HOME/.pyenv}")/versions
checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
case $CACHE/ in
  "$pyenv_versions"/*) die "the cache $CACHE is inside pyenv's versions folder" ;;
  "$checkout"/*) die "the cache $CACHE is inside the checkout $checkout" ;;
esac

# One builder at a time per version (parallel first uses wait for each other).
exec 9>"$CACHE/.$VERSION.lock"
flock 9
if done_already; then echo "$PY" >&3; exit 0; fi
start=$SECONDS

# ---------------------------------------------------------------- private apt state
ARCH=$(dpkg --print-architecture)
case $ARCH in
  amd64) MULTIARCH=x86_64-linux-gnu ;;
  arm64) MULTIARCH=aarch64-linux-gnu ;;
  *) die "unsupported architecture $ARCH" ;;
esac
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

# The Debian mirror this machine's own apt uses (the only one that may be reachable): the first URI
# of a `deb` entry (one-line or deb822 format) for the host's release, not a -security one.
detect_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    case $f in
      *.sources)
        awk -v cn="$CODENAME" '
          function flush() {
            if (on && deb && (suites " ") ~ (" " cn " ")) { n = split(uris, a, " "); for (i = 1; i <= n; i++) print a[i] }
            uris = ""; suites = ""; on = 1; deb = 0
          }
          BEGIN { on = 1 }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
          tolower($1) == "uris:" { $1 = ""; uris = $0 }
          tolower($1) == "suites:" { $1 = ""; suites = $0 }
          tolower($1) == "enabled:" { on = (tolower($2) != "no") }
          END { flush() }' "$f"
        ;;
      *)
        awk -v cn="$CODENAME" '$1 == "deb" {
            for (i = 2; i < NF; i++) if ($i ~ /^[a-z+]+:\/\//) { if ($(i + 1) == cn) print $i; break } }' "$f"
        ;;
    esac
  done | grep -E '^https?://' | head -n1
}
MIRROR=${CFUTURES_DEBIAN_MIRROR:-$(detect_mirror || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}

APTDIR=$CACHE/apt
APT_OPTS=(
  -o "Dir::State=$APTDIR/state" -o "Dir::State::Lists=$APTDIR/state/lists"
  -o "Dir::State::status=/dev/null" -o "Dir::Cache=$APTDIR/cache"
  -o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "APT::Architecture=$ARCH" -o "APT::Architectures=$ARCH" -o "Acquire::Languages=none"
)
# As root, apt would download as user _apt, who may not write into the cache directory.
[ "$(id -u)" != 0 ] || APT_OPTS+=(-o "APT::Sandbox::User=root")
apt_get() { apt-get -q "${APT_OPTS[@]}" "$@"; }
apt_cache() { apt-cache "${APT_OPTS[@]}" "$@"; }

apt_ready=
apt_setup() {
  [ -z "$apt_ready" ] || return 0
  local signed=
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
  mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial"
  cat >"$APTDIR/sources.list" <<EOF
# private apt state of tests/pythons.sh (the system's apt configuration is untouched)
deb ${signed}$MIRROR unstable main
deb ${signed}$MIRROR $CODENAME main
deb-src ${signed}$MIRROR trixie main
EOF
  log "apt-get update (private state in $APTDIR, mirror $MIRROR)"
  apt_get update >&2 || die "apt-get update failed (mirror $MIRROR; set CFUTURES_DEBIAN_MIRROR)"
  apt_ready=1
}

# patchelf: the system's, else Debian's for the host's release (a standalone binary), cached.
PATCHELF=
find_patchelf() {
  if command -v patchelf >/dev/null; then PATCHELF=$(command -v patchelf); return; fi
  PATCHELF=$CACHE/tools/usr/bin/patchelf
  [ -x "$PATCHELF" ] && "$PATCHELF" --version >/dev/null 2>&1 && return
  apt_setup
  local tmp
  tmp=$(mktemp -d "$CACHE/.patchelf.XXXXXX")
  log "downloading patchelf/$CODENAME"
  (cd "$tmp" && apt_get download "patchelf/$CODENAME") >&2
  mkdir -p "$CACHE/tools"
  dpkg-deb -x "$tmp"/patchelf_*.deb "$CACHE/tools"
  rm -rf "$tmp"
  "$PATCHELF" --version >&2
}

# ---------------------------------------------------------------- the checks of a finished tree
# $1: the python to check. The imports the project needs, a spawn and a forkserver worker (both run
# sys.executable), and a venv with pip whose site-packages is inside the venv.
verify() {
  local py=$1 tmp
  log "checking $py"
  tmp=$(mktemp -d)
  # (a file, not stdin: spawn's workers re-run the main module from its path)
  cat >"$tmp/check.py" <<'EOF'
import sys, sysconfig, os
import ssl, ctypes, sqlite3, lzma, bz2, zlib, _decimal, readline, multiprocessing
import concurrent.futures, test.test_concurrent_futures
ctypes.CDLL(None).getpid()
ssl.create_default_context()
if __name__ == "__main__":
    for method in ("spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            assert ex.submit(os.getpid).result(timeout=60) != os.getpid()
    inc = sysconfig.get_config_var("INCLUDEPY")
    assert os.path.isfile(os.path.join(inc, "Python.h")), inc
    assert os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(sys.version, "| GIL", "enabled" if gil else "disabled", file=sys.stderr)
    print("test_concurrent_futures:", os.path.dirname(test.test_concurrent_futures.__file__),
          file=sys.stderr)
EOF
  "$py" "$tmp/check.py"
  "$py" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" --version >&2
  cat >"$tmp/check_venv.py" <<'EOF'
import sys, sysconfig, os
venv = os.path.realpath(sys.argv[1])
purelib = os.path.realpath(sysconfig.get_paths()["purelib"])
assert purelib.startswith(venv + os.sep), (purelib, venv)
import pip
assert os.path.realpath(pip.__file__).startswith(venv + os.sep), pip.__file__
EOF
  "$tmp/venv/bin/python" "$tmp/check_venv.py" "$tmp/venv"
  # A C extension compiles against its headers with the host's compiler (Debian's pyconfig.h
  # includes a multiarch one by a path of its own).
  printf '#include <Python.h>\nint main(void) { return PY_MAJOR_VERSION != 3; }\n' >"$tmp/ext.c"
  cc -fsyntax-only -I"$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    "$tmp/ext.c"
  rm -rf "$tmp"
}

finish() {
  verify "$PY"
  [ "$VERSION" != 3.13t ] || "$PY" -c 'import sys; assert not sys._is_gil_enabled(), "GIL enabled"'
  echo "$PY" >"$DEST/.complete"
  log "$VERSION ready in $((SECONDS - start)) s: $(du -sh "$DEST" | cut -f1) in $DEST"
  echo "$PY" >&3
  exit 0
}

# ---------------------------------------------------------------- 3.14 / 3.15 from Debian unstable
fetch_debian() {
  local v=$VERSION pkgs extra tmp libdir ld p
  apt_setup
  find_patchelf
  apt_cache show "python$v-minimal/unstable" >/dev/null 2>&1 ||
    die "Debian unstable has no python$v (any more?)"
  pkgs=("python$v-minimal" "libpython$v-minimal" "libpython$v-stdlib" "libpython$v" "python$v"
    "libpython$v-dev" "python$v-dev" "libpython$v-testsuite"
    # ensurepip (Debian's takes pip's wheel from WHEEL_PKG_DIR, filled by python3-pip-whl)
    python3-pip-whl python3-setuptools-whl
    # the libraries, glibc first (the binaries want glibc >= 2.38). python3.15 also links
    # libgcc_s.so.1. (libmpdec4 is not used as of 3.14.10/3.15.2: _decimal has its own libmpdec.)
    libc6 libssl3t64 libexpat1 libzstd1 libmpdec4 libffi8 zlib1g libbz2-1.0 liblzma5
    libsqlite3-0 libreadline8t64 libncursesw6 libtinfo6 libuuid1 libdb5.3t64 libgcc-s1)
  apt_cache show "python$v-venv/unstable" >/dev/null 2>&1 && pkgs+=("python$v-venv")
  # Any other library the interpreter's own packages depend on directly (a later upload may add one);
  # the ldd check below catches what this misses.
  local py_pkgs=()
  for p in "${pkgs[@]}"; do [[ $p != *python$v* ]] || py_pkgs+=("$p/unstable"); done
  extra=$(apt_cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${py_pkgs[@]}" 2>/dev/null |
    awk '$1 ~ /Depends:$/ && $2 ~ /^(lib|zlib1g)/ && $2 !~ /-dev$/ {print $2}' | sort -u)
  for p in $extra; do
    [[ " ${pkgs[*]} " == *" $p "* ]] || { log "also fetching $p (a dependency)"; pkgs+=("$p"); }
  done

  rm -rf "$DEST"
  mkdir -p "$DEST"
  tmp=$(mktemp -d "$CACHE/.debs.XXXXXX")
  log "downloading ${#pkgs[@]} packages from unstable: ${pkgs[*]}"
  (cd "$tmp" && apt_get download "${pkgs[@]/%//unstable}") >&2
  local deb
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$DEST"; done
  # glibc's own files are left unpatched (they need no search path and must stay as built).
  dpkg-deb -c "$tmp"/libc6_*.deb | awk '{print $6}' | sed 's|^\./|/|' >"$DEST/.glibc-files"
  ls "$tmp" >"$DEST/.packages"
  rm -rf "$tmp"

  libdir=$DEST/usr/lib/$MULTIARCH
  ld=$(ls "$libdir"/ld-linux*.so.* 2>/dev/null | head -n1)
  [ -n "$ld" ] || die "no ld-linux in the extracted libc6"
  [ -x "$DEST/usr/bin/python$v" ] || die "no usr/bin/python$v in the extracted packages"

  log "patchelf: interpreter $ld, rpath $libdir"
  "$PATCHELF" --set-interpreter "$ld" --force-rpath --set-rpath "$libdir" "$DEST/usr/bin/python$v"
  local f rel n=0
  while IFS= read -r -d '' f; do
    rel=${f#"$DEST"}
    grep -qxF "$rel" "$DEST/.glibc-files" && continue
    [ "$(od -An -tx1 -N4 "$f" | tr -d ' \n')" = 7f454c46 ] || continue # ELF
    [ "$(od -An -tu1 -j16 -N1 "$f" | tr -d ' ')" = 3 ] || continue     # ET_DYN
    "$PATCHELF" --print-needed "$f" >/dev/null 2>&1 || continue        # has a dynamic section
    "$PATCHELF" --force-rpath --set-rpath "$libdir" "$f"
    n=$((n + 1))
  done < <(find "$DEST" -type f \( -name '*.so' -o -name '*.so.*' \) -print0)
  log "patched $n shared objects"

  # ldd, with the extracted loader, on the binary and on every shared object but glibc's own: each
  # dependency must resolve inside the tree.
  local out bad=
  while IFS= read -r -d '' f; do
    rel=${f#"$DEST"}
    grep -qxF "$rel" "$DEST/.glibc-files" && continue
    [ "$(od -An -tx1 -N4 "$f" | tr -d ' \n')" = 7f454c46 ] || continue
    out=$("$ld" --list "$f" 2>&1) || { bad+="$rel: $out"$'\n'; continue; }
    out=$(grep -v -e "=> $DEST/" -e linux-vdso -e "^[[:space:]]*$ld " -e 'statically linked' <<<"$out" || true)
    [ -z "$out" ] || bad+="$rel: $out"$'\n'
  done < <(find "$DEST" -type f \( -name '*.so' -o -name '*.so.*' -o -path "$DEST/usr/bin/python$v" \) -print0)
  [ -z "$bad" ] || die "libraries missing or from outside $DEST (add their packages to pkgs):"$'\n'"$bad"

  # Build-time paths (prefix /usr) -> the tree; see the header.
  "$PY" -I -S - "$DEST" "$v" <<'EOF'
import glob, os, re, sys
root, v = sys.argv[1], sys.argv[2]
stdlib = f"{root}/usr/lib/python{v}"
token = re.compile(r"""(?<=['"\s])/usr(?:/[^\s:'"]*)?""")
def fix(m):
    return root + m.group(0) if os.path.lexists(root + m.group(0)) else m.group(0)
files = [f for pat in ("_sysconfigdata_*.py", "_sysconfig_vars_*.json", "build-details*.json",
                       "config-*/Makefile") for f in glob.glob(f"{stdlib}/{pat}")]
for f in files:
    if os.path.islink(f):
        continue
    with open(f) as fh:
        text = fh.read()
    new = token.sub(fix, text)
    if new != text:
        with open(f, "w") as fh:
            fh.write(new)
        print("relocated", f[len(root):], file=sys.stderr)
for f in glob.glob(f"{root}/usr/lib/*/pkgconfig/python-*.pc"):
    with open(f) as fh:
        text = fh.read()
    with open(f, "w") as fh:
        fh.write(re.sub(r"(?m)^prefix=/usr$", f"prefix={root}/usr", text))
for f in glob.glob(f"{stdlib}/__pycache__/_sysconfigdata_*"):
    os.remove(f)
# The scripts' "#! /usr/bin/python3.X" lines.
for f in glob.glob(f"{root}/usr/bin/*"):
    if os.path.islink(f) or not os.path.isfile(f):
        continue
    with open(f, "rb") as fh:
        data = orig = fh.read()
    if data.startswith(b"\x7fELF"):
        continue
    first, nl, rest = data.partition(b"\n")
    if re.fullmatch(rb"#! ?/usr/bin/python3[.0-9]*", first):
        data = f"#!{root}/usr/bin/python{v}".encode() + nl + rest
    # python3.15-config (3.15's python-config.sh) sets LIBDEST=${prefix_real}/... and then
    # relocates it again, which doubles the prefix (--ldflags, --configdir) anywhere but in /usr;
    # 3.14's script says ${prefix} there.
    data = data.replace(b"LIBDEST=${prefix_real}/", b"LIBDEST=${prefix}/")
    if data != orig:
        with open(f, "wb") as fh:
            fh.write(data)
EOF
  # Debian's pyconfig.h picks the multiarch one with #include <TRIPLET/python3.X/pyconfig.h>,
  # found through the compiler's /usr/include: make that include relative to the extracted file.
  sed -i -E 's|^(#[[:space:]]*include) <([a-z0-9_]+-[a-z0-9_-]+/python[0-9.]+/pyconfig\.h)>|\1 "../\2"|' \
    "$DEST/usr/include/python$v/pyconfig.h"
  # Debian's sitecustomize.py is a symlink to /etc/python3.X/: point it at the extracted one.
  [ -L "$DEST/usr/lib/python$v/sitecustomize.py" ] && [ -e "$DEST/etc/python$v/sitecustomize.py" ] &&
    ln -sfn "../../../etc/python$v/sitecustomize.py" "$DEST/usr/lib/python$v/sitecustomize.py"

  [ "$MODE" != --fetch-only ] || { log "fetched into $DEST (not checked: --fetch-only)"; exit 0; }
  finish
}

# ---------------------------------------------------------------- 3.13t from Debian trixie's source
build_source() {
  local srcdir=$CACHE/src build tarball src jobs=${CFUTURES_PYTHONS_JOBS:-2}
  mkdir -p "$srcdir"
  tarball=$(ls "$srcdir"/python3.13_*.orig.tar.* 2>/dev/null | grep -v "\.asc$" | tail -n1 || true)
  if [ -z "$tarball" ]; then
    apt_setup
    log "apt-get source --download-only python3.13/trixie"
    (cd "$srcdir" && apt_get source --download-only python3.13/trixie) >&2
    tarball=$(ls "$srcdir"/python3.13_*.orig.tar.* | grep -v "\.asc$" | tail -n1)
  fi
  # The packages whose headers the extension modules need (libgdbm-dev etc. are optional).
  local missing=() p
  for p in gcc make libssl-dev libffi-dev libsqlite3-dev liblzma-dev libbz2-dev zlib1g-dev \
    libreadline-dev libncurses-dev uuid-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
  done
  # As root (CI on a fresh machine) they come from the host's own apt sources, as
  # tests/system-deps.sh installs its packages; otherwise say which are missing.
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    missing=()
  fi
  [ ${#missing[@]} -eq 0 ] ||
    die "building 3.13t needs these Debian packages: apt-get install ${missing[*]}"

  build=$CACHE/.build-3.13t
  rm -rf "$build" "$DEST"
  mkdir -p "$build"
  log "unpacking $(basename "$tarball") (upstream source, without Debian's patches)"
  tar -xf "$tarball" -C "$build"
  src=$(ls -d "$build"/Python-3.13*/)
  src=${src%/}
  [ -x "$src/configure" ] || die "no configure in $src"
  if [ "$MODE" = --fetch-only ]; then log "unpacked into $src (--fetch-only: not built)"; exit 0; fi

  mkdir -p "$build/obj"
  log "configure --disable-gil --prefix=$DEST --with-ensurepip=install; make -j$jobs (takes a while)"
  (cd "$build/obj" && "$src/configure" --disable-gil --prefix="$DEST" --with-ensurepip=install \
    >"$build/configure.log" 2>&1) || { tail -n 30 "$build/configure.log"; die "configure failed ($build/configure.log)"; }
  (cd "$build/obj" && make -j"$jobs" >"$build/make.log" 2>&1) ||
    { tail -n 40 "$build/make.log"; die "make failed ($build/make.log)"; }
  grep -A8 -E 'necessary bits to build these optional modules were not found|Failed to build these modules' \
    "$build/make.log" >&2 || true
  (cd "$build/obj" && make install >"$build/install.log" 2>&1) ||
    { tail -n 40 "$build/install.log"; die "make install failed ($build/install.log)"; }
  [ -x "$PY" ] || die "make install did not create $PY"
  rm -rf "$build"
  finish
}

if [ $KIND = debian ]; then fetch_debian; else build_source; fi
