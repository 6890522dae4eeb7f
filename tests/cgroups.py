"""Cgroups that tests make for themselves, with a CPU quota (v1 or v2), and remove after."""

import os
import uuid

import pytest


def _mounts():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            yield fields[4], fields[dash + 1], fields[dash + 3].split(",")


def _own_cgroup(v1):
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            if (v1 and "cpu" in controllers.split(",")) or (not v1 and hid == "0" and not controllers):
                return path
    return None


class CpuCgroup:
    """A cgroup of this test's own under this process's cgroup, with a CPU quota."""

    def __init__(self, v1):
        if os.geteuid() != 0:
            pytest.skip("making a cgroup needs root")
        self.v1 = v1
        mount = next((point for point, fstype, opts in _mounts()
                      if (v1 and fstype == "cgroup" and "cpu" in opts)
                      or (not v1 and fstype == "cgroup2")), None)
        own = _own_cgroup(v1)
        if mount is None or own is None:
            pytest.skip(f"no cgroup {'v1 cpu' if v1 else 'v2'} hierarchy mounted here")
        self.parent = mount + ("" if own == "/" else own)
        if not v1:
            with open(os.path.join(self.parent, "cgroup.controllers")) as f:
                if "cpu" not in f.read().split():
                    pytest.skip("the cpu controller is not available in cgroup v2 here "
                                "(bound to the v1 hierarchy)")
            with open(os.path.join(self.parent, "cgroup.subtree_control")) as f:
                if "cpu" not in f.read().split():
                    pytest.skip("the cpu controller is not enabled for this cgroup's children")
        self.path = os.path.join(self.parent, f"cfutures-test-{uuid.uuid4().hex[:8]}")
        try:
            os.mkdir(self.path)
        except OSError as e:
            pytest.skip(f"cannot make a cgroup here: {e}")

    def set_quota(self, cpus, period_us=100_000):
        quota = int(cpus * period_us)
        if self.v1:
            self._write("cpu.cfs_period_us", period_us)
            self._write("cpu.cfs_quota_us", quota)
        else:
            self._write("cpu.max", f"{quota} {period_us}")

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(str(value))

    def join(self):
        """For preexec_fn: moves the calling (child) process into the cgroup."""
        self._write("cgroup.procs", os.getpid())

    def remove(self):
        # A process still inside (none should be) goes back to the parent first.
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            with open(os.path.join(self.parent, "cgroup.procs"), "w") as f:
                f.write(pid)
        os.rmdir(self.path)


@pytest.fixture(params=["v1", "v2"])
def cpu_cgroup(request):
    group = CpuCgroup(v1=request.param == "v1")
    yield group
    group.remove()
