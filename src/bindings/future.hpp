// PyFuture: a core::FutureCore whose outcome and done-callbacks are Python objects, and the
// operations the pool and the waiters need on it.
//
// The C++ object lives inside the Python Future object (a pybind11 instance) and dies with it, so
// it is only ever destroyed with the GIL held. `result`, `exception` and `callbacks` are written
// under the core lock (FutureCore::finish / locked) and read under it too; Python objects are
// never created or released while that lock is held (either may run arbitrary code through the
// garbage collector or __del__, which could come back to the same future).
//
// `stdlib_waiters` are the stdlib's Python waiter objects (concurrent.futures._base._Waiter and
// kin), appended to `future._waiters` by the stdlib's wait() and as_completed(); each carries the
// stamp it was registered with (FutureCore's stamps) and whether it has been told.
//
// The stdlib's mode. A Future subclass may assign `self._condition` (green-thread libraries give
// their futures a cooperative Condition) or `self._waiters`. Such a future keeps those objects
// (`condition`, `waiters`), and from then on its methods are the stdlib's own
// (concurrent.futures.Future's, called on it): every state change and wait goes through its
// `_condition` and every waiter it tells is in its `_waiters`, as with the stdlib. Its state,
// outcome and callbacks stay in the native slots, which `_state`, `_result`, `_exception` and
// `_done_callbacks` read and write; the pools complete it through its methods, and wait() and
// as_completed() watch it the way they watch a foreign future. Futures that never assign either
// keep the native path; the check costs one atomic load per method call. Both slots are set and
// read under the core lock.
#pragma once

#include <vector>

#include "../core/future_state.hpp"
#include "common.hpp"

namespace cfutures::bindings {

struct StdlibWaiter {
    PyObject* waiter;  // strong
    std::uint32_t stamp;
    bool told;
};

struct PyFuture final : core::FutureCore {
    PyObject* result = nullptr;     // strong
    PyObject* exception = nullptr;  // strong
    std::vector<PyObject*> callbacks;  // strong; cleared when they are run
    std::vector<StdlibWaiter> stdlib_waiters;
    // stdlib_waiters.size(), readable without the lock: transitions skip the Python waiters'
    // bookkeeping when there are none.
    std::atomic<std::uint32_t> stdlib_waiter_count{0};
    // A cancel() is stopping the running call (cancel_running pools): a concurrent cancel()
    // waits for its outcome instead of answering before the state changes.
    std::atomic<bool> stopping{false};
    // The stdlib's mode (above): what the subclass assigned (strong), or nullptr.
    PyObject* condition = nullptr;
    PyObject* waiters = nullptr;
    std::atomic<bool> stdlib_mode{false};
    bool in_stdlib_mode() const { return stdlib_mode.load(std::memory_order_acquire); }

    // Call after changing stdlib_waiters, under the core lock.
    void count_stdlib_waiters_locked() {
        stdlib_waiter_count.store(static_cast<std::uint32_t>(stdlib_waiters.size()),
                                  std::memory_order_release);
    }

    PyFuture() = default;
    ~PyFuture() {
        Py_CLEAR(result);
        Py_CLEAR(exception);
        for (PyObject* cb : callbacks) Py_DECREF(cb);
        for (StdlibWaiter& w : stdlib_waiters) Py_DECREF(w.waiter);
        Py_CLEAR(condition);
        Py_CLEAR(waiters);
    }
};

// The C++ state of a cfutures Future, or nullptr when `obj` is not one.
PyFuture* as_future(PyObject* obj);
// A new, pending cfutures.Future (the Python subclass registered by cfutures._base).
py::object new_future();

// Transitions with the stdlib's side effects (callbacks, errors). GIL held. They return false
// with a Python error set only when a done-callback raised a BaseException, as the stdlib lets
// those propagate.
bool future_set_result(PyFuture& f, PyObject* self, PyObject* value);
bool future_set_exception(PyFuture& f, PyObject* self, PyObject* exc);
bool future_cancel(PyFuture& f, PyObject* self, bool* cancelled);
// For a pool failing a future it holds: as future_set_exception, but a future that another thread
// finished meanwhile (a cancel() racing it on a free-threaded build, where checking the state
// first is no longer atomic with the transition) is left as it is, without an error.
bool future_fail_unless_done(PyFuture& f, PyObject* self, PyObject* exc);
// How cancel() reaches the pool running a RUNNING future (process pools made with
// cancel_running=True): returns true when the pool stops the call, which it no longer reports;
// the future is then cancelled. Installed once by the process pool. GIL held.
using RunningStopper = bool (*)(PyFuture& f, PyObject* self);
void set_running_stopper(RunningStopper stopper);
// set_running_or_notify_cancel() with the stdlib's side effects (its waiters told of a notified
// cancellation). GIL held.
core::StartOutcome future_start(PyFuture& f, PyObject* self);
// Tells the stdlib waiters registered before the last collective transition (once each). Called
// after every such transition, with the GIL held; cheap when there are none.
void tell_stdlib_waiters(PyFuture& f, PyObject* self);

// Waits (GIL released) until the future is done or the deadline passes; returns whether done.
bool future_wait(PyFuture& f, std::optional<Clock::time_point> deadline);

// How a done future completed, from the waiters' point of view.
core::Completion completion_of(const PyFuture& f);

void register_future(py::module_& m);

}  // namespace cfutures::bindings
