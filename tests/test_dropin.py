"""Switching existing code to cfutures without editing it: install()/uninstall(),
`python -m cfutures run`, the pytest plugin, `python -m cfutures info`, and third-party code
(tqdm, dask) under install(), compared with the stdlib."""

import concurrent.futures
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import cfutures

RUN_TIMEOUT = 120


def _python(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, cwd=cwd, env=env)


def test_install_swaps_the_modules_and_uninstall_restores_them():
    import concurrent.futures.process
    import concurrent.futures.thread
    originals = {name: sys.modules[name] for name in (
        "concurrent.futures", "concurrent.futures._base", "concurrent.futures.thread",
        "concurrent.futures.process")}
    imported_before = concurrent.futures  # a module that imported it earlier
    cfutures.install()
    try:
        assert cfutures.installed()
        import concurrent.futures as now
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures.process import ProcessPoolExecutor
        assert now is sys.modules["concurrent.futures"]
        assert now.ThreadPoolExecutor is cfutures.ThreadPoolExecutor
        assert now.thread is cfutures.thread and now.__all__ == cfutures.__all__
        for name in cfutures._EXTENSIONS:  # cfutures' own additions are not installed
            assert hasattr(cfutures, name) and not hasattr(now, name)
            assert name not in dir(now)
        assert ThreadPoolExecutor is cfutures.ThreadPoolExecutor
        assert ProcessPoolExecutor is cfutures.ProcessPoolExecutor
        assert sys.modules["concurrent.futures._base"].Future is cfutures.Future
        import concurrent
        assert concurrent.futures is now  # names looked up through the package
        assert imported_before.ThreadPoolExecutor is cfutures.ThreadPoolExecutor
        assert imported_before.wait is cfutures.wait and imported_before.Future is cfutures.Future
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            assert type(ex.submit(pow, 2, 5)) is cfutures.Future
        cfutures.install()  # twice is harmless
    finally:
        cfutures.uninstall()
    assert not cfutures.installed()
    for name, module in originals.items():
        assert sys.modules[name] is module
    import concurrent
    assert concurrent.futures is originals["concurrent.futures"]
    assert imported_before.ThreadPoolExecutor is originals["concurrent.futures.thread"].ThreadPoolExecutor
    assert imported_before.Future is originals["concurrent.futures._base"].Future
    cfutures.uninstall()  # twice is harmless


SCRIPT = textwrap.dedent("""
    import multiprocessing, sys
    import concurrent.futures as futures

    def where():
        import concurrent.futures
        return concurrent.futures.__name__

    if __name__ == "__main__":
        print(futures.__name__, sys.argv[1:])
        ctx = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            print(type(ex).__module__, ex.submit(where).result())
""")


def test_run_script_installs_in_the_program_and_its_workers(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    proc = _python("-m", "cfutures", "run", str(script), "a", "--b")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["cfutures ['a', '--b']", "cfutures.process cfutures"]
    plain = _python(str(script))  # without run: the stdlib
    assert plain.stdout.splitlines() == ["concurrent.futures []",
                                         "concurrent.futures.process concurrent.futures"]


def test_run_module(tmp_path):
    (tmp_path / "progmod.py").write_text(SCRIPT)
    proc = _python("-m", "cfutures", "run", "-m", "progmod", "x", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["cfutures ['x']", "cfutures.process cfutures"]


def test_run_propagates_exit_status_and_usage(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys; sys.exit(3)\n")
    assert _python("-m", "cfutures", "run", str(script)).returncode == 3
    assert _python("-m", "cfutures", "run").returncode == 2


def test_info():
    proc = _python("-m", "cfutures", "info")
    assert proc.returncode == 0, proc.stderr
    keys = {line.split("  ")[0] for line in proc.stdout.splitlines()}
    assert {"cfutures", "native", "wheel", "python", "compiler", "flags", "free-threading",
            "start methods", "cpus", "GIL hand-off"} <= keys
    assert "fork" in proc.stdout and "-O" in proc.stdout
    assert f"{len(os.sched_getaffinity(0))} in this process's affinity mask" in proc.stdout
    assert "probe on" in proc.stdout
    assert "native          yes" in proc.stdout


@pytest.mark.portable
def test_the_version_is_the_installed_distributions():
    # pyproject.toml reads it from cfutures/__init__.py: one place, so the two cannot differ.
    from importlib import metadata
    assert cfutures.__version__ == metadata.version("cfutures")
    proc = _python("-m", "cfutures", "info")
    rows = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert rows["cfutures"].startswith(f"{cfutures.__version__} ("), proc.stdout
    assert rows["native"].startswith("yes" if cfutures.NATIVE else "no"), proc.stdout


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"),
                    reason="a free-threaded build's GIL")
def test_importing_cfutures_keeps_the_gil_off_on_a_free_threaded_build():
    # Without PYTHON_GIL set, a free-threaded interpreter turns the GIL back on when an extension
    # module does not declare Py_MOD_GIL_NOT_USED, and warns.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    proc = _python(
        "-W", "error", "-c",
        "import sys, cfutures, cfutures.process, cfutures._cfutures\n"
        "with cfutures.ThreadPoolExecutor(2) as ex: ex.submit(int).result()\n"
        "print(sys._is_gil_enabled())", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False", proc.stderr


PLUGIN_TEST = textwrap.dedent("""
    import concurrent.futures

    def test_swapped():
        import cfutures
        assert concurrent.futures.ThreadPoolExecutor is cfutures.ThreadPoolExecutor
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            assert ex.submit(sum, [1, 2]).result() == 3
""")


@pytest.mark.parametrize("how", [["-p", "cfutures.pytest_plugin"], ["--cfutures"]])
def test_pytest_plugin(tmp_path, how):
    (tmp_path / "test_user.py").write_text(PLUGIN_TEST)
    proc = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", *how, "test_user.py",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    # Without the plugin the user's test sees the stdlib (and fails).
    plain = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py", cwd=tmp_path)
    assert plain.returncode == 1


# --- third-party code, with the stdlib and under install() -------------------------------------

def test_tqdm_thread_map_and_process_map():
    pytest.importorskip("tqdm")
    code = textwrap.dedent("""
        import sys
        if sys.argv[1] == "cfutures":
            import cfutures; cfutures.install()
        from tqdm.contrib.concurrent import process_map, thread_map
        import concurrent.futures
        # Importable by the workers: from 3.14 the default start method is not fork, and a
        # function of a `-c` program cannot be found by a forkserver or spawned worker.
        from process_helpers import mul

        if __name__ == "__main__":
            a = thread_map(mul, range(200), range(200), max_workers=4, disable=True)
            b = process_map(mul, range(200), range(200), max_workers=2, chunksize=16,
                            disable=True)
            print(concurrent.futures.__name__, sum(a), sum(b))
    """)
    results = {}
    for impl in ("stdlib", "cfutures"):
        proc = _python("-c", code, impl)
        assert proc.returncode == 0, proc.stderr
        results[impl] = proc.stdout.split()
    assert results["cfutures"][0] == "cfutures" and results["stdlib"][0] == "concurrent.futures"
    assert results["cfutures"][1:] == results["stdlib"][1:] == [str(sum(x * x for x in range(200)))] * 2


def test_dask_array_on_a_cfutures_pool():
    da = pytest.importorskip("dask.array")
    import dask

    def compute(pool):
        x = da.arange(200_000, chunks=5_000).reshape(400, 500)
        with pool, dask.config.set(pool=pool):
            return int(((x + 1) ** 2).sum().compute(scheduler="threads"))

    expected = compute(concurrent.futures.ThreadPoolExecutor(4))
    cfutures.install()
    try:
        assert compute(cfutures.ThreadPoolExecutor(4)) == expected
    finally:
        cfutures.uninstall()
