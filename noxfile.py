"""The test matrix: one nox session per Python and kind of run.

    nox                      # the CI matrix (DEFAULT_SESSIONS below); .ci/run runs exactly this
    nox -l                   # every session
    nox -s parity-3.12       # one session; `nox -s parity` runs it on every Python
    nox -s full-3.11 -- -x   # arguments after `--` go to pytest (or to the benchmark)

Kinds of run (pytest's markers are registered in pyproject.toml, whose addopts leave the slow
ones out of a plain `pytest`; `-m ...` here selects them):

    full        the whole suite but other projects': pytest -m "not external" (parity tests,
                the C++ core plain and under the sanitizers, CPython's test_concurrent_futures)
    parity      pytest's default selection, the parity tests, without the C++ core
    sanitizers  the C++ core built with TSan and with ASan + UBSan: pytest -m sanitizers
    upstream    CPython's test_concurrent_futures on cfutures: pytest -m upstream
    external    other projects' suites (tests/test_external_suites.py; CFUTURES_EXTERNAL picks
                which, see tests/external/suites.py): pytest -m external
    wheel       the parity tests against the wheel of tools/build-wheels.sh, installed with
                `pip install --no-index --only-binary :all:` and no compiler on PATH
    portable    the parity tests and the documentation's examples against the portable build
                (CFUTURES_NATIVE=0: no native core, the stdlib's pools, as off Linux)
    docs        the documentation site (mkdocs build --strict)
    bench       python -m cfutures bench (CI passes `-- --quick --repeat 1`)
    apps        python -m cfutures bench --apps, the real programs, with the apps extra
                (CI passes `-- --quick --repeat 1`)

full, parity and upstream also exist for 3.14, 3.15 and 3.13t (free-threaded, run with
PYTHON_GIL=0), runnable once `bash tests/pythons.sh VERSION` has fetched or built that interpreter
(the README's matrix command and .ci/run call it for the three first).

The C++ core does not depend on the Python version: its tests (tests/test_core_cpp.py) run in the
sessions of DEFAULT only (CFUTURES_CORE_TESTS=0 skips them elsewhere), and `sanitizers` exists
for DEFAULT only. Every session installs the package from this checkout into a fresh venv under
.nox/ (`pip install .`, not editable: the suite tests what users get); the CMake build directory
build/<wheel tag> is kept between sessions of one Python, so only the first build is slow.

Interpreters: nox looks for `python3.X` on PATH. pyenv's shims are on PATH but answer only for
the active version, so when pyenv is there this file lists every installed pyenv CPython of
PYTHONS in PYENV_VERSION, behind the active one (`python3` stays what it was).
"""

import os
import re
import shutil
import subprocess

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
# Interpreters this machine does not have, fetched or built by tests/pythons.sh into a cache
# outside the checkout: `bash tests/pythons.sh 3.14` (once) makes the sessions of 3.14 runnable.
FETCHED_PYTHONS = ["3.14", "3.15", "3.13t"]
DEFAULT = "3.11"  # Debian bookworm's python3 (its testsuite package serves pyenv's 3.11 too)

# What `nox` alone runs, and CI with it:
#   * on the default Python, what the README's fast command (a plain pytest there, which CI runs
#     first) leaves out: the sanitizers, then other projects' suites (CPython's own suite runs
#     in the full sessions, 3.9's, 3.13's and 3.15's; `nox -s upstream-3.11` runs 3.11's);
#   * the whole suite, CPython's own included, on the oldest (3.9), the newest (3.15) and the
#     free-threaded (3.13t) Pythons;
#   * the parity tests on 3.14, cfutures' side (3.13's semantics are 3.13t's; 3.10 sits between
#     3.9 and 3.11, and `nox -s parity-3.10` runs it). The CI on record ran past its 90 minutes
#     with full-3.14 and parity-3.10 in the list;
#   * the parity tests against the released wheel on 3.11 and 3.12 (`wheel`: built from the
#     sdist by tools/build-wheels.sh, repaired by auditwheel, installed with no compiler on
#     PATH), and on 3.11 against the portable build (`portable`: no native core, as off Linux);
#   * the documentation site, built with warnings as errors (`docs`).
# .ci/run prints each step's time. Measured on a fresh clone on 2026-12-06 (AMD EPYC, 2 vCPUs,
# interpreters cached): the fast command 8.5 minutes with its install, sanitizers 7, full-3.9 9,
# parity-3.14 5, upstream-3.11 4; full-3.13t and full-3.15 about 11 each (the CI on record).
DEFAULT_SESSIONS = ["sanitizers-3.11", "full-3.9", "wheel-3.11", "wheel-3.12", "full-3.13t",
                    "parity-3.14", "full-3.15", "external-3.11", "portable-3.11", "docs-3.11"]

nox.needs_version = ">=2025.5.1"
nox.options.sessions = DEFAULT_SESSIONS
nox.options.download_python = "never"  # only the machine's Pythons; never fetch one


def _expose_pyenv_pythons():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = os.path.join(root, "versions")
    if not os.path.isdir(versions):
        return
    newest = {}  # X.Y -> (Z, "X.Y.Z") of the newest installed X.Y.Z
    for name in sorted(os.listdir(versions)):
        m = re.fullmatch(r"(\d+\.\d+)\.(\d+)", name)
        if m and m.group(1) in PYTHONS:
            newest[m.group(1)] = max(newest.get(m.group(1), (-1, "")), (int(m.group(2)), name))
    active = os.environ.get("PYENV_VERSION", "")
    if not active and shutil.which("pyenv"):
        active = subprocess.run(["pyenv", "version-name"], capture_output=True,
                                text=True).stdout.strip()
    names = [v for v in active.split(":") if v]
    names += [name for _, name in newest.values() if name not in names]
    os.environ["PYENV_VERSION"] = ":".join(names)


_expose_pyenv_pythons()


def _expose_fetched_pythons():
    """Puts the directory of each interpreter tests/pythons.sh has already made on PATH, where nox
    looks for python3.X (nothing is fetched or built here)."""
    for version in FETCHED_PYTHONS:
        found = subprocess.run(["bash", "tests/pythons.sh", version, "--cached"],
                               capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            os.environ["PATH"] = (os.path.dirname(found.stdout.strip().splitlines()[-1])
                                  + os.pathsep + os.environ["PATH"])


_expose_fetched_pythons()


def _system_deps(session):
    session.run("bash", "tests/system-deps.sh", external=True)


def _core_env(session):
    # The multi-host Dask tests (tests/netns_hosts.py) run in the fast command, on DEFAULT.
    only_once = {"CFUTURES_MULTIHOST": "0"}
    return only_once if session.python == DEFAULT else {"CFUTURES_CORE_TESTS": "0", **only_once}


def _install_with_test_deps(session):
    """`pip install '.[test,green]'` (on a free-threaded Python, the test extra without mypy:
    _test_deps; gevent and eventlet have no free-threaded wheels)."""
    if not session.python.endswith("t"):
        session.install(".[test,green]")
        return
    session.install(".", *_test_deps(session))


def _free_threaded_env(session):
    # A free-threaded build runs with the GIL off: importing cfutures must keep it off.
    return {"PYTHON_GIL": "0"} if session.python.endswith("t") else {}


@nox.session(python=PYTHONS + FETCHED_PYTHONS)
def full(session):
    """The whole suite but other projects' suites: pytest -m "not external"."""
    _system_deps(session)
    _install_with_test_deps(session)
    session.run("pytest", "-m", "not external", *session.posargs,
                env={**_core_env(session), **_free_threaded_env(session)})


@nox.session(python=PYTHONS + FETCHED_PYTHONS)
def parity(session):
    """The parity tests (pytest's default selection) on cfutures' side, without the C++ core.

    The stdlib's side of each test (CFUTURES_STDLIB_SIDE=0 deselects it, tests/conftest.py)
    checks a test's expectation against that Python's stdlib, and runs in the full sessions of
    the Pythons around: 3.9 and 3.11 for 3.10, 3.11 and 3.13t for 3.12. Half the parity run's
    time went to it. `nox -s parity-3.12 -- ...` with CFUTURES_STDLIB_SIDE=1 runs both sides."""
    _install_with_test_deps(session)
    side = os.environ.get("CFUTURES_STDLIB_SIDE", "0")
    session.run("pytest", *session.posargs,
                env={"CFUTURES_CORE_TESTS": "0", "CFUTURES_STDLIB_SIDE": side,
                     "CFUTURES_MULTIHOST": "0", **_free_threaded_env(session)})


def _extra(name):
    """The requirements of one of pyproject.toml's extras, without installing cfutures."""
    import tomllib
    with open("pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"][name]


def _test_deps(session, leave_out=()):
    """The test extra's requirements, without those named in leave_out (and without mypy on a
    free-threaded Python: its compiled dependencies have no free-threaded wheels and build only
    with Rust; tests/test_typing.py then skips)."""
    leave_out = set(leave_out) | ({"mypy"} if session.python.endswith("t") else set())
    return [d for d in _extra("test") if re.match(r"[\w-]+", d).group(0) not in leave_out]


def _path_without_compilers(session):
    """A PATH on which no C or C++ compiler and no CMake can be found: the session's venv, then a
    directory of links to every other program of the current PATH."""
    # Absolute: a relative PATH entry is not found by a child started in another directory.
    links = os.path.abspath(os.path.join(session.create_tmp(), "no-compiler-bin"))
    shutil.rmtree(links, ignore_errors=True)
    os.makedirs(links)
    compiler = re.compile(r"(.*-)?(gcc|g\+\+|cc|c\+\+|clang|clang\+\+|cpp|cmake)(-[\d.]+)?")
    venv_bin = session.bin
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory) or os.path.samefile(directory, venv_bin):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if (compiler.fullmatch(name) or not os.access(target, os.X_OK)
                    or os.path.lexists(os.path.join(links, name))):
                continue
            os.symlink(target, os.path.join(links, name))
    return venv_bin + os.pathsep + links


@nox.session(python=PYTHONS + FETCHED_PYTHONS)
def wheel(session):
    """The parity tests against the wheel a user installs: tools/build-wheels.sh makes it (from
    the sdist, repaired by auditwheel), and it is installed into the session's fresh venv with
    `pip install --no-index --only-binary :all:`, no compiler and no CMake on PATH."""
    session.run("bash", "tools/build-wheels.sh", session.python, external=True)
    major, minor = session.python.rstrip("t").split(".")
    abi = f"cp{major}{minor}" + ("t" if session.python.endswith("t") else "")
    import glob
    wheels = glob.glob(f"dist/cfutures-*-cp{major}{minor}-{abi}-manylinux_*.whl")
    if len(wheels) != 1:
        session.error(f"expected one {abi} wheel in dist/, found {wheels}")
    session.install(*_test_deps(session, leave_out={"cmake", "ninja"}))
    env = {"PATH": _path_without_compilers(session), "CC": "false", "CXX": "false"}
    session.run("python", "-c", "import shutil, sys; found = [c for c in ('gcc', 'g++', 'cc', "
                "'c++', 'clang', 'cmake') if shutil.which(c)]; "
                "sys.exit(f'compilers still on PATH: {found}' if found else 0)", env=env)
    session.run("python", "-m", "pip", "install", "--no-index", "--only-binary", ":all:",
                wheels[0], env=env)
    session.run("python", "-m", "cfutures", "info", env=env)
    session.run("pytest", *session.posargs,
                env={**env, "CFUTURES_CORE_TESTS": "0", "CFUTURES_STDLIB_SIDE": "0",
                     "CFUTURES_MULTIHOST": "0", **_free_threaded_env(session)})


@nox.session(python=[DEFAULT])
def portable(session):
    """The portable build (cfutures/_portable.py), what an sdist installs off Linux: built here
    with CFUTURES_NATIVE=0 (no CMake, no compiler), then the parity tests (cfutures'
    side only: it is the stdlib there) and the documentation's examples against it."""
    session.install(*_test_deps(session, leave_out={"cmake", "ninja"}))
    session.run("python", "-m", "pip", "install", ".", env={"CFUTURES_NATIVE": "0"})
    session.run("python", "-c", "import cfutures, sys; sys.exit("
                "'a native build: CFUTURES_NATIVE=0 was not honoured' if cfutures.NATIVE else 0)")
    session.run("python", "-m", "cfutures", "info")
    session.run("pytest", *session.posargs,
                env={"CFUTURES_CORE_TESTS": "0", "CFUTURES_STDLIB_SIDE": "0",
                     "CFUTURES_MULTIHOST": "0"})


@nox.session(python=[DEFAULT])
def docs(session):
    """The documentation site (mkdocs.yml, docs/), built with warnings as errors. The API
    reference is read from the sources and stubs, so cfutures itself is not installed."""
    session.install(*_extra("docs"))
    session.run("mkdocs", "build", "--strict",
                "--site-dir", os.path.join(session.create_tmp(), "site"))


@nox.session(python=[DEFAULT])
def sanitizers(session):
    """The C++ core's tests built with ThreadSanitizer and with AddressSanitizer + UBSan."""
    _system_deps(session)
    session.install(".[test]")
    session.run("pytest", "-m", "sanitizers", *session.posargs)


@nox.session(python=PYTHONS + FETCHED_PYTHONS)
def upstream(session):
    """CPython's own test_concurrent_futures, run against cfutures."""
    _system_deps(session)
    _install_with_test_deps(session)
    session.run("pytest", "-m", "upstream", *session.posargs)


@nox.session(python=PYTHONS)
def external(session):
    """Other projects' suites, with the stdlib and with cfutures, compared test by test."""
    session.install(".[test]")
    session.run("pytest", "-m", "external", *session.posargs)


@nox.session(python=PYTHONS)
def bench(session):
    """The benchmark table: python -m cfutures bench (numpy for its NumPy row)."""
    session.install(".", "numpy")
    session.run("python", "-m", "cfutures", "bench", *session.posargs)


@nox.session(python=PYTHONS)
def apps(session):
    """Real programs with the stdlib and under install(): python -m cfutures bench --apps."""
    session.install(".[apps]")
    session.run("python", "-m", "cfutures", "bench", "--apps", *session.posargs)
