"""Side-by-side benchmarks: the same workload on concurrent.futures and on cfutures, in one run.

``python -m cfutures bench`` prints the table; ``pytest benchmarks/`` runs the same workloads under
pytest-benchmark. Each workload returns a measurement for one implementation; the runner alternates
the implementations repetition by repetition (so that machine noise hits both alike), keeps the
median and the spread, and reports the ratio, which is the figure that counts on a shared machine.

``--peers`` runs the rows of issue 13 on multiprocessing.Pool too and on loky, pebble, mpire and
joblib where installed, each through its own idiomatic API; ``--under-load`` keeps one busy
process per core spinning for the whole run; ``--plot FILE.png`` draws the ratios (matplotlib,
imported only then); ``--apps`` runs real programs instead.

The modules, each importing only those listed before it:

- tasks: IMPLS (stdlib, cfutures), the tasks the pools run (noop, identity), the round-trip loop;
- cpu_rows: CPU-bound pure Python on subinterpreters, threads and processes (free-threaded too);
- dask_rows: cfutures.dask.DaskExecutor against Dask's own APIs on one LocalCluster;
- workloads: the thread, process, futures, memory and start-up workloads, and the table:
  WORKLOADS, ROW_BASELINES, ROW_GROUPS;
- peers: multiprocessing.Pool, loky, pebble, mpire and joblib (PEERS, PEER_ROWS, their targets,
  measure_peer);
- load: Load, one busy process per core (--under-load);
- runner: run() and measure(), the judging of ratios against targets, the progress line;
- render: environment() (the machine line) and the markdown tables;
- plot: the bar chart of --plot;
- apps: the real programs of --apps (loaded by path in its children: it imports nothing of
  cfutures at its top);
- cli: main(), the argparse command line that cfutures/__main__.py calls.

This package imports none of them itself: ``import cfutures`` never loads it, and
``python -m cfutures bench`` loads what it runs.
"""
