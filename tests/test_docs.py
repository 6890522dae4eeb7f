"""The documentation: every Python example in README.md and docs/ runs as written, the
deviations page is the registry's (tests/deviations.py), and the links between pages resolve.
The site itself is built, warnings as errors, by noxfile.py's docs session."""

import os
import re
import subprocess
import sys

import deviations
import pytest

import cfutures

# The examples run against a portable build too (noxfile.py's portable session).
pytestmark = pytest.mark.portable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    os.path.relpath(os.path.join(folder, name), ROOT)
    for folder, _, names in os.walk(os.path.join(ROOT, "docs")) for name in names
    if name.endswith(".md"))


def _read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


EXAMPLES = [(page, index, code) for page in PAGES
            for index, code in enumerate(re.findall(r"```python\n(.*?)```", _read(page), re.S))]

# What an example prints, where the page says it in its comments and the output is exact.
EXPECTED_START = {
    ("README.md", 0): ["49", "[0,", "1,", "4,", "9,", "16]"],
    ("docs/guide/scale-out.md", 0): ["49", "333283335000"],
    ("docs/guide/scale-out.md", 1): ["1", "1", "2", "2"],
    ("README.md", 1): ["333283335000"],
    ("README.md", 2): ["['urgent',", "'routine']"],
    ("README.md", 3): ["req-42"],
    ("README.md", 4): ["435", "True"],
    ("docs/guide/opt-in.md", 6): ["['urgent',", "'batch-0',", "'batch-1',", "'batch-2']"],
    ("docs/guide/opt-in.md", 7): ["req-42"],
}


@pytest.mark.parametrize("page, index, code", EXAMPLES,
                         ids=[f"{page}-{index}" for page, index, _ in EXAMPLES])
def test_every_example_runs(tmp_path, page, index, code):
    if "cfutures.dask" in code:
        pytest.importorskip("distributed")
    script = tmp_path / "example.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    if not cfutures.NATIVE and run.returncode != 0:
        # A portable build: the opt-in features of the native core say that they are missing.
        assert "NotImplementedError" in run.stderr, run.stderr
        assert "cfutures.NATIVE is False" in run.stderr, run.stderr
        return
    assert run.returncode == 0, run.stderr
    expected = EXPECTED_START.get((page, index))
    if expected is not None:
        assert run.stdout.split()[:len(expected)] == expected, run.stdout


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 8 and set(EXPECTED_START) <= {(p, i) for p, i, _ in EXAMPLES}


def test_the_deviations_page_is_the_registry():
    text = _read("docs/deviations.md")
    assert deviations.BEGIN in text and deviations.END in text
    section = text.split(deviations.BEGIN, 1)[1].split(deviations.END, 1)[0].strip()
    assert section == deviations.markdown(), (
        "docs/deviations.md is stale: run `python tests/deviations.py --write`")


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _read(page)):
        if "://" in target:
            continue
        assert os.path.exists(os.path.join(ROOT, os.path.dirname(page), target)), (page, target)
