"""A Dask cluster of several "hosts" on one machine: the scheduler and each worker run in a
network namespace of their own, so that tasks and results cross real TCP between distinct
addresses, and a test can lose a host: kill its processes, or take its link down (and up again).

The network of one run (its names carry this process's pid, so two runs at once do not meet):

    this process (the client), root namespace: veth ``cfh<pid>``, 10.213.N.1/24
      |
    namespace ``cfh<pid>-sw`` (the switch): bridge ``br0`` joining ``uplink`` and one veth per host
      |                |                 |
    ``cfh<pid>-s``   ``cfh<pid>-w1``   ``cfh<pid>-w2`` ...   each: ``eth0`` (and ``lo``)
    scheduler .10    worker .11        worker .12

N is a third octet that no address or route of the root namespace uses yet. The switch-side
veth of a host is named after it (``s``, ``w1``...): ``link_down(i)`` takes worker i's down, as
a pulled cable would (both ends see silence, nothing is refused).

The cluster's processes are started by a *keeper*: a small child process of this one that spawns
them (``ip netns exec NS python -m distributed.cli...``) and reaps them, so that a worker started
during a test is not this process's child (tests/conftest.py's leak check), and none is left a
zombie where PID 1 does not reap orphans. When this process goes away without cleaning up (even
killed), the keeper sees its stdin close and cleans up itself.

Clean-up (``Hosts.close``: the fixture's teardown, an atexit hook, and the keeper's last resort)
kills every process in each namespace of the run (``ip netns pids``), deletes the namespaces and
the root veth. Every wait has a deadline.

Needs Linux, root and iproute2; the fixture skips, with the reason, without them or where
``ip netns add`` does not work (a container without CAP_SYS_ADMIN). The cluster's processes
import the tests' helper modules (tests/conftest.py puts this directory on PYTHONPATH, which they
inherit) and cfutures.

The functions at the end run in the cluster (by name: this module is importable there).
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

SUBNET = "10.213"
SCHEDULER_PORT = 8786
WORKER_PORT = 8788
COMMAND_SECONDS = 15  # the longest an `ip` command may take

# The cluster's configuration: a host that stops answering is removed within seconds.
# worker-ttl: the scheduler checks every second, and removes a worker silent for more than
# max(worker-ttl, 10 heartbeats) = 5 s (a worker of a small cluster heartbeats every 0.5 s).
# comm.timeouts.tcp: an unanswered connection breaks after 11 s (TCP_USER_TIMEOUT and keepalive;
# Dask's minimum).
# profile.enabled: no profiler thread reading frames (it crashes free-threaded 3.13, see
# cfutures._dask_remote.FRAMES_OF_OTHER_THREADS_UNSAFE; the tests do not need it).
CLUSTER_CONFIG = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "1s",
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "3",  # Dask's default, said explicitly
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "11s",
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
}


class Unavailable(Exception):
    """Network namespaces cannot be made here (the fixture skips with this reason)."""


def _ip(*args, check=True, namespace=None):
    """Runs ``ip [-n namespace] args``; returns its stdout. Raises RuntimeError if it fails and
    ``check``."""
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_SECONDS,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(command)}: no answer in {COMMAND_SECONDS} s") from None
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def namespace_pids(namespace):
    """The pids of the processes in a network namespace (none if it is gone)."""
    out = _ip("netns", "pids", namespace, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_namespace(namespace, timeout=10):
    """SIGKILLs every process in the namespace, until none is left (or the timeout). Returns
    whether none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = namespace_pids(namespace)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def clean_up(prefix):
    """Removes every trace of run ``prefix``: its namespaces' processes, its namespaces, its root
    veth. Never raises; returns what it could not remove."""
    left = []
    namespaces = [line.split()[0] for line in _ip("netns", "list", check=False).splitlines()
                  if line.split() and line.split()[0].startswith(prefix + "-")]
    for namespace in namespaces:
        if not kill_namespace(namespace):
            left.append(f"processes in {namespace}: {namespace_pids(namespace)}")
    for namespace in namespaces:
        try:
            _ip("netns", "del", namespace)
        except RuntimeError as exc:
            left.append(str(exc))
    # The root veth goes with the switch namespace, which the kernel destroys a moment after
    # the last reference to it goes (in the background): deleted here in case it is still
    # there, then waited for.
    _ip("link", "del", prefix, check=False)
    deadline = time.monotonic() + 10
    while _ip("link", "show", prefix, check=False):
        if time.monotonic() > deadline:
            left.append(f"the veth {prefix}")
            break
        time.sleep(0.05)
    return left


# The keeper (see the module's docstring). Its stdin: one JSON request per line, [argv, env,
# log path]; it answers the pid (or "error: ..."). At end of input: cleans up the run (argv[1]).
KEEPER = r"""
import json, os, sys, threading, time
prefix, here = sys.argv[1], sys.argv[2]

def reap():
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.05)

threading.Thread(target=reap, daemon=True).start()
for line in sys.stdin:
    argv, env, log = json.loads(line)
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            pid = os.posix_spawnp(argv[0], argv, env, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)])
        finally:
            os.close(fd)
        print(pid, flush=True)
    except Exception as exc:
        print("error:", repr(exc).replace("\n", " "), flush=True)
sys.path.insert(0, here)
import netns_hosts
netns_hosts.clean_up(prefix)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        if os.waitpid(-1, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
    except ChildProcessError:
        break
"""


def _free_third_octet(start):
    """A third octet N such that nothing in the root namespace uses SUBNET.N.0/24 yet."""
    used = _ip("-4", "-o", "addr", "show", check=False) + _ip("-4", "route", "show", check=False)
    taken = {int(n) for n in re.findall(re.escape(SUBNET) + r"\.(\d+)\.", used)}
    for i in range(250):
        n = (start + i) % 250 + 1
        if n not in taken:
            return n
    raise Unavailable(f"every {SUBNET}.N.0/24 is in use in the root namespace")


def unavailable_reason():
    """Why this machine cannot make the test's namespaces, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command"
    if os.geteuid() != 0:
        return "needs root to make network namespaces (ip netns add)"
    return None


class Hosts:
    """The cluster of one run: ``address`` (the scheduler's), ``client`` (a distributed.Client
    of this process), ``worker_address(i)`` (tcp://10.213.N.1i:PORT for worker i = 1..workers),
    and the means to lose a host: ``kill(i)``, ``link_down(i)``, ``link_up(i)``, ``revive(i)``.
    """

    def __init__(self, workers, directory):
        self.workers = workers
        self.directory = str(directory)
        self.prefix = f"cfh{os.getpid()}"  # the root veth's name too: at most 15 characters
        self.switch = f"{self.prefix}-sw"
        self.client = None
        # Worker i listens on WORKER_PORT + self._restarts[i]: a worker started again (revive)
        # has a new address. Dask's scheduler removes a worker by address when its stream to
        # the worker closes, and the stream to a partitioned worker it has already removed
        # closes late: that removed the new worker too when it reused the address.
        self._restarts = {i: 0 for i in range(1, workers + 1)}
        self._keeper = None
        self._closed = False
        self.net = f"{SUBNET}.{_free_third_octet(os.getpid())}"
        self.address = f"tcp://{self.net}.10:{SCHEDULER_PORT}"
        atexit.register(self.close)

    # -- names -------------------------------------------------------------------------------

    def namespace(self, host):
        """The namespace of host 0 (the scheduler) or of worker i."""
        return f"{self.prefix}-{self._short(host)}"

    @staticmethod
    def _short(host):
        return "s" if host == 0 else f"w{host}"

    def ip_of(self, host):
        return f"{self.net}.{10 + host}"

    def worker_address(self, i):
        """The address of worker i (that of its latest start)."""
        return f"tcp://{self.ip_of(i)}:{WORKER_PORT + self._restarts[i]}"

    # -- making it ---------------------------------------------------------------------------

    def start(self, timeout=60):
        """Makes the network, starts the keeper, the scheduler and the workers, connects the
        client and waits for every worker. Raises Unavailable if namespaces cannot be made."""
        deadline = time.monotonic() + timeout
        try:
            _ip("netns", "add", self.switch)
        except RuntimeError as exc:
            raise Unavailable(f"cannot make a network namespace: {exc}") from None
        self._keeper = subprocess.Popen(
            [sys.executable, "-c", KEEPER, self.prefix, os.path.dirname(os.path.abspath(__file__))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _ip("link", "add", "br0", "type", "bridge", namespace=self.switch)
            _ip("link", "set", "br0", "up", namespace=self.switch)
            _ip("link", "add", self.prefix, "type", "veth", "peer", "name", "uplink", "netns",
                self.switch)
            _ip("link", "set", "uplink", "master", "br0", "up", namespace=self.switch)
            _ip("addr", "add", f"{self.net}.1/24", "dev", self.prefix)
            _ip("link", "set", self.prefix, "up")
            for host in range(self.workers + 1):
                self._add_host(host)
        except RuntimeError as exc:  # a kernel without veth or bridges, say
            raise Unavailable(f"cannot make the test network: {exc}") from None
        self._spawn(0, "distributed.cli.dask_scheduler", "--host", self.ip_of(0),
                    "--port", str(SCHEDULER_PORT), "--no-dashboard")
        self._wait_for_port(self.ip_of(0), SCHEDULER_PORT, deadline)
        for i in range(1, self.workers + 1):
            self._start_worker(i)
        import distributed
        self.client = distributed.Client(self.address, timeout=max(1, deadline - time.monotonic()),
                                         set_as_default=False)
        self.client.wait_for_workers(self.workers, timeout=max(1, deadline - time.monotonic()))

    def _add_host(self, host):
        namespace, short = self.namespace(host), self._short(host)
        _ip("netns", "add", namespace)
        _ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", short,
            "netns", self.switch)
        _ip("link", "set", short, "master", "br0", "up", namespace=self.switch)
        _ip("addr", "add", f"{self.ip_of(host)}/24", "dev", "eth0", namespace=namespace)
        _ip("link", "set", "eth0", "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)

    def _spawn(self, host, module, *args):
        env = {**os.environ, **CLUSTER_CONFIG}
        env.pop("CFUTURES_DASK", None)
        argv = ["ip", "netns", "exec", self.namespace(host), sys.executable, "-m", module, *args]
        log = os.path.join(self.directory, f"{self._short(host)}.log")
        self._keeper.stdin.write(json.dumps([argv, env, log]) + "\n")
        self._keeper.stdin.flush()
        answer = self._keeper.stdout.readline().strip()  # the keeper answers at once
        if not answer.isdigit():
            raise RuntimeError(f"could not start {module} in {self.namespace(host)}: {answer}")
        return int(answer)

    def _start_worker(self, i):
        self._spawn(i, "distributed.cli.dask_worker", self.address, "--no-nanny",
                    "--nthreads", "1", "--host", self.ip_of(i),
                    "--worker-port", str(WORKER_PORT + self._restarts[i]),
                    "--no-dashboard", "--name", f"w{i}", "--local-directory",
                    os.path.join(self.directory, f"w{i}"), "--death-timeout", "60")

    def _wait_for_port(self, ip, port, deadline):
        while True:
            try:
                socket.create_connection((ip, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on {ip}:{port}; see {self.log(0)}")
                time.sleep(0.05)

    def log(self, host):
        """The path of a host's log (its processes' stdout and stderr)."""
        return os.path.join(self.directory, f"{self._short(host)}.log")

    # -- losing hosts ------------------------------------------------------------------------

    def kill(self, i):
        """SIGKILLs every process of worker i's host."""
        if not kill_namespace(self.namespace(i)):
            raise RuntimeError(f"processes left in {self.namespace(i)}")

    def link_down(self, i):
        """Takes worker i's link down at the switch: its host is cut off, its processes live."""
        _ip("link", "set", self._short(i), "down", namespace=self.switch)

    def link_up(self, i):
        _ip("link", "set", self._short(i), "up", namespace=self.switch)

    def scheduler_workers(self):
        """The addresses of the workers the scheduler knows now."""
        return set(self.client.run_on_scheduler(worker_addresses))

    def wait_until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def revive(self, i, timeout=30):
        """Brings worker i's host back as new: waits until the scheduler has forgotten its old
        worker, kills what is left of it, puts its link up and starts a new worker, and waits
        until the scheduler has every worker."""
        address = self.worker_address(i)
        self.wait_until(lambda: address not in self.scheduler_workers(), timeout,
                        f"the scheduler to remove {address}")
        self.kill(i)
        self.link_up(i)
        self._restarts[i] += 1
        self._start_worker(i)
        self.wait_until(lambda: len(self.scheduler_workers()) == self.workers, timeout,
                        f"{self.workers} workers")

    # -- clean-up ----------------------------------------------------------------------------

    def close(self):
        """Closes the client, removes the run's processes, namespaces and veth. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self.client is not None:
            try:
                self.client.close(timeout=5)
            except Exception:
                pass
        left = clean_up(self.prefix)
        if self._keeper is not None:
            self._keeper.stdin.close()
            try:
                self._keeper.wait(20)
            except subprocess.TimeoutExpired:
                self._keeper.kill()
                self._keeper.wait()
            self._keeper.stdout.close()
        if left:
            raise RuntimeError(f"the hosts' clean-up left: {left}")


def make_hosts(workers, directory):
    """Starts Hosts or skips the test (with the reason) where namespaces cannot be made."""
    if os.environ.get("CFUTURES_MULTIHOST") == "0":
        # noxfile.py's sessions: the fast command (the default Python) runs these; they take a
        # minute and do not depend on the Python version.
        pytest.skip("CFUTURES_MULTIHOST=0: the multi-host tests run in the fast command")
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    hosts = None
    try:
        hosts = Hosts(workers, directory)
        hosts.start()
    except BaseException as exc:
        if hosts is not None:
            hosts.close()
        if isinstance(exc, Unavailable):
            pytest.skip(str(exc))
        raise
    return hosts


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """A scheduler and 3 worker hosts, each in its own network namespace, for the module."""
    made = make_hosts(3, tmp_path_factory.mktemp("hosts"))
    try:
        yield made
    finally:
        made.close()


# -- run in the cluster ---------------------------------------------------------------------------

def worker_addresses(dask_scheduler=None):
    """On the scheduler: the addresses of its workers."""
    return list(dask_scheduler.workers)


def set_allowed_failures(n, dask_scheduler=None):
    """On the scheduler: how many worker deaths a task survives (distributed.scheduler.
    allowed-failures, read at start); returns the previous value."""
    previous, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
    return previous


def where(delay=0.0):
    """In a worker: (its address, its pid), after ``delay`` seconds."""
    from distributed import get_worker
    time.sleep(delay)
    return get_worker().address, os.getpid()


def slow_square(x, delay):
    time.sleep(delay)
    return x * x


def where_item(x, delay):
    """In a worker: (x, its address), after ``delay`` seconds."""
    return x, where(delay)[0]


def where_and_initializations(delay):
    """In a worker: its address, its pid and dask_helpers' initializations there."""
    import dask_helpers
    return (*where(delay), dask_helpers.initializations())
