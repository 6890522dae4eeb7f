"""python -m cfutures COMMAND: the command line.

    bench [--repeat N] [--quick] [--only NAME] [--json PATH]
          [--peers[=NAMES]] [--under-load] [--plot FILE.png]
                                 the side-by-side benchmark table against concurrent.futures
                                 (and multiprocessing.Pool, loky, pebble, mpire, joblib)
    bench --apps [--repeat N] [--quick] [--only NAME] [--under-load]
                                 real programs (gRPC, dask, asyncio, tqdm, NumPy) with the
                                 stdlib and under cfutures.install()
    run script.py [args...]      run a program with cfutures installed in place of
    run -m module [args...]      concurrent.futures (child Python processes included)
    run --dask ADDRESS ...       the same, its process pools running on the Dask cluster at
                                 ADDRESS ("local": a LocalCluster started for the run)
    info                         version, native or portable, wheel tag, Python, build
"""

import argparse
import os
import sys

USAGE = __doc__.split("\n\n", 1)[1]


def _run_parser():
    parser = argparse.ArgumentParser(
        prog="python -m cfutures run", allow_abbrev=False,
        usage="%(prog)s [--dask ADDRESS] script.py [args...]\n"
              "       %(prog)s [--dask ADDRESS] -m module [args...]",
        description="Run a program as `python script.py` / `python -m module` would, with "
                    "cfutures installed in place of concurrent.futures (child Python processes "
                    "included).")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help='run its process pools on the Dask cluster at ADDRESS ("local": a '
                             "LocalCluster started for the run)")
    return parser


def run(argv):
    """Runs a script or module as __main__ with cfutures installed, as `python` would: the same
    sys.argv, sys.path[0], __main__ module, traceback, exit status and messages."""
    parser = _run_parser()
    # run's own options come first; from the script (or -m) on, everything is the program's.
    i = 0
    while i < len(argv) and argv[i].startswith("-") and not argv[i].startswith("-m"):
        i += 2 if argv[i] == "--dask" else 1
    args, program = parser.parse_args(argv[:i]), argv[i:]
    module = None
    if program and program[0].startswith("-m"):
        module = program[0][2:] or (program[1] if len(program) > 1 else None)
        program = program[1 if program[0] != "-m" else 2:]
        if module is None:
            parser.error("argument -m: expected one argument")
    elif not program:
        parser.error("a script or -m module is required")
    dask_address = args.dask
    if dask_address == "local":
        from cfutures.dask import start_local_cluster
        dask_address = start_local_cluster().address
    if dask_address is not None:
        # Before anything reads ProcessPoolExecutor, and for the child processes too.
        os.environ["CFUTURES_DASK"] = dask_address
    # Child Python processes (spawned workers, subprocesses) install it at start-up through
    # cfutures-autoinstall.pth.
    os.environ["CFUTURES_INSTALL"] = "1"
    from cfutures._install import install
    install()
    if module is not None:
        return _run_module(module, program)
    return _run_path(program[0], program[1:])


def _run_module(name, args):
    """`python -m NAME ARGS`: runpy's _run_module_as_main, which is what Python itself calls (so
    the same messages, and the same runpy frames in a traceback)."""
    import runpy
    sys.argv = ["-m", *args]  # while the module is looked for; runpy puts its path there
    _set_path0(os.getcwd())
    _new_main()
    return _as_main(runpy._run_module_as_main, name)


def _run_path(path, args):
    """`python PATH ARGS`: a directory or zip file through runpy as Python does; a script (or .pyc
    file) compiled and run here, in a fresh __main__ module, as Python's C code does."""
    import importlib.machinery
    import importlib.util
    import pkgutil
    import runpy
    # Python makes the file name absolute (3.9+), without normalising it: __file__, code objects
    # and tracebacks show it; sys.argv[0] stays as given.
    filename = os.path.join(os.getcwd(), path)
    sys.argv = [path, *args]
    if pkgutil.get_importer(filename) is not None:  # a directory or zip file with a __main__.py
        _set_path0(filename)
        _new_main()
        return _as_main(runpy._run_module_as_main, "__main__", False)
    _set_path0(os.path.dirname(os.path.realpath(path)))
    try:
        with open(filename, "rb") as f:
            source = f.read()
    except OSError as exc:
        print(f"{_program_name()}: can't open file {filename!r}: [Errno {exc.errno}] "
              f"{exc.strerror}", file=sys.stderr)
        return 2
    magic = importlib.util.MAGIC_NUMBER
    pyc = filename.endswith(".pyc") or source[:2] == magic[:2]  # as Python's maybe_pyc_file
    loader = (importlib.machinery.SourcelessFileLoader if pyc
              else importlib.machinery.SourceFileLoader)("__main__", filename)
    names = {"__file__": filename}
    if sys.version_info < (3, 15):
        names["__cached__"] = None
    main = _new_main(**names)
    main.__loader__ = loader

    def program():
        if pyc:
            if source[:4] != magic:
                raise RuntimeError("Bad magic number in .pyc file")
            import marshal
            code = marshal.loads(source[16:])
        else:
            code = compile(source, filename, "exec", dont_inherit=True)
        exec(code, main.__dict__)

    return _as_main(program)


def _set_path0(entry):
    """sys.path[0] as Python sets it for the program: in place of the working directory that
    `python -m cfutures` put there; nothing under -P / PYTHONSAFEPATH (3.11+)."""
    if getattr(sys.flags, "safe_path", False):
        return
    if sys.path and sys.path[0] == os.getcwd():
        sys.path[0] = entry
    else:
        sys.path.insert(0, entry)


def _new_main(**names):
    """A __main__ module as the interpreter makes it at start-up, put in sys.modules: the program
    must not run in this module's namespace."""
    import builtins
    import importlib.machinery
    import types
    main = types.ModuleType("__main__")
    if sys.version_info < (3, 14):
        main.__annotations__ = {}
    main.__builtins__ = builtins
    main.__loader__ = importlib.machinery.BuiltinImporter
    main.__dict__.update(names)
    sys.modules["__main__"] = main
    return main


def _program_name():
    """The interpreter's name as Python prints it in "can't open file" (its program_name: the
    command line's first word)."""
    orig_argv = getattr(sys, "orig_argv", None)  # 3.10+
    if orig_argv and orig_argv[0]:
        return orig_argv[0]
    try:
        import ctypes
        get = ctypes.pythonapi.Py_GetProgramName
        get.restype = ctypes.c_wchar_p
        return get() or sys.executable
    except (ImportError, AttributeError):
        return sys.executable


def _as_main(program, *args):
    """Runs the program; SystemExit ends this run as it would end Python; any other exception
    the program does not catch goes to _uncaught (outside this except clause: Python's
    sys.excepthook runs with no exception being handled)."""
    try:
        program(*args)
    except SystemExit:
        raise
    except BaseException as exc:
        uncaught = exc
    else:
        return 0
    _uncaught(uncaught)


def _program_frames(tb):
    """The traceback without this module's frames (those above the program's)."""
    while tb is not None and tb.tb_frame.f_globals is globals():
        tb = tb.tb_next
    return tb


def _uncaught(exc):
    """Ends the run after an exception the program did not catch, as Python ends it: printed by
    sys.excepthook with the program's frames only, then exit status 1 (or, for
    KeyboardInterrupt, death by SIGINT once the interpreter is finalised)."""
    tb = exc.__traceback__ = _program_frames(exc.__traceback__)
    hook = getattr(sys, "excepthook", None)
    try:
        if hook is None:
            print("sys.excepthook is missing", file=sys.stderr)
            sys.__excepthook__(type(exc), exc, tb)
        else:
            hook(type(exc), exc, tb)
    except BaseException as error:  # CPython's words for a failing hook
        print("Error in sys.excepthook:", file=sys.stderr)
        error.__traceback__ = _program_frames(error.__traceback__)  # (the hook's frames)
        sys.__excepthook__(type(error), error, error.__traceback__)
        print("\nOriginal exception was:", file=sys.stderr)
        sys.__excepthook__(type(exc), exc, tb)
    hook = getattr(sys, "excepthook", None)

    def printed_already(type_, value, traceback):
        sys.excepthook = hook
        if value is not exc and hook is not None:
            hook(type_, value, traceback)

    # Raised on, the exception ends the interpreter that runs `python -m cfutures` as Python
    # ends a program (the exit status, SIGINT); that interpreter asks sys.excepthook to print it
    # again, which printed_already declines.
    sys.excepthook = printed_already
    raise exc


def info():
    import platform
    import sysconfig

    import cfutures
    gil = getattr(sys, "_is_gil_enabled", None)
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    rows = [
        ("cfutures", f"{cfutures.__version__} ({os.path.dirname(cfutures.__file__)})"),
        ("native", "yes: the C++ core" if cfutures.NATIVE else
                   "no: a portable build, whose executors are concurrent.futures' own "
                   "(cfutures' opt-in features raise NotImplementedError)"),
        ("wheel", _wheel_tags()),
        ("python", f"{platform.python_implementation()} {platform.python_version()} "
                   f"({sys.executable})"),
        ("platform", platform.platform()),
    ]
    if cfutures.NATIVE:
        rows += _native_rows(cfutures, free_threaded, gil)
    rows.append(("installed", "yes" if cfutures.installed() else "no"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _wheel_tags():
    """The tags of the wheel this cfutures was installed from (its dist-info's WHEEL file)."""
    from importlib import metadata
    try:
        wheel = metadata.distribution("cfutures").read_text("WHEEL") or ""
    except metadata.PackageNotFoundError:
        return "none: not installed from a wheel"
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return ", ".join(tags) or "unknown"


def _native_rows(cfutures, free_threaded, gil):
    import multiprocessing

    from cfutures import _cfutures
    build = _cfutures._build_info()
    limits = _cfutures._cpu_limits()
    return [
        ("compiler", build["compiler"]),
        ("flags", build["flags"]),
        ("build type", build["build_type"]),
        ("pybind11", build["pybind11"]),
        ("free-threading", f"build {'yes' if free_threaded else 'no'}; GIL "
                           f"{'enabled' if gil is None or gil() else 'disabled'}; the module "
                           f"{'declares' if build['gil_not_used'] else 'does not declare'} "
                           f"that it runs without the GIL"),
        ("start methods", ", ".join(multiprocessing.get_all_start_methods())
                          + f" (default: {multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_context().get_start_method()})"),
        ("cpus", f"{os.cpu_count()} on the host; {limits['affinity_cpus']} in this process's "
                 f"affinity mask; CPU quota "
                 + ("none" if limits["quota_cpus"] is None
                    else f"{limits['quota_cpus']:g} ({limits['quota_source']})")
                 + f"; {limits['usable_cpus']} usable by the waiting policy"),
        ("GIL hand-off", "spins until the GIL is free (probe on)" if build["gil_probe"] else
                         "CPython's own (probe off: a GIL layout it does not know)"),
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m cfutures COMMAND\n" + USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from cfutures._bench import cli
        return cli.main(rest)
    if command == "run":
        return run(rest)
    if command == "info":
        argparse.ArgumentParser(prog="python -m cfutures info",
                                description="Version, native or portable, wheel tag, Python, "
                                            "build.").parse_args(rest)
        return info()
    print(f"unknown command {command!r}\nusage: python -m cfutures COMMAND\n{USAGE}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
