"""The C++ core's own tests (doctest, run by ctest), built plain, with ThreadSanitizer and with
AddressSanitizer + UndefinedBehaviorSanitizer, and the frame reader's fuzz target (60 s under
ASan + UBSan, a short run in the plain build). Part of the pytest run so that one command runs
the whole suite. CFUTURES_CORE_TESTS=0 skips them (the runner sets it for its other Pythons)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCTEST = "/usr/include/doctest/doctest.h"


FUZZ_SECONDS = {"": 5, "thread": 0, "address,undefined": 60}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sanitize", [
    pytest.param("", id="plain"),
    pytest.param("thread", id="tsan", marks=pytest.mark.sanitizers),
    pytest.param("address,undefined", id="asan-ubsan", marks=pytest.mark.sanitizers),
])
def test_core(sanitize):
    if os.environ.get("CFUTURES_CORE_TESTS") == "0":
        pytest.skip("CFUTURES_CORE_TESTS=0")
    if not os.path.exists(DOCTEST):
        pytest.skip("doctest headers missing (Debian: doctest-dev; tests/system-deps.sh installs it)")
    cmake = shutil.which("cmake")
    assert cmake, "cmake not found"
    build = os.path.join(ROOT, "build", "core-" + (sanitize.split(",")[0] or "plain"))
    configure = [cmake, "-S", ROOT, "-B", build, "-DCFUTURES_BUILD_PYTHON=OFF",
                 "-DCFUTURES_BUILD_TESTS=ON", f"-DCFUTURES_SANITIZE={sanitize}",
                 f"-DCFUTURES_FUZZ_SECONDS={FUZZ_SECONDS[sanitize]}",
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo"]
    if shutil.which("ninja") and not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        configure += ["-G", "Ninja"]
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1", ASAN_OPTIONS="detect_leaks=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    if sanitize:
        env["CFUTURES_SANITIZED"] = "1"  # skips the 4 GiB payload test (plain build only)
    for cmd in (configure, [cmake, "--build", build, "-j2"],
                ["ctest", "--test-dir", build, "--output-on-failure", "--timeout", "300"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=800)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}"
    assert "100% tests passed" in proc.stdout, proc.stdout
    if FUZZ_SECONDS[sanitize]:
        assert "ProtocolFuzz" in proc.stdout, proc.stdout
