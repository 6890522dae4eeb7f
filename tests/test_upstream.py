"""CPython's own test_concurrent_futures, run against cfutures.

The suite runs in a child pytest process (its redirection of concurrent.futures and its thread and
process checks must not leak into this one), with CFUTURES_INSTALL=1 so that it and every
interpreter it starts import cfutures as concurrent.futures. The per-module pass/fail/skip table
is printed at the end of the run (tests/conftest.py); any failure or error fails this test, with
the child's report.
"""

import collections
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "upstream"))
import suite  # noqa: E402

pytestmark = pytest.mark.upstream  # left out of a plain `pytest` (pyproject.toml)

SUMMARIES = []  # read by conftest.pytest_terminal_summary


def _summarise(report_path):
    per_module = collections.OrderedDict()
    skips = collections.Counter()
    failures = []
    with open(report_path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            per_module.setdefault(rec["module"], collections.Counter())[rec["outcome"]] += 1
            if rec["outcome"] == "skipped":
                skips[rec["message"].strip()] += 1
            elif rec["outcome"] == "failed":
                failures.append(f"{rec['test']} ({rec['when']}): {rec['message']}")
    return per_module, skips, failures


@pytest.mark.timeout(2400)
def test_cpython_test_concurrent_futures(tmp_path):
    try:
        extra_path, where = suite.locate()
    except LookupError as exc:
        pytest.skip(str(exc))
    env = dict(os.environ, CFUTURES_INSTALL="1",
               PYTHONPATH=os.pathsep.join([os.path.join(HERE, "upstream"), HERE]))
    if extra_path:
        env["CFUTURES_TEST_PATH"] = extra_path
    report = tmp_path / "upstream.jsonl"
    env["CFUTURES_UPSTREAM_REPORT"] = str(report)
    cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-p", "cfutures_upstream_plugin",
           "--pyargs", "test.test_concurrent_futures", "-o", "addopts=", "-p", "no:cacheprovider",
           # The suite reads what the concurrent.futures logger writes to stderr: pytest's log
           # capture would swallow it.
           "-p", "no:logging",
           "--rootdir", str(tmp_path), "--timeout", "300", "--timeout-method", "thread",
           "-q", "-rfE"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=2300)
    assert report.exists(), proc.stdout[-20000:]
    per_module, skips, failures = _summarise(report)
    lines = [f"CPython test_concurrent_futures on cfutures (Python {sys.version.split()[0]}, "
             f"suite from {where}):"]
    for module, c in per_module.items():
        lines.append(f"  {module:<46} {c['passed']:4d} passed {c['failed']:4d} failed "
                     f"{c['skipped']:4d} skipped")
    for reason, n in skips.most_common():
        lines.append(f"  skipped x{n}: {reason}")
    SUMMARIES.append("\n".join(lines))
    assert not failures and proc.returncode == 0, (
        "\n".join(failures) + "\n\n" + proc.stdout[-20000:])
