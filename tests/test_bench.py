"""The benchmark tool: the real-programs benchmark (cfutures._bench.apps: one cheap program end
to end in fresh interpreters, and the guards that keep a wrong run out of the table), and the
machine line every table starts with."""

import os
import subprocess
import sys

import pytest

from cgroups import cpu_cgroup  # noqa: F401 (a fixture)

import cfutures
from cfutures._bench import apps, render


def test_one_program_runs_on_both_sides():
    # asyncio needs no third-party package, so the smoke run works in every environment.
    rows = apps.run_apps(repeat=1, quick=True, only="asyncio", progress=None)
    assert [r["app"] for r in rows] == ["asyncio"]
    row = rows[0]
    assert {k: len(v) for k, v in row["samples"].items()} == {"stdlib": 1, "cfutures": 1}
    assert row["ratio"] > 0 and all(v > 0 for v in row["median"].values())


def test_a_run_on_the_wrong_module_fails():
    with pytest.raises(SystemExit, match="would not measure stdlib"):
        apps._check(cfutures.ThreadPoolExecutor, "stdlib")
    # A class of the stdlib's module, whether or not cfutures is installed in this process.
    stdlib_class = type("ThreadPoolExecutor", (), {"__module__": "concurrent.futures.thread"})
    with pytest.raises(SystemExit, match="would not measure cfutures"):
        apps._check(stdlib_class(), "cfutures")


def test_a_failing_child_is_reported(monkeypatch):
    monkeypatch.setattr(apps, "_BOOT", "raise SystemExit('broken on purpose')")
    with pytest.raises(RuntimeError, match="broken on purpose"):
        apps._one_run("asyncio", "stdlib", 10)


def test_missing_package_is_a_skipped_row(monkeypatch):
    monkeypatch.setattr(apps, "APPS",
                        [("absent", ("no_such_package_for_cfutures",), 10, 1, None)])
    rows = apps.run_apps(repeat=1, quick=True, progress=None)
    assert rows[0]["ratio"] is None and 'cfutures[apps]' in rows[0]["note"]
    assert 'cfutures[apps]' in apps.render_apps(rows, 1, "cmd")


def test_render_marks_slower_rows():
    rows = [{"app": name, "unit": "s", "n": 5, "samples": {"stdlib": [s], "cfutures": [c]},
             "median": {"stdlib": s, "cfutures": c}, "ratio": s / c}
            for name, s, c in (("faster", 2.0, 1.0), ("slower", 1.0, 2.0))]
    lines = apps.render_apps(rows, 1, "cmd").splitlines()
    assert "2.00x |" in next(l for l in lines if "`faster`" in l)
    assert "0.50x SLOWER" in next(l for l in lines if "`slower`" in l)


# --- the machine line: every table names what it ran on, the CPU limits included ---------------

ENVIRONMENT = "from cfutures._bench.render import environment; print(environment()['limits'])"


def _limits_line(preexec_fn=None):
    return subprocess.run([sys.executable, "-c", ENVIRONMENT], capture_output=True, text=True,
                          timeout=60, preexec_fn=preexec_fn, check=True).stdout.strip()


def test_tables_name_the_machine_and_its_cpu_limits():
    env = render.environment()
    text = render.render([], 1, "python -m cfutures bench")
    first = text.splitlines()[0]
    assert first.startswith("Machine: ") and os.uname().release in first
    assert f"affinity {len(os.sched_getaffinity(0))} CPUs" in first
    assert env["python"] in text
    assert first in apps.render_apps([], 1, "python -m cfutures bench --apps")


def test_the_machine_line_shows_a_narrower_affinity():
    cpu = min(os.sched_getaffinity(0))
    assert _limits_line(lambda: os.sched_setaffinity(0, {cpu})).startswith("affinity 1 CPUs")


def test_the_machine_line_shows_a_cgroup_quota(cpu_cgroup):
    cpu_cgroup.set_quota(0.5)
    line = _limits_line(cpu_cgroup.join)
    assert "CPU quota 0.5 (" in line and line.endswith("1 usable")
