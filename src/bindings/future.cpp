// cfutures.Future's native half: _cfutures.FutureBase, plus _cfutures._ConditionView (what
// `future._condition` returns), _cfutures._WaiterList (`future._waiters`), the internals the
// stdlib's wait() and as_completed() use on the futures they are given, and
// _cfutures._CallbackList (`future._done_callbacks`), which Future subclasses written like the
// stdlib's own methods use with `_invoke_callbacks()` (pebble's ProcessFuture.cancel()). cfutures._base.Future
// inherits from FutureBase *and* the stdlib's concurrent.futures.Future, so isinstance checks
// against the stdlib hold while every method resolves here first.
#include "future.hpp"

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <utility>

#include "../core/spin_policy.hpp"

namespace cfutures::bindings {

namespace {

PyTypeObject* g_future_base = nullptr;  // _cfutures.FutureBase
PyTypeObject* g_future_type = nullptr;  // cfutures.Future, registered by cfutures._base
PyObject* g_empty_tuple = nullptr;

// result() and exception() spin up to 20 us (GIL released) before they block, when the spin
// policy allows (core/spin_policy.hpp): a future that is about to finish then costs no futex
// sleep and wake-up.
core::SpinSite g_result_spin{std::chrono::microseconds(20)};

PyFuture& checked(py::handle self) {
    PyFuture* f = as_future(self.ptr());
    if (!f) throw py::type_error("expected a cfutures.Future");
    return *f;
}

PyObject* state_name(core::FutureState s) { return stdlib().state_names[static_cast<int>(s)]; }

// Runs (and releases) the callbacks taken from a future that just became done.
bool run_callbacks(std::vector<PyObject*>& cbs, PyObject* self) {
    bool ok = true;
    for (PyObject* cb : cbs) {
        if (ok) {
            PyObject* r = call_parking(stdlib().run_callback, {cb, self});
            if (r) Py_DECREF(r);
            else ok = false;  // a BaseException: stop, as the stdlib does
        }
        Py_DECREF(cb);
    }
    cbs.clear();
    return ok;
}

PyObject* g_invoke_callbacks_name = nullptr;  // "_invoke_callbacks"
PyObject* g_own_invoke_callbacks = nullptr;   // FutureBase._invoke_callbacks

// Whether `self`'s class replaced _invoke_callbacks(): the stdlib's transitions call it, so a
// subclass that overrides it must see it called. Futures the pools make are exactly
// cfutures.Future, which never needs the lookup.
bool overrides_invoke_callbacks(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    if (type == g_future_type || type == g_future_base) return false;
    PyObject* attr = PyObject_GetAttr(reinterpret_cast<PyObject*>(type), g_invoke_callbacks_name);
    if (!attr) throw py::error_already_set();
    bool overridden = attr != g_own_invoke_callbacks;
    Py_DECREF(attr);
    return overridden;
}

// The stdlib's Future._invoke_callbacks(): runs the callbacks not run yet, once each. They are
// released as they are taken (the stdlib keeps them until the future dies).
bool invoke_callbacks(PyFuture& f, PyObject* self) {
    std::vector<PyObject*> cbs = f.locked([&] { return std::exchange(f.callbacks, {}); });
    if (cbs.empty()) return true;
    return run_callbacks(cbs, self);
}

// concurrent.futures.Future.<name>(self, *args): how a future in the stdlib's mode (future.hpp)
// runs its methods. Through call_python: pool threads complete such futures (rule 6).
py::object stdlib_method(const char* name, PyObject* self, std::initializer_list<PyObject*> args = {}) {
    py::object fn = py::reinterpret_steal<py::object>(PyObject_GetAttrString(stdlib().Future, name));
    if (!fn) throw py::error_already_set();
    PyObject* argv[3] = {self, nullptr, nullptr};
    std::size_t n = 1;
    for (PyObject* a : args) argv[n++] = a;
    PyObject* r = call_python([&] { return PyObject_Vectorcall(fn.ptr(), argv, n, nullptr); });
    if (!r) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(r);
}

// self.<name>(*args), looked up on the object: how the pools complete a future in the stdlib's
// mode, as the stdlib's pools do (a subclass's override included).
py::object own_method(PyObject* self, const char* name, std::initializer_list<PyObject*> args = {}) {
    py::object fn = py::reinterpret_steal<py::object>(PyObject_GetAttrString(self, name));
    if (!fn) throw py::error_already_set();
    return call_object(fn, args);
}

bool take_and_run_callbacks(PyFuture& f, PyObject* self) {
    if (overrides_invoke_callbacks(self)) {
        PyObject* r = call_python([&] { return PyObject_CallMethodNoArgs(self, g_invoke_callbacks_name); });
        Py_XDECREF(r);
        return r != nullptr;
    }
    return invoke_callbacks(f, self);
}

// The stdlib's Future.__repr__, reading the state and outcome once, consistently.
py::str future_repr(py::handle self) {
    PyFuture& f = checked(self);
    PyObject* outcome = nullptr;
    bool raised = false;
    core::FutureState s = f.locked([&] {
        core::FutureState st = f.state();
        if (st == core::FutureState::Finished) {
            raised = f.exception && f.exception != Py_None;
            outcome = raised ? f.exception : (f.result ? f.result : Py_None);
            Py_INCREF(outcome);
        }
        return st;
    });
    py::object held = py::reinterpret_steal<py::object>(outcome);
    char addr[32];
    std::snprintf(addr, sizeof addr, "%#llx",
                  static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(self.ptr())));
    py::str cls = self.attr("__class__").attr("__name__");
    py::str desc = py::reinterpret_borrow<py::str>(stdlib().state_descriptions[static_cast<int>(s)]);
    if (outcome) {
        py::object kind = held.attr("__class__").attr("__name__");
        return py::str("<{} at {} state={} {} {}>")
            .format(cls, addr, desc, raised ? "raised" : "returned", kind);
    }
    return py::str("<{} at {} state={}>").format(cls, addr, desc);
}

[[noreturn]] void raise_invalid_state(PyFuture& f, py::handle self) {
    py::str msg = py::str("{}: {}").format(py::handle(state_name(f.state())), future_repr(self));
    PyErr_SetObject(stdlib().InvalidStateError, msg.ptr());
    throw py::error_already_set();
}

// The outcome of a done future: `want_exception` selects exception() over result().
py::object outcome_of(PyFuture& f, bool want_exception) {
    PyObject* exc = nullptr;
    PyObject* res = nullptr;
    core::FutureState s = f.locked([&] {
        core::FutureState st = f.state();
        if (st == core::FutureState::Finished) {
            exc = f.exception;
            res = f.result;
            Py_XINCREF(exc);
            Py_XINCREF(res);
        }
        return st;
    });
    py::object exc_obj = py::reinterpret_steal<py::object>(exc);
    py::object res_obj = py::reinterpret_steal<py::object>(res);
    if (core::is_cancelled(s)) raise(stdlib().CancelledError);
    if (s != core::FutureState::Finished) raise(stdlib().TimeoutError);
    if (want_exception) return exc_obj ? exc_obj : py::none();
    if (exc_obj && !exc_obj.is_none()) {
        // Re-raising the stored instance keeps its __traceback__ (the worker's frames).
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc_obj.ptr())), exc_obj.ptr());
        throw py::error_already_set();
    }
    return res_obj ? res_obj : py::none();
}

py::object wait_and_get(py::handle self, const py::object& timeout, bool want_exception) {
    PyFuture& f = checked(self);
    if (!f.settled() && !future_wait(f, deadline_from(timeout))) raise(stdlib().TimeoutError);
    return outcome_of(f, want_exception);
}

core::FutureState parse_state(py::handle value) {
    for (int i = 0; i < 5; ++i) {
        int eq = PyObject_RichCompareBool(value.ptr(), stdlib().state_names[i], Py_EQ);
        if (eq < 0) throw py::error_already_set();
        if (eq) return static_cast<core::FutureState>(i);
    }
    throw py::value_error(py::str("unknown future state: {!r}").format(value));
}

// Replaces one outcome slot under the lock; the old value is released afterwards.
void replace_slot(PyFuture& f, PyObject* PyFuture::*slot, py::handle value, bool is_exception) {
    PyObject* nv = value.is_none() ? nullptr : value.inc_ref().ptr();
    PyObject* old = f.locked([&] {
        PyObject* o = std::exchange(f.*slot, nv);
        if (is_exception) f.set_has_exception(nv != nullptr);
        return o;
    });
    Py_XDECREF(old);
}

// What `future._condition` returns: a view of the future's edit lock (see core/future_state.hpp),
// with threading.Condition's methods. Edits of `_state`, `_result` and `_exception` made inside
// reach waiters when the block closes.
struct ConditionView {
    py::object future;
};

// What a subclass assigned to `_condition` or `_waiters` (a new reference), or nullptr.
PyObject* own_slot(PyFuture& f, PyObject* PyFuture::*slot) {
    return f.locked([&] {
        Py_XINCREF(f.*slot);
        return f.*slot;
    });
}

// Assigns `_condition` or `_waiters` (a null handle: back to the native view), and with it the
// stdlib's mode. The old object is released afterwards.
void assign_own_slot(PyFuture& f, PyObject* PyFuture::*slot, py::handle value) {
    PyObject* nv = value ? value.inc_ref().ptr() : nullptr;
    PyObject* old = f.locked([&] {
        PyObject* o = std::exchange(f.*slot, nv);
        f.stdlib_mode.store(f.condition || f.waiters, std::memory_order_release);
        return o;
    });
    Py_XDECREF(old);
}

// What `future._waiters` returns: the stdlib waiters registered on the future, as a list-like
// view (append, remove, len, iteration: what the stdlib's wait() and as_completed() use).
struct WaiterList {
    py::object future;
};

// What `future._done_callbacks` returns: the callbacks not run yet, as a list-like view
// (append, remove, clear, len, indexing, iteration, in). Assigning a list replaces them.
struct CallbackList {
    py::object future;
};

template <class View>
PyFuture& view_future(View& v) {
    return checked(v.future);
}

}  // namespace

PyFuture* as_future(PyObject* obj) { return native_ptr<PyFuture>(obj, g_future_base); }

py::object new_future() {
    PyTypeObject* type = g_future_type ? g_future_type : g_future_base;
    // The pybind11 equivalent of type() without going through __init__'s overload dispatcher:
    // allocate the instance, then construct the C++ state and its holder in place. Unlike
    // init_instance, it does not enter the instance in pybind11's table of live instances (an
    // unordered_multimap insert here and an erase at dealloc: thread pool submit+result of
    // 100,000 no-ops took 1.65 us/task with it, 1.00 without, Intel Xeon, 2 vCPUs; 8% of a
    // process-pool submit loop's thread by perf). That table maps a C++ pointer back to its
    // Python object for py::cast, and no PyFuture is ever cast to Python (the bindings hold the
    // PyObject*). Unregistered, pybind11's dealloc skips the erase and destroys the holder as
    // usual.
    PyObject* obj = type->tp_new(type, g_empty_tuple, nullptr);
    if (!obj) throw py::error_already_set();
    auto* inst = reinterpret_cast<py::detail::instance*>(obj);
    static py::detail::type_info* info = py::detail::get_type_info(typeid(PyFuture));
    auto v_h = inst->get_value_and_holder(info);
    auto* state = new PyFuture();
    v_h.value_ptr() = state;
    using Holder = std::unique_ptr<PyFuture>;
    static_assert(std::is_same_v<py::class_<PyFuture>::holder_type, Holder>);
    new (std::addressof(v_h.holder<Holder>())) Holder(state);
    v_h.set_holder_constructed();
    return py::reinterpret_steal<py::object>(obj);
}

core::Completion completion_of(const PyFuture& f) {
    if (core::is_cancelled(f.state())) return core::Completion::Cancelled;
    return f.has_exception() ? core::Completion::Exception : core::Completion::Result;
}

bool future_set_result(PyFuture& f, PyObject* self, PyObject* value) {
    if (f.in_stdlib_mode()) {
        own_method(self, "set_result", {value});
        return true;
    }
    Py_INCREF(value);
    PyObject* old = nullptr;
    if (!f.finish(core::Completion::Result, [&] { old = std::exchange(f.result, value); })) {
        Py_DECREF(value);
        raise_invalid_state(f, self);
    }
    Py_XDECREF(old);
    tell_stdlib_waiters(f, self);
    return take_and_run_callbacks(f, self);
}

namespace {
bool set_exception(PyFuture& f, PyObject* self, PyObject* exc, bool quiet_if_done) {
    if (f.in_stdlib_mode()) {
        if (quiet_if_done && core::is_done(f.state())) return true;
        try {
            own_method(self, "set_exception", {exc});
        } catch (py::error_already_set& e) {
            // Finished meanwhile by another thread: as the native path, leave it.
            if (!(quiet_if_done && e.matches(stdlib().InvalidStateError) && core::is_done(f.state()))) throw;
        }
        return true;
    }
    Py_INCREF(exc);
    PyObject* old = nullptr;
    auto how = exc == Py_None ? core::Completion::Result : core::Completion::Exception;
    if (!f.finish(how, [&] { old = std::exchange(f.exception, exc); })) {
        Py_DECREF(exc);
        if (quiet_if_done) return true;
        raise_invalid_state(f, self);
    }
    Py_XDECREF(old);
    tell_stdlib_waiters(f, self);
    return take_and_run_callbacks(f, self);
}
}  // namespace

bool future_set_exception(PyFuture& f, PyObject* self, PyObject* exc) {
    return set_exception(f, self, exc, false);
}

bool future_fail_unless_done(PyFuture& f, PyObject* self, PyObject* exc) {
    return set_exception(f, self, exc, true);
}

namespace {
std::atomic<RunningStopper> g_running_stopper{nullptr};
}

void set_running_stopper(RunningStopper stopper) { g_running_stopper.store(stopper); }

namespace {
void end_stopping(PyFuture& f) {
    f.stopping.store(false, std::memory_order_release);
    f.stopping.notify_all();
}
}  // namespace

bool future_cancel(PyFuture& f, PyObject* self, bool* cancelled) {
    if (f.in_stdlib_mode()) {
        // (The stdlib's cancel(): a running call is not stopped, cancel_running or not.)
        py::object r = own_method(self, "cancel");
        int truth = PyObject_IsTrue(r.ptr());
        if (truth < 0) throw py::error_already_set();
        *cancelled = truth != 0;
        return true;
    }
    switch (f.cancel()) {
        case core::CancelOutcome::Refused: {
            RunningStopper stop = g_running_stopper.load(std::memory_order_acquire);
            if (!stop || f.state() != core::FutureState::Running) {
                *cancelled = false;
                return true;
            }
            if (f.stopping.exchange(true, std::memory_order_acq_rel)) {
                // Another cancel() is stopping the call: its outcome is this call's answer too
                // (True once cancelled, as the stdlib's cancel() of a cancelled future).
                // Blocks (a futex wait) until the stopper is done: stopping may run Python code
                // (the call's arguments are released), which can take any time.
                without_gil([&] {
                    while (f.stopping.load(std::memory_order_acquire)) f.stopping.wait(true, std::memory_order_acquire);
                });
                *cancelled = core::is_cancelled(f.state());
                return true;
            }
            bool won = false;
            try {
                won = stop(f, self) && f.cancel_running();
            } catch (...) {
                end_stopping(f);
                throw;
            }
            end_stopping(f);
            *cancelled = won;
            if (!won) return true;
            tell_stdlib_waiters(f, self);
            return take_and_run_callbacks(f, self);
        }
        case core::CancelOutcome::AlreadyCancelled: *cancelled = true; return true;
        case core::CancelOutcome::Cancelled: break;
    }
    *cancelled = true;
    return take_and_run_callbacks(f, self);
}

core::StartOutcome future_start(PyFuture& f, PyObject* self) {
    core::StartOutcome out = f.set_running_or_notify_cancel();
    if (out == core::StartOutcome::Cancelled) tell_stdlib_waiters(f, self);
    return out;
}

namespace {
// The stdlib waiter's method that tells of the future's outcome.
const char* waiter_method(const PyFuture& f, core::FutureState state) {
    return core::is_cancelled(state) ? "add_cancelled" : f.has_exception() ? "add_exception" : "add_result";
}
}  // namespace

void tell_stdlib_waiters(PyFuture& f, PyObject* self) {
    if (f.in_stdlib_mode()) {
        // Only a transition the stdlib's methods did not make gets here: the native start of a
        // cancelled future (set_running_or_notify_cancel tells every waiter of `_waiters`).
        PyObject* own = f.locked([&] { Py_XINCREF(f.waiters); return f.waiters; });
        if (own) {
            py::object waiters = py::reinterpret_steal<py::object>(own);
            const char* method = waiter_method(f, f.state());
            try {
                py::list snapshot(waiters);
                for (py::handle w : snapshot) {
                    PyObject* r = call_python([&] { return PyObject_CallMethod(w.ptr(), method, "O", self); });
                    if (r) Py_DECREF(r);
                    else write_unraisable(w.ptr());
                }
            } catch (py::error_already_set& e) {
                write_unraisable(e, self);
            }
            return;
        }
    }
    if (f.stdlib_waiter_count.load(std::memory_order_acquire) == 0) return;
    std::vector<PyObject*> due;
    core::FutureState state = f.locked([&] {
        std::uint32_t at = f.collective_at_locked();
        for (StdlibWaiter& w : f.stdlib_waiters) {
            if (w.told || w.stamp >= at) continue;
            w.told = true;
            Py_INCREF(w.waiter);
            due.push_back(w.waiter);
        }
        return f.state();
    });
    const char* method = waiter_method(f, state);
    for (PyObject* w : due) {
        PyObject* r = call_python([&] { return PyObject_CallMethod(w, method, "O", self); });
        if (r) Py_DECREF(r);
        else write_unraisable(w);
        Py_DECREF(w);
    }
}

namespace {

void release_condition(ConditionView& v) {
    if (!view_future(v).end_edit()) raise(PyExc_RuntimeError, "cannot release un-acquired lock");
}

// The owner of an edit waits the way Condition.wait() does: the edit is closed (whatever its
// depth) while it waits, so that the transition it waits for can happen, then reopened.
bool wait_outside_own_edit(PyFuture& f, std::optional<Clock::time_point> deadline) {
    std::uint32_t depth = f.suspend_edit();
    try {
        future_wait(f, deadline);
    } catch (...) {
        if (depth) f.begin_edit(std::nullopt, depth);
        throw;
    }
    if (depth) f.begin_edit(std::nullopt, depth);
    return core::is_done(f.state());
}

}  // namespace

bool future_wait(PyFuture& f, std::optional<Clock::time_point> deadline) {
    if (f.settled()) return true;
    if (f.editing() && f.edit_open_here()) {
        // Inside its own edit a thread reads through it, as an RLock's owner re-enters.
        if (core::is_done(f.state())) return true;
        return wait_outside_own_edit(f, deadline);
    }
    auto began = Clock::now();
    auto budget = g_result_spin.budget();
    if (budget.count() && (!deadline || *deadline > began)) {
        // The GIL is let go only to spin: when the policy says block, releasing it here and
        // taking it back before blocking would cost a hand-over to the worker and back.
        without_gil([&] {
            core::SpinSite::spin_for(budget, [&] { return f.settled(); },
                                     deadline.value_or(Clock::time_point::max()));
        });
    }
    struct RecordWait {  // however the wait ends (an exception from a signal handler included)
        Clock::time_point began;
        PyFuture& f;
        ~RecordWait() {
            if (f.settled()) g_result_spin.record_wait(Clock::now() - began);
        }
    } record{began, f};
    if (f.settled()) {
        if (budget.count()) run_pending_signal_handlers();  // it spun without the GIL
        return true;
    }
    core::Waiter w(core::WaitMode::AnyDone);
    core::WaiterLink link;
    link.waiter = &w;
    link.wants_cancel = true;
    w.add_pending();
    if (!f.link(link)) return f.settled();
    w.release_guard();
    try {
        wait_interruptibly(w, deadline);
    } catch (...) {
        f.unlink(link);
        throw;
    }
    f.unlink(link);
    return f.settled();
}

// Threads that wait for another thread's edit release the GIL meanwhile: the edit's owner may
// need it to close the edit.
static void release_gil_around(void (*wait)(void*), void* arg) {
    if (!attached()) {
        wait(arg);
        return;
    }
    without_gil([&] { wait(arg); });
}

namespace {

// FutureBase's slots for the garbage collector: results and callbacks may point back at the
// future (a callback closing over it), so the collector must see them, as it sees the stdlib's
// attributes.
//
// pybind11 tracks a new instance for the collector (tp_alloc) before it allocates the instance's
// layout, and allocating it can collect: the first instance of a new Python subclass fills
// pybind11's type cache, which makes objects. Until then the instance is all zeros (not
// simple_layout, no values_and_holders), and neither its value nor its holder flag can be read.
bool layout_allocated(PyObject* self) {
    auto* inst = reinterpret_cast<py::detail::instance*>(self);
    return inst->simple_layout || inst->nonsimple.values_and_holders != nullptr;
}

void make_collectable(PyHeapTypeObject* heap_type) {
    auto traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
        Py_VISIT(Py_TYPE(self));
        PyFuture* f = layout_allocated(self) ? as_future(self) : nullptr;
        if (f && py::detail::is_holder_constructed(self)) {
            Py_VISIT(f->result);
            Py_VISIT(f->exception);
            for (PyObject* cb : f->callbacks) Py_VISIT(cb);
            for (StdlibWaiter& w : f->stdlib_waiters) Py_VISIT(w.waiter);
            Py_VISIT(f->condition);
            Py_VISIT(f->waiters);
        }
        return 0;
    };
    auto clear = [](PyObject* self) -> int {
        PyFuture* f = layout_allocated(self) ? as_future(self) : nullptr;
        if (f && py::detail::is_holder_constructed(self)) {
            PyObject* r = std::exchange(f->result, nullptr);
            PyObject* e = std::exchange(f->exception, nullptr);
            auto cbs = std::exchange(f->callbacks, {});
            auto ws = std::exchange(f->stdlib_waiters, {});
            f->count_stdlib_waiters_locked();
            PyObject* cond = std::exchange(f->condition, nullptr);
            PyObject* own_waiters = std::exchange(f->waiters, nullptr);
            f->stdlib_mode.store(false, std::memory_order_release);
            Py_XDECREF(cond);
            Py_XDECREF(own_waiters);
            Py_XDECREF(r);
            Py_XDECREF(e);
            for (PyObject* cb : cbs) Py_DECREF(cb);
            for (StdlibWaiter& w : ws) Py_DECREF(w.waiter);
        }
        return 0;
    };
    auto* type = &heap_type->ht_type;
    type->tp_flags |= Py_TPFLAGS_HAVE_GC;
    type->tp_traverse = traverse;
    type->tp_clear = clear;
}

// --- The stdlib Future's methods, raw (METH_FASTCALL) rather than pybind11-dispatched: pybind11's
// dispatcher keeps a per-thread stack of frames (loader_life_support) that must unwind in call
// order, and a method that runs Python code can switch greenlets in the middle (a green Condition
// in the stdlib's mode, a done-callback that waits): another greenlet's call on the same thread
// would then return out of order, and pybind11 aborts ("loader_life_support: internal error",
// futurist's green executor). Each method first checks for the stdlib's mode (future.hpp), where
// it is the stdlib's own.

// The one optional argument `name` of method `method` (positionally or by keyword): nullptr when
// absent. Raises TypeError as CPython's argument parsing does.
PyObject* one_argument(const char* method, const char* name, PyObject* const* args, Py_ssize_t nargsf,
                       PyObject* kwnames, bool required) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument (%zd given)", method, nargs + nkw);
        throw py::error_already_set();
    }
    if (nargs == 1) return args[0];
    if (nkw == 1) {
        PyObject* key = PyTuple_GET_ITEM(kwnames, 0);
        if (PyUnicode_CompareWithASCIIString(key, name) != 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", method, key);
            throw py::error_already_set();
        }
        return args[0];
    }
    if (required) {
        PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: '%s'", method, name);
        throw py::error_already_set();
    }
    return nullptr;
}

PyObject* new_bool(bool b) { return py::bool_(b).release().ptr(); }

PyObject* future_cancel_method(PyObject* self, PyObject*) {
    return guarded([&] {
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method("cancel", self).release().ptr();
        bool cancelled = false;
        if (!future_cancel(f, self, &cancelled)) throw py::error_already_set();
        return new_bool(cancelled);
    });
}

PyObject* future_cancelled_method(PyObject* self, PyObject*) {
    return guarded([&] {
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method("cancelled", self).release().ptr();
        return new_bool(core::is_cancelled(f.state()));
    });
}

PyObject* future_running_method(PyObject* self, PyObject*) {
    return guarded([&] {
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method("running", self).release().ptr();
        return new_bool(f.state() == core::FutureState::Running);
    });
}

PyObject* future_done_method(PyObject* self, PyObject*) {
    return guarded([&] {
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method("done", self).release().ptr();
        return new_bool(core::is_done(f.state()));
    });
}

template <bool WantException>
PyObject* future_outcome_method(PyObject* self, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    return guarded([&] {
        const char* name = WantException ? "exception" : "result";
        PyObject* timeout = one_argument(name, "timeout", args, nargsf, kwnames, false);
        if (!timeout) timeout = Py_None;
        if (checked(self).in_stdlib_mode()) return stdlib_method(name, self, {timeout}).release().ptr();
        return wait_and_get(self, py::reinterpret_borrow<py::object>(timeout), WantException).release().ptr();
    });
}

PyObject* future_add_done_callback_method(PyObject* self, PyObject* const* args, Py_ssize_t nargsf,
                                          PyObject* kwnames) {
    return guarded([&]() -> PyObject* {
        PyObject* cb = one_argument("add_done_callback", "fn", args, nargsf, kwnames, true);
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method("add_done_callback", self, {cb}).release().ptr();
        Py_INCREF(cb);
        bool queued = f.locked([&] {
            if (core::is_done(f.state())) return false;
            f.callbacks.push_back(cb);
            return true;
        });
        if (!queued) {
            std::vector<PyObject*> now{cb};
            if (!run_callbacks(now, self)) throw py::error_already_set();
        }
        Py_RETURN_NONE;
    });
}

PyObject* future_set_running_or_notify_cancel_method(PyObject* self, PyObject*) {
    return guarded([&]() -> PyObject* {
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method("set_running_or_notify_cancel", self).release().ptr();
        switch (future_start(f, self)) {
            case core::StartOutcome::Running: return new_bool(true);
            case core::StartOutcome::Cancelled: return new_bool(false);
            case core::StartOutcome::Invalid:
            case core::StartOutcome::Busy: break;
        }
        py::object logger = call_method(import_module("logging"), "getLogger", {py::str("concurrent.futures").ptr()});
        py::object address = py::int_(reinterpret_cast<std::uintptr_t>(self));
        call_method(logger, "critical", {py::str("Future %s in unexpected state: %s").ptr(), address.ptr(),
                                         state_name(f.state())});
        raise(PyExc_RuntimeError, "Future in unexpected state");
    });
}

template <bool Exception>
PyObject* future_set_method(PyObject* self, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    return guarded([&]() -> PyObject* {
        const char* name = Exception ? "set_exception" : "set_result";
        PyObject* value = one_argument(name, Exception ? "exception" : "result", args, nargsf, kwnames, true);
        PyFuture& f = checked(self);
        if (f.in_stdlib_mode()) return stdlib_method(name, self, {value}).release().ptr();
        bool ok = Exception ? future_set_exception(f, self, value) : future_set_result(f, self, value);
        if (!ok) throw py::error_already_set();
        Py_RETURN_NONE;
    });
}

PyObject* future_repr_method(PyObject* self, PyObject*) {
    return guarded([&] {
        if (checked(self).in_stdlib_mode()) return stdlib_method("__repr__", self).release().ptr();
        return future_repr(self).release().ptr();
    });
}

PyObject* future_invoke_callbacks_method(PyObject* self, PyObject*) {
    return guarded([&]() -> PyObject* {
        if (!invoke_callbacks(checked(self), self)) throw py::error_already_set();
        Py_RETURN_NONE;
    });
}

template <auto Fn>
PyCFunction as_cfunction() {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(Fn));
}

// The stdlib's docstrings (their text signatures first: inspect.signature reads them).
PyMethodDef g_future_methods[] = {
    {"cancel", as_cfunction<future_cancel_method>(), METH_NOARGS,
     "cancel($self, /)\n--\n\nCancel the future if possible.\n\n"
     "Returns True if the future was cancelled, False otherwise. A future cannot be cancelled if "
     "it is running or has already completed.\n\n"
     "(cfutures) A running task of a ProcessPoolExecutor(cancel_running=True) is stopped: its "
     "worker is killed and replaced, and cancel() returns True, unless the result arrived first."},
    {"cancelled", as_cfunction<future_cancelled_method>(), METH_NOARGS,
     "cancelled($self, /)\n--\n\nReturn True if the future was cancelled."},
    {"running", as_cfunction<future_running_method>(), METH_NOARGS,
     "running($self, /)\n--\n\nReturn True if the future is currently executing."},
    {"done", as_cfunction<future_done_method>(), METH_NOARGS,
     "done($self, /)\n--\n\nReturn True if the future was cancelled or finished executing."},
    {"result", as_cfunction<future_outcome_method<false>>(), METH_FASTCALL | METH_KEYWORDS,
     "result($self, /, timeout=None)\n--\n\nReturn the result of the call that the future "
     "represents.\n\nRaises CancelledError if the future was cancelled, TimeoutError if it did not "
     "finish within timeout seconds, and the call's exception if it raised one."},
    {"exception", as_cfunction<future_outcome_method<true>>(), METH_FASTCALL | METH_KEYWORDS,
     "exception($self, /, timeout=None)\n--\n\nReturn the exception raised by the call that the "
     "future represents (None if it completed without raising).\n\nRaises CancelledError if the "
     "future was cancelled, TimeoutError if it did not finish within timeout seconds."},
    {"add_done_callback", as_cfunction<future_add_done_callback_method>(), METH_FASTCALL | METH_KEYWORDS,
     "add_done_callback($self, /, fn)\n--\n\nAttaches a callable that will be called when the "
     "future finishes.\n\nfn is called with the future as its only argument, in the order the "
     "callbacks were added; at once if the future is already done."},
    {"set_running_or_notify_cancel", as_cfunction<future_set_running_or_notify_cancel_method>(),
     METH_NOARGS,
     "set_running_or_notify_cancel($self, /)\n--\n\nMark the future as running or process any "
     "cancel notifications.\n\nShould only be used by Executor implementations and unit tests. "
     "Returns False if the future was cancelled, True otherwise."},
    {"set_result", as_cfunction<future_set_method<false>>(), METH_FASTCALL | METH_KEYWORDS,
     "set_result($self, /, result)\n--\n\nSets the return value of work associated with the "
     "future.\n\nShould only be used by Executor implementations and unit tests."},
    {"set_exception", as_cfunction<future_set_method<true>>(), METH_FASTCALL | METH_KEYWORDS,
     "set_exception($self, /, exception)\n--\n\nSets the result of the future as being the given "
     "exception.\n\nShould only be used by Executor implementations and unit tests."},
    {"__repr__", as_cfunction<future_repr_method>(), METH_NOARGS, "Return repr(self)."},
    {"_invoke_callbacks", as_cfunction<future_invoke_callbacks_method>(), METH_NOARGS,
     "_invoke_callbacks($self, /)\n--\n\nRuns the done-callbacks not run yet (the stdlib's "
     "internal method, which a subclass may override)."},
};

// `_condition` or `_waiters`: a view of the native state (View), until a subclass assigns its own
// object (a Condition, a list): the future then runs in the stdlib's mode (future.hpp), until the
// view is assigned back.
template <class View>
void def_replaceable_view(py::class_<PyFuture>& cls, const char* name, PyObject* PyFuture::*slot) {
    cls.def_property(
        name,
        [slot](py::object self) -> py::object {
            if (PyObject* own = own_slot(checked(self), slot)) return py::reinterpret_steal<py::object>(own);
            return py::cast(View{std::move(self)});
        },
        [slot](py::handle self, py::handle value) {
            PyFuture& f = checked(self);
            bool own_view = py::isinstance<View>(value) && value.cast<View&>().future.ptr() == self.ptr();
            assign_own_slot(f, slot, own_view ? py::handle() : value);
        });
}

// _cfutures.FutureBase: the stdlib Future's methods, and the internals code reads and assigns.
void register_future_base(py::module_& m) {
    py::class_<PyFuture> cls(m, "FutureBase", py::custom_type_setup(&make_collectable));
    g_future_base = reinterpret_cast<PyTypeObject*>(cls.ptr());

    cls.def(py::init<>())
        // CPython internals that code written against the stdlib (its own test-suite included)
        // reads and assigns.
        .def_property(
            "_state", [](py::handle self) { return py::handle(state_name(checked(self).state())); },
            [](py::handle self, py::handle value) {
                PyFuture& f = checked(self);
                core::FutureState s = parse_state(value);
                f.force_state(s, f.locked([&] { return f.exception != nullptr; }));
            })
        .def_property(
            "_result",
            [](py::handle self) {
                PyFuture& f = checked(self);
                PyObject* r = f.locked([&] { Py_XINCREF(f.result); return f.result; });
                return r ? py::reinterpret_steal<py::object>(r) : py::none();
            },
            [](py::handle self, py::handle v) { replace_slot(checked(self), &PyFuture::result, v, false); })
        .def_property(
            "_exception",
            [](py::handle self) {
                PyFuture& f = checked(self);
                PyObject* e = f.locked([&] { Py_XINCREF(f.exception); return f.exception; });
                return e ? py::reinterpret_steal<py::object>(e) : py::none();
            },
            [](py::handle self, py::handle v) {
                replace_slot(checked(self), &PyFuture::exception, v, true);
            })
        .def_property(
            "_done_callbacks",
            [](py::object self) {
                checked(self);
                return CallbackList{std::move(self)};
            },
            [](py::handle self, py::iterable callbacks) {
                std::vector<PyObject*> fresh;
                for (py::handle cb : callbacks) fresh.push_back(cb.inc_ref().ptr());
                PyFuture& f = checked(self);
                std::vector<PyObject*> old = f.locked([&] { return std::exchange(f.callbacks, fresh); });
                for (PyObject* cb : old) Py_DECREF(cb);
            });
    def_replaceable_view<ConditionView>(cls, "_condition", &PyFuture::condition);
    def_replaceable_view<WaiterList>(cls, "_waiters", &PyFuture::waiters);
    for (PyMethodDef& def : g_future_methods) add_raw_method(cls, &def);
}

void register_condition_view(py::module_& m) {
    py::class_<ConditionView>(m, "_ConditionView")
        .def("acquire",
             [](ConditionView& v, bool blocking, double timeout) {
                 if (!blocking && timeout != -1.0)
                     throw py::value_error("can't specify a timeout for a non-blocking call");
                 std::optional<Clock::time_point> deadline;
                 if (!blocking) deadline = Clock::now();
                 else if (timeout >= 0) deadline = deadline_from(py::float_(timeout));
                 else if (timeout != -1.0) throw py::value_error("timeout value must be a non-negative number");
                 return view_future(v).begin_edit(deadline);
             },
             py::arg("blocking") = true, py::arg("timeout") = -1.0)
        .def("release", release_condition)
        .def("__enter__", [](ConditionView& v) { return view_future(v).begin_edit(); })
        .def("__exit__", [](ConditionView& v, py::args) {
            release_condition(v);
            return false;
        })
        // Waiters are woken when the block closes; notifying inside it has nothing to add.
        .def("notify", [](ConditionView&, py::args) {})
        .def("notify_all", [](ConditionView&) {})
        .def("wait",
             [](ConditionView& v, py::object timeout) {
                 PyFuture& f = view_future(v);
                 if (!f.edit_open_here()) raise(PyExc_RuntimeError, "cannot wait on un-acquired lock");
                 return wait_outside_own_edit(f, deadline_from(timeout));
             },
             py::arg("timeout") = py::none());
}

void register_waiter_list(py::module_& m) {
    py::class_<WaiterList>(m, "_WaiterList")
        .def("append",
             [](WaiterList& v, py::object waiter) {
                 PyFuture& f = view_future(v);
                 PyObject* w = waiter.release().ptr();
                 f.locked([&] {
                     f.stdlib_waiters.push_back({w, f.stamp_locked(), false});
                     f.count_stdlib_waiters_locked();
                 });
             })
        .def("remove",
             [](WaiterList& v, py::handle waiter) {
                 PyFuture& f = view_future(v);
                 // By identity: comparing with == could run Python code under the lock (the
                 // stdlib's waiters compare by identity anyway).
                 PyObject* removed = f.locked([&]() -> PyObject* {
                     auto& ws = f.stdlib_waiters;
                     for (auto it = ws.begin(); it != ws.end(); ++it) {
                         if (it->waiter != waiter.ptr()) continue;
                         PyObject* w = it->waiter;
                         ws.erase(it);
                         f.count_stdlib_waiters_locked();
                         return w;
                     }
                     return nullptr;
                 });
                 if (!removed) throw py::value_error("list.remove(x): x not in list");
                 Py_DECREF(removed);
             })
        .def("__len__", [](WaiterList& v) { return view_future(v).stdlib_waiter_count.load(); })
        .def("__iter__", [](WaiterList& v) {
            PyFuture& f = view_future(v);
            py::list out;
            std::vector<PyObject*> ws = f.locked([&] {
                std::vector<PyObject*> copy;
                for (StdlibWaiter& w : f.stdlib_waiters) {
                    Py_INCREF(w.waiter);
                    copy.push_back(w.waiter);
                }
                return copy;
            });
            for (PyObject* w : ws) out.append(py::reinterpret_steal<py::object>(w));
            return py::iter(out);
        })
        .def("__contains__", [](WaiterList& v, py::handle waiter) {
            PyFuture& f = view_future(v);
            return f.locked([&] {
                for (StdlibWaiter& w : f.stdlib_waiters)
                    if (w.waiter == waiter.ptr()) return true;
                return false;
            });
        });
}

// A strong copy of the callbacks, taken under the lock: comparisons run Python code, so they
// are made on the copy, outside it.
py::list callbacks_snapshot(PyFuture& f) {
    std::vector<PyObject*> copy = f.locked([&] {
        for (PyObject* cb : f.callbacks) Py_INCREF(cb);
        return f.callbacks;
    });
    py::list out(copy.size());
    for (std::size_t i = 0; i < copy.size(); ++i) PyList_SET_ITEM(out.ptr(), i, copy[i]);
    return out;
}

void register_callback_list(py::module_& m) {
    py::class_<CallbackList>(m, "_CallbackList")
        .def("append",
             [](CallbackList& v, py::object fn) {
                 PyFuture& f = view_future(v);
                 PyObject* cb = fn.release().ptr();
                 f.locked([&] { f.callbacks.push_back(cb); });
             })
        .def("remove",
             [](CallbackList& v, py::handle fn) {
                 PyFuture& f = view_future(v);
                 // list.remove() compares with == (bound methods are new objects at each access).
                 py::list snapshot = callbacks_snapshot(f);
                 for (py::handle cb : snapshot) {
                     int eq = PyObject_RichCompareBool(cb.ptr(), fn.ptr(), Py_EQ);
                     if (eq < 0) throw py::error_already_set();
                     if (!eq) continue;
                     PyObject* removed = f.locked([&]() -> PyObject* {
                         auto it = std::find(f.callbacks.begin(), f.callbacks.end(), cb.ptr());
                         if (it == f.callbacks.end()) return nullptr;
                         f.callbacks.erase(it);
                         return cb.ptr();
                     });
                     if (removed) {
                         Py_DECREF(removed);
                         return;
                     }
                 }
                 throw py::value_error("list.remove(x): x not in list");
             })
        .def("clear",
             [](CallbackList& v) {
                 PyFuture& f = view_future(v);
                 std::vector<PyObject*> old = f.locked([&] { return std::exchange(f.callbacks, {}); });
                 for (PyObject* cb : old) Py_DECREF(cb);
             })
        .def("__len__", [](CallbackList& v) {
            PyFuture& f = view_future(v);
            return f.locked([&] { return f.callbacks.size(); });
        })
        .def("__getitem__", [](CallbackList& v, py::object index) -> py::object {
            py::list snapshot = callbacks_snapshot(view_future(v));
            return snapshot[index];
        })
        .def("__iter__", [](CallbackList& v) { return py::iter(callbacks_snapshot(view_future(v))); })
        .def("__contains__", [](CallbackList& v, py::handle fn) {
            return callbacks_snapshot(view_future(v)).contains(fn);
        })
        .def("__eq__", [](CallbackList& v, py::handle other) {
            return callbacks_snapshot(view_future(v)).equal(other);
        })
        .def("__repr__", [](CallbackList& v) { return py::repr(callbacks_snapshot(view_future(v))); });
}

}  // namespace

void register_future(py::module_& m) {
    g_empty_tuple = PyTuple_New(0);
    core::edit_blocking_hook().store(&release_gil_around);
    register_future_base(m);
    register_condition_view(m);
    register_waiter_list(m);
    register_callback_list(m);
    g_invoke_callbacks_name = PyUnicode_InternFromString("_invoke_callbacks");
    g_own_invoke_callbacks = PyObject_GetAttr(reinterpret_cast<PyObject*>(g_future_base), g_invoke_callbacks_name);
    if (!g_own_invoke_callbacks) throw py::error_already_set();
    m.def("_set_future_type", [](py::handle type, py::handle run_callback, py::handle queue_full) {
        if (!PyType_Check(type.ptr()) ||
            !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type.ptr()), g_future_base))
            throw py::type_error("expected a subclass of FutureBase");
        if (!stdlib().CancelledError) load_stdlib();
        g_future_type = reinterpret_cast<PyTypeObject*>(type.inc_ref().ptr());
        stdlib().run_callback = run_callback.inc_ref().ptr();
        stdlib().QueueFull = queue_full.inc_ref().ptr();
    });
}

}  // namespace cfutures::bindings
