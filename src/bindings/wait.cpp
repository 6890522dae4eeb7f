// wait() and as_completed(), native: one core::Waiter per call, linked into every pending future.
//
// cfutures futures are linked directly (FutureCore::link). Any other concurrent.futures-style
// future (the stdlib's own, a subclass, a cfutures future in the stdlib's mode: future.hpp) is
// watched through the stdlib's protocol: under
// `f._condition`, read `f._state` and append a _ForeignWaiterLink to `f._waiters`; the stdlib
// future then calls its add_result/add_exception/add_cancelled, which notify the same Waiter.
// Every link is removed before the call returns (or, for as_completed, before the future is
// yielded or the generator closes).
#include <memory>
#include <vector>

#include "future.hpp"

namespace cfutures::bindings {

namespace {

// Forwards a foreign future's completion to a core waiter.
struct ForeignWaiterLink {
    std::shared_ptr<core::Waiter> waiter;
    std::uintptr_t tag;
    void notify(core::Completion how) { waiter->notify(tag, how); }
};

struct Watched {
    PyObject* obj = nullptr;      // strong, until handed out or released
    PyFuture* native = nullptr;   // set for cfutures futures
    PyObject* adapter = nullptr;  // foreign futures: our link in obj._waiters (strong)
    core::WaiterLink link;
    bool done = false;
    core::Completion how = core::Completion::Result;
};

// Identity set for deduplication; open addressing, sized once.
class PointerSet {
public:
    explicit PointerSet(std::size_t n) {
        std::size_t cap = 16;
        while (cap < 2 * n) cap <<= 1;
        slots_.assign(cap, nullptr);
        mask_ = cap - 1;
    }
    bool insert(PyObject* p) {
        std::size_t i = (reinterpret_cast<std::uintptr_t>(p) >> 4) * 0x9E3779B97F4A7C15ull & mask_;
        while (slots_[i]) {
            if (slots_[i] == p) return false;
            i = (i + 1) & mask_;
        }
        slots_[i] = p;
        return true;
    }

private:
    std::vector<PyObject*> slots_;
    std::size_t mask_;
};

py::object stdlib_state(int s) { return py::reinterpret_borrow<py::object>(stdlib().state_names[s]); }

// The deduplicated futures of one call. `items` never reallocates once built: links point into it.
class WatchSet {
public:
    explicit WatchSet(py::handle iterable) {
        // PySequence_Fast gives a list itself, whose items are read below without references:
        // on a free-threaded build another thread may change the list meanwhile, so it is
        // copied first (under the list's own lock).
#ifdef Py_GIL_DISABLED
        PyObject* fast = PyList_Check(iterable.ptr())
                             ? PyList_AsTuple(iterable.ptr())
                             : PySequence_Fast(iterable.ptr(), "fs must be an iterable of futures");
#else
        PyObject* fast = PySequence_Fast(iterable.ptr(), "fs must be an iterable of futures");
#endif
        py::object seq = py::reinterpret_steal<py::object>(fast);
        if (!seq) throw py::error_already_set();
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
        PyObject** raw = PySequence_Fast_ITEMS(seq.ptr());
        PointerSet seen(static_cast<std::size_t>(n));
        items.reserve(static_cast<std::size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (!seen.insert(raw[i])) continue;
            Watched w;
            w.obj = raw[i];
            Py_INCREF(w.obj);
            w.native = as_future(w.obj);
            // A future in the stdlib's mode is told through its own _condition and _waiters.
            if (w.native && w.native->in_stdlib_mode()) w.native = nullptr;
            items.push_back(w);
        }
    }
    WatchSet(const WatchSet&) = delete;
    ~WatchSet() { uninstall_all(); }

    // Checks whether item i is done (for wait()/as_completed(): CANCELLED alone does not count)
    // and, if it is not and `waiter` is given, starts watching it. Returns whether it is done.
    bool check(std::size_t i, const std::shared_ptr<core::Waiter>& waiter) {
        Watched& w = items[i];
        if (w.native) {
            if (!waiter) {
                if (w.native->editing() || !core::is_done_for_collective(w.native->state()))
                    return false;
                w.how = completion_of(*w.native);
                return w.done = true;
            }
            w.link.waiter = waiter.get();
            w.link.tag = i;
            w.link.wants_cancel = false;
            if (w.native->link(w.link)) return false;
            w.how = completion_of(*w.native);
            return w.done = true;
        }
        return check_foreign(i, waiter);
    }

    // Stops watching item i (idempotent).
    void uninstall(std::size_t i) {
        Watched& w = items[i];
        if (w.native) {
            w.native->unlink(w.link);
        } else if (w.adapter) {
            py::object adapter = py::reinterpret_steal<py::object>(w.adapter);
            w.adapter = nullptr;
            py::object f = py::reinterpret_borrow<py::object>(w.obj);
            py::object cond = f.attr("_condition");
            call_method(cond, "acquire");
            try {
                py::object waiters = f.attr("_waiters");
                if (PySequence_Contains(waiters.ptr(), adapter.ptr()) == 1) call_method(waiters, "remove", {adapter.ptr()});
            } catch (...) {
                call_method(cond, "release");
                throw;
            }
            call_method(cond, "release");
        }
    }

    void uninstall_all() {
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (!items[i].obj) continue;
            try {
                uninstall(i);
            } catch (py::error_already_set& e) {
                write_unraisable(e, "cfutures: removing a waiter from a future");
            }
        }
    }

    void release_all() {
        for (Watched& w : items) Py_CLEAR(w.obj);
    }

    // Hands item i's reference over (to a list the caller builds).
    PyObject* take(std::size_t i) { return std::exchange(items[i].obj, nullptr); }

    std::vector<Watched> items;

private:
    bool check_foreign(std::size_t i, const std::shared_ptr<core::Waiter>& waiter) {
        Watched& w = items[i];
        py::handle f(w.obj);
        // Same error as the stdlib for something that is not a future: AttributeError.
        py::object cond = f.attr("_condition");
        call_method(cond, "acquire");
        try {
            py::object state = f.attr("_state");
            bool notified = state.equal(stdlib_state(3));
            if (notified || state.equal(stdlib_state(4))) {
                w.how = notified ? core::Completion::Cancelled
                        : f.attr("_exception").is_none() ? core::Completion::Result
                                                         : core::Completion::Exception;
                w.done = true;
            } else if (waiter) {
                py::object adapter = py::cast(ForeignWaiterLink{waiter, i});
                call_method(f.attr("_waiters"), "append", {adapter.ptr()});
                w.adapter = adapter.release().ptr();
            }
        } catch (...) {
            call_method(cond, "release");
            throw;
        }
        call_method(cond, "release");
        return w.done;
    }
};

py::object done_and_not_done(WatchSet& ws) {
    py::set done, not_done;
    for (Watched& w : ws.items) {
        if (PySet_Add(w.done ? done.ptr() : not_done.ptr(), w.obj) < 0) throw py::error_already_set();
    }
    return py::make_tuple(done, not_done);
}

int parse_return_when(py::handle rw) {
    static const char* names[] = {"FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"};
    if (PyUnicode_Check(rw.ptr())) {
        for (int i = 0; i < 3; ++i)
            if (PyUnicode_CompareWithASCIIString(rw.ptr(), names[i]) == 0) return i;
    }
    return -1;
}

// cfutures.wait's engine; the Python wrapper wraps the pair in DoneAndNotDoneFutures.
py::object wait_futures(py::handle fs, py::object timeout, py::handle return_when) {
    auto deadline = deadline_from(timeout);
    WatchSet ws(fs);
    int mode = parse_return_when(return_when);
    std::size_t n_done = 0;
    bool any_exception = false;
    for (std::size_t i = 0; i < ws.items.size(); ++i) {
        if (ws.check(i, nullptr)) {
            ++n_done;
            any_exception |= ws.items[i].how == core::Completion::Exception;
        }
    }
    if ((mode == 0 && n_done > 0) || (mode == 1 && any_exception) || n_done == ws.items.size())
        return done_and_not_done(ws);
    if (mode < 0) {
        throw py::value_error(py::str("Invalid return condition: {!r}").format(return_when));
    }
    static const core::WaitMode modes[] = {core::WaitMode::AnyDone, core::WaitMode::FirstException,
                                           core::WaitMode::AllDone};
    auto waiter = std::make_shared<core::Waiter>(modes[mode]);
    for (std::size_t i = 0; i < ws.items.size(); ++i) {
        if (ws.items[i].done) continue;
        waiter->add_pending();
        if (ws.check(i, waiter)) waiter->notify(i, ws.items[i].how);
    }
    waiter->release_guard();
    try {
        wait_interruptibly(*waiter, deadline);
    } catch (...) {
        ws.uninstall_all();
        throw;
    }
    ws.uninstall_all();
    for (std::uintptr_t tag : waiter->take_completed()) ws.items[tag].done = true;
    return done_and_not_done(ws);
}

// The state of one as_completed() generator (cfutures._base.as_completed drives it).
class AsCompleted {
public:
    explicit AsCompleted(py::handle fs)
        : ws_(fs), waiter_(std::make_shared<core::Waiter>(core::WaitMode::Stream)) {
        for (std::size_t i = 0; i < ws_.items.size(); ++i) {
            if (ws_.check(i, waiter_)) finished_.push_back(i);
        }
        pending_ = ws_.items.size() - finished_.size();
        waiter_->release_guard();
    }
    ~AsCompleted() { close(); }

    // The futures that were done at the start, ordered for list.pop() (last element first out).
    py::list take_finished() {
        py::list out = hand_over(finished_);
        finished_.clear();
        return out;
    }

    // Blocks until at least one more future completes or the timeout passes; returns the newly
    // completed futures, ordered for list.pop() to yield them in completion order.
    py::list wait(py::object timeout) {
        if (pending_ == 0 || closed_) return py::list();
        if (!waiter_->fired()) wait_interruptibly(*waiter_, deadline_from(timeout));
        std::vector<std::uintptr_t> tags = waiter_->take_completed();
        std::vector<std::size_t> idx(tags.begin(), tags.end());
        for (std::size_t i : idx) ws_.uninstall(i);  // foreign futures: drop our link now
        pending_ -= idx.size();
        return hand_over(idx);
    }

    std::size_t pending() const { return pending_; }
    std::size_t total() const { return ws_.items.size(); }

    void close() {
        if (closed_) return;
        closed_ = true;
        ws_.uninstall_all();
        ws_.release_all();
        pending_ = 0;
    }

private:
    py::list hand_over(const std::vector<std::size_t>& idx) {
        py::list out(idx.size());
        std::size_t n = idx.size();
        for (std::size_t k = 0; k < n; ++k) {
            // Reversed, so that list.pop() yields in the original order.
            PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(n - 1 - k), ws_.take(idx[k]));
        }
        return out;
    }

    WatchSet ws_;
    std::shared_ptr<core::Waiter> waiter_;
    std::vector<std::size_t> finished_;
    std::size_t pending_ = 0;
    bool closed_ = false;
};

}  // namespace

void register_wait(py::module_& m) {
    py::class_<ForeignWaiterLink>(m, "_ForeignWaiterLink")
        .def("add_result", [](ForeignWaiterLink& l, py::handle) { l.notify(core::Completion::Result); })
        .def("add_exception",
             [](ForeignWaiterLink& l, py::handle) { l.notify(core::Completion::Exception); })
        .def("add_cancelled",
             [](ForeignWaiterLink& l, py::handle) { l.notify(core::Completion::Cancelled); });

    m.def("wait", &wait_futures, py::arg("fs"), py::arg("timeout"), py::arg("return_when"));

    py::class_<AsCompleted>(m, "AsCompleted")
        .def(py::init<py::handle>(), py::arg("fs"))
        .def("take_finished", &AsCompleted::take_finished)
        .def("wait", &AsCompleted::wait, py::arg("timeout"))
        .def_property_readonly("pending", &AsCompleted::pending)
        .def_property_readonly("total", &AsCompleted::total)
        .def("close", &AsCompleted::close);
}

}  // namespace cfutures::bindings
