"""`pytest -W error` (and a project's `filterwarnings = error`) with cfutures installed.

cfutures registers a pytest plugin (a pytest11 entry point), so pytest marks every top-level
module of cfutures' distribution for assertion rewriting before it parses the command line, and
warns about any of them already imported; under -W error that warning aborts the run, whatever
the options. An editable install's import hook (_editable_skbc_cfutures, imported by its .pth at
start-up) was such a module. Each test runs pytest in a subprocess on a tiny project, against
the cfutures installed for this interpreter: the README's fast run tests an editable install,
CI's wheel sessions a wheel, so each kind is covered where it is installed.
"""

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

pytestmark = pytest.mark.portable


def _install_kind():
    try:
        direct_url = metadata.distribution("cfutures").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return "not installed"
    editable = direct_url and json.loads(direct_url).get("dir_info", {}).get("editable")
    return "editable install" if editable else "wheel install"


TEST_MODULE = """\
import os

import cfutures


def test_a_pool():
    with cfutures.ThreadPoolExecutor(2) as ex:
        assert ex.submit(pow, 2, 5).result() == 32
    # --cfutures installs cfutures for the run and says so to the processes it starts.
    assert (os.environ.get("CFUTURES_INSTALL") == "1") == {installed}
"""


@pytest.mark.parametrize("options", [[], ["--cfutures"], ["-p", "no:cfutures.pytest_plugin"]],
                         ids=["plain", "cfutures", "plugin-disabled"])
def test_pytest_with_warnings_as_errors(tmp_path, options):
    (tmp_path / "test_project.py").write_text(
        TEST_MODULE.format(installed="--cfutures" in options))
    # A project that turns every warning into an error, as many do.
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    env = {k: v for k, v in os.environ.items()
           # What would change which plugins load, or install cfutures before pytest starts.
           if k not in ("CFUTURES_INSTALL", "CFUTURES_DASK", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
                        "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-q", "-p", "no:cacheprovider", *options],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "1 passed" in proc.stdout, f"{_install_kind()}:\n{out}"
    assert "PytestAssertRewriteWarning" not in out, out
