/* Whether the main interpreter's GIL is held right now: what restore_gil() (common.cpp) looks at
 * before it asks for the GIL back.
 *
 * Why. CPython's take_gil() does not spin: a thread that asks for a GIL another thread holds
 * sleeps on a condition variable at once, and the holder's drop_gil() wakes it through a futex.
 * On a 2-vCPU VM that wake-up is the cost of a thread-pool round trip. Measured (d3fb4c8,
 * `perf record -e sched:sched_switch --call-graph dwarf` over 20,000 submit(noop).result() trips
 * on a 1-worker pool, CPython 3.11, AMD EPYC): 0.27 sleeps per trip, and every one of them was in
 * take_gil: 69% the worker asking for the GIL while the submitter still held it (between
 * submit() and result() letting go), 15% the submitter asking for it back while the worker still
 * held it (between publishing the result and releasing the GIL); the rest was result() blocking
 * after its spin. Our own waits had stopped sleeping; the GIL's hand-off had not. On the Intel
 * Xeon of issue 24 the same trips slept 0.55-0.67 times each, at tens of microseconds a wake.
 * So a thread that wants the GIL back spins (within the spin policy's budget) until this flag
 * says the GIL is free, and only then calls PyEval_RestoreThread, which then takes the GIL
 * without sleeping. After: 0.000-0.001 sleeps per trip and 2.5-3 us a trip (from 5-7 us) on
 * every CPython from 3.9 to 3.15, and 3.13t with PYTHON_GIL=1 (5 us, from 9-10); with the
 * probe forced off, 3.12 went back to 0.5 sleeps and 9 us a trip. Counted with getrusage's
 * voluntary context switches over 20,000 trips, which do not depend on the CPU's speed.
 *
 * The flag is CPython's own `locked` field, found once at import (gil_probe.c says how, and what
 * it checks before trusting it). It is only ever read, with relaxed loads: a stale value costs
 * one spin or one sleep, never correctness, since PyEval_RestoreThread decides.
 */
#ifndef CFUTURES_GIL_PROBE_H
#define CFUTURES_GIL_PROBE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Finds and checks the flag; call once with the GIL held. Returns whether the probe is on. */
int cfutures_gil_probe_init(void);

/* The main interpreter's GIL `locked` flag (1: held), or NULL when the probe is off. */
const int* cfutures_gil_locked_flag(void);

/* Free-threaded builds: the GIL's `enabled` field (0: off, the GIL is never held); NULL where
 * the GIL is always on. */
const int* cfutures_gil_enabled_flag(void);

#ifdef __cplusplus
}
#endif

#endif
