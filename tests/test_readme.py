"""The README's deviations section is generated from tests/deviations.py; this keeps them equal."""

import os

import deviations
import pytest

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


BEYOND = _examples("## Beyond the stdlib (opt-in)", "### Compared with")


@pytest.mark.parametrize("index", range(len(BEYOND)))
def test_the_beyond_the_stdlib_examples_run(tmp_path, index):
    import subprocess
    import sys
    script = tmp_path / "example.py"
    script.write_text(BEYOND[index])
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()


SCALE_OUT = _examples("## Scale out", "## Benchmarks")


@pytest.mark.parametrize("index", range(len(SCALE_OUT)))
def test_the_scale_out_examples_run(tmp_path, index):
    import subprocess
    import sys
    pytest.importorskip("distributed")
    script = tmp_path / "example.py"
    script.write_text(SCALE_OUT[index])
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["49", "333283335000"]
