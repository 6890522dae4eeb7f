"""What the waiting policy counts on (core/spin_policy.hpp): the state of the GIL a thread wants
back (src/bindings/gil_probe.h), and the CPUs this process may really use (core/cpu_limits.hpp).

The affinity mask and a cgroup's CPU quota (v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``) are read
by a fresh interpreter started inside them; the cgroups are made and removed by the tests (root
only; a test skips with the reason where it cannot make one)."""

import json
import os
import subprocess
import sys

import pytest

from cgroups import cpu_cgroup  # noqa: F401 (a fixture)

PROBE = "import json; from cfutures import _cfutures; print(json.dumps(_cfutures._cpu_limits()))"


def limits_in(preexec_fn=None, code=PROBE):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, preexec_fn=preexec_fn, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_gil_probe_knows_this_interpreter():
    # Off, the round trip falls back to sleeping in CPython's take_gil(): a new CPython whose
    # layout gil_probe.c does not know must fail here, not slow down unnoticed. (Free-threaded
    # builds have the probe from 3.13 on: their GIL can be switched on, PYTHON_GIL=1.)
    from cfutures import _cfutures
    assert _cfutures._build_info()["gil_probe"] is True


def test_this_process_limits_are_sane():
    from cfutures import _cfutures
    limits = _cfutures._cpu_limits()
    assert limits["affinity_cpus"] == len(os.sched_getaffinity(0))
    assert 1 <= limits["usable_cpus"] <= limits["affinity_cpus"]


def test_affinity_mask_counts():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("this process may use one CPU only")
    (limits,) = limits_in(preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}))
    assert limits["affinity_cpus"] == 1
    assert limits["usable_cpus"] == 1


def test_a_half_cpu_quota_means_one_usable_cpu(cpu_cgroup):
    cpu_cgroup.set_quota(0.5)
    (limits,) = limits_in(preexec_fn=cpu_cgroup.join)
    assert limits["quota_cpus"] == pytest.approx(0.5)
    assert limits["usable_cpus"] == 1
    assert limits["quota_source"].startswith(cpu_cgroup.path)


def test_a_quota_caps_the_affinity_count_by_whole_cpus(cpu_cgroup):
    cpu_cgroup.set_quota(1.5)
    (limits,) = limits_in(preexec_fn=cpu_cgroup.join)
    assert limits["quota_cpus"] == pytest.approx(1.5)
    assert limits["usable_cpus"] == 1
    cpu_cgroup.set_quota(64)
    (limits,) = limits_in(preexec_fn=cpu_cgroup.join)
    assert limits["usable_cpus"] == limits["affinity_cpus"]


def test_limits_are_read_again_after_a_move_into_a_cgroup(cpu_cgroup):
    cpu_cgroup.set_quota(0.5)
    code = (f"{PROBE}\nimport os, time\n"
            f"open({os.path.join(cpu_cgroup.path, 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
            "time.sleep(1.2)\n"
            f"{PROBE}\n")
    before, after = limits_in(code=code)
    assert after["quota_cpus"] == pytest.approx(0.5)
    assert after["usable_cpus"] == 1
    assert before["quota_cpus"] != pytest.approx(0.5)
