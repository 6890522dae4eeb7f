"""Rendering: the machine a table ran on (environment(), also in the --json output), the load
line, and the markdown tables of ``bench`` (render) and ``bench --peers`` (render_peers)."""

import os
import platform
import statistics

import cfutures
from cfutures._bench.peers import PEERS
from cfutures._bench.tasks import IMPLS

_SCALE = {"us": 1e6, "ms": 1e3}


def _fmt(value, unit):
    v = value * _SCALE.get(unit, 1)
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def environment():
    """The machine a table was measured on: CPU model, the host's cores, what this process may
    use (affinity mask, cgroup CPU quota: the waiting policy's inputs), kernel, Python."""
    from cfutures import _cfutures
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    limits = _cfutures._cpu_limits()
    quota = ("no CPU quota" if limits["quota_cpus"] is None
             else f"CPU quota {limits['quota_cpus']:g} ({limits['quota_source']})")
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "limits": f"affinity {limits['affinity_cpus']} CPUs, {quota}: "
                  f"{limits['usable_cpus']} usable",
        "python": f"{platform.python_implementation()} {platform.python_version()} "
                  f"({platform.python_compiler()})",
        "cfutures": cfutures.__version__,
    }


def _load_line(load):
    if not load:
        return "Load: none added (idle, apart from whatever else runs on the machine)"
    return (f"Load: UNDER LOAD, {load} busy processes (one per core, `while True: pass`) "
            f"spinning throughout the run")


def render(rows, repeat, command, quick=False, load=0):
    env = environment()
    lines = [
        f"Machine: {env['machine']}; {env['limits']}",
        f"Python: {env['python']}; cfutures {env['cfutures']}",
        f"Command: {command}  (median of {repeat} alternating runs per side; spread = min..max)",
        "",
        "| workload | n | unit | concurrent.futures | cfutures | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    if load:
        lines.insert(2, _load_line(load))
    baselines = []  # rows whose concurrent.futures column holds another library's API
    for r in rows:
        cells = []
        for impl in IMPLS:
            s = r["samples"][impl]
            cells.append(f"{_fmt(r['median'][impl], r['unit'])} "
                         f"({_fmt(min(s), r['unit'])}..{_fmt(max(s), r['unit'])})")
        if r["target"] is None:
            target = ""
        elif quick:
            target = f">= {r['target']:g}x (not judged: --quick sizes)"
        else:
            target = f">= {r['target']:g}x {'met' if r['met'] else 'NOT MET'}"
        workload = r["workload"]
        if "baseline" in r:
            if r["baseline"] not in baselines:
                baselines.append(r["baseline"])
            workload += f" [{baselines.index(r['baseline']) + 1}]"
        lines.append(f"| {workload} | {r['n']:,} | {r['unit']} | {cells[0]} | {cells[1]} | "
                     f"{r['ratio']:.1f}x | {target} |")
    lines.append("")
    lines.append("ratio: how many times better cfutures is (throughput ratio, or time and memory "
                 "ratio stdlib/cfutures).")
    for i, baseline in enumerate(baselines, 1):
        lines.append(f"[{i}] The concurrent.futures column of this row is {baseline}.")
    if any(r["workload"].startswith("dask ") for r in rows):
        import importlib.metadata
        lines.append(f"Dask: distributed {importlib.metadata.version('distributed')}.")
    return "\n".join(lines)


def _spread(samples, median):
    # Half the min..max range, in percent of the median.
    if median == 0:
        return 0.0
    return (max(samples) - min(samples)) / 2 / median * 100


def render_peers(rows, repeat, command, peers, skipped, quick=False, load=0):
    env = environment()
    impls = list(IMPLS) + list(peers)
    labels = {"stdlib": "concurrent.futures", "cfutures": "cfutures", **{p: p for p in peers}}
    startup_runs = max((r["runs"] for r in rows if r["key"].startswith("process_startup_")),
                       default=repeat)
    versions = ", ".join(f"{p} ({PEERS[p].version()})" for p in peers)
    lines = [
        f"Machine: {env['machine']}; {env['limits']}",
        f"Python: {env['python']}; cfutures {env['cfutures']}",
        f"Peers: {versions}",
    ]
    if skipped:
        lines.append("Peers not importable (skipped): "
                     + "; ".join(f"{p} ({why})" for p, why in skipped.items()))
    lines += [
        _load_line(load),
        f"Command: {command}  (median of {repeat} runs per implementation, alternating run by run"
        f"{f'; start-up rows {startup_runs} runs, each in a fresh interpreter' if startup_runs != repeat else ''}"
        f"; ± = half the min..max range, in % of the median)",
        "",
        "| workload | n | unit | " + " | ".join(labels[i] for i in impls)
        + " | cfutures/stdlib | cfutures vs fastest other | target |",
        "|---|---|---|" + "---|" * len(impls) + "---|---|---|",
    ]
    footnotes = []

    def mark(text):
        if text not in footnotes:
            footnotes.append(text)
        return f"[{footnotes.index(text) + 1}]"

    for r in rows:
        cells = []
        for impl in impls:
            if impl in r["notes"]:
                cells.append(mark(r["notes"][impl]))
                continue
            s, m = r["samples"][impl], r["median"][impl]
            cell = _fmt(m, r["unit"]) + (f" ±{_spread(s, m):.0f}%" if len(s) > 1 else "")
            remark = PEERS[impl].remarks.get(r["key"]) if impl in PEERS else None
            if remark:
                cell += " " + mark(remark)
            cells.append(cell)
        if quick:
            target = "not judged (--quick sizes)"
        else:
            target = "; ".join(f"{'fastest other' if t['against'] == 'fastest' else t['against']}"
                               f" >= {t['minimum']:g}x {'met' if t['met'] else 'NOT MET'}"
                               for t in r["targets"])
        lines.append(f"| {r['workload']} | {r['n']:,} | {r['unit']} | " + " | ".join(cells)
                     + f" | {r['ratio']:.2f}x | {r['ratio_fastest_other']:.2f}x "
                       f"({labels[r['fastest_other']]}) | {target} |")
    lines.append("")
    lines.append("Ratios: how many times better cfutures is (throughput ratio, or time ratio "
                 "other/cfutures); below 1x the other implementation is faster.")
    for i, text in enumerate(footnotes, 1):
        lines.append(f"[{i}] {text}.")
    lines.append("Every measurement makes its own pool and warms it with one no-op outside the "
                 "clock. Start-up rows: a fresh interpreter, the clock started before the pool "
                 "library's imports (multiprocessing's included), until the first result of "
                 "int() comes back.")
    floors = [r["import_floor"] for r in rows if "import_floor" in r]
    if floors:
        lines.append("Of that, importing multiprocessing and the stdlib's "
                     f"concurrent.futures.process alone took {statistics.median(floors) * 1e3:.1f} "
                     "ms in this run (median): a floor of the stdlib's rows and of cfutures', "
                     "whose ProcessPoolExecutor is a subclass of the stdlib's.")
    lines.append("How each peer is called:")
    for p in peers:
        lines.append(f"- {p}: {PEERS[p].how}.")
    return "\n".join(lines)

