"""The README: its deviations section is generated from tests/deviations.py (this keeps them
equal), and its examples run as written."""

import os

import deviations
import pytest

import cfutures

# The README's examples run against a portable build too (noxfile.py's portable session).
pytestmark = pytest.mark.portable

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BEGIN = deviations.README_BEGIN
END = deviations.README_END


def test_readme_deviations_match_the_registry():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert BEGIN in text and END in text
    section = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == deviations.markdown(), (
        "README deviations are stale: run `python tests/deviations.py --write-readme`")


def _examples(heading, next_heading):
    import re
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split(heading, 1)[1].split(next_heading, 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run(tmp_path, example):
    import subprocess
    import sys
    script = tmp_path / "example.py"
    script.write_text(example)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)


QUICK_START = _examples("## Quick start", "### Drop-in")


@pytest.mark.parametrize("index", range(len(QUICK_START)))
def test_the_quick_start_runs(tmp_path, index):
    run = _run(tmp_path, QUICK_START[index])
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:6] == ["49", "[0,", "1,", "4,", "9,", "16]"]


BEYOND = _examples("## Beyond the stdlib (opt-in)", "### Compared with")


@pytest.mark.parametrize("index", range(len(BEYOND)))
def test_the_beyond_the_stdlib_examples_run(tmp_path, index):
    run = _run(tmp_path, BEYOND[index])
    if not cfutures.NATIVE and run.returncode != 0:
        # A portable build: the opt-in features of the native core say that they are missing.
        assert "NotImplementedError" in run.stderr, run.stderr
        assert "cfutures.NATIVE is False" in run.stderr, run.stderr
        return
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()


SCALE_OUT = _examples("## Scale out", "## Benchmarks")


@pytest.mark.parametrize("index", range(len(SCALE_OUT)))
def test_the_scale_out_examples_run(tmp_path, index):
    pytest.importorskip("distributed")
    run = _run(tmp_path, SCALE_OUT[index])
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["49", "333283335000"]
