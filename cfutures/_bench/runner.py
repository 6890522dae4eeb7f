"""The runner: run() measures the table's rows, the implementations alternating run by run (so
that machine noise hits them alike), keeps the median and the spread, and judges the ratio against
the row's target; measure() is one measurement of a row on one implementation (also what the
pytest-benchmark drivers in benchmarks/ call). _Progress is the progress line on stderr.
"""

import contextlib
import importlib.util
import statistics
import sys
import sysconfig

import cfutures
from cfutures._bench.cpu_rows import free_threaded_cpu, interpreter_round_trip
from cfutures._bench.peers import (PEER_ROWS, PEER_TARGETS, PEER_TARGETS_UNDER_LOAD, PEERS,
                                   STARTUP_MIN_REPEAT, measure_peer)
from cfutures._bench.tasks import IMPLS, _module
from cfutures._bench.workloads import (ROW_BASELINES, ROW_GROUPS, WORKLOADS, import_floor,
                                       process_big_array)


def measure(impl, workload, n):
    """One measurement of a row (the workload function's name) on one implementation: "stdlib",
    "cfutures" or a peer's name. Raises peers.NotApplicable where a peer has no equivalent."""
    fn = next(w[1] for w in WORKLOADS if w[1].__name__ == workload)
    if impl in IMPLS:
        return fn(impl, n)
    return measure_peer(impl, workload, n)


def _available(workload):
    # A row whose library is not installed is left out.
    if workload[1] is process_big_array:
        return importlib.util.find_spec("numpy") is not None
    if workload[1].__name__.startswith("dask_"):
        return importlib.util.find_spec("distributed") is not None
    if workload[1] is interpreter_round_trip:  # its baseline is the stdlib's pool (3.14+)
        return hasattr(_module("stdlib"), "InterpreterPoolExecutor")
    if workload[1].__name__.startswith("interpreter_"):
        return hasattr(cfutures, "InterpreterPoolExecutor")
    if workload[1] is free_threaded_cpu:
        return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return True


class _Progress:
    """One line on a terminal, rewritten in place; elsewhere (a CI log) one line per row."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream is not None and getattr(stream, "isatty", lambda: False)()
        self.shown = 0
        self.row = None

    def update(self, row, rows, name, impl, run, runs):
        if self.stream is None:
            return
        if self.tty:
            import shutil
            width = shutil.get_terminal_size((100, 20)).columns - 1
            text = f"[row {row}/{rows}] {impl} run {run}/{runs}: {name}"[:width]
            self.stream.write("\r" + text + " " * max(0, self.shown - len(text)))
            self.shown = len(text)
        elif self.row != row:
            self.stream.write(f"[row {row}/{rows}] {name}: {runs} run(s) per implementation\n")
        self.row = row
        self.stream.flush()

    def done(self):
        if self.tty and self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
        self.shown = 0


def _ratio(row, impl, other):
    a, b = row["median"][impl], row["median"][other]
    return a / b if row["higher_is_better"] else b / a


def run(repeat=3, quick=False, only=None, progress=sys.stderr, peers=None, under_load=False):
    """Runs the table's rows, implementations alternating run by run; returns one dict per row.

    peers: None for the stdlib/cfutures table (WORKLOADS), or the peers' names (importable ones)
    for the --peers table (PEER_ROWS, start-up rows at least STARTUP_MIN_REPEAT runs unless
    quick). under_load only chooses the targets the --peers rows are judged against."""
    rows = []
    if peers is None:
        table = WORKLOADS
    else:
        table = [w for w in WORKLOADS if w[1].__name__ in PEER_ROWS]
    selected = [w for w in table if (not only or any(o in w[0] for o in only)) and _available(w)]
    impls = list(IMPLS) + list(peers or [])
    shown = _Progress(progress)
    # A group of rows sharing a resource (ROW_GROUPS): opened before its first row, closed after
    # its last.
    last_of_group = {ROW_GROUPS.get(w[1].__name__): k for k, w in enumerate(selected, 1)}
    open_groups = {}
    try:
        for k, (name, fn, size, quick_size, unit, higher_better, target) in enumerate(selected, 1):
            n = quick_size if quick else size
            key = fn.__name__
            group = ROW_GROUPS.get(key)
            if group is not None and group not in open_groups:
                with contextlib.ExitStack() as stack:
                    stack.enter_context(group())
                    open_groups[group] = stack.pop_all()
            notes = {impl: PEERS[impl].note(key) for impl in impls if impl not in IMPLS}
            notes = {impl: note for impl, note in notes.items() if note}
            runnable = [impl for impl in impls if impl not in notes]
            runs = repeat
            if peers is not None and key.startswith("process_startup_") and not quick:
                runs = max(repeat, STARTUP_MIN_REPEAT)
            if key.startswith("process_startup_"):
                floor = [import_floor() for _ in range(runs)]
            samples = {impl: [] for impl in runnable}
            for rep in range(runs):
                # Rotate the order so that a noisy neighbour does not always hit the same
                # implementation (with two, the order simply alternates).
                shift = rep % len(runnable)
                for impl in runnable[shift:] + runnable[:shift]:
                    shown.update(k, len(selected), name, impl, rep + 1, runs)
                    if peers is None:
                        samples[impl].append(fn(impl, n))
                    else:
                        samples[impl].append(measure(impl, key, n))
            med = {impl: statistics.median(v) for impl, v in samples.items()}
            row = {"workload": name, "unit": unit, "n": n, "higher_is_better": higher_better,
                   "samples": samples, "median": med}
            row["ratio"] = _ratio(row, "cfutures", "stdlib")
            if key.startswith("process_startup_"):
                row["import_floor"] = statistics.median(floor)
            if key in ROW_BASELINES:
                row["baseline"] = ROW_BASELINES[key]
            if peers is None:
                row.update(target=target, met=None if target is None else row["ratio"] >= target)
            else:
                _judge_peers_row(row, key, notes, runs, under_load)
            rows.append(row)
            if group is not None and last_of_group[group] == k:
                open_groups.pop(group).close()
    finally:
        for stack in open_groups.values():
            stack.close()
        shown.done()
    return rows


def _judge_peers_row(row, key, notes, runs, under_load):
    others = [impl for impl in row["median"] if impl != "cfutures"]
    ratios = {impl: _ratio(row, "cfutures", impl) for impl in others}
    fastest = min(ratios, key=ratios.get)  # the smallest ratio is the fastest other
    targets = []
    for ref, minimum in (PEER_TARGETS_UNDER_LOAD if under_load else PEER_TARGETS)[key]:
        impl = fastest if ref == "fastest" else ref
        if impl in ratios:
            targets.append({"against": ref, "minimum": minimum, "ratio": ratios[impl],
                            "met": ratios[impl] >= minimum})
    row.update(key=key, runs=runs, notes=notes, ratios=ratios, fastest_other=fastest,
               ratio_fastest_other=ratios[fastest], targets=targets)

