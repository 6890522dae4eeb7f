// _cfutures.ThreadPoolBase: the native half of cfutures.ThreadPoolExecutor, and
// _cfutures.ThreadPoolHandle, what its worker threads hold. Its shape is the process pool's
// (process_pool.cpp): a host, a ThreadPoolShared (executor.hpp's PoolShared), a handle.
//
// The executor object and its workers share a ThreadPoolShared. Workers hold it through a
// ThreadPoolHandle, never through the executor, so that dropping the last reference to an
// executor shuts it down (its workers finish the queue and exit), as in the stdlib. Worker
// threads are Python threading.Thread objects started by the host (cfutures.thread._PoolHost),
// whose target enters ThreadPoolHandle.run_worker(): the core loop, with the GIL released while
// idle.
#include <chrono>
#include <memory>
#include <thread>

#include "executor.hpp"
#include "future.hpp"
#include "../core/thread_pool.hpp"

namespace cfutures::bindings {

namespace {

// What the native pool asks of Python (cfutures/thread.py, _PoolHost), looked up once.
struct ThreadHost {
    py::object start_worker;  // (executor) -> None: one new worker thread (the pool counted it)
    py::object broken_type;   // what a broken pool raises: the executor class's BROKEN (3.14's
                              // rule: InterpreterPoolExecutor's is BrokenInterpreterPool)

    static ThreadHost of(py::handle host) { return ThreadHost{host.attr("start_worker"), host.attr("broken_type")}; }
};

struct ThreadPoolShared : PoolShared<core::ThreadPool, ThreadHost> {
    ThreadPoolShared(ThreadHost h, std::size_t max_workers, std::size_t max_queue, bool context_per_task)
        : PoolShared(std::move(h), max_workers, max_queue), copy_context(context_per_task) {}
    // The reason is recorded before the pool is marked broken.
    py::object broken_message() { return broken_reason.text(); }
    // context="submit": each task runs in a copy of its submitter's contextvars context.
    const bool copy_context;
};

struct PyTask final : core::Task {
    PyTask(const py::object& fut, PyFuture* st, PyObject* callable, PyObject* args_tuple, PyObject* kw,
           PyObject* ctx, core::OutcomeCounters& outcome_counters)
        : future(fut.inc_ref().ptr()), state(st), fn(callable), args(args_tuple), kwargs(kw), context(ctx),
          counters(outcome_counters) {
        Py_INCREF(fn);
    }
    ~PyTask() override {
        // Tasks are destroyed by workers (GIL held) or by submit/shutdown callers (GIL held).
        Py_DECREF(future);
        Py_DECREF(fn);
        Py_DECREF(args);
        Py_XDECREF(kwargs);
        Py_XDECREF(context);
    }

    // Outcomes are counted before they are visible (executor_stats.hpp).
    void run() override {
        switch (future_start(*state, future)) {
            case core::StartOutcome::Running: break;
            case core::StartOutcome::Cancelled:
                counters.count(core::Outcome::Cancelled);
                return;
            case core::StartOutcome::Invalid:
            case core::StartOutcome::Busy:
                // Someone completed the future by hand before it ran; the stdlib logs it too.
                counters.count(core::outcome_of(*state));
                log_critical("Future %s in unexpected state: %s");
                return;
        }
        PyObject* r = context ? call_in_context() : call_python([&] { return PyObject_Call(fn, args, kwargs); });
        bool ok;
        try {
            if (r) {
                counters.count(core::Outcome::Completed);
                ok = future_set_result(*state, future, r);
            } else {
                counters.count(core::Outcome::Failed);
                ok = future_set_exception(*state, future, fetch_exception().ptr());
            }
        } catch (py::error_already_set& e) {
            // InvalidStateError: the future was completed by hand while its call ran (the stdlib's
            // worker thread dies of it, and its pool loses the worker); or a future in the
            // stdlib's mode whose set_result() raised. Reported; the worker goes on.
            write_unraisable(e, future);
            ok = true;
        }
        Py_XDECREF(r);
        if (!ok) write_unraisable(future);  // a done-callback raised a BaseException
    }

    // fn(*args, **kwargs) inside the submitter's copied context, as Context.run() does.
    PyObject* call_in_context() {
        if (call_python([&] { return PyContext_Enter(context); }) < 0) return nullptr;
        PyObject* r = call_python([&] { return PyObject_Call(fn, args, kwargs); });
        if (call_python([&] { return PyContext_Exit(context); }) < 0) Py_CLEAR(r);
        return r;
    }

    void abandon() override {
        counters.count(core::Outcome::Cancelled);
        bool cancelled;
        if (!future_cancel(*state, future, &cancelled)) write_unraisable(future);
    }

    bool cancelled() const override { return core::is_cancelled(state->state()); }

    void fail(PyObject* exc) {
        counters.count(core::is_cancelled(state->state()) ? core::Outcome::Cancelled : core::Outcome::Failed);
        try {
            if (!future_fail_unless_done(*state, future, exc)) write_unraisable(future);
        } catch (py::error_already_set& e) {
            write_unraisable(e, future);
        }
    }

    void log_critical(const char* fmt) {
        // Raw calls, each through call_python (rule 6): logging is Python code that writes.
        PyObject* logging = call_python([] { return PyImport_ImportModule("logging"); });
        PyObject* logger = logging ? call_python([&] {
            return PyObject_CallMethod(logging, "getLogger", "s", "concurrent.futures");
        }) : nullptr;
        PyObject* r = logger ? call_python([&] {
            return PyObject_CallMethod(logger, "critical", "snO", fmt,
                                       static_cast<Py_ssize_t>(reinterpret_cast<std::uintptr_t>(future)),
                                       stdlib().state_names[static_cast<int>(state->state())]);
        }) : nullptr;
        if (!r) write_unraisable(future);
        Py_XDECREF(r);
        Py_XDECREF(logger);
        Py_XDECREF(logging);
    }

    PyObject* future;  // the cfutures.Future (strong): callbacks need it, and it keeps `state` alive
    PyFuture* state;
    PyObject* fn;      // strong
    PyObject* args;    // strong tuple (stolen)
    PyObject* kwargs;  // strong dict or nullptr (stolen)
    PyObject* context; // strong contextvars.Context or nullptr (stolen): context="submit"
    core::OutcomeCounters& counters;  // the pool's, which outlives its tasks
};

struct GilHooks final : core::WorkerHooks {
    PyThreadState* saved = nullptr;
    void release() override { saved = PyEval_SaveThread(); }
    void acquire() override { restore_gil(saved); }
    // Releasing and at once re-taking the GIL is not a hand-over: the waiter, just woken, finds
    // it taken again, and since the GIL did change hands meanwhile it never asks for a forced
    // switch, so it starves. Pausing briefly lets the woken waiter in.
    void yield() override {
        release();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        acquire();
    }
};

struct ThreadPoolHandle {
    std::shared_ptr<ThreadPoolShared> shared;

    // A worker thread's body. Tasks may run into interpreter finalization (rule 6).
    void run_worker() {
        call_python([&] {
            GilHooks hooks;
            shared->pool.worker_loop(hooks);
        });
    }

    void shutdown(bool cancel_futures) {
        if (shared->inherited()) return;
        for (core::Task* t : shared->pool.shutdown(cancel_futures)) {
            std::unique_ptr<core::Task> owned(t);
            owned->abandon();
        }
    }

    void break_pool(py::str message) {
        if (shared->inherited()) return;
        shared->broken_reason.record(message);
        for (core::Task* t : shared->pool.break_pool()) {
            std::unique_ptr<PyTask> owned(static_cast<PyTask*>(t));
            py::object exc = call_object(shared->host.broken_type, {message.ptr()});
            owned->fail(exc.ptr());
        }
    }

    py::object broken() const {
        py::object text = shared->broken_message();
        return text ? text : py::bool_(false);
    }
};

// The C++ object behind a ThreadPoolExecutor.
struct PyThreadPoolExecutor {
    PyThreadPoolExecutor(std::size_t max_workers, ThreadHost host, std::size_t max_queue, bool copy_context)
        : handle{std::make_shared<ThreadPoolShared>(std::move(host), max_workers, max_queue, copy_context)} {}
    ~PyThreadPoolExecutor() {
        // The executor is gone: let its workers finish the queue and exit (stdlib semantics).
        if (!handle.shared->inherited()) handle.shared->pool.shutdown(false);
    }
    ThreadPoolHandle handle;
};

PyTypeObject* g_thread_executor_base = nullptr;

// Asks the host for one worker thread (the pool counted it already). Through call_parking (rule
// 6): starting a thread is Python code, and the submitter may be a daemon thread at exit.
bool start_one_worker(ThreadPoolShared& shared, PyObject* self) {
    PyObject* r = call_parking(shared.host.start_worker.ptr(), {self});
    if (!r) {
        shared.pool.worker_start_failed();
        return false;
    }
    Py_DECREF(r);
    return true;
}

// A submit of fn(*args, **kwargs) (argv, nargsf, kwnames as submit()'s vectorcall) with `opts`.
PyObject* submit_task(PyObject* self, const SubmitOptions& opts, PyObject* const* argv, Py_ssize_t nargsf,
                      PyObject* kwnames) {
    CallArguments call = unpack_submit_arguments(argv, nargsf, kwnames);
    PyThreadPoolExecutor* ex = native_ptr<PyThreadPoolExecutor>(self, g_thread_executor_base);
    if (!ex) raise(PyExc_TypeError, "ThreadPoolExecutor.__init__() was not called");
    ThreadPoolShared& shared = *ex->handle.shared;
    check_submittable(PoolKind::Thread, shared, shared, shared.host.broken_type.ptr());

    py::object future = new_future();
    PyFuture* state = as_future(future.ptr());
    PyObject* kwargs = PyDict_GET_SIZE(call.kwargs.ptr()) ? call.kwargs.release().ptr() : nullptr;
    PyObject* context = nullptr;
    if (shared.copy_context && !(context = PyContext_CopyCurrent())) {
        Py_XDECREF(kwargs);
        throw py::error_already_set();
    }
    // A Task pointer, not a PyTask one: submit() binds to it, and leaves it here when Full.
    std::unique_ptr<core::Task> task = std::make_unique<PyTask>(future, state, call.fn, call.args.release().ptr(),
                                                                kwargs, context, shared.pool.counters());
    auto answer = core::ThreadPool::Submit::Queued;
    offer_until_room(shared, opts, [&](bool after_wait) {
        if (after_wait) check_submittable(PoolKind::Thread, shared, shared, shared.host.broken_type.ptr());
        answer = shared.pool.submit(std::move(task), opts.priority);
        return answer == core::ThreadPool::Submit::Full;
    });
    switch (answer) {
        case core::ThreadPool::Submit::Queued: break;
        case core::ThreadPool::Submit::NeedsWorker:
            if (!start_one_worker(shared, self)) return nullptr;
            break;
        case core::ThreadPool::Submit::Broken:
        case core::ThreadPool::Submit::Shutdown:  // since the checks above
        case core::ThreadPool::Submit::Full:      // (offer_until_room raised)
            refuse_submit(answer == core::ThreadPool::Submit::Broken ? Refusal::Broken : Refusal::Shutdown,
                          shared.host.broken_type.ptr(), shared.broken_message());
    }
    return future.release().ptr();
}

// ThreadPoolExecutor.submit(fn, /, *args, **kwargs).
PyObject* thread_submit(PyObject* self, PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames) {
    static const SubmitOptions plain;
    return guarded([&]() -> PyObject* { return submit_task(self, plain, argv, nargsf, kwnames); });
}

// _submit_with(options, fn, /, *args, **kwargs): what executor.options(...).submit() calls.
PyObject* thread_submit_with(PyObject* self, PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames) {
    return guarded([&]() -> PyObject* {
        if (PyVectorcall_NARGS(nargsf) < 2) raise(PyExc_TypeError, "_submit_with() takes options and a callable");
        SubmitOptions opts = submit_options_from(argv[0]);
        return submit_task(self, opts, argv + 1, PyVectorcall_NARGS(nargsf) - 1, kwnames);
    });
}

}  // namespace

void register_thread_pool(py::module_& m) {
    py::class_<ThreadPoolHandle, std::shared_ptr<ThreadPoolHandle>>(m, "ThreadPoolHandle")
        .def("run_worker", &ThreadPoolHandle::run_worker)
        .def("shutdown", &ThreadPoolHandle::shutdown, py::arg("cancel_futures"))
        .def("break_pool", &ThreadPoolHandle::break_pool, py::arg("message"))
        .def("release_idle_workers", [](ThreadPoolHandle& h) {
            if (!h.shared->inherited()) h.shared->pool.release_idle_workers();
        });

    py::class_<PyThreadPoolExecutor> cls(m, "ThreadPoolBase");
    g_thread_executor_base = reinterpret_cast<PyTypeObject*>(cls.ptr());
    cls.def(py::init([](std::size_t max_workers, py::handle host, std::size_t max_queue, bool copy_context) {
                return new PyThreadPoolExecutor(max_workers, ThreadHost::of(host), max_queue, copy_context);
            }),
            py::arg("max_workers"), py::arg("host"), py::arg("max_queue") = 0, py::arg("copy_context") = false)
        .def("_make_handle", [](PyThreadPoolExecutor& ex) { return std::make_shared<ThreadPoolHandle>(ex.handle); })
        .def_property_readonly("_broken", [](PyThreadPoolExecutor& ex) { return ex.handle.broken(); })
        .def_property_readonly("_shutdown",
                               [](PyThreadPoolExecutor& ex) { return ex.handle.shared->pool.is_shutdown(); })
        // What cfutures.thread's views of the stdlib's _work_queue and _idle_semaphore read.
        .def("_queued_tasks", [](PyThreadPoolExecutor& ex) { return ex.handle.shared->pool.queued(); })
        .def("_unclaimed_idle_workers",
             [](PyThreadPoolExecutor& ex) { return ex.handle.shared->pool.unclaimed_idle_workers(); })
        // The oldest queued task as (future, fn, args, kwargs), taken off the queue; None if none.
        .def("_take_queued", [](PyThreadPoolExecutor& ex) -> py::object {
            std::unique_ptr<core::Task> task = ex.handle.shared->pool.take_queued();
            if (!task) return py::none();
            auto& t = static_cast<PyTask&>(*task);
            py::object kwargs = t.kwargs ? py::reinterpret_borrow<py::object>(t.kwargs) : py::dict();
            return py::make_tuple(py::handle(t.future), py::handle(t.fn), py::handle(t.args), kwargs);
        })
        .def("_stats", [](PyThreadPoolExecutor& ex) { return stats_tuple(ex.handle.shared->pool.stats()); })
        .def("_adjust_thread_count", [](py::handle self) {
            PyThreadPoolExecutor& ex = self.cast<PyThreadPoolExecutor&>();
            if (ex.handle.shared->pool.reserve_worker() && !start_one_worker(*ex.handle.shared, self.ptr()))
                throw py::error_already_set();
        });
    add_submit_methods(cls, &thread_submit, &thread_submit_with, PoolKind::Thread);

    m.def("_set_interpreter_shutdown", [] { interpreter_exiting(PoolKind::Thread).store(true); });
    m.def("_after_fork_in_child", &after_fork_in_child);
}

}  // namespace cfutures::bindings
