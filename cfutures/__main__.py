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


def run(argv):
    """Runs a script or module as __main__ with cfutures installed, as `python` would."""
    import runpy
    dask_address = None
    if argv and argv[0] == "--dask" and len(argv) > 1:
        dask_address, argv = argv[1], argv[2:]
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print("usage: python -m cfutures run [--dask ADDRESS] script.py [args...]\n"
              "       python -m cfutures run [--dask ADDRESS] -m module [args...]",
              file=sys.stderr)
        return 2
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
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's path in argv[0]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


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
