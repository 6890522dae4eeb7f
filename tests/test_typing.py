"""The package's types: `mypy --strict` accepts a program that uses every public name, and
rejects one that passes the wrong types through submit() and map() (ParamSpec at work)."""

import os
import subprocess
import sys

import pytest

SAMPLES = os.path.join(os.path.dirname(__file__), "typing_samples")


def _mypy(tmp_path, name):
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), os.path.join(SAMPLES, name)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_strict_mypy_accepts_every_public_name(tmp_path):
    proc = _mypy(tmp_path, "uses_everything.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_strict_mypy_rejects_wrong_types(tmp_path):
    proc = _mypy(tmp_path, "wrong_types.py")
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == ["9", "10", "11"], proc.stdout


def test_the_sample_runs(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(SAMPLES, "uses_everything.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
