"""Real programs, with concurrent.futures and with cfutures: ``python -m cfutures bench --apps``.

Microbenchmarks measure one operation; these measure what a user of a library feels. Each
program runs unchanged on the stdlib and under ``cfutures.install()``:

- grpc: a gRPC server (grpcio, generic bytes-in/bytes-out handler, no protoc) on
  ``grpc.server(ThreadPoolExecutor(8))``, loopback; 8 client threads of the same process make
  N unary calls in all over one channel. Timed: all the calls.
- dask: ``(da.ones((N,), chunks=100) * 2 + 1).sum()`` computed 3 times on dask's threaded
  scheduler, given ``ThreadPoolExecutor(4)`` as its pool. Timed: the 3 computes.
- asyncio: N calls of a tiny blocking function through ``loop.run_in_executor`` on a default
  executor ``ThreadPoolExecutor(8)``, gathered 500 at a time. Timed: all N.
- tqdm_thread_map / tqdm_process_map: ``tqdm.contrib.concurrent``'s maps of ``abs`` over N
  items (bar disabled; 4 threads, or 2 processes with chunksize 1000). Timed: the call, which
  creates and shuts down its own pool.
- numpy: ``ProcessPoolExecutor(2).map(np.median, chunks)`` over N arrays of 1 MiB of float64.
  Timed: the pool's whole life (start, map, shutdown), as the pools start their workers at
  different moments (cfutures at construction under fork, the stdlib at the first submit).

Every run is a fresh interpreter (no warm pool, cache or import state carries from one run to
the next), the two sides alternate, and the child prints the seconds of its timed part. The
cfutures child installs cfutures before anything else; the stdlib child never imports cfutures.
Each child checks that its executors are the side it claims and that its results are right, and
fails otherwise: a run that measured the wrong module, or computed nothing, is not a sample.

This file is loaded by path in the children, so its top level imports nothing from cfutures.
"""

import os
import signal
import statistics
import subprocess
import sys
import time

EXTRA = 'pip install "cfutures[apps]"'
TIMEOUT = 300  # seconds for one child run; a hung child is killed with its whole session
IMPLS = ("stdlib", "cfutures")
_MARK = "CFUTURES_BENCH_APPS_SECONDS"


# --- the programs: each runs in a child, returns the seconds of its timed part ----------------

def _check(executor, impl):
    """Fails the run unless executor (a class or an instance) belongs to the side it measures."""
    cls = executor if isinstance(executor, type) else type(executor)
    if cls.__module__.startswith("cfutures") != (impl == "cfutures"):
        raise SystemExit(f"the {impl} run got {cls.__module__}.{cls.__qualname__}: this run "
                         f"would not measure {impl}")


def _grpc(impl, n):
    import concurrent.futures
    import threading

    import grpc
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    _check(ex, impl)
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)})
    server = grpc.server(ex, handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/bench.Echo/Call")
    call(b"ready", wait_for_ready=True, timeout=30)  # the connection is made outside the timing
    wrong = []

    def client(k):
        payload = b"%d" % k
        for _ in range(n // 8):
            if call(payload, timeout=60) != payload:
                wrong.append(k)
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    channel.close()
    server.stop(None).wait()
    ex.shutdown()
    if wrong:
        raise SystemExit(f"wrong replies to client threads {wrong}")
    return elapsed


def _dask(impl, n):
    import concurrent.futures

    import dask.array as da
    # dask.threaded.get takes the pool as a keyword that compute() passes on, or as config "pool".
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        _check(ex, impl)
        total = (da.ones((n,), chunks=100) * 2 + 1).sum()
        started = time.perf_counter()
        values = [total.compute(scheduler="threads", pool=ex) for _ in range(3)]
        elapsed = time.perf_counter() - started
    if values != [3 * n] * 3:
        raise SystemExit(f"dask computed {values}, not {3 * n}")
    return elapsed


def _tiny(k):
    time.sleep(0)  # a blocking call that gives up the GIL, as real blocking I/O does
    return k * 2


def _asyncio(impl, n):
    import asyncio
    import concurrent.futures

    async def fan_out():
        loop = asyncio.get_running_loop()
        ex = concurrent.futures.ThreadPoolExecutor(8)
        _check(ex, impl)
        loop.set_default_executor(ex)
        total = 0
        started = time.perf_counter()
        for first in range(0, n, 500):
            batch = range(first, min(n, first + 500))
            total += sum(await asyncio.gather(*(loop.run_in_executor(None, _tiny, k)
                                                for k in batch)))
        elapsed = time.perf_counter() - started
        if total != n * (n - 1):
            raise SystemExit(f"asyncio fan-out summed {total}, not {n * (n - 1)}")
        return elapsed
    return asyncio.run(fan_out())


def _tqdm_map(impl, n, kind):
    import concurrent.futures

    from tqdm.contrib import concurrent as tqdm_concurrent
    # tqdm looks its executor class up in concurrent.futures at each call: check that one.
    _check(getattr(concurrent.futures, kind), impl)
    items = range(-n // 2, n - n // 2)
    started = time.perf_counter()
    if kind == "ThreadPoolExecutor":
        out = tqdm_concurrent.thread_map(abs, items, max_workers=4, disable=True)
    else:
        out = tqdm_concurrent.process_map(abs, items, max_workers=2, chunksize=1000,
                                          disable=True)
    elapsed = time.perf_counter() - started
    if out != [abs(i) for i in items]:
        raise SystemExit(f"tqdm's {kind} map returned wrong results")
    return elapsed


def _numpy(impl, n):
    import concurrent.futures

    import numpy as np
    # A few distinct arrays, cycled: the child holds 8 MiB, not N MiB, yet every task is pickled
    # and sent whole.
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(1 << 17) for _ in range(8)]
    expected = [float(np.median(a)) for a in arrays]
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        _check(ex, impl)
        # np.median pickles by reference to numpy: the workers need nothing of this file.
        out = list(ex.map(np.median, (arrays[k % 8] for k in range(n))))
    elapsed = time.perf_counter() - started
    if [float(v) for v in out] != [expected[k % 8] for k in range(n)]:
        raise SystemExit("the numpy pipeline returned wrong medians")
    return elapsed


# name, packages it needs, size, --quick size, the child's body. Sizes give 0.5-3 s a run on a
# 2-core machine (dask at 400,000 elements took 8 s), but for process_map, whose 100,000 items
# take about 0.1 s, most of it the pool's start: what tqdm's users see.
APPS = [
    ("grpc", ("grpc",), 4_000, 600, _grpc),
    ("dask", ("dask", "numpy"), 150_000, 20_000, _dask),
    ("asyncio", (), 20_000, 3_000, _asyncio),
    ("tqdm_thread_map", ("tqdm",), 100_000, 15_000,
     lambda impl, n: _tqdm_map(impl, n, "ThreadPoolExecutor")),
    ("tqdm_process_map", ("tqdm",), 100_000, 20_000,
     lambda impl, n: _tqdm_map(impl, n, "ProcessPoolExecutor")),
    ("numpy", ("numpy",), 200, 30, _numpy),
]
LABELS = {
    "grpc": "gRPC server, ThreadPoolExecutor(8), unary calls",
    "dask": "dask.array on the threaded scheduler, pool of 4, x3",
    "asyncio": "asyncio run_in_executor fan-out, pool of 8",
    "tqdm_thread_map": "tqdm thread_map, 4 threads",
    "tqdm_process_map": "tqdm process_map, 2 processes, chunksize 1000",
    "numpy": "NumPy median of 1 MiB chunks, ProcessPoolExecutor(2)",
}


def _child(name, impl, n):
    body = next(app[4] for app in APPS if app[0] == name)
    print(f"{_MARK} {body(impl, n)!r}", flush=True)


# The child's command line: cfutures installed first (cfutures run only), then this file loaded by
# path, so that the stdlib run has no trace of cfutures in it.
_BOOT = """import sys, importlib.util
name, impl, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if impl == "cfutures":
    import cfutures
    cfutures.install()
spec = importlib.util.spec_from_file_location("_cfutures_bench_app", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module._child(name, impl, n)
"""


# --- the parent: runs, alternation, the table ---------------------------------------------------

def _one_run(name, impl, n):
    env = {k: v for k, v in os.environ.items() if k not in ("CFUTURES_INSTALL", "CFUTURES_DASK")}
    env["CFUTURES_INSTALL"] = "0"  # the child's side is its own choice, not inherited
    # Its own session: on a timeout or Ctrl-C the child goes with its pool's processes.
    child = subprocess.Popen([sys.executable, "-c", _BOOT, name, impl, str(n),
                              os.path.abspath(__file__)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        out, err = child.communicate(timeout=TIMEOUT)
    except BaseException as e:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise RuntimeError(f"{name} ({impl}, n={n}) ran over {TIMEOUT} s: killed") from None
        raise
    seconds = [line.split()[1] for line in out.splitlines() if line.startswith(_MARK + " ")]
    if child.returncode != 0 or not seconds:
        tail = "\n".join((err or out).strip().splitlines()[-15:])
        raise RuntimeError(f"{name} ({impl}, n={n}) failed with exit code "
                           f"{child.returncode}:\n{tail}")
    return float(seconds[-1])


def _missing(packages):
    import importlib.util
    return [p for p in packages if importlib.util.find_spec(p) is None]


def run_apps(repeat=5, quick=False, under_load=False, only=None, progress=sys.stderr):
    """Runs the programs, stdlib and cfutures alternating run by run, each run a fresh
    interpreter; returns one dict per program (a skipped one has ratio None and a note).

    only: names (or parts of names) to keep, one string or several. under_load: one busy process
    per core for the whole call (load.Load); a caller that holds its own passes False. A run that
    fails, hangs or measures the wrong module raises RuntimeError."""
    import contextlib

    from cfutures._bench.load import Load
    from cfutures._bench.runner import _Progress
    if isinstance(only, str):
        only = [only]
    selected = [app for app in APPS if not only or any(o in app[0] for o in only)]
    shown = _Progress(progress)
    rows = []
    with Load() if under_load else contextlib.nullcontext():
        try:
            for k, (name, packages, size, quick_size, _) in enumerate(selected, 1):
                n = quick_size if quick else size
                missing = _missing(packages)
                if missing:
                    rows.append({"app": name, "unit": "s", "n": n, "samples": {}, "median": {},
                                 "ratio": None, "note": f"skipped: {', '.join(missing)} not "
                                                        f"installed ({EXTRA})"})
                    continue
                samples = {impl: [] for impl in IMPLS}
                for rep in range(repeat):
                    # The order swaps every run, so that drift in the machine's load does not
                    # always fall on the same side.
                    for impl in IMPLS if rep % 2 == 0 else IMPLS[::-1]:
                        shown.update(k, len(selected), name, impl, rep + 1, repeat)
                        samples[impl].append(_one_run(name, impl, n))
                median = {impl: statistics.median(v) for impl, v in samples.items()}
                rows.append({"app": name, "unit": "s", "n": n, "samples": samples,
                             "median": median, "ratio": median["stdlib"] / median["cfutures"]})
        finally:
            shown.done()
    return rows


def _versions():
    import importlib.metadata
    found = []
    for dist in ("grpcio", "dask", "numpy", "tqdm"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found) or "none installed"


def render_apps(rows, repeat, command, load=0):
    """The rows as a markdown table, with the machine, the command and the packages' versions."""
    from cfutures._bench.render import _load_line, environment
    env = environment()
    lines = [f"Machine: {env['machine']}; {env['limits']}",
             f"Python: {env['python']}; cfutures {env['cfutures']}", _load_line(load),
             f"Command: {command}  (median of {repeat} alternating runs per side, each in a "
             f"fresh interpreter; spread = min..max)",
             "", "| program | n | concurrent.futures | cfutures | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        label = f"{LABELS.get(r['app'], r['app'])} (`{r['app']}`)"
        if r["ratio"] is None:
            lines.append(f"| {label} | {r['n']:,} | {r.get('note', 'skipped')} | | |")
            continue
        cells = [f"{r['median'][i]:.3f} s ({min(r['samples'][i]):.3f}..{max(r['samples'][i]):.3f})"
                 for i in IMPLS]
        ratio = f"{r['ratio']:.2f}x" + (" SLOWER" if r["ratio"] < 1.0 else "")
        lines.append(f"| {label} | {r['n']:,} | {cells[0]} | {cells[1]} | {ratio} |")
    lines += ["", "ratio: stdlib time / cfutures time (above 1x cfutures is faster; SLOWER: "
                  "cfutures took longer, a defect whatever the microbenchmarks say).",
              f"Packages: {_versions()}."]
    return "\n".join(lines)
