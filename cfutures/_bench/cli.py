"""The command line, ``python -m cfutures bench [...]``: main() parses the flags and runs the
table (runner, render), the peers' table or the real programs (apps), under load if asked."""

import argparse
import contextlib
import importlib.util
import json
import shlex
import time

from cfutures._bench.load import Load
from cfutures._bench.peers import PEERS, STARTUP_MIN_REPEAT, available_peers
from cfutures._bench.plot import plot
from cfutures._bench.render import environment, render, render_peers
from cfutures._bench.runner import run

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cfutures bench",
                                     description="Benchmark cfutures against concurrent.futures, "
                                                 "side by side in one run.")
    parser.add_argument("--repeat", type=int, help="runs per side (default 3; 5 with --apps)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--only", action="append", help="run workloads whose name contains this")
    parser.add_argument("--json", help="also write the raw samples here")
    parser.add_argument("--peers", nargs="?", const="all", metavar="NAMES",
                        help="the rows of issue 13 on multiprocessing.Pool too, and on loky, "
                             "pebble, mpire and joblib where installed (NAMES: a comma-separated "
                             f"choice among {', '.join(PEERS)}); start-up rows run at least "
                             f"{STARTUP_MIN_REPEAT} times unless --quick")
    parser.add_argument("--under-load", action="store_true",
                        help="one busy process per core for the whole run (ended afterwards)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw the ratios as a bar chart (needs matplotlib)")
    parser.add_argument("--apps", action="store_true",
                        help="real programs instead of the table (gRPC, dask, asyncio, tqdm, "
                             "NumPy; cfutures/_bench/apps.py), each in fresh interpreters with "
                             "the stdlib and under cfutures.install(); --repeat defaults to 5")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 5 if args.apps else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.apps:
        if args.peers is not None or args.plot:
            parser.error("--apps takes --repeat, --quick, --only, --json and --under-load only")
        return _main_apps(args, argv)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, which is not installed here "
                     "(pip install matplotlib, or cfutures[plot])")
    peers = skipped = None
    if args.peers is not None:
        wanted = None
        if args.peers != "all":
            by_lower = {p.lower(): p for p in PEERS}
            wanted = set()
            for name in filter(None, (n.strip() for n in args.peers.split(","))):
                if name.lower() not in by_lower:
                    parser.error(f"--peers: unknown peer {name!r} (known: {', '.join(PEERS)})")
                wanted.add(by_lower[name.lower()])
        peers, skipped = available_peers(wanted)
    command = "python -m cfutures bench" + (" " + shlex.join(argv) if argv else "")
    load = Load() if args.under_load else contextlib.nullcontext()
    started = time.perf_counter()
    with load:
        rows = run(repeat=args.repeat, quick=args.quick, only=args.only, peers=peers,
                   under_load=args.under_load)
    elapsed = time.perf_counter() - started
    count = load.count if args.under_load else 0
    if peers is None:
        print(render(rows, args.repeat, command, quick=args.quick, load=count))
    else:
        print(render_peers(rows, args.repeat, command, peers, skipped, quick=args.quick,
                           load=count))
        print(f"Run time: {elapsed:.0f} s")
    if args.plot:
        what = "under load" if args.under_load else "idle"
        env = environment()
        plot(rows, args.plot, f"cfutures against the others, {what}: how many times better "
                              f"(above 1x cfutures is ahead). {env['machine']}; "
                              f"{env['limits']}; {env['python']}; "
                              f"{command}")
        print(f"Plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "command": command, "load": count,
                       "peers": peers, "skipped_peers": skipped, "seconds": elapsed,
                       "rows": rows}, f, indent=2)
    return 0


def _main_apps(args, argv):
    from cfutures._bench import apps
    command = "python -m cfutures bench" + (" " + shlex.join(argv) if argv else "")
    load = Load() if args.under_load else contextlib.nullcontext()
    with load:
        rows = apps.run_apps(repeat=args.repeat, quick=args.quick, only=args.only)
    count = load.count if args.under_load else 0
    print(apps.render_apps(rows, args.repeat, command, load=count))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": environment(), "command": command, "load": count,
                       "rows": rows}, f, indent=2)
    return 0
