// What the thread pool's and the process pool's bindings share: who may submit (the stdlib's
// refusals, in the stdlib's order and words), how a vectorcall's arguments become (args, kwargs),
// how a Python error becomes an exception object, and which pools a fork left behind.
//
// The interpreter-exit flags are one per kind of pool, as in the stdlib (thread.py and
// process.py each have their own exit hook and flag); each is set once, by that kind's hook.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <utility>

#include "../core/executor_stats.hpp"
#include "common.hpp"

namespace cfutures::bindings {

enum class PoolKind { Thread, Process };

// Set by cfutures.thread / cfutures.process at interpreter exit: later submits are refused.
std::atomic<bool>& interpreter_exiting(PoolKind kind);

// A pool made before a fork() in this process belongs to threads that do not exist here: its
// locks may be held forever, so nothing may touch it.
struct ForkOwned {
    const unsigned generation = fork_generation();
    bool inherited() const { return generation != fork_generation(); }
};

// Why a pool broke, in the words executor._broken shows and a broken pool's submit() raises:
// the first reason recorded stays. Written by whoever breaks the pool (a thread worker's failing
// initializer, the process pool's manager), read by submit() at any time (at once, on a
// free-threaded build): hence its own lock. Nothing calls into Python while holding it.
class BrokenReason {
public:
    void record(py::object text) {
        std::lock_guard<std::mutex> g(mu_);
        if (!text_) text_ = std::move(text);
    }
    py::object text() const {  // null until recorded
        std::lock_guard<std::mutex> g(mu_);
        return text_;
    }

private:
    mutable std::mutex mu_;
    py::object text_;
};

// The one shape of both pools' native state: the core pool, the host (the Python package's
// seam: one object per executor, its methods looked up once into `Host`) and why the pool
// broke. The executor object and the pool's own threads (thread workers, the process pool's
// manager) share it through their handle's shared_ptr; the host never holds the executor, so
// dropping the executor shuts the pool down, as in the stdlib. Destroyed with the GIL held
// (every owner is a Python object, or a frame holding the GIL).
template <class CorePool, class Host>
struct PoolShared : ForkOwned {
    template <class... PoolArgs>
    explicit PoolShared(Host h, PoolArgs&&... args) : pool(std::forward<PoolArgs>(args)...), host(std::move(h)) {}
    CorePool pool;
    Host host;
    BrokenReason broken_reason;

    // What check_submittable() reads (with the derived pool's broken_message()).
    bool broken() const { return pool.is_broken(); }
    bool shut_down() const { return pool.is_shutdown(); }

    // What offer_until_room() uses: the pool's max_queue bound and its wait for room.
    std::size_t queue_bound() const { return pool.max_queued(); }
    void wait_for_room(Clock::time_point until) { pool.wait_for_room(until); }
    void stop_waiting_for_room() { pool.stop_waiting_for_room(); }
};

// Why a submit is refused.
enum class Refusal { Broken, Shutdown, InterpreterExit, Inherited };

// Raises the stdlib's error for `why`: `broken_type(broken_message)` for a broken pool,
// RuntimeError with the stdlib's words otherwise.
[[noreturn]] void refuse_submit(Refusal why, PyObject* broken_type, py::handle broken_message);

// The checks every submit() makes before it does anything: first that the pool is this
// process's own (before touching its locks), then the stdlib's, in the stdlib's order.
// `broken()`, `shut_down()` and `broken_message()` read the pool; the message only when broken.
template <class Pool>
void check_submittable(PoolKind kind, const ForkOwned& owner, Pool& pool, PyObject* broken_type) {
    if (owner.inherited()) refuse_submit(Refusal::Inherited, nullptr, py::handle());
    if (pool.broken()) refuse_submit(Refusal::Broken, broken_type, pool.broken_message());
    if (pool.shut_down()) refuse_submit(Refusal::Shutdown, nullptr, py::handle());
    if (interpreter_exiting(kind).load(std::memory_order_relaxed))
        refuse_submit(Refusal::InterpreterExit, nullptr, py::handle());
}

// What executor.options() adds to a submit (cfutures, opt-in): the task's priority (lower starts
// first), what a submit does when the pool's queue is at its max_queue bound, and the process
// pool's task timeout. The defaults are a plain submit.
struct SubmitOptions {
    int priority = 0;
    bool block = true;                    // wait for room; false: QueueFull at once
    std::optional<double> block_timeout;  // seconds: QueueFull once they passed
    double task_timeout = 0;              // seconds; 0: none (process pools only)
};
// From the tuple (priority, block, block_timeout, task_timeout) that cfutures' options view
// holds (checked there).
SubmitOptions submit_options_from(PyObject* options);

[[noreturn]] void raise_queue_full(std::size_t bound, const SubmitOptions& opts);

// Back-pressure, for both pools: calls offer(after_wait) until the pool takes the task or refuses
// it for another reason. offer() makes one attempt and returns true when the queue was at its
// bound; after_wait says that the caller waited since its checks (the pool may have been shut
// down meanwhile, or the interpreter begun to exit), so they must be made again.
// Between attempts the caller waits for room with the GIL released (pool.wait_for_room(); Ctrl-C
// works on the main thread), unless `opts` say not to wait, or not that long: then it raises
// cfutures.QueueFull. A waiter that leaves without its place passes the wake-up on.
template <class Pool, class Offer>
void offer_until_room(Pool& pool, const SubmitOptions& opts, Offer&& offer) {
    std::optional<Clock::time_point> deadline;
    bool waited = false;
    for (;;) {
        if (!offer(waited)) return;
        if (!deadline && opts.block_timeout)
            deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(std::max(0.0, *opts.block_timeout)));
        if (!opts.block || (deadline && Clock::now() >= *deadline)) {
            if (waited) pool.stop_waiting_for_room();
            raise_queue_full(pool.queue_bound(), opts);
        }
        try {
            wait_slice_interruptibly([&](std::optional<Clock::time_point> until) {
                pool.wait_for_room(until ? *until : Clock::now() + std::chrono::hours(1));
                return false;
            }, deadline);
        } catch (...) {
            pool.stop_waiting_for_room();
            throw;
        }
        waited = true;
    }
}

// submit(fn, /, *args, **kwargs) as a vectorcall: argv[0] is fn, then the positional arguments,
// then the keyword values named by kwnames. Raises TypeError when fn is missing.
struct CallArguments {
    PyObject* fn;     // borrowed
    py::tuple args;
    py::dict kwargs;  // empty when there are none
};
CallArguments unpack_submit_arguments(PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames);

// The Python error being raised, normalised, with its traceback attached (the error indicator
// is cleared). Only call with an error set.
py::object fetch_exception();
// Adds `submit(fn, /, *args, **kwargs)` to an executor class as a vectorcall method (it is the
// hottest call of the library, and `fn` must be positional-only like the stdlib's), and
// `_submit_with(options, fn, /, *args, **kwargs)`, what executor.options(...).submit() calls.
using VectorcallMethod = PyObject* (*)(PyObject*, PyObject* const*, Py_ssize_t, PyObject*);
void add_submit_methods(py::handle cls, VectorcallMethod submit, VectorcallMethod submit_with, PoolKind kind);

// The exception a caught error_already_set holds, with its traceback attached.
py::object exception_of(const py::error_already_set& e);

// Executor._stats(): (submitted, queued, running, completed, failed, cancelled, workers,
// idle_workers, workers_replaced), which cfutures wraps in its ExecutorStats named tuple (the
// first eight its fields, the last an attribute outside the tuple).
py::tuple stats_tuple(const core::ExecutorStats& s);

}  // namespace cfutures::bindings
