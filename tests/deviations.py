"""Every known difference between cfutures and concurrent.futures, with its reason: the one place.

* ``PARITY``: behaviours of our own parity suite where cfutures differs. Each entry xfails
  (strictly) the matching parametrisations, so a deviation that gets fixed fails loudly and must
  leave this registry.
* ``PARITY_SKIPS``: parity tests that cannot run yet, with the reason (same patterns).
* ``UPSTREAM_SKIPS``: tests of CPython's test_concurrent_futures that the harness does not run
  against cfutures, each with the reason.
* ``NOTES``: documented differences that no test selects (for the documentation).

Keys of PARITY and UPSTREAM_SKIPS are fnmatch patterns: on pytest node names (PARITY, e.g.
``test_something[cfutures-*]``) and on upstream ``module::Class::test`` ids (UPSTREAM_SKIPS).
"""

import fnmatch
import os

PARITY = {
}

PARITY_SKIPS = {
}

UPSTREAM_SKIPS = {
    "*::*::test_python_finalization_error":
        "makes the stdlib's second internal thread (its queue feeder) fail to start; cfutures "
        "starts one thread per pool (the native manager), so the injected failure never happens",
    "*::*::test_gh105829_should_not_deadlock_if_wakeup_pipe_full":
        "patches the stdlib's _ExecutorManagerThread.run and _ThreadWakeup, which cfutures does not "
        "have: its manager loop is native and its wake-up is an eventfd, which never fills up",
    "*::*::test_gc_during_max_tasks_worker_exit_gh152967":
        "(3.14.10, 3.15) expects the queued work of a pool garbage-collected while its last "
        "worker leaves at max_tasks_per_child to fail with BrokenProcessPool('... garbage "
        "collected'): the stdlib's manager cannot start a replacement worker without the "
        "executor object, and failing the futures is its fix for their hang. cfutures' native "
        "manager does not need the executor object: it replaces the worker and the work runs "
        "to its results, as all work queued before shutdown(wait=False) does",
    "*::*::test_shutdown_no_wait_max_tasks_gh119592":
        "(3.14.10, 3.15) its drop_reference=True subtest is the case above after "
        "shutdown(wait=False) (cfutures runs the work); the other subtest passes",
    "*::*::test_force_shutdown_during_max_tasks_worker_exit":
        "(3.14.10, 3.15) sets the stdlib's private _force_shutting_down flag to stand for "
        "terminate_workers() racing a worker's max_tasks_per_child exit; cfutures has no such "
        "flag: terminate_workers()/kill_workers() shut down with cancel_futures=True before "
        "stopping the workers, so no queued work is left for a replacement (tests/"
        "test_process_pool.py::test_terminate_workers_ends_the_queued_work_of_a_max_tasks_pool)",
    "*::*::test_failed_worker_replacement_breaks_pool":
        "(3.14.10, 3.15) makes the stdlib's private _spawn_worker fail; cfutures starts workers "
        "from its manager through mp_context.Process, and a replacement that cannot start "
        "breaks the pool with 'A worker process could not be started (...)', as the test "
        "expects (tests/test_process_pool.py::"
        "test_a_replacement_worker_that_cannot_start_breaks_the_pool)",
    "*test_interpreter_pool::InterpreterPoolExecutorTest::test_import_interpreter_pool_executor":
        "hides _interpreters (sys.modules['_interpreters'] = None) after start-up and expects "
        "concurrent.futures to have no InterpreterPoolExecutor; the harness installs cfutures "
        "at start-up (CFUTURES_INSTALL=1), which imports concurrent.futures before the test "
        "hides the module, so the name exists (as with the stdlib imported that early)",
}

NOTES = {
    "A future completed by hand while its thread-pool task runs": "When the task returns, the "
        "stdlib's worker thread dies of the InvalidStateError that set_result() raises (a pool "
        "of one then never runs another task); cfutures reports it through sys.unraisablehook "
        "and the worker goes on (tests/test_future_subclasses.py).",
    "Programs monkey-patched by gevent or eventlet": "install() leaves concurrent.futures as "
        "the stdlib's, and cfutures.ThreadPoolExecutor/ProcessPoolExecutor made directly are the "
        "stdlib's pools, with a GreenThreadWarning: under the patch, threading.Thread starts "
        "greenlets, in which cfutures' native loops would block the hub for good "
        "(docs/guide/switching.md, tests/test_green_threads.py).",
    "InterpreterPoolExecutor on 3.12 and 3.13": "The stdlib has none before 3.14; cfutures' "
        "has 3.14's semantics there, on its own subinterpreters (CPython's C API), with "
        "BrokenInterpreterPool, ExecutionFailed and NotShareableError from cfutures.interpreter "
        "(3.13's _interpreters.NotShareableError on 3.13). install() adds it to "
        "concurrent.futures there, and uninstall() takes it away.",
    "InterpreterPoolExecutor and __main__": "A function or class of the main script unpickles "
        "in a copy of the script that each subinterpreter loads once as __mp_main__, as "
        "multiprocessing's spawned workers do: a global set by the initializer is seen by later "
        "calls. A function that assigns a global (global x; x = ...) is never sent by its code: "
        "3.14's stdlib pool sends one that reads no global by its code, with throwaway globals, "
        "so an initializer that only assigns a global there changes nothing the tasks see.",
    "InterpreterPoolExecutor's WorkerContext": "cfutures.interpreter.WorkerContext has the "
        "stdlib's interface (prepare, initialize, run, finalize) on a native subinterpreter; "
        "it does not derive from concurrent.futures.thread.WorkerContext, and the calls cross "
        "by pickle through the worker's own bytes, not the stdlib's interpreters.call() and "
        "queues.",
    "BrokenProcessPool after a worker's death": "As 3.15's stdlib (gh-139462), on every "
        "Python: the BrokenProcessPool of each future lost when a worker's death broke the "
        "pool has as __cause__ a _RemoteTraceback naming the worker processes that ended with "
        "a nonzero exit code ('Process 1234 terminated abruptly with exit code 7'). Before "
        "3.15 the stdlib gives no cause.",
    "ProcessPoolExecutor._call_queue, _executor_manager_thread": "_call_queue is a stand-in "
        "(close/join_thread do nothing: each worker has its own pipes, there is no shared "
        "queue; None after shutdown(), as in the stdlib); _executor_manager_thread is the thread running the native manager loop (None "
        "until the first submit).",
    "ProcessPoolExecutor large buffers": "Buffers of 1 MiB or more in arguments and results "
        "travel beside the pickle as anonymous shared memory (memfd), not through the pipe: "
        "bytes and bytearray at any depth, protocol 5 out-of-band buffers (NumPy arrays and the "
        "like), which the receiver maps without a copy, and pickles that are that large "
        "themselves. Side effects: a large contiguous memoryview argument or result pickles, "
        "where the stdlib cannot pickle memoryviews (small ones still fail as in the stdlib); a "
        "bare pickle.PickleBuffer of 1 MiB or more arrives as a buffer over the mapped memory "
        "instead of a bytearray copy (same bytes, same buffer protocol). At most 64 buffers of "
        "one call or result travel that way; the rest go inside the pickle.",
    "ProcessPoolExecutor pickle protocol": "Calls and results are pickled with protocol 5 on "
        "every Python (the stdlib uses pickle.DEFAULT_PROTOCOL: 4 before 3.14, 5 from 3.14), for "
        "out-of-band buffers. Objects that pickle differently by protocol behave as with 3.14's "
        "stdlib: a read-only NumPy array arrives read-only (writable with the stdlib before 3.14).",
    "ProcessPoolExecutor dispatch": "A task is handed to one worker instead of a shared call "
        "queue. How many a worker gets ahead follows the measured task time: one at a time until "
        "the first answer and for tasks of 2 ms or more, up to 2-8 per worker (about 16 per pool) "
        "for shorter ones. Tasks sent ahead behind one that runs much longer than the recent ones "
        "are asked back once another worker idles: they wait up to 4 times the recent task time "
        "(at least 2 ms) instead of not at all; tasks with arguments of 1 MiB or more (sent as "
        "attachments) are not asked back and wait for it.",
    "Future._condition": "Not a threading.Condition: a view of the future's lock (acquire/"
                         "release/with/wait/notify/notify_all; re-entrant, like the stdlib's "
                         "RLock) that keeps other threads' transitions out while held, and makes "
                         "direct edits of _state/_result/_exception visible to waiters when "
                         "released. A thread blocked acquiring it cannot be interrupted by "
                         "Ctrl-C (the stdlib's can).",
    "Future._waiters, Future._done_callbacks": "Both are list-like views (append, remove, "
        "len, iteration, in; _done_callbacks also indexing, clear() and assignment of a list): "
        "_waiters of the stdlib waiter objects registered by the stdlib's wait()/as_completed() "
        "(remove() compares by identity), _done_callbacks of the callbacks not run yet. A "
        "callback is released once it has run (the stdlib keeps the list until the future dies), "
        "so _invoke_callbacks() runs each callback once, and _done_callbacks is empty on a done "
        "future. The native waiters are not exposed.",
    "ThreadPoolExecutor._work_queue, _idle_semaphore": "Views with the stdlib's types "
        "(queue.SimpleQueue, threading.Semaphore) over the native queue and counters, made on "
        "first use. _work_queue: qsize()/empty() count the queued tasks, get()/get_nowait() take "
        "the oldest off the queue as the stdlib's _WorkItem, put() queues a work item again (None "
        "is ignored); it cannot be replaced (assigning another queue, as priority-queue recipes "
        "do, raises AttributeError). _idle_semaphore: its value is the number of idle workers no "
        "queued task will take; acquire() says whether one is idle without claiming it, release() "
        "does nothing. Blocking get() and acquire() poll every millisecond. "
        "_adjust_thread_count() starts one more worker per call, up to max_workers.",
    "ProcessPoolExecutor._pending_work_items, _processes": "_pending_work_items is a snapshot "
        "({work id: the stdlib's _WorkItem}) made at each access: changing it changes nothing. "
        "A cancelled task stays in it until the manager meets it. _processes is set to None at "
        "shutdown(), as in the stdlib.",
}


def parity_reason(nodename):
    for pattern, reason in PARITY.items():
        if fnmatch.fnmatchcase(nodename, pattern):
            return reason
    return None


def parity_skip_reason(nodename):
    for pattern, reason in PARITY_SKIPS.items():
        if fnmatch.fnmatchcase(nodename, pattern):
            return reason
    return None


def upstream_skip_reason(test_id):
    for pattern, reason in UPSTREAM_SKIPS.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


def markdown():
    """The table of docs/deviations.md (tests/test_docs.py keeps the page equal to it)."""
    lines = ["| where | what differs, and why |", "|---|---|"]
    for name, text in NOTES.items():
        lines.append(f"| {name} | {text} |")
    for pattern, reason in {**PARITY, **PARITY_SKIPS}.items():
        lines.append(f"| parity test `{pattern}` | {reason} |")
    for pattern, reason in UPSTREAM_SKIPS.items():
        lines.append(f"| CPython test `{pattern}` (skipped) | {reason} |")
    return "\n".join(lines)


DOCS_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                         "deviations.md")
BEGIN = "<!-- deviations:begin (generated: python tests/deviations.py --write) -->"
END = "<!-- deviations:end -->"


def write(path=DOCS_PAGE):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{markdown()}\n{END}{tail}")


if __name__ == "__main__":
    import sys
    if "--write" in sys.argv:
        write()
    else:
        print(markdown())
