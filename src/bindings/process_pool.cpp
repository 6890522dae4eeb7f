// _cfutures.ProcessPoolBase (the native half of cfutures.ProcessPoolExecutor), its ProcessPoolHandle
// (what the manager thread holds), and _cfutures.WorkerChannel (the worker processes' end).
//
// submit() pickles (fn, args, kwargs) with the GIL it already holds and queues the bytes; the
// manager thread (a threading.Thread running ProcessPoolHandle.run_manager, GIL released) moves
// them to the workers and takes results back; it takes the GIL once per batch to unpickle
// results, complete futures, reap exited workers and start replacements (through the Python
// _PoolState, which never references the executor).
#include <fcntl.h>
#include <signal.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "../core/parent_watch.hpp"
#include "../core/process_pool.hpp"
#include "future.hpp"

namespace cfutures::bindings {

namespace {

std::atomic<bool> g_interpreter_shutdown{false};

// Looked up on first use: importing multiprocessing costs thread-pool users nothing that way.
struct ProcessStdlib {
    PyObject* BrokenProcessPool;
    PyObject* RemoteTraceback;  // concurrent.futures.process._RemoteTraceback
    PyObject* dumps;            // cfutures._pickling.dumps (ForkingPickler's reducers)
    PyObject* loads;            // pickle.loads
    PyObject* format_exception; // traceback.format_exception
    PyObject* prepare_call;     // cfutures._shm.prepare_call(fn, args, kwargs) -> (call, names)
    PyObject* unlink;           // cfutures._shm.unlink(names)
    Py_ssize_t shm_threshold;   // cfutures._shm.THRESHOLD
};

ProcessStdlib& pstd() {
    static ProcessStdlib s = [] {
        py::module_ process = py::module_::import("concurrent.futures.process");
        py::module_ pickling = py::module_::import("cfutures._pickling");
        return ProcessStdlib{
            py::object(process.attr("BrokenProcessPool")).release().ptr(),
            py::object(process.attr("_RemoteTraceback")).release().ptr(),
            py::object(pickling.attr("dumps")).release().ptr(),
            py::object(py::module_::import("pickle").attr("loads")).release().ptr(),
            py::object(py::module_::import("traceback").attr("format_exception")).release().ptr(),
            py::object(py::module_::import("cfutures._shm").attr("prepare_call")).release().ptr(),
            py::object(py::module_::import("cfutures._shm").attr("unlink")).release().ptr(),
            py::module_::import("cfutures._shm").attr("THRESHOLD").cast<Py_ssize_t>(),
        };
    }();
    return s;
}

// Keeps a Python buffer alive for a frame that borrows it; released with the GIL.
std::shared_ptr<void> keep_buffer(Py_buffer* view) {
    return std::shared_ptr<void>(view, [](void* p) {
        PyGILState_STATE g = PyGILState_Ensure();
        PyBuffer_Release(static_cast<Py_buffer*>(p));
        delete static_cast<Py_buffer*>(p);
        PyGILState_Release(g);
    });
}

struct ProcShared {
    ProcShared(std::size_t max_workers, bool start_all, int max_tasks)
        : pool(max_workers, start_all, max_tasks) {}
    core::ProcessPool pool;
    // `jobs`, `next_job` and `broken_message` are guarded by jobs_lock, not by the GIL alone:
    // the module declares that it runs without the GIL (free-threaded builds), where submits from
    // several threads and the manager's batches run at once. Nothing calls into Python with
    // jobs_lock held.
    struct JobEntry {
        PyObject* future;    // the cfutures.Future (strong)
        PyObject* segments;  // shared-memory names of its large arguments (strong list), or null
    };
    std::unordered_map<std::uint64_t, JobEntry> jobs;  // job id -> entry
    std::uint64_t next_job = 1;
    std::mutex jobs_lock;
    std::atomic<bool> manager_entered{false};  // run_manager() runs once per pool
    py::object broken_message;  // executor._broken once broken (jobs_lock)
    py::object state;           // the Python _PoolState: start_workers(handle, n), reap(pids)
    std::atomic<bool> manager_started{false};
    const unsigned generation = fork_generation();
    bool inherited() const { return generation != fork_generation(); }

    // What executor._broken says: the message once the pool is broken (the default one while
    // the manager has not yet recorded why), False before.
    py::object broken() {
        {
            std::lock_guard<std::mutex> guard(jobs_lock);
            if (broken_message) return broken_message;
        }
        if (!pool.is_broken()) return py::bool_(false);
        return py::str(kAbruptExit);
    }
    void record_broken(const char* message) {
        py::object text = py::str(message);  // made before the lock: it allocates
        std::lock_guard<std::mutex> guard(jobs_lock);
        if (!broken_message) broken_message = std::move(text);
    }
    static constexpr const char* kAbruptExit =
        "A child process terminated abruptly, the process pool is not usable anymore";
};

void release_segments(PyObject* segments) {
    if (!segments) return;
    PyObject* r = PyObject_CallOneArg(pstd().unlink, segments);
    if (!r) PyErr_WriteUnraisable(segments);
    Py_XDECREF(r);
    Py_DECREF(segments);
}

// Removes a job from the table, releases its shared memory, and returns its future (strong).
PyObject* take_job(ProcShared& s, std::uint64_t tag) {
    ProcShared::JobEntry entry;
    {
        std::lock_guard<std::mutex> guard(s.jobs_lock);
        auto it = s.jobs.find(tag);
        if (it == s.jobs.end()) return nullptr;
        entry = it->second;
        s.jobs.erase(it);
    }
    release_segments(entry.segments);
    return entry.future;
}

// Whether any argument is a buffer large enough to travel in shared memory.
bool has_large_buffer(PyObject* const* items, Py_ssize_t n, Py_ssize_t threshold) {
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* o = items[i];
        if ((PyBytes_CheckExact(o) && PyBytes_GET_SIZE(o) >= threshold) ||
            (PyByteArray_CheckExact(o) && PyByteArray_GET_SIZE(o) >= threshold) ||
            (PyMemoryView_Check(o) && PyMemoryView_GET_BUFFER(o)->len >= threshold))
            return true;
    }
    return false;
}

py::object broken_error(const char* message, const py::object& cause_text) {
    py::object exc = py::reinterpret_borrow<py::object>(pstd().BrokenProcessPool)(message);
    if (!cause_text.is_none()) {
        exc.attr("__cause__") = py::reinterpret_borrow<py::object>(pstd().RemoteTraceback)(
            py::str("\n'''\n{}'''").format(cause_text));
    }
    return exc;
}

void fail_future(PyObject* fut, const py::object& exc) {
    PyFuture* f = as_future(fut);
    if (f && !core::is_done(f->state())) {
        try {
            if (!future_set_exception(*f, fut, exc.ptr())) PyErr_WriteUnraisable(fut);
        } catch (py::error_already_set& e) {
            e.discard_as_unraisable(py::reinterpret_borrow<py::object>(fut));
        }
    }
    Py_DECREF(fut);
}

struct Hooks final : core::ProcessPoolHooks {
    explicit Hooks(ProcShared& s, py::object handle) : shared(s), handle(std::move(handle)) {}
    ProcShared& shared;
    py::object handle;

    void deliver(core::ProcessBatch& batch) override {
        py::gil_scoped_acquire gil;
        batch.released.clear();  // drops the pickled task payloads
        for (auto tag : batch.cancelled) {
            // The manager saw the cancellation (set_running_or_notify_cancel) without the GIL;
            // the stdlib's waiters hear of it here.
            PyObject* fut = take_job(shared, tag);
            if (PyFuture* f = fut ? as_future(fut) : nullptr) tell_stdlib_waiters(*f, fut);
            Py_XDECREF(fut);
        }
        for (core::Frame& frame : batch.results) complete(frame);
        if (!batch.broken_reason.empty()) {
            shared.record_broken(ProcShared::kAbruptExit);
        }
        for (auto tag : batch.lost) {
            if (PyObject* fut = take_job(shared, tag))
                fail_future(fut, broken_error(batch.broken_reason.c_str(), py::none()));
        }
        if (!batch.exited.empty()) {
            py::list pids;
            for (int pid : batch.exited) pids.append(pid);
            call_state("reap", pids);
        }
        if (batch.start_workers) call_state("start_workers", handle, batch.start_workers);
    }

    template <class... A>
    void call_state(const char* method, A&&... args) {
        try {
            shared.state.attr(method)(std::forward<A>(args)...);
        } catch (py::error_already_set& e) {
            e.discard_as_unraisable(shared.state.attr(method));
        }
    }

    void complete(core::Frame& frame) {
        PyObject* fut = take_job(shared, frame.tag);
        if (!fut) return;
        py::object view = py::reinterpret_steal<py::object>(PyMemoryView_FromMemory(
            const_cast<char*>(frame.data), static_cast<Py_ssize_t>(frame.size), PyBUF_READ));
        PyObject* value = view ? PyObject_CallOneArg(pstd().loads, view.ptr()) : nullptr;
        if (!value) {
            // As the stdlib: a result that cannot be unpickled breaks the pool.
            PyObject *type, *val, *tb;
            PyErr_Fetch(&type, &val, &tb);
            PyErr_NormalizeException(&type, &val, &tb);
            if (tb) PyException_SetTraceback(val, tb);
            // The three-argument form: format_exception(exc) alone is 3.10+.
            py::object cause = py::str("").attr("join")(
                py::reinterpret_borrow<py::object>(pstd().format_exception)(
                    py::handle(reinterpret_cast<PyObject*>(Py_TYPE(val))), py::handle(val),
                    tb ? py::handle(tb) : py::handle(Py_None)));
            Py_XDECREF(type);
            Py_XDECREF(val);
            Py_XDECREF(tb);
            fail_future(fut, broken_error("A result could not be unpickled; the process pool "
                                          "is not usable anymore", cause));
            shared.pool.break_pool("A result could not be unpickled");
            return;
        }
        PyFuture* f = as_future(fut);
        bool ok = true;
        try {
            ok = frame.kind == core::FrameKind::Result ? future_set_result(*f, fut, value)
                                                       : future_set_exception(*f, fut, value);
        } catch (py::error_already_set& e) {
            // InvalidStateError: the future was completed by hand meanwhile; drop the result.
            e.discard_as_unraisable(py::reinterpret_borrow<py::object>(fut));
        }
        if (!ok) PyErr_WriteUnraisable(fut);
        Py_DECREF(value);
        Py_DECREF(fut);
    }
};

struct ProcessPoolHandle {
    std::shared_ptr<ProcShared> shared;

    void run_manager(py::object self) {
        // A second manager would drive the same pool and then sweep shared memory still in use.
        if (shared->manager_entered.exchange(true))
            throw std::logic_error("this process pool's manager is already running");
        Hooks hooks(*shared, std::move(self));
        {
            py::gil_scoped_release nogil;
            shared->pool.run(hooks);
        }
        // Nothing can complete these any more (the pool is gone): they must not stay pending.
        std::unordered_map<std::uint64_t, ProcShared::JobEntry> left;
        {
            std::lock_guard<std::mutex> guard(shared->jobs_lock);
            left = std::exchange(shared->jobs, {});
        }
        for (auto& [tag, entry] : left) {
            release_segments(entry.segments);
            fail_future(entry.future, broken_error("The process pool stopped before the future ran",
                                                   py::none()));
        }
    }

    void add_worker(int pid, int task_fd, int result_fd) { shared->pool.add_worker(pid, task_fd, result_fd); }
    void worker_start_failed() { shared->pool.worker_start_failed(); }

    void shutdown(bool cancel_futures) {
        if (shared->inherited()) return;
        if (cancel_futures) {
            // Cancel what is still pending *after* idle workers got what they can take, as the
            // stdlib's manager would have moved those to its call queue already.
            py::gil_scoped_release nogil;
            shared->pool.sync_dispatch();
        }
        for (auto& job : shared->pool.shutdown(cancel_futures)) {
            PyObject* fut = take_job(*shared, job.frame.tag);
            if (!fut) continue;
            bool cancelled;
            PyFuture* f = as_future(fut);
            if (!future_cancel(*f, fut, &cancelled)) PyErr_WriteUnraisable(fut);
            Py_DECREF(fut);
        }
    }
};

struct PyProcessExecutor {
    PyProcessExecutor(std::size_t max_workers, bool start_all, int max_tasks)
        : handle{std::make_shared<ProcShared>(max_workers, start_all, max_tasks)} {}
    ~PyProcessExecutor() {
        if (!handle.shared->inherited()) handle.shared->pool.shutdown(false);  // the executor is gone
    }
    ProcessPoolHandle handle;
};

PyTypeObject* g_process_executor_base = nullptr;

PyObject* process_submit(PyObject* self, PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames) {
    return guarded([&]() -> PyObject* {
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        if (nargs < 1) {
            PyErr_SetString(PyExc_TypeError, "submit() missing 1 required positional argument: 'fn'");
            return nullptr;
        }
        PyProcessExecutor* ex = native_ptr<PyProcessExecutor>(self, g_process_executor_base);
        if (!ex) {
            PyErr_SetString(PyExc_TypeError, "ProcessPoolExecutor.__init__() was not called");
            return nullptr;
        }
        ProcShared& shared = *ex->handle.shared;
        if (shared.inherited()) {
            PyErr_SetString(PyExc_RuntimeError,
                            "cannot schedule new futures on an executor inherited through fork()");
            return nullptr;
        }
        if (shared.pool.is_broken()) {
            PyErr_SetObject(pstd().BrokenProcessPool, shared.broken().ptr());
            return nullptr;
        }
        if (shared.pool.is_shutdown()) {
            PyErr_SetString(PyExc_RuntimeError, "cannot schedule new futures after shutdown");
            return nullptr;
        }
        if (g_interpreter_shutdown.load()) {
            PyErr_SetString(PyExc_RuntimeError, "cannot schedule new futures after interpreter shutdown");
            return nullptr;
        }
        py::tuple args(nargs - 1);
        for (Py_ssize_t i = 1; i < nargs; ++i) args[i - 1] = py::reinterpret_borrow<py::object>(argv[i]);
        py::dict kwargs;
        if (kwnames)
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i)
                kwargs[PyTuple_GET_ITEM(kwnames, i)] = py::reinterpret_borrow<py::object>(argv[nargs + i]);

        py::object future = new_future();
        PyFuture* state = as_future(future.ptr());
        py::object call, segments;
        // argv holds the positional arguments, then the keyword values.
        Py_ssize_t n_values = nargs - 1 + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
        if (has_large_buffer(argv + 1, n_values, pstd().shm_threshold)) {
            py::tuple prepared = py::reinterpret_borrow<py::object>(pstd().prepare_call)(
                py::reinterpret_borrow<py::object>(argv[0]), args, kwargs);
            call = prepared[0];
            segments = prepared[1];
        } else {
            call = py::make_tuple(py::reinterpret_borrow<py::object>(argv[0]), args, kwargs);
            segments = py::list();
        }
        // Out-of-band and nested large buffers add their segments to the same list.
        PyObject* pickled = PyObject_CallFunction(pstd().dumps, "OiO", call.ptr(), 5, segments.ptr());
        if (pickled && PyList_GET_SIZE(segments.ptr()) == 0) segments = py::object();
        if (!pickled) {
            // An unpicklable call fails its own future; the pool keeps working (as the stdlib).
            PyObject *type, *val, *tb;
            PyErr_Fetch(&type, &val, &tb);
            if (segments) release_segments(segments.release().ptr());  // made before the error
            if (!PyErr_GivenExceptionMatches(type, PyExc_Exception)) {
                PyErr_Restore(type, val, tb);
                return nullptr;
            }
            PyErr_NormalizeException(&type, &val, &tb);
            if (tb) PyException_SetTraceback(val, tb);
            bool ok = future_set_exception(*state, future.ptr(), val);
            Py_XDECREF(type);
            Py_XDECREF(val);
            Py_XDECREF(tb);
            if (!ok) return nullptr;
            if (std::size_t n = shared.pool.submit_without_job()) {
                PyObject* r = PyObject_CallMethod(self, "_start", "n", static_cast<Py_ssize_t>(n));
                if (!r) return nullptr;
                Py_DECREF(r);
            }
            return future.release().ptr();
        }
        auto* view = new Py_buffer;
        if (PyObject_GetBuffer(pickled, view, PyBUF_SIMPLE) < 0) {
            delete view;
            Py_DECREF(pickled);
            return nullptr;
        }
        Py_DECREF(pickled);  // the buffer view holds what it needs
        std::uint64_t tag;
        {
            std::lock_guard<std::mutex> guard(shared.jobs_lock);
            tag = shared.next_job++;
            shared.jobs.emplace(tag, ProcShared::JobEntry{py::object(future).release().ptr(),
                                                          segments ? segments.release().ptr() : nullptr});
        }
        core::ProcessPool::Job job;
        job.frame = core::Frame::borrow(core::FrameKind::Task, tag, static_cast<const char*>(view->buf),
                                        static_cast<std::size_t>(view->len), keep_buffer(view));
        job.future = state;
        std::vector<core::Frame> sent;  // released after the pool's lock, GIL held
        auto answer = shared.pool.submit(std::move(job), &sent);
        sent.clear();
        if (answer.status != core::ProcessPool::Submit::Queued) {
            Py_XDECREF(take_job(shared, tag));
            if (answer.status == core::ProcessPool::Submit::Broken)
                PyErr_SetObject(pstd().BrokenProcessPool, shared.broken().ptr());
            else
                PyErr_SetString(PyExc_RuntimeError, "cannot schedule new futures after shutdown");
            return nullptr;
        }
        if (answer.start_workers || !shared.manager_started) {
            PyObject* r = PyObject_CallMethod(self, "_start", "n", static_cast<Py_ssize_t>(answer.start_workers));
            if (!r) return nullptr;
            Py_DECREF(r);
        }
        return future.release().ptr();
    });
}

PyMethodDef g_process_submit_def = {
    "submit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(process_submit)),
    METH_FASTCALL | METH_KEYWORDS,
    "submit(fn, /, *args, **kwargs)\n--\n\n"
    "Submits a callable to be executed with the given arguments.\n\n"
    "Schedules the callable to be executed as fn(*args, **kwargs) in a worker\n"
    "process and returns a Future instance representing the execution of the\n"
    "callable.\n\nReturns:\n    A Future representing the given call.\n"};

// The worker process's end of its channel.
class WorkerChannel {
public:
    WorkerChannel(int task_fd, int result_fd, int parent_pid)
        : task_fd_(task_fd), result_fd_(result_fd), watch_(parent_pid) {
        // The reader drains a descriptor until EAGAIN; the blocking helpers poll.
        for (int fd : {task_fd, result_fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
#ifdef SYS_pidfd_open
        if (parent_pid > 0) parent_fd_ = static_cast<int>(::syscall(SYS_pidfd_open, parent_pid, 0));
#endif
    }
    ~WorkerChannel() {
        if (parent_fd_ >= 0) ::close(parent_fd_);
    }

    // (kind, tag, payload) or None when the parent is gone or closed the channel.
    py::object recv() {
        core::Frame frame;
        core::RecvStatus st;
        std::string error;
        for (;;) {
            {
                py::gil_scoped_release nogil;
                watch_.set_idle(true);
                st = core::recv_frame(task_fd_, parent_fd_, reader_, frame, &error);
                watch_.set_idle(false);
            }
            if (st != core::RecvStatus::Error || error != std::strerror(EINTR)) break;
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        }
        if (st == core::RecvStatus::Eof || st == core::RecvStatus::ParentGone) return py::none();
        if (st == core::RecvStatus::Error) throw std::runtime_error("channel error: " + error);
        py::bytes payload(frame.data, frame.size);
        return py::make_tuple(static_cast<int>(frame.kind), frame.tag, payload);
    }

    void send(int kind, std::uint64_t tag, py::buffer data) {
        py::buffer_info info = data.request();
        bool ok;
        {
            py::gil_scoped_release nogil;
            ok = core::send_frame(result_fd_, core::Frame::borrow(static_cast<core::FrameKind>(kind), tag,
                                                                   static_cast<const char*>(info.ptr),
                                                                   static_cast<std::size_t>(info.size * info.itemsize),
                                                                   nullptr));
        }
        if (!ok) throw std::runtime_error("the parent closed the channel");
    }

private:
    int task_fd_, result_fd_, parent_fd_ = -1;
    core::FrameReader reader_;
    core::ParentWatch watch_;  // ends the process if the pool dies while a task runs
};

}  // namespace

void register_process_pool(py::module_& m) {
    py::class_<ProcessPoolHandle, std::shared_ptr<ProcessPoolHandle>>(m, "ProcessPoolHandle")
        .def("run_manager", [](py::object self) { self.cast<ProcessPoolHandle&>().run_manager(self); })
        .def("add_worker", &ProcessPoolHandle::add_worker)
        .def("worker_start_failed", &ProcessPoolHandle::worker_start_failed)
        .def("shutdown", &ProcessPoolHandle::shutdown, py::arg("cancel_futures"))
        .def("mark_manager_started", [](ProcessPoolHandle& h) {
            h.shared->manager_started = true;
            h.shared->pool.manager_started();
        })
        .def("set_state", [](ProcessPoolHandle& h, py::object state) { h.shared->state = std::move(state); })
        .def_property_readonly("broken", [](ProcessPoolHandle& h) -> py::object {
            return h.shared->broken();
        })
        .def_property_readonly("shutdown_started",
                               [](ProcessPoolHandle& h) { return h.shared->pool.is_shutdown(); })
        .def_property_readonly("pending_jobs", [](ProcessPoolHandle& h) {
            std::lock_guard<std::mutex> guard(h.shared->jobs_lock);
            return h.shared->jobs.size();
        });

    py::class_<PyProcessExecutor> cls(m, "ProcessPoolBase");
    g_process_executor_base = reinterpret_cast<PyTypeObject*>(cls.ptr());
    cls.def(py::init([](std::size_t max_workers, bool start_all, int max_tasks) {
                return new PyProcessExecutor(max_workers, start_all, max_tasks);
            }),
            py::arg("max_workers"), py::arg("start_all_at_once"), py::arg("max_tasks_per_child"))
        .def("_make_handle", [](PyProcessExecutor& ex) { return std::make_shared<ProcessPoolHandle>(ex.handle); })
        .def_property_readonly("_broken", [](PyProcessExecutor& ex) -> py::object {
            return ex.handle.shared->broken();
        });
    add_raw_method(cls, &g_process_submit_def);

    py::class_<WorkerChannel>(m, "WorkerChannel")
        .def(py::init<int, int, int>(), py::arg("task_fd"), py::arg("result_fd"), py::arg("parent_pid"))
        .def("recv", &WorkerChannel::recv)
        .def("send", &WorkerChannel::send, py::arg("kind"), py::arg("tag"), py::arg("data"));
    m.attr("FRAME_TASK") = static_cast<int>(core::FrameKind::Task);
    m.attr("FRAME_STOP") = static_cast<int>(core::FrameKind::Stop);
    m.attr("FRAME_RESULT") = static_cast<int>(core::FrameKind::Result);
    m.attr("FRAME_EXCEPTION") = static_cast<int>(core::FrameKind::Exception);
    m.attr("FRAME_EXITING") = static_cast<int>(core::FrameKind::Exiting);

    m.def("_set_process_interpreter_shutdown", [] { g_interpreter_shutdown.store(true); });
}

}  // namespace cfutures::bindings
