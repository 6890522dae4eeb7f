"""Hostile environments (cfutures' process pool): a pool that cannot start its workers stops what
it started, and the interpreter still exits promptly; large buffers go through the pipe where no
memfd can be made; a container's seccomp profile that refuses pidfd_open or memfd_create; memory
limits that fail one call with MemoryError, never the pool.

What ends an interpreter (descriptor and process limits, dropped privileges) runs in a
subprocess of its own session (run_isolated), whose stray processes fail the test and are killed.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import cfutures
from process_helpers import limit_address_space, make_bytes, mul, sleep_then_write

# These are about cfutures' native process pool: the portable build is the stdlib's.
pytestmark = pytest.mark.skipif(not cfutures.NATIVE, reason="the native process pool")

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 60


def run_isolated(script, *args, timeout=TIMEOUT):
    """Runs ``script`` in a fresh interpreter, in a session of its own; returns (exit code,
    stdout, stderr, seconds). Fails the test on a hang, or when a process of its session outlives
    it (a worker left behind)."""
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the script hung (killed after {timeout} s)\n{out}\n{err}")
    elapsed = time.monotonic() - start
    # multiprocessing's resource tracker and forkserver leave once the script's end closes their
    # pipes: a little after it.
    deadline = time.monotonic() + 10
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    stray = _session_members(proc.pid)
    if stray:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"processes outlived the script: {stray}\n{out}\n{err}")
    return proc.returncode, out, err, elapsed


def _session_members(sid):
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    members.append(int(entry))
            except OSError:
                pass
    return members


class FailingContext:
    """A multiprocessing context whose Process.start() raises once ``ok`` processes started (and
    while ``failing``): what a custom mp_context, or a fork refused by the kernel, does."""

    def __init__(self, method, ok):
        self._context = multiprocessing.get_context(method)
        self.ok, self.failing, self.started = ok, True, []

    def __getattr__(self, name):
        return getattr(self._context, name)

    def Process(self, *args, **kwargs):
        process = self._context.Process(*args, **kwargs)
        start = process.start

        def failing_start():
            if self.failing and len(self.started) >= self.ok:
                raise RuntimeError("no more processes")
            del process.start  # spawn pickles the process: not this closure
            start()
            self.started.append(process.pid)
        process.start = failing_start
        return process


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] == "Z"  # a zombie: not ours (we joined it)


# fork starts every worker at the first submit; spawn and forkserver one, then the manager.
@pytest.mark.parametrize("method, ok", [("fork", 2), ("spawn", 0), ("forkserver", 0),
                                        ("spawn", 1)])
def test_a_pool_that_cannot_start_its_workers_stops_what_it_started(tmp_path, method, ok):
    context = FailingContext(method, ok)
    ran = str(tmp_path / "ran")
    ex = cfutures.ProcessPoolExecutor(4, mp_context=context)
    try:
        if ok == 1 and method == "spawn":
            # The first worker and the manager start; the second worker cannot.
            first = ex.submit(sleep_then_write, 0.5, str(tmp_path / "first"))
            assert context.started
            with pytest.raises(RuntimeError, match="no more processes"):
                ex.submit(sleep_then_write, 0, ran)
            assert first.result(timeout=30) == 0.5  # the pool goes on with what it has
        else:
            with pytest.raises(RuntimeError, match="no more processes"):
                ex.submit(sleep_then_write, 0, ran)
            assert len(context.started) == ok
            assert all(_gone(pid) for pid in context.started), context.started
            assert not [p for p in multiprocessing.active_children() if p.pid in context.started]
        context.failing = False
        assert ex.submit(mul, 6, 7).result(timeout=60) == 42
    finally:
        ex.shutdown(wait=True)
    assert not os.path.exists(ran)  # the refused call never runs


DESCRIPTORS = """
import errno, multiprocessing, os, resource, sys
import cfutures
from process_helpers import mul, sleep_then_write

method, then, ran = sys.argv[1:4]
context = multiprocessing.get_context(method)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
# Room for the first few workers' channels, not for 16.
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
ex = cfutures.ProcessPoolExecutor(16, mp_context=context)
futures = []
try:
    # fork starts every worker at the first submit; spawn and forkserver one per submit.
    for i in range(16):
        futures.append(ex.submit(sleep_then_write, 0.5, f"{ran}-{i}"))
    print("started")
except OSError as e:
    print("refused", errno.errorcode[e.errno])
# Those the pool did not keep were stopped; a fork pool kept none (its first submit failed).
kept = set(ex._processes)
print("children are the pool's", {p.pid for p in multiprocessing.active_children()} <= kept,
      len(kept) == (0 if method == "fork" else len(futures)))
if then == "exit":
    sys.exit(0)  # with the pool not shut down: the interpreter must still exit at once
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print("same pool", ex.submit(mul, 6, 7).result(timeout=60))
with cfutures.ProcessPoolExecutor(2, mp_context=context) as other:
    print("new pool", other.submit(mul, 2, 3).result(timeout=60))
ex.shutdown()
print("ran", os.path.exists(f"{ran}-{len(futures)}"), all(f.result() == 0.5 for f in futures))
"""


@pytest.mark.parametrize("then", ["exit", "raise the limit"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_descriptors_run_out_while_the_pool_starts(tmp_path, method, then):
    code, out, err, elapsed = run_isolated(DESCRIPTORS, method, then.split()[0],
                                           str(tmp_path / "ran"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["refused EMFILE", "children are the pool's True True"], out + err
    if then == "exit":
        assert elapsed < 30, elapsed
    else:
        assert lines[2:] == ["same pool 42", "new pool 6", "ran False True"], out + err


PROCESSES = """
import errno, multiprocessing, os, resource, sys
import cfutures
# What starting a worker imports (from files a uid of its own may not be able to read).
import cfutures._process_worker, multiprocessing.popen_fork, multiprocessing.resource_tracker

def tasks_of(uid):
    count = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields["Uid"].split()[0] == str(uid):
            count += int(fields["Threads"])
    return count

# A user of its own (no process of the machine's counts against its limit), not root: root is
# above RLIMIT_NPROC.
uid = next(u for u in range(61000 + os.getpid() % 1000, 65000) if tasks_of(u) == 0)
ex = cfutures.ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork"))
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
own = tasks_of(uid)  # this process's threads
resource.setrlimit(resource.RLIMIT_NPROC, (own + 2, own + 2))  # room for two workers
try:
    ex.submit(abs, -1)
    print("started")
except OSError as e:
    print("refused", errno.errorcode[e.errno])
print("children", len(multiprocessing.active_children()))
"""


def test_fork_refused_by_the_process_limit(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("drops privileges to a uid of its own for RLIMIT_NPROC: needs root")
    code, out, err, elapsed = run_isolated(PROCESSES)
    assert code == 0, err
    assert out.splitlines() == ["refused EAGAIN", "children 0"], out + err
    assert elapsed < 30, elapsed


LARGE_BUFFERS = """
import multiprocessing, os, resource, sys
import cfutures
from process_helpers import make_bytes, no_more_descriptors

context = multiprocessing.get_context(sys.argv[1])
with cfutures.ProcessPoolExecutor(1, mp_context=context) as ex:
    print("warm", ex.submit(len, b"x").result(timeout=60))
    held = []
    try:
        while True:  # every descriptor of the parent, taken
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    print("exhausted", len(held) > 0)
    print("argument", ex.submit(len, bytes(8 << 20)).result(timeout=60))
    for fd in held:
        os.close(fd)
    print("again", ex.submit(len, bytes(8 << 20)).result(timeout=60))
    print("inlined", ex.stats().calls_inlined)  # the first large call only
with cfutures.ProcessPoolExecutor(1, mp_context=context, initializer=no_more_descriptors) as ex:
    result = ex.submit(make_bytes, 8 << 20).result(timeout=60)
    print("result", len(result), result == make_bytes(8 << 20))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_large_buffers_go_through_the_pipe_when_no_memfd_can_be_made(method):
    code, out, err, _ = run_isolated(LARGE_BUFFERS, method)
    assert code == 0, err
    assert out.splitlines() == ["warm 1", "exhausted True", f"argument {8 << 20}",
                                f"again {8 << 20}", "inlined 1", f"result {8 << 20} True"], out + err


SECCOMP = """
import errno, sys
import pyseccomp as seccomp

refused, code = sys.argv[1].split("+"), getattr(errno, sys.argv[2])
rules = seccomp.SyscallFilter(seccomp.ALLOW)
for name in refused:
    rules.add_rule(seccomp.ERRNO(code), name)
rules.load()  # inherited by every process started from here: the workers, the forkserver

import concurrent.futures, multiprocessing
import cfutures
from process_helpers import fails, hard_exit, make_bytes, mul

for method in ("fork", "spawn", "forkserver"):
    context = multiprocessing.get_context(method)
    with cfutures.ProcessPoolExecutor(2, mp_context=context) as ex:
        assert ex.submit(mul, 6, 7).result(timeout=60) == 42
        assert list(ex.map(mul, range(50), range(50), chunksize=7)) == [i * i for i in range(50)]
        assert ex.submit(len, bytes(8 << 20)).result(timeout=60) == 8 << 20
        assert ex.submit(make_bytes, 4 << 20).result(timeout=60) == make_bytes(4 << 20)
        try:
            ex.submit(fails).result(timeout=60)
        except ValueError as e:
            assert str(e) == "in worker"
        inlined = ex.stats().calls_inlined
    with cfutures.ProcessPoolExecutor(2, mp_context=context) as ex:
        try:
            ex.submit(hard_exit).result(timeout=60)  # its death is seen, with or without pidfds
        except concurrent.futures.process.BrokenProcessPool:
            pass
    print(method, "inlined" if inlined else "memfd")
"""


@pytest.mark.parametrize("code", ["EPERM", "ENOSYS"])
@pytest.mark.parametrize("refused", ["pidfd_open", "memfd_create", "pidfd_open+memfd_create"])
def test_a_container_that_refuses_newer_syscalls(refused, code):
    pytest.importorskip("pyseccomp", reason="needs libseccomp's Python bindings (pyseccomp)")
    try:
        import pyseccomp
        pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except Exception as e:  # no libseccomp.so.2
        pytest.skip(f"libseccomp cannot be loaded: {e!r}")
    code_, out, err, _ = run_isolated(SECCOMP, refused, code)
    assert code_ == 0, err
    how = "inlined" if "memfd_create" in refused else "memfd"
    assert out.splitlines() == [f"{m} {how}" for m in ("fork", "spawn", "forkserver")], out + err


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("impl", ["stdlib", "cfutures"])
def test_a_task_past_its_workers_memory_limit_fails_with_memory_error(impl, method):
    import concurrent.futures
    module = cfutures if impl == "cfutures" else concurrent.futures
    # Room for what a worker maps on its first task (its threads' stacks and malloc arenas):
    # forkserver (3.14's default) and spawn start workers that have mapped little yet. Their
    # initializer comes from process_helpers, which every start method's worker can import.
    with module.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method),
                                    initializer=limit_address_space, initargs=(1 << 30,)) as ex:
        with pytest.raises(MemoryError):
            ex.submit(make_bytes, 4 << 30).result(timeout=60)
        assert ex.submit(len, b"xy").result(timeout=60) == 2  # the pool goes on


MEMORY = """
import os, resource, sys
import cfutures
from process_helpers import limit_address_space, make_bytes

with cfutures.ProcessPoolExecutor(1) as ex:
    print("warm", ex.submit(len, b"x").result(timeout=60))
    limit_address_space(200 << 20)  # this process: no room to map a 400 MB result
    try:
        ex.submit(make_bytes, 400 << 20).result(timeout=60)
    except MemoryError as e:
        print("result", "could not be mapped" in str(e))
    print("after", ex.submit(len, b"xy").result(timeout=60))
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
with cfutures.ProcessPoolExecutor(1, initializer=limit_address_space,
                                  initargs=(200 << 20,)) as ex:
    try:
        ex.submit(len, bytes(400 << 20)).result(timeout=60)
    except MemoryError as e:
        print("argument", "could not be mapped" in str(e))
    print("after", ex.submit(len, b"xyz").result(timeout=60))
"""


def test_an_answer_or_a_call_too_large_to_map_fails_with_memory_error():
    code, out, err, _ = run_isolated(MEMORY)
    assert code == 0, err
    assert out.splitlines() == ["warm 1", "result True", "after 2", "argument True",
                                "after 3"], out + err
