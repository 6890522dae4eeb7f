"""Other projects' test suites, run with the stdlib and with cfutures, compared test by test.

    python tests/external/suites.py                  # the CI subset (see CI below)
    python tests/external/suites.py --all            # every suite, whole
    python tests/external/suites.py pebble dask      # these suites, whole
    python tests/external/suites.py --list           # the pinned table
    python tests/external/suites.py pebble --json out.json --reruns 3

prints, per suite, the outcome counts of both runs and the tests whose outcomes differ (with the
head of each failure), and exits 1 if a difference is neither flaky nor a recorded deviation
(DEVIATIONS below). tests/test_external_suites.py runs the same thing under pytest.

What one suite's comparison does:
1. sdist: ``pip download --no-binary :all: --no-deps NAME==VERSION`` into the cache
   (~/.cache/cfutures/external, or $CFUTURES_EXTERNAL_CACHE), extracted there once and reused.
   Nothing of theirs enters the checkout.
2. dependencies: ``pip install --target`` a private directory in the cache, keyed by the Python
   version and the requirement list: pinned pytest and plugins, and, where the project has runtime
   dependencies, the extracted sdist itself with its extras (for those dependencies and its
   metadata; the code that runs is the extracted tree, first on the path).
3. two runs of ``sys.executable -m pytest`` in the extracted tree: plain (the stdlib), and with
   ``--cfutures``. Each child gets PYTHONPATH = extracted tree : private directory : our outcome
   plugin (plugin/cfx_outcomes.py), which writes one JSON line per test phase as it happens.
   A suite that plain pytest cannot run as its project does (futurist's testscenarios) loads a
   plugin of ours from the same directory in both runs (plugin/cfx_testscenarios.py).

Why sys.executable plus a private directory on PYTHONPATH, rather than a venv per project: the
cfutures under test must be the one built from this checkout, and the interpreter running this
file already has it installed (tests install the package, never the source tree). A venv per
project would need cfutures built again into it (minutes per build, and a cached venv would
silently keep an older build); PYTHONPATH puts the private packages ahead of the interpreter's
site-packages while cfutures, its ``.pth`` hook (CFUTURES_INSTALL=1 reaches spawned workers and
subprocesses through it) and its pytest plugin still come from the interpreter's own
site-packages. ``pip install --target`` installs every requirement into the directory, whatever
the interpreter has, so the project's code and test tools do not depend on what the calling
environment happens to hold (only packages nobody asked for could leak in from it).

No hang survives: pytest-timeout on every test, thread method (it dumps every thread's stack and
ends the run; the signal method would take SIGALRM, which some suites use themselves: pebble's
signal-handler tests fail under it); a limit on the whole run, past which the run gets SIGABRT
(faulthandler dumps every thread into the run's log) and then its process group gets SIGKILL.
A run that dies (a hang ended by pytest-timeout, a crash) is resumed after the test it died in
(``--deselect`` of every test it started), and that test is reported as ``crashed`` with the
dump, so the other tests are still compared. Children start in their own session with
SIGINT at its default (a test harness may have it ignored, which Python would inherit and never
raise KeyboardInterrupt). Logs and outcome files stay in the cache under runs/.

Outcomes: passed, failed (the test body), error (setup or teardown), skipped, xfailed, xpassed,
crashed (the run died in the test), absent (not collected in that run). A test whose outcomes
differ is run again alone, ``reruns`` times with each implementation: ``real`` if no run with
the stdlib ever gave an outcome that a run with cfutures gave, else ``flaky`` (reported, with the
outcome counts of each side, but not failing).

CI: ``CFUTURES_EXTERNAL`` chooses what tests/test_external_suites.py runs:
``ci`` (the default) the ``ci_paths`` of each suite, ``all`` everything, ``off`` nothing, or a
comma-separated list of suite names (each whole).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN_DIR = HERE / "plugin"
CACHE = Path(os.environ.get("CFUTURES_EXTERNAL_CACHE")
             or Path.home() / ".cache" / "cfutures" / "external")

# The test tools, pinned so that a new pytest cannot change outcomes between two checkouts.
PYTEST = ("pytest==9.2.0", "pytest-timeout==2.4.0")
ASYNCIO = ("pytest-asyncio==1.5.0",)
# Plugins are named with -p (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1), so that plugins installed in the
# calling interpreter (pytest-benchmark, say) stay out, and the stdlib run never imports cfutures.
PLUGINS = ("pytest_timeout",)
ASYNCIO_PLUGIN = ("pytest_asyncio.plugin",)



@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    dist: str                 # the name on PyPI
    version: str
    paths: tuple              # what to run, relative to the extracted sdist
    ci_paths: tuple           # the part CFUTURES_EXTERNAL=ci runs (empty: none)
    requirements: tuple       # pinned test tools and test-only dependencies
    plugins: tuple = PLUGINS  # pytest plugins to load (autoloading is off)
    extras: str | None = None  # install the sdist itself with these extras (its dependencies)
    args: tuple = ()          # extra pytest arguments
    test_timeout: int = 60    # seconds per test (pytest-timeout)
    run_timeout: int = 300    # seconds for one whole run (a few times what it takes)
    rerun_budget: int = 300   # seconds for all the reruns of differing tests
    python: str = "3.11"      # the Python the pinned table was measured on

    @property
    def key(self):
        return f"{self.dist}-{self.version}"


SUITES = {s.name: s for s in [
    Suite("pebble", "pebble", "5.2.3", paths=("test",),
          # The thread and fork (3.11's default start method) modules, in the whole run's order
          # (pebble's tests depend on it: test_pool_decorated fails after the thread modules).
          ci_paths=("test/test_asynchronous_process_fork.py", "test/test_asynchronous_thread.py",
                    "test/test_concurrent_process_fork.py", "test/test_concurrent_thread.py",
                    "test/test_pebble.py", "test/test_process_pool_fork.py",
                    "test/test_thread_pool.py"),
          requirements=PYTEST, run_timeout=600),
    Suite("dask", "dask", "2026.8.0",
          paths=("dask/tests/test_threaded.py", "dask/tests/test_local.py",
                 "dask/tests/test_multiprocessing.py"),
          ci_paths=("dask/tests/test_threaded.py", "dask/tests/test_local.py",
                    "dask/tests/test_multiprocessing.py"),
          # dask's own addopts name pytest-cov's options (--cov-config).
          requirements=PYTEST + ("pytest-cov==7.1.0",), extras="array",
          plugins=PLUGINS + ("pytest_cov.plugin",)),
    Suite("tqdm", "tqdm", "4.70.1", paths=("tests/tests_concurrent.py",),
          ci_paths=("tests/tests_concurrent.py",), requirements=PYTEST + ASYNCIO,
          plugins=PLUGINS + ASYNCIO_PLUGIN),
    Suite("asgiref", "asgiref", "3.13.0", paths=("tests",), ci_paths=("tests",),
          requirements=PYTEST + ASYNCIO + ("packaging==26.4",), plugins=PLUGINS + ASYNCIO_PLUGIN),
    # OpenStack's futurist: its GreenFuture (a Future subclass that assigns self._condition in
    # __init__), green and delayed executors, waiters and periodics. Its tests are
    # testtools/testscenarios/oslotest cases, each scenario a test here (plugin/cfx_testscenarios.py); stestr runs
    # them upstream (it and coverage, also in its test-requirements, only run tests: left out).
    # futurist has no extras to install the sdist with: its one runtime dependency,
    # debtcollector, is pinned here, with wrapt under it; PrettyTable is for periodics' pformat.
    # CI runs the executors and the waiters (about 50 s a run); periodics (about 65 s a run)
    # only in the whole suite.
    Suite("futurist", "futurist", "3.5.0", paths=("futurist/tests",),
          ci_paths=("futurist/tests/test_executors.py", "futurist/tests/test_waiters.py"),
          requirements=PYTEST + ("eventlet==0.41.3", "dnspython==2.9.2", "greenlet==3.5.6",
                                 "oslotest==6.1.1", "fixtures==4.3.2", "testtools==2.9.1",
                                 "testscenarios==0.7.0", "prettytable==3.18.0",
                                 "wcwidth==0.9.4", "debtcollector==3.1.0", "wrapt==2.5.2"),
          plugins=PLUGINS + ("cfx_testscenarios",)),
]}

# Accepted differences: suite name -> {test id or fnmatch pattern: reason}. Only differences that
# are not cfutures' bug belong here (a test asserting the stdlib's module names, say); a recorded
# deviation whose test no longer differs fails the comparison, so that it leaves this table.
DEVIATIONS: dict[str, dict[str, str]] = {
    "pebble": {},
    "dask": {},
    "tqdm": {},
    "asgiref": {},
    "futurist": {},
}

MODES = ("stdlib", "cfutures")
KINDS = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "crashed", "absent")


# ---------------------------------------------------------------------------------- preparation

@contextlib.contextmanager
def _locked(name):
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pip(*args, timeout=900):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_child_signals)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}")


def source(suite):
    """The extracted sdist (downloaded and extracted on first use)."""
    dest = CACHE / "src" / suite.key
    if (dest / "PKG-INFO").exists():
        return dest
    with _locked(suite.key):
        if (dest / "PKG-INFO").exists():
            return dest
        (CACHE / "sdists").mkdir(parents=True, exist_ok=True)
        archives = sorted((CACHE / "sdists").glob(f"{suite.dist}-{suite.version}.tar.gz"))
        if not archives:
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                _pip("download", "--quiet", "--no-deps", "--no-binary", ":all:",
                     "--dest", tmp, f"{suite.dist}=={suite.version}")
                got = list(Path(tmp).glob("*.tar.gz"))
                if len(got) != 1:
                    raise RuntimeError(f"expected one sdist for {suite.key}, got {got}")
                archive = CACHE / "sdists" / f"{suite.dist}-{suite.version}.tar.gz"
                shutil.move(str(got[0]), archive)
                archives = [archive]
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp, tarfile.open(archives[0]) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # a Python without extraction filters: check the names ourselves
                for member in tar.getmembers():
                    if member.name.startswith("/") or ".." in Path(member.name).parts:
                        raise RuntimeError(f"unsafe path in {archives[0]}: {member.name}")
                tar.extractall(tmp)
            tops = list(Path(tmp).iterdir())
            if len(tops) != 1 or not (tops[0] / "PKG-INFO").exists():
                raise RuntimeError(f"unexpected layout in {archives[0]}: {tops}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tops[0].rename(dest)
    return dest


def dependencies(suite):
    """The private directory with the suite's requirements (installed on first use)."""
    src = source(suite)
    wanted = list(suite.requirements) + ([f"{src}[{suite.extras}]"] if suite.extras else [])
    digest = hashlib.sha256(json.dumps([sys.version_info[:2], wanted]).encode()).hexdigest()[:12]
    dest = CACHE / "deps" / f"{suite.key}-py{sys.version_info[0]}{sys.version_info[1]}-{digest}"
    if (dest / ".complete").exists():
        return dest
    with _locked(suite.key):
        if (dest / ".complete").exists():
            return dest
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
        try:
            _pip("install", "--quiet", "--target", str(tmp), *wanted)
            (tmp / ".complete").write_text("\n".join(wanted) + "\n")
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def supported(suite):
    """None if this interpreter can run the suite, else why not."""
    here = "%d.%d" % sys.version_info[:2]
    if here != suite.python:
        return f"{suite.key} is pinned and measured on Python {suite.python}, this is {here}"
    try:
        import cfutures  # noqa: F401
    except ImportError:
        return f"cfutures is not installed for {sys.executable}"
    return None


# ---------------------------------------------------------------------------------------- runs

def _child_signals():
    # Runs in the child before exec: a harness may ignore SIGINT (CI jobs in the background do),
    # and Python keeps an ignored SIGINT ignored, so tests that raise KeyboardInterrupt would hang.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)


@dataclasses.dataclass
class Outcome:
    kind: str
    text: str | None = None   # the failure (or skip reason) pytest reported
    duration: float = 0.0


@dataclasses.dataclass
class Run:
    mode: str
    outcomes: dict            # test id -> Outcome, in run order
    seconds: float
    log: Path
    session: dict             # what the outcome plugin saw of concurrent.futures
    notes: list               # kills, restarts, exit statuses

    def counts(self):
        c = collections.Counter(o.kind for o in self.outcomes.values())
        return {k: c.get(k, 0) for k in KINDS}


def _classify(phases):
    """One test's outcome from its phase reports (setup, call, teardown)."""
    setup, call, teardown = (phases.get(w) for w in ("setup", "call", "teardown"))
    if setup is None:
        return Outcome("crashed")
    if setup["outcome"] == "failed":
        kind, text = "error", setup["text"]
    elif setup["outcome"] == "skipped":
        kind, text = ("xfailed" if setup["xfail"] else "skipped"), setup["text"]
    elif call is None:
        return Outcome("crashed")
    elif call["outcome"] == "failed":
        kind, text = "failed", call["text"]
    elif call["outcome"] == "skipped":
        kind, text = ("xfailed" if call["xfail"] else "skipped"), call["text"]
    else:
        kind, text = ("xpassed" if call["xfail"] else "passed"), None
    if teardown is None:
        return Outcome("crashed", text)
    if teardown["outcome"] == "failed" and kind in ("passed", "skipped", "xfailed", "xpassed"):
        kind, text = "error", teardown["text"]
    duration = sum(p.get("duration", 0) for p in phases.values())
    return Outcome(kind, text, duration)


def _read_events(path):
    events = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:  # a line cut short by a kill
                pass
    return events


def _crash_text(path, n=150):
    """What the log says about the death of its last attempt: pytest-timeout's dump of every
    thread if there is one (or faulthandler's), else the last lines."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = text[text.rfind("\n=== "):].splitlines()
    for i, line in enumerate(lines):
        if "+ Timeout +" in line or line.startswith("Fatal Python error"):
            return "\n".join(lines[max(0, i - 5):i + n])
    return "\n".join(lines[-n // 2:])


def run(suite, mode, ids=None, paths=None, tag="", echo=None, deadline=None):
    """Run the suite (or the given test ids, or paths) once with `mode`; restart after a test
    that killed the run, skipping the tests already done, until every test has an outcome.
    `deadline` (time.monotonic()) bounds the whole of it, restarts included."""
    assert mode in MODES
    src, deps = source(suite), dependencies(suite)
    out = CACHE / "runs" / suite.key
    out.mkdir(parents=True, exist_ok=True)
    _prune(out)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    events_path = out / f"{stamp}-{mode}{tag}.jsonl"
    log = out / f"{stamp}-{mode}{tag}.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CFUTURES_INSTALL", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
                        "PYTEST_CURRENT_TEST", "PYTHONPATH", "CFUTURES_TEST_PATH")}
    env.update(PYTHONPATH=os.pathsep.join(map(str, (src, deps, PLUGIN_DIR))),
               CFX_OUTCOMES=str(events_path), PYTHONFAULTHANDLER="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONDONTWRITEBYTECODE="1", COLUMNS="120")
    targets = list(ids) if ids else list(paths or suite.paths)
    done, notes, died, start = set(), [], {}, time.monotonic()
    own = start + (suite.run_timeout if not ids else 60 + (suite.test_timeout + 10) * len(ids))
    deadline = min(own, deadline or own)
    for attempt in range(20):
        plugins = [arg for plugin in ("cfx_outcomes", *suite.plugins) for arg in ("-p", plugin)]
        cmd = [sys.executable, "-m", "pytest", *targets, *suite.args, *plugins,
               "-p", "no:cacheprovider",
               f"--timeout={suite.test_timeout}", "-o", "timeout_method=thread",
               "-o", "console_output_style=classic", "-rfE"]
        if mode == "cfutures":  # --cfutures is the plugin's option: it must be loaded first
            cmd += ["-p", "cfutures.pytest_plugin", "--cfutures"]
        cmd += [f"--deselect={i}" for i in sorted(done)]
        with open(log, "a") as logf:
            logf.write(f"\n=== {' '.join(cmd)}\n")
            logf.flush()
            proc = subprocess.Popen(cmd, cwd=src, env=env, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_child_signals)
            status = _wait(proc, deadline, notes, echo)
        events = _read_events(events_path)
        finished = any(e["event"] == "finish" for e in events[-1:])
        started = [e["id"] for e in events if e["event"] == "start"]
        done = set(started)
        if status == "timeout" and started:
            died[started[-1]] = _crash_text(log)
        if finished or status == "timeout" or not started:
            if not finished and status != "timeout":
                notes.append(f"{mode}: pytest exited {status} without finishing; log {log}")
            break
        notes.append(f"{mode}: the run died (exit {status}) in {started[-1]}; resumed after it")
        died[started[-1]] = _crash_text(log)
        if echo:
            echo(notes[-1])
    else:
        notes.append(f"{mode}: gave up after 20 restarts")
    return _collect(mode, events_path, log, time.monotonic() - start, notes, died)


def _prune(directory, keep=100):
    """Logs and outcome files of old runs go (the newest `keep` stay)."""
    files = sorted(directory.iterdir(), key=lambda f: f.stat().st_mtime, reverse=True)
    for f in files[keep:]:
        with contextlib.suppress(OSError):
            f.unlink()


def _wait(proc, deadline, notes, echo):
    try:
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        notes.append("run limit reached: SIGABRT (faulthandler dumps every thread), then SIGKILL")
        if echo:
            echo(notes[-1])
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGABRT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        status = "timeout"
    except BaseException:  # Ctrl-C in the caller: take the whole run down with us
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    # Whatever the run left behind in its session (pool workers, daemons) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return status


def _collect(mode, events_path, log, seconds, notes, died):
    phases = collections.defaultdict(dict)
    order, session, outcomes = [], {}, {}
    for e in _read_events(events_path):
        if e["event"] == "session":
            session = session or e
        elif e["event"] == "start":
            if e["id"] not in phases:
                order.append(e["id"])
            phases[e["id"]]  # noqa: B018 (creates the entry)
        elif e["event"] == "report":
            phases[e["id"]][e["when"]] = e
        elif e["event"] == "collect":
            outcomes[e["id"]] = Outcome("error", "collection error:\n" + (e["text"] or ""))
    for test_id in order:
        outcomes[test_id] = _classify(phases[test_id])
        if outcomes[test_id].kind == "crashed":
            outcomes[test_id].text = (outcomes[test_id].text or "") + \
                f"\nthe run died in this test; from its log ({log}):\n{died.get(test_id, '')}"
    return Run(mode, outcomes, seconds, log, session, notes)


def check_session(r):
    """The run used the implementation it claims (a wrong setup must not compare stdlib with
    stdlib): an error message, or None."""
    cf, cfu = r.session.get("concurrent_futures") or "", r.session.get("cfutures")
    if not r.session:
        return f"{r.mode} run: no session recorded (see {r.log})"
    is_cfutures = cfu is not None and Path(cf).parent == Path(cfu).parent
    if (r.mode == "cfutures") != is_cfutures:
        return f"{r.mode} run: concurrent.futures was {cf} (cfutures: {cfu})"
    return None


# ---------------------------------------------------------------------------------- comparison

@dataclasses.dataclass
class Difference:
    test_id: str
    stdlib: Outcome
    cfutures: Outcome
    reruns: dict              # mode -> [kinds of the reruns]
    verdict: str = "real"     # real | flaky
    deviation: str | None = None


@dataclasses.dataclass
class Comparison:
    suite: Suite
    runs: dict                # mode -> Run
    differences: list
    stale: list               # recorded deviations whose tests no longer differ
    problems: list            # setup errors (wrong implementation loaded, ...)

    def unexpected(self):
        return [d for d in self.differences if d.verdict == "real" and d.deviation is None]

    def failed(self):
        return bool(self.unexpected() or self.stale or self.problems)


def deviation_reason(suite_name, test_id):
    for pattern, reason in DEVIATIONS.get(suite_name, {}).items():
        if test_id == pattern or fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


def compare(suite, paths=None, reruns=2, echo=None):
    """Both runs, then `reruns` reruns of the differing tests with each implementation (within
    suite.rerun_budget seconds in all; reruns that do not fit are left out)."""
    runs = {}
    for mode in MODES:
        if echo:
            echo(f"--- {suite.key}: {mode} run of {' '.join(paths or suite.paths)}")
        runs[mode] = run(suite, mode, paths=paths, echo=echo)
        if echo:
            r = runs[mode]
            counts = ", ".join(f"{v} {k}" for k, v in r.counts().items() if v)
            echo(f"    {r.seconds:.0f} s, {counts}")
    std, cf = runs["stdlib"].outcomes, runs["cfutures"].outcomes
    ids = list(dict.fromkeys(list(std) + list(cf)))
    absent = Outcome("absent")
    diffs = [Difference(i, std.get(i, absent), cf.get(i, absent), {m: [] for m in MODES})
             for i in ids if std.get(i, absent).kind != cf.get(i, absent).kind]
    # Collection errors are per module, not per test: they cannot be rerun by id.
    rerunnable = [d.test_id for d in diffs if "::" in d.test_id]
    rerun_deadline = time.monotonic() + suite.rerun_budget
    for n in range(reruns if rerunnable else 0):
        for mode in MODES:
            if time.monotonic() > rerun_deadline - 10:
                break
            if echo:
                echo(f"--- {suite.key}: rerun {n + 1}/{reruns} of {len(rerunnable)} "
                     f"differing tests with {mode}")
            again = run(suite, mode, ids=rerunnable, tag=f"-rerun{n + 1}", echo=echo,
                        deadline=rerun_deadline).outcomes
            for d in diffs:
                if d.test_id in rerunnable:
                    d.reruns[mode].append(again.get(d.test_id, absent).kind)
    for d in diffs:
        seen_std = {d.stdlib.kind, *d.reruns["stdlib"]}
        seen_cf = {d.cfutures.kind, *d.reruns["cfutures"]}
        d.verdict = "flaky" if seen_std & seen_cf else "real"
        d.deviation = deviation_reason(suite.name, d.test_id)
    differing = {d.test_id for d in diffs}
    stale = [f"{pattern}: {reason}" for pattern, reason in DEVIATIONS.get(suite.name, {}).items()
             if any(fnmatch.fnmatchcase(i, pattern) for i in ids if i in std and i in cf)
             and not any(fnmatch.fnmatchcase(i, pattern) for i in differing)]
    problems = [p for p in map(check_session, runs.values()) if p]
    problems += [n for r in runs.values() for n in r.notes if "without finishing" in n]
    return Comparison(suite, runs, diffs, stale, problems)


# ------------------------------------------------------------------------------------ reports

def head(text, lines=25):
    """The part of a pytest failure text worth reading first: its last lines, where the
    exception and the assertion are (a long traceback starts far from them)."""
    if not text:
        return ""
    body = text.rstrip().splitlines()
    return "\n".join((["[...]"] if len(body) > lines else []) + body[-lines:])


def table(comparisons):
    cols = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "crashed")
    rows = [("suite", "run", "tests", *cols, "seconds")]
    for c in comparisons:
        for mode in MODES:
            r = c.runs[mode]
            counts = r.counts()
            rows.append((c.suite.key if mode == "stdlib" else "", mode, str(len(r.outcomes)),
                         *(str(counts[k]) for k in cols), f"{r.seconds:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)


def describe(c, lines=25):
    """The differences of one comparison, for a person fixing them."""
    out = []
    for p in c.problems:
        out.append(f"PROBLEM: {p}")
    for s in c.stale:
        out.append(f"STALE DEVIATION (the test no longer differs; remove it): {s}")
    for d in c.differences:
        label = f"deviation: {d.deviation}" if d.deviation else d.verdict
        reruns = "; ".join(f"reruns with {m}: {', '.join(k) or '-'}" for m, k in d.reruns.items())
        out.append(f"{d.test_id}\n    stdlib: {d.stdlib.kind}  cfutures: {d.cfutures.kind}  "
                   f"[{label}]  ({reruns})")
        for mode, o in (("stdlib", d.stdlib), ("cfutures", d.cfutures)):
            if o.text and o.kind not in ("passed", "absent"):
                out.append(f"    --- {mode} ({o.kind}):")
                out.append("\n".join("      " + line for line in head(o.text, lines).splitlines()))
    return "\n".join(out)


def as_json(c):
    def outcome(o):
        return {"kind": o.kind, "text": o.text}
    return {
        "suite": c.suite.key,
        "runs": {m: {"seconds": round(r.seconds, 1), "counts": r.counts(), "log": str(r.log),
                     "session": r.session, "notes": r.notes} for m, r in c.runs.items()},
        "differences": [{"id": d.test_id, "stdlib": outcome(d.stdlib),
                         "cfutures": outcome(d.cfutures), "reruns": d.reruns,
                         "verdict": d.verdict, "deviation": d.deviation}
                        for d in c.differences],
        "stale": c.stale, "problems": c.problems,
    }


def selection(value):
    """What CFUTURES_EXTERNAL (or the CLI) selects: [(suite, paths or None for whole)]."""
    value = (value or "ci").strip().lower()
    if value in ("off", "0", "no", "none"):
        return []
    if value == "ci":
        return [(s, s.ci_paths) for s in SUITES.values() if s.ci_paths]
    if value == "all":
        return [(s, None) for s in SUITES.values()]
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suites {unknown}; known: {', '.join(SUITES)}")
    return [(SUITES[n], None) for n in names]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="suites to run whole (default: the CI subset)")
    parser.add_argument("--all", action="store_true", help="every suite, whole")
    parser.add_argument("--reruns", type=int, default=2,
                        help="reruns of each differing test with each implementation")
    parser.add_argument("--json", help="write the comparisons to this file")
    parser.add_argument("--lines", type=int, default=25, help="lines of each failure shown")
    parser.add_argument("--list", action="store_true", help="print the pinned table")
    args = parser.parse_args(argv)
    if args.list:
        for s in SUITES.values():
            print(f"{s.key:18} Python {s.python}  {' '.join(s.paths)}\n{'':18} ci: "
                  f"{' '.join(s.ci_paths) or '-'}")
        return 0
    chosen = selection("all" if args.all else ",".join(args.names) or "ci")
    comparisons = []
    for suite, paths in chosen:
        why = supported(suite)
        if why:
            print(f"skipped: {why}")
            continue
        comparisons.append(compare(suite, paths=paths, reruns=args.reruns,
                                   echo=lambda m: print(m, flush=True)))
    if not comparisons:
        return 0
    print("\n" + table(comparisons))
    for c in comparisons:
        text = describe(c, args.lines)
        print(f"\n=== {c.suite.key}: {len(c.differences)} differing tests, "
              f"{len(c.unexpected())} real and not recorded")
        if text:
            print(text)
    if args.json:
        Path(args.json).write_text(json.dumps([as_json(c) for c in comparisons], indent=1))
    return 1 if any(c.failed() for c in comparisons) else 0


if __name__ == "__main__":
    sys.exit(main())
