// What the thread pool's and the process pool's bindings share: who may submit (the stdlib's
// refusals, in the stdlib's order and words), how a vectorcall's arguments become (args, kwargs),
// how a Python error becomes an exception object, and which pools a fork left behind.
//
// The interpreter-exit flags are one per kind of pool, as in the stdlib (thread.py and
// process.py each have their own exit hook and flag); each is set once, by that kind's hook.
#pragma once

#include <atomic>
#include <mutex>
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
// Adds `submit(fn, /, *args, **kwargs)` to an executor class as a vectorcall method: it is the
// hottest call of the library, and `fn` must be positional-only like the stdlib's.
void add_submit_method(py::handle cls, PyObject* (*submit)(PyObject*, PyObject* const*, Py_ssize_t, PyObject*),
                       PoolKind kind);

// The exception a caught error_already_set holds, with its traceback attached.
py::object exception_of(const py::error_already_set& e);

// Executor._stats(): (submitted, queued, running, completed, failed, cancelled, workers,
// idle_workers, workers_replaced), which cfutures wraps in its ExecutorStats named tuple (the
// first eight its fields, the last an attribute outside the tuple).
py::tuple stats_tuple(const core::ExecutorStats& s);

}  // namespace cfutures::bindings
