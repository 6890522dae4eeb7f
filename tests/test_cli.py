"""The command line, `python -m cfutures ...`: `run` runs a program the way `python` runs it
(what the program sees, its traceback, its exit status, Python's own messages), each checked
against the same interpreter's `python script.py` / `python -m module` in subprocesses, since
tracebacks and the __main__ module differ between Python versions; and the subcommands reject
flags they do not know."""

import os
import py_compile
import subprocess
import sys
import textwrap
import zipfile

import pytest

RUN_TIMEOUT = 120

# What a program sees of how it was started.
VIEW = textwrap.dedent("""
    import sys
    names = list(globals())
    loader = globals()["__loader__"]
    print("names", names)
    print("argv", sys.argv)
    print("file", globals().get("__file__"))
    print("code", sys._getframe().f_code.co_filename)
    print("path", sys.path)
    print("loader", getattr(loader, "__name__", type(loader).__name__))
    print("spec", getattr(__spec__, "name", None), getattr(__spec__, "origin", None))
    print("module", __name__, __package__, __doc__, globals().get("__cached__"))
    import __main__
    print("main", __main__.__dict__ is globals())
    import helper
    print("helper", helper.__file__)
""")

HELPER = textwrap.dedent("""
    def fail(what):
        raise ValueError(what)
""")

# An uncaught exception with frames in two files and a chain of causes.
FAILS = textwrap.dedent("""
    import helper

    def outer():
        try:
            helper.fail("bad")
        except ValueError as exc:
            raise RuntimeError("wrapped") from exc

    try:
        outer()
    except RuntimeError:
        {}["missing"]
""")

PROGRAMS = {
    "view": VIEW,
    "fails": FAILS,
    "syntax_error": "x = 1\ndef f(:\n    pass\n",
    "exit_message": "import sys\nsys.exit('bye')\n",
    "exit_code": "import sys\nprint('out')\nsys.exit(3)\n",
    "exit_none": "raise SystemExit\n",
    "keyboard_interrupt": "def f():\n    raise KeyboardInterrupt\nprint('before')\nf()\n",
    "excepthook": textwrap.dedent("""
        import sys, traceback
        def hook(type_, value, tb):
            print("hook:", type_.__name__, value, [f.name for f in traceback.extract_tb(tb)],
                  file=sys.stderr)
        sys.excepthook = hook
        def f():
            1 / 0
        f()
    """),
    "failing_excepthook": textwrap.dedent("""
        import sys
        def hook(type_, value, tb):
            raise TypeError("the hook fails")
        sys.excepthook = hook
        raise LookupError("the program fails")
    """),
}


def _python(*args, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, cwd=cwd)


def _outcome(proc):
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def tree(tmp_path):
    """tmp/real/NAME.py for each program (and helper.py beside it), tmp/links/NAME.py -> the real
    one, tmp/NAME.py too for -m NAME; tmp/real/view.pyc; tmp/app/__main__.py and tmp/app.zip
    (a directory and a zip file that Python runs)."""
    for folder in ("real", "app"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "helper.py").write_text(HELPER)
    (tmp_path / "links").mkdir()
    (tmp_path / "helper.py").write_text(HELPER)
    for name, source in PROGRAMS.items():
        (tmp_path / "real" / f"{name}.py").write_text(source)
        (tmp_path / f"{name}.py").write_text(source)
        (tmp_path / "links" / f"{name}.py").symlink_to(os.path.join("..", "real", f"{name}.py"))
    (tmp_path / "app" / "__main__.py").write_text(VIEW)
    with zipfile.ZipFile(tmp_path / "app.zip", "w") as app:
        app.writestr("__main__.py", VIEW)
        app.writestr("helper.py", HELPER)
    py_compile.compile(str(tmp_path / "real" / "view.py"), str(tmp_path / "real" / "view.pyc"),
                       doraise=True)
    return tmp_path


def _same_as_python(tree, *target):
    """Runs `python TARGET...` and `python -m cfutures run TARGET...` in `tree`: the outcomes
    (exit status, stdout, stderr) must be the same."""
    python = _outcome(_python(*target, cwd=tree))
    ours = _outcome(_python("-m", "cfutures", "run", *target, cwd=tree))
    assert ours == python
    return python


@pytest.mark.parametrize("target", ["real/view.py", "./links/../real/view.py", "links/view.py",
                                    "ABS/real/view.py", "real/view.pyc", "app", "app.zip",
                                    "-m view"])
def test_run_gives_the_program_what_python_gives_it(tree, target):
    # argv, __file__ (absolute since 3.9, as given otherwise), sys.path (its first entry: the
    # script's real directory), the __main__ module's names, loader and spec.
    target = target.replace("ABS", str(tree)).split()
    code, out, err = _same_as_python(tree, *target, "arg", "--flag")
    assert code == 0, err
    assert "main True" in out


@pytest.mark.parametrize("target", ["real/fails.py", "links/fails.py", "-m fails"])
def test_run_prints_an_uncaught_exception_as_python_does(tree, target):
    # Only the program's frames (and runpy's for -m, as Python shows them), absolute file names.
    code, _, err = _same_as_python(tree, *target.split())
    assert code == 1
    assert err.startswith("Traceback (most recent call last):\n")
    assert "cfutures" not in err
    assert f'File "{tree}' in err


@pytest.mark.parametrize("name", ["syntax_error", "exit_message", "exit_code", "exit_none",
                                  "keyboard_interrupt", "excepthook", "failing_excepthook"])
def test_run_ends_as_python_does(tree, name):
    code, out, err = _same_as_python(tree, f"real/{name}.py")
    assert code == {"syntax_error": 1, "exit_message": 1, "exit_code": 3, "exit_none": 0,
                    "keyboard_interrupt": -2, "excepthook": 1, "failing_excepthook": 1}[name]
    assert "cfutures" not in err


@pytest.mark.parametrize("target", ["missing.py", "real/missing.py", "-m missing",
                                    "-m json.missing"])
def test_run_reports_a_missing_program_as_python_does(tree, target):
    code, out, err = _same_as_python(tree, *target.split())
    assert code == (1 if target.startswith("-m") else 2)
    assert "Traceback" not in err
    if not target.startswith("-m"):
        path = os.path.join(str(tree), target)
        assert err == (f"{sys.executable}: can't open file {path!r}: "
                       "[Errno 2] No such file or directory\n")


def test_run_installs_cfutures_in_the_program_and_its_children(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys
        import cfutures
        print(cfutures.installed())
        child = "import cfutures; print(cfutures.installed())"
        sys.stdout.flush()
        subprocess.run([sys.executable, "-c", child], check=True)
    """))
    proc = _python("-m", "cfutures", "run", str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("argv", [["info", "--json"], ["info", "extra"], ["run", "--bogus", "x.py"],
                                  ["run", "--dask"], ["run"], ["run", "-m"],
                                  ["bench", "--bogus"]])
def test_subcommands_reject_what_they_do_not_know(tmp_path, argv):
    proc = _python("-m", "cfutures", *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"usage: python -m cfutures {argv[0]}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_run_help(tmp_path):
    proc = _python("-m", "cfutures", "run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m cfutures run") and "--dask" in proc.stdout
