"""The command line, `python -m cfutures ...`: the subcommands reject flags they do not know."""

import subprocess
import sys

import pytest

RUN_TIMEOUT = 120


def _python(*args, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, cwd=cwd)


@pytest.mark.parametrize("argv", [["info", "--json"], ["info", "extra"],
                                  ["bench", "--bogus"]])
def test_subcommands_reject_what_they_do_not_know(tmp_path, argv):
    proc = _python("-m", "cfutures", *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"usage: python -m cfutures {argv[0]}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
