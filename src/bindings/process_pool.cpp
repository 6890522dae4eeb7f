// _cfutures.ProcessPoolBase, the native half of cfutures.ProcessPoolExecutor (the parent's side;
// the worker's side is process_worker.cpp), and _cfutures.ProcessPoolHandle, what its manager
// thread holds. Its shape is the thread pool's (thread_pool.cpp): a host, a ProcessPoolShared
// (executor.hpp's PoolShared), a handle.
//
// One submit, followed through:
//   1. submit() (vectorcall, GIL held) checks that the pool takes work, has the host pickle the
//      call (host.dumps_call when an argument is a large buffer, host.dumps otherwise) and
//      records the job (its future and call, by job id) in the JobTable.
//   2. The core queues the job, or writes it at once to an idle worker (core/process_pool.hpp),
//      and says how many workers to start: the host starts them, and the manager thread the
//      first time, in one call (host.start).
//   3. The manager thread runs ProcessPoolHandle.run_manager: the core loop, GIL released. Each
//      batch it produces comes back through Hooks::deliver, which takes the GIL, unpickles the
//      answers (ProcessHost::loads) and completes their futures, fails the lost ones, reaps exited
//      workers (host.reap) and starts replacements.
//
// The host (cfutures.process._PoolHost) is the only seam to the Python package: one object per
// executor, whose methods are looked up once, into ProcessHost, when the executor is made. The host
// never references the executor, so dropping the executor shuts the pool down.
//
// Locks: JobTable::mu guards the job table and the shared attachment copies;
// nothing calls into Python while holding it, and it is held while the pool's own lock is taken
// only in JobTable::stop (job table first, then the pool), never the other way round.
#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <mutex>
#include <stdexcept>
#include <unordered_map>


#include "../core/process_pool.hpp"
#include "channel.hpp"
#include "executor.hpp"
#include "future.hpp"

namespace cfutures::bindings {

namespace {

// The stdlib objects the process pool raises, looked up on first use: importing multiprocessing
// costs thread-pool users nothing that way.
struct ProcessStdlib {
    PyObject* BrokenProcessPool;
    PyObject* RemoteTraceback;   // concurrent.futures.process._RemoteTraceback
    PyObject* format_exception;  // traceback.format_exception
};

ProcessStdlib& pstd() {
    // Not a function-local static ProcessStdlib: its initialization guard would be held across
    // the imports, which can let another thread run and wait on that guard while attached (a
    // deadlock). A MadeOnce is constant-initialized (no guard) and waits detached.
    static MadeOnce<ProcessStdlib> stdlib;
    return stdlib.get([] {
        py::object process = import_module("concurrent.futures.process");
        py::object traceback = import_module("traceback");
        return ProcessStdlib{
            py::object(process.attr("BrokenProcessPool")).release().ptr(),
            py::object(process.attr("_RemoteTraceback")).release().ptr(),
            py::object(traceback.attr("format_exception")).release().ptr(),
        };
    });
}

// What the native pool asks of Python (cfutures/process.py, _PoolHost), looked up once.
struct ProcessHost {
    py::object start;          // (workers, manager handle or None) -> (started, error)
    py::object reap;           // (pids) -> {pid: exitcode}: join exited worker processes
    py::object dumps;          // (obj) -> (payload, attachments)
    py::object dumps_call;     // (fn, args, kwargs) -> (payload, attachments); large buffers out of band
    Py_ssize_t buffer_threshold;  // arguments this large go through dumps_call
    py::object plain_dumps;    // (call, protocol) -> bytes for a plain call, or None
    std::vector<PyTypeObject*> plain_types;  // what a plain call's arguments may be
    py::object protocol;
    py::object unpickle;       // (payload) -> obj
    PyObject* packed_type;     // an obj of this type is finished by...
    py::object unpack;         // (obj, attachments) -> the answer
    py::object stopped_error;  // (cause, exitcode, (fn, args, kwargs), limit) -> the exception of a
                               // job stopped (core::StopCause; limit: its task_timeout)

    static ProcessHost of(py::handle host) {
        std::vector<PyTypeObject*> plain;
        for (py::handle t : py::tuple(host.attr("plain_types")))  // classes: kept for good
            plain.push_back(reinterpret_cast<PyTypeObject*>(py::object(py::reinterpret_borrow<py::object>(t)).release().ptr()));
        return ProcessHost{host.attr("start"),
                    host.attr("reap"),
                    host.attr("dumps"),
                    host.attr("dumps_call"),
                    host.attr("buffer_threshold").cast<Py_ssize_t>(),
                    host.attr("plain_dumps"),
                    std::move(plain),
                    host.attr("protocol"),
                    host.attr("unpickle"),
                    py::object(host.attr("packed_type")).release().ptr(),  // a class: kept for good
                    host.attr("unpack"),
                    host.attr("stopped_error")};
    }

    // Whether `call` is a plain function with only plain arguments (_pickling._is_plain_call).
    bool is_plain_call(const CallArguments& call) const {
        if (plain_dumps.is_none() || Py_TYPE(call.fn) != &PyFunction_Type) return false;
        auto plain = [&](PyObject* o) {
            PyTypeObject* t = Py_TYPE(o);
            if (std::find(plain_types.begin(), plain_types.end(), t) == plain_types.end()) return false;
            if (t == &PyBytes_Type) return PyBytes_GET_SIZE(o) < buffer_threshold;
            if (t == &PyUnicode_Type) return PyUnicode_GET_LENGTH(o) < buffer_threshold;
            return true;
        };
        for (py::handle a : call.args)
            if (!plain(a.ptr())) return false;
        for (auto item : call.kwargs)
            if (!plain(item.second.ptr())) return false;
        return true;
    }

    // An answer: its payload unpickled, then unpacked with its attachments if need be.
    py::object loads(core::IncomingFrame& answer) const {
        // Read while the frame lives: the memoryview never outlives this call.
        py::object payload = py::reinterpret_steal<py::object>(PyMemoryView_FromMemory(
            const_cast<char*>(answer.payload.data()), static_cast<Py_ssize_t>(answer.payload.size()),
            PyBUF_READ));
        if (!payload) throw py::error_already_set();
        py::object obj = call_object(unpickle, {payload.ptr()});
        if (Py_TYPE(obj.ptr()) != reinterpret_cast<PyTypeObject*>(packed_type)) return obj;
        py::list attachments = attachment_objects(answer);
        return call_object(unpack, {obj.ptr(), attachments.ptr()});
    }
};

// Pending jobs: job id -> its future and its call (fn, args, kwargs), strong references, until
// the job is reported (the stdlib's executor._pending_work_items). take() hands the future to
// the caller and releases the call after unlocking; every caller holds the GIL.
class JobTable {
public:
    JobTable() = default;
    JobTable(const JobTable&) = delete;
    JobTable& operator=(const JobTable&) = delete;
    // Whatever is left (nothing once a manager ran, or the executor failed its leftovers).
    // Destroyed with the GIL held: every owner of a ProcessPoolShared is a Python object or a frame
    // that holds the GIL.
    ~JobTable() {
        for (auto& [tag, e] : jobs_) {
            Py_DECREF(e.future);
            Py_DECREF(e.call);
        }
    }
    std::uint64_t add(const py::object& future, const py::tuple& call) {
        Entry e{future.inc_ref().ptr(), call.inc_ref().ptr()};
        std::lock_guard<std::mutex> g(mu);
        std::uint64_t tag = next_++;
        jobs_.emplace(tag, e);
        if (track_futures_) tag_of_.emplace(e.future, tag);
        return tag;
    }
    // From now on the table also maps each future to its job id (cancel_running).
    void track_futures() {
        std::lock_guard<std::mutex> g(mu);
        track_futures_ = true;
    }
    // For cancel_running: nullopt when `future` is no job of this table; otherwise whether
    // `stop_job(tag)` stopped its job. A stopped job leaves the table in the same critical
    // section as the pool's decision, so that an answer arriving meanwhile cannot take it too
    // (one outcome, counted once). Its references are released after unlocking.
    template <class StopJob>
    std::optional<bool> stop(PyObject* future, StopJob&& stop_job) {
        Entry e{};
        {
            std::lock_guard<std::mutex> g(mu);
            auto it = tag_of_.find(future);
            if (it == tag_of_.end()) return std::nullopt;
            if (!stop_job(it->second)) return false;
            auto job = jobs_.find(it->second);
            e = job->second;
            jobs_.erase(job);
            tag_of_.erase(it);
        }
        Py_DECREF(e.call);
        Py_DECREF(e.future);
        return true;
    }
    // The job's future and call (both strong), or nullopt if it was reported already.
    std::optional<std::pair<PyObject*, py::object>> take_with_call(std::uint64_t tag) {
        Entry e{};
        {
            std::lock_guard<std::mutex> g(mu);
            auto it = jobs_.find(tag);
            if (it == jobs_.end()) return std::nullopt;
            e = it->second;
            jobs_.erase(it);
            tag_of_.erase(e.future);
        }
        return std::make_pair(e.future, py::reinterpret_steal<py::object>(e.call));
    }
    // The job's future (strong), or nullptr if it was reported already.
    PyObject* take(std::uint64_t tag) {
        auto taken = take_with_call(tag);
        return taken ? taken->first : nullptr;
    }
    std::vector<PyObject*> take(const std::vector<std::uint64_t>& tags) {
        std::vector<Entry> taken;
        if (tags.empty()) return {};  // most batches: no lock taken
        {
            std::lock_guard<std::mutex> g(mu);
            for (auto tag : tags) {
                auto it = jobs_.find(tag);
                if (it == jobs_.end()) continue;
                taken.push_back(it->second);
                tag_of_.erase(it->second.future);
                jobs_.erase(it);
            }
        }
        return futures_of(taken);
    }
    std::vector<PyObject*> take_all() {
        std::vector<Entry> taken;
        {
            std::lock_guard<std::mutex> g(mu);
            for (auto& [tag, e] : jobs_) taken.push_back(e);
            jobs_.clear();
            tag_of_.clear();
        }
        return futures_of(taken);
    }
    // {job id: (future, fn, args, kwargs)} of the jobs not yet reported.
    py::dict snapshot() {
        std::vector<std::pair<std::uint64_t, Entry>> copy;
        {
            std::lock_guard<std::mutex> g(mu);
            copy.reserve(jobs_.size());
            for (auto& [tag, e] : jobs_) {
                Py_INCREF(e.future);
                Py_INCREF(e.call);
                copy.emplace_back(tag, e);
            }
        }
        py::dict out;
        for (auto& [tag, e] : copy) {
            auto future = py::reinterpret_steal<py::object>(e.future);
            auto call = py::reinterpret_steal<py::tuple>(e.call);
            out[py::int_(tag)] = py::make_tuple(future, call[0], call[1], call[2]);
        }
        return out;
    }

    std::mutex mu;          // also guards `copies`
    SharedCopies copies;    // one memfd copy per shared unchanging argument buffer

private:
    struct Entry {
        PyObject* future;
        PyObject* call;
    };
    static std::vector<PyObject*> futures_of(std::vector<Entry>& taken) {
        std::vector<PyObject*> out;
        out.reserve(taken.size());
        for (Entry& e : taken) {
            Py_DECREF(e.call);
            out.push_back(e.future);
        }
        return out;
    }
    std::unordered_map<std::uint64_t, Entry> jobs_;
    std::unordered_map<PyObject*, std::uint64_t> tag_of_;  // only while track_futures_
    bool track_futures_ = false;
    std::uint64_t next_ = 1;
};

// The stdlib's words for a pool whose worker died (executor._broken, and later submits).
constexpr const char* kAbruptExit =
    "A child process terminated abruptly, the process pool is not usable anymore";

struct ProcessPoolShared : PoolShared<core::ProcessPool, ProcessHost> {
    using PoolShared::PoolShared;
    std::chrono::nanoseconds task_timeout{0};  // the executor's task_timeout; 0: none (set once)
    JobTable jobs;
    std::atomic<bool> manager_started{false};  // claimed by the submit that starts the manager
    std::atomic<bool> manager_entered{false};  // run_manager() runs once per pool

    // executor._broken: the message once broken (the stdlib's default one while the manager has
    // not yet recorded why).
    py::object broken_message() {
        py::object text = broken_reason.text();
        return text ? text : py::str(kAbruptExit);
    }
    void record_broken(core::BreakCause cause, const std::string& reason) {
        broken_reason.record(py::str(cause == core::BreakCause::WorkerDied ? std::string(kAbruptExit) : reason));
    }
};

// BrokenProcessPool(message), with the remote traceback text as __cause__ when there is one.
py::object broken_error(const std::string& message, const py::object& cause_text = py::none()) {
    py::str text(message);
    py::object exc = call_object(pstd().BrokenProcessPool, {text.ptr()});
    if (!cause_text.is_none()) {
        py::str quoted = py::str("\n'''\n{}'''").format(cause_text);
        exc.attr("__cause__") = call_object(pstd().RemoteTraceback, {quoted.ptr()});
    }
    return exc;
}

// The formatted traceback of `exc` (the three-argument form: format_exception(exc) is 3.10+).
py::object traceback_text(const py::object& exc) {
    py::object tb = exc.attr("__traceback__");
    py::object lines = call_object(pstd().format_exception, {py::type::handle_of(exc).ptr(), exc.ptr(), tb.ptr()});
    return py::str("").attr("join")(lines);
}

// Fails a future (strong reference, consumed) unless it is done already.
void fail_future(PyObject* fut, const py::object& exc) {
    PyFuture* f = as_future(fut);
    if (f) {
        try {
            if (!future_fail_unless_done(*f, fut, exc.ptr())) write_unraisable(fut);
        } catch (py::error_already_set& e) {
            write_unraisable(e, fut);
        }
    }
    Py_DECREF(fut);
}

// Starts `n` worker processes, and the manager thread when given its handle, in one call to the
// host. Every worker started is handed to the pool; those not started are given back to the
// pool's count, and the error that stopped the starting propagates.
void start_through_host(ProcessPoolShared& shared, std::size_t n, py::handle manager) {
    std::size_t added = 0;
    try {
        py::int_ count(n);
        py::tuple answer = call_object(shared.host.start, {count.ptr(), manager.ptr()});
        for (py::handle w : py::list(answer[0])) {
            py::tuple worker = py::reinterpret_borrow<py::tuple>(w);
            shared.pool.add_worker(worker[0].cast<int>(), worker[1].cast<int>(), worker[2].cast<int>(),
                                   worker[3].cast<int>(), worker[4].cast<int>());
            ++added;
        }
        if (!answer[1].is_none()) {  // raised as it was, with its traceback
            PyObject* exc = answer[1].ptr();
            PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(exc));
            Py_INCREF(type);
            Py_INCREF(exc);
            PyErr_Restore(type, exc, PyException_GetTraceback(exc));  // (a new reference, or null)
            throw py::error_already_set();
        }
    } catch (...) {
        for (std::size_t i = added; i < n; ++i) shared.pool.worker_start_failed();
        throw;
    }
}

// How the manager thread hands each batch to Python.
struct Hooks final : core::ProcessPoolHooks {
    Hooks(ProcessPoolShared& s, PyThreadState* manager) : shared(s), saved(manager) {}
    ProcessPoolShared& shared;
    PyThreadState* saved;  // the manager thread's state, between GIL holds

    void deliver(core::ProcessBatch& batch) override {
        restore_gil(saved);
        std::exception_ptr failure;  // goes on to the core, which breaks the pool
        call_python([&] {
            try {
                deliver_with_gil(batch);
            } catch (py::error_already_set& e) {
                write_unraisable(e, "cfutures process pool manager");
            } catch (abi::__forced_unwind&) {
                throw;
            } catch (...) {
                failure = std::current_exception();
            }
        });
        saved = PyEval_SaveThread();
        if (failure) std::rethrow_exception(failure);
    }

    // One function per outcome, in this order: the futures the manager saw cancelled, the
    // jobs whose buffers could not be sent, the answers, then the workers that exited (reaped
    // first: the messages of the rest need their exit codes), the jobs lost when the pool
    // broke, the jobs stopped while it goes on, and last the replacement workers.
    void deliver_with_gil(core::ProcessBatch& batch) {
        batch.released.clear();  // drops the pickled calls (their Python buffers)
        cancelled(batch.cancelled);
        unsendable(batch.unsendable);
        for (core::IncomingFrame& answer : batch.answers) complete(answer);
        std::unordered_map<int, int> exitcodes = reap(batch.exited);
        if (batch.broken != core::BreakCause::None) shared.record_broken(batch.broken, batch.broken_reason);
        lost(batch, exitcodes);
        stopped(batch.stopped, exitcodes);
        if (batch.start_workers) start_replacements(batch.start_workers);
    }

    void cancelled(const std::vector<std::uint64_t>& tags) {
        for (PyObject* fut : shared.jobs.take(tags)) {
            // The manager saw the cancellation (set_running_or_notify_cancel) without the GIL;
            // the stdlib's waiters hear of it here.
            if (PyFuture* f = as_future(fut)) tell_stdlib_waiters(*f, fut);
            Py_DECREF(fut);
        }
    }

    void unsendable(std::vector<core::FrameWriter::Unsendable>& jobs) {
        for (auto& u : jobs) {
            if (PyObject* fut = shared.jobs.take(u.frame.tag)) {
                py::str text("cannot hand the call's large buffers to a worker: " + u.error);
                py::object exc = call_object(PyExc_OSError, {text.ptr()});
                fail_future(fut, exc);
            }
        }
        jobs.clear();
    }

    // Joins the exited workers through the host: pid -> exit code of those it knew. A C++ map,
    // not the dict reap() returns: nothing Python may be alive here while later calls run
    // Python code (rule 6: an unwind at exit would drop it without the GIL).
    std::unordered_map<int, int> reap(const std::vector<int>& exited) {
        std::unordered_map<int, int> exitcodes;
        if (exited.empty()) return exitcodes;
        py::list pids;
        for (int pid : exited) pids.append(pid);
        try {
            py::dict reaped = call_object(shared.host.reap, {pids.ptr()});
            for (auto item : reaped)
                if (!item.second.is_none()) exitcodes[item.first.cast<int>()] = item.second.cast<int>();
        } catch (py::error_already_set& e) {
            write_unraisable(e, "cfutures process pool: reaping workers");
        }
        return exitcodes;
    }

    // As 3.15's stdlib (gh-139462), which cfutures does on every Python: when a worker's death
    // broke the pool, each lost future's BrokenProcessPool has as __cause__ a _RemoteTraceback
    // naming the workers that ended with a nonzero exit code.
    void lost(const core::ProcessBatch& batch, const std::unordered_map<int, int>& exitcodes) {
        std::string died;
        if (batch.broken == core::BreakCause::WorkerDied) {
            for (int pid : batch.exited) {
                auto reaped = exitcodes.find(pid);
                if (reaped == exitcodes.end() || reaped->second == 0) continue;
                if (!died.empty()) died += "\n";
                died += "Process " + std::to_string(pid) + " terminated abruptly with exit code " +
                        std::to_string(reaped->second);
            }
        }
        for (PyObject* fut : shared.jobs.take(batch.lost))
            fail_future(fut, died.empty() ? broken_error(batch.broken_reason)
                                          : broken_error(batch.broken_reason, py::str(died)));
    }

    // After reaping: a forkserver's worker is not our child, its exit code is its Process's.
    void stopped(const std::vector<core::StoppedJob>& stops, const std::unordered_map<int, int>& exitcodes) {
        for (const core::StoppedJob& stop : stops) {
            auto taken = shared.jobs.take_with_call(stop.tag);
            if (!taken) continue;
            PyObject* fut = taken->first;
            try {
                auto reaped = exitcodes.find(stop.pid);
                py::object code = py::none();
                if (stop.exitcode_known) code = py::int_(stop.exitcode);
                else if (reaped != exitcodes.end()) code = py::int_(reaped->second);
                py::int_ cause(static_cast<int>(stop.cause));
                py::float_ limit(stop.limit);
                fail_future(fut, call_object(shared.host.stopped_error,
                                             {cause.ptr(), code.ptr(), taken->second.ptr(), limit.ptr()}));
            } catch (py::error_already_set& e) {
                // The future must not stay pending: fail it with what went wrong instead.
                fail_future(fut, exception_of(e));
            }
        }
    }

    void start_replacements(std::size_t n) {
        try {
            start_through_host(shared, n, py::none());
        } catch (py::error_already_set& e) {
            // Without its replacement workers, the queue might never move: break the pool. The
            // reason names the error in one line ("OSError: ..."): e.what() would add
            // pybind11's rendering of the traceback to every future's message.
            std::string why;
            try {
                py::object exc = e.value();
                PyObject* text = call_python([&] { return PyObject_Str(exc.ptr()); });
                if (!text) throw py::error_already_set();
                why = py::str(exc.attr("__class__").attr("__name__")).cast<std::string>() + ": " +
                      py::reinterpret_steal<py::str>(text).cast<std::string>();
            } catch (py::error_already_set&) {
                why = "an exception that cannot be shown";
            }
            std::string message = "A worker process could not be started (" + why +
                                  "); the process pool is not usable anymore";
            // Recorded before the pool refuses submits: a submit between the break and the
            // manager's next batch would otherwise get the stdlib's default words (CI saw it).
            shared.broken_reason.record(py::str(message));
            shared.pool.break_pool(message);
        }
    }

    void complete(core::IncomingFrame& answer) {
        PyObject* fut = shared.jobs.take(answer.tag);
        if (!fut) return;
        if (!answer.unmapped.empty()) {
            // A result this process has no room for: that task fails, the pool goes on.
            shared.pool.counters().count(core::Outcome::Failed);
            py::str text("the task's answer could not be mapped into this process (" + answer.unmapped + ")");
            fail_future(fut, call_object(PyExc_MemoryError, {text.ptr()}));
            return;
        }
        py::object value;
        try {
            value = shared.host.loads(answer);
        } catch (py::error_already_set& e) {
            // As the stdlib: an answer that cannot be unpickled breaks the pool.
            shared.pool.counters().count(core::Outcome::Failed);
            py::object exc = exception_of(e);
            fail_future(fut, broken_error("A result could not be unpickled; the process pool is "
                                          "not usable anymore",
                                          traceback_text(exc)));
            shared.pool.break_pool("A result could not be unpickled");
            return;
        }
        PyFuture* f = as_future(fut);
        bool ok = true;
        try {
            if (core::is_cancelled(f->state())) {
                // Cancelled while running (cancel_running) just as its answer came: cancelled wins
                // (and was counted).
                Py_DECREF(fut);
                return;
            }
            shared.pool.counters().count(answer.kind == core::FrameKind::Result ? core::Outcome::Completed
                                                                                 : core::Outcome::Failed);
            ok = answer.kind == core::FrameKind::Result ? future_set_result(*f, fut, value.ptr())
                                                        : future_set_exception(*f, fut, value.ptr());
        } catch (py::error_already_set& e) {
            // InvalidStateError: the future was completed by hand meanwhile; drop the answer.
            write_unraisable(e, fut);
        }
        if (!ok) write_unraisable(fut);
        Py_DECREF(fut);
    }
};

// What the manager thread holds: the pool, never the executor.
struct ProcessPoolHandle {
    std::shared_ptr<ProcessPoolShared> shared;

    // The manager thread's body; returns once the pool has stopped.
    void run_manager() {
        // A second manager would drive the same pool.
        if (shared->manager_entered.exchange(true))
            throw std::logic_error("this process pool's manager is already running");
        PyThreadState* saved = PyEval_SaveThread();
        Hooks hooks(*shared, saved);
        try {
            shared->pool.run(hooks);  // hands the GIL back and forth through `hooks.saved`
        } catch (abi::__forced_unwind&) {
            park_forever();  // (run() lets only these through; they are parked in deliver)
        } catch (...) {
            restore_gil(hooks.saved);
            fail_leftovers();
            throw;
        }
        restore_gil(hooks.saved);
        fail_leftovers();
    }

    // Nothing can complete these any more (the pool is gone): they must not stay pending.
    void fail_leftovers() {
        for (PyObject* fut : shared->jobs.take_all()) {
            shared->pool.counters().count(core::Outcome::Failed);
            fail_future(fut, broken_error("The process pool stopped before the future ran"));
        }
    }

    void shutdown(bool cancel_futures) {
        if (shared->inherited()) return;
        if (cancel_futures) {
            // Cancel what is still pending *after* idle workers got what they can take, as the
            // stdlib's manager would have moved those to its call queue already.
            without_gil([&] { shared->pool.sync_dispatch(); });
        }
        std::vector<std::uint64_t> tags;
        for (auto& job : shared->pool.shutdown(cancel_futures)) tags.push_back(job.frame.tag);
        // Out of the table in one step, before any callback runs: the manager, which fails
        // whatever is left in the table when it stops, must never see these.
        for (PyObject* fut : shared->jobs.take(tags)) {
            bool cancelled;
            if (!future_cancel(*as_future(fut), fut, &cancelled)) write_unraisable(fut);
            Py_DECREF(fut);
        }
    }
};

// The pools made with cancel_running=True, for Future.cancel() on a RUNNING future (which does
// not know its pool): each is asked whether the future is one of its jobs. Guarded by
// g_cancellable_mu; expired pools are dropped as they are met.
std::mutex g_cancellable_mu;
std::vector<std::weak_ptr<ProcessPoolShared>> g_cancellable;

bool stop_running_future(PyFuture&, PyObject* self) {
    std::vector<std::shared_ptr<ProcessPoolShared>> pools;
    {
        std::lock_guard<std::mutex> g(g_cancellable_mu);
        auto expired = [](const std::weak_ptr<ProcessPoolShared>& p) { return p.expired(); };
        g_cancellable.erase(std::remove_if(g_cancellable.begin(), g_cancellable.end(), expired), g_cancellable.end());
        for (auto& p : g_cancellable)
            if (auto shared = p.lock()) pools.push_back(std::move(shared));
    }
    for (auto& shared : pools) {
        if (shared->inherited()) continue;
        std::vector<core::OutgoingFrame> released;  // dropped here, GIL held, after the table's lock
        std::optional<bool> stopped =
            shared->jobs.stop(self, [&](std::uint64_t tag) { return shared->pool.stop_job(tag, released); });
        if (stopped) return *stopped;
    }
    return false;
}

void allow_cancel_running(const std::shared_ptr<ProcessPoolShared>& shared) {
    shared->pool.keep_frames();
    shared->jobs.track_futures();
    std::lock_guard<std::mutex> g(g_cancellable_mu);
    g_cancellable.push_back(shared);
    set_running_stopper(&stop_running_future);
}

struct PyProcessPoolExecutor {
    PyProcessPoolExecutor(std::size_t max_workers, bool start_all, int max_tasks, bool replace_dead,
                          bool leave_early, std::size_t max_queue, ProcessHost host)
        : handle{std::make_shared<ProcessPoolShared>(std::move(host), max_workers, start_all, max_tasks, replace_dead,
                                                     leave_early, max_queue)} {}
    ~PyProcessPoolExecutor() {
        if (handle.shared->inherited()) return;
        handle.shared->pool.shutdown(false);  // the executor is gone
        // No manager ever ran (no worker could be started): none will report the jobs recorded
        // by the submits that raised. (With the executor gone, no submit can race this.)
        if (!handle.shared->manager_started.load()) handle.fail_leftovers();
    }
    ProcessPoolHandle handle;
};

PyTypeObject* g_process_executor_base = nullptr;

// --- submit, step by step --------------------------------------------------------------------

// Whether any argument is a buffer large enough to travel out of band.
bool has_large_buffer(const CallArguments& call, Py_ssize_t threshold) {
    auto large = [&](PyObject* o) {
        return (PyBytes_CheckExact(o) && PyBytes_GET_SIZE(o) >= threshold) ||
               (PyByteArray_CheckExact(o) && PyByteArray_GET_SIZE(o) >= threshold) ||
               (PyMemoryView_Check(o) && PyMemoryView_GET_BUFFER(o)->len >= threshold);
    };
    for (py::handle a : call.args)
        if (large(a.ptr())) return true;
    for (auto item : call.kwargs)
        if (large(item.second.ptr())) return true;
    return false;
}

// (payload, attachments) for the call (`fn_args_kwargs` is the call as one tuple), or nullopt with
// the pickling error set on `future` (as the stdlib: the future fails, the pool keeps working).
// BaseExceptions propagate.
std::optional<py::tuple> pickle_call(ProcessPoolShared& shared, const CallArguments& call,
                                     const py::tuple& fn_args_kwargs, py::handle future) {
    try {
        // Pickling runs Python code (reducers), through call_object (rule 6).
        if (has_large_buffer(call, shared.host.buffer_threshold))
            return py::tuple(call_object(shared.host.dumps_call, {call.fn, call.args.ptr(), call.kwargs.ptr()}));
        if (shared.host.is_plain_call(call)) {
            // The fast path (_pickling.Pickling.dumps) without its Python frame: C pickle.dumps.
            py::object data = call_object(shared.host.plain_dumps, {fn_args_kwargs.ptr(), shared.host.protocol.ptr()});
            if (PyBytes_GET_SIZE(data.ptr()) < shared.host.buffer_threshold) return py::make_tuple(data, py::tuple());
        }
        return py::tuple(call_object(shared.host.dumps, {fn_args_kwargs.ptr()}));
    } catch (py::error_already_set& e) {
        if (!e.matches(PyExc_Exception)) throw;
        // The stdlib pickles in its queue feeder thread and chains the traceback text as the
        // cause (_on_queue_feeder_error); the same shape here.
        py::object exc = exception_of(e);
        py::object quoted = py::str("\n\"\"\"\n{}\"\"\"").format(traceback_text(exc));
        exc.attr("__cause__") = call_object(pstd().RemoteTraceback, {quoted.ptr()});
        if (!future_set_exception(*as_future(future.ptr()), future.ptr(), exc.ptr()))
            throw py::error_already_set();
        return std::nullopt;
    }
}

// Payloads up to this size are copied out of their bytes object, which then dies in submit().
// Kept until the frame is written, it would pin pickle's output buffer: pickle.dumps allocates
// 4 KiB from glibc and shrinks it in place, so each queued task held a small block with a hole
// beside it. 20,000 queued no-op submits grew the parent's RSS by 15.6 MiB with the bytes kept,
// by 14.0 MiB with the copy (Intel Xeon; /proc/self/statm before and after the submit loop).
constexpr Py_ssize_t kCopiedPayloadAtMost = 4096;

// The job for a pickled call: its attachments (and a large payload) borrow the Python buffers.
core::ProcessPool::Job make_job(ProcessPoolShared& shared, std::uint64_t tag, const py::tuple& pickled,
                                PyFuture* future, std::chrono::nanoseconds timeout) {
    py::handle data = pickled[0];
    core::ProcessPool::Job job;
    if (PyBytes_CheckExact(data.ptr()) && PyBytes_GET_SIZE(data.ptr()) <= kCopiedPayloadAtMost) {
        job.frame = core::OutgoingFrame::make(core::FrameKind::Task, tag,
                                              std::string(PyBytes_AS_STRING(data.ptr()), PyBytes_GET_SIZE(data.ptr())));
    } else {
        auto payload = std::make_unique<BufferView>(data);
        job.frame.kind = core::FrameKind::Task;
        job.frame.tag = tag;
        job.frame.data = payload->data();
        job.frame.size = payload->size();
        job.frame.keep = keep_view(std::move(payload));
    }
    job.future = future;
    job.timeout = timeout;
    py::object attachments = pickled[1];
    if (py::len(attachments)) {
        std::lock_guard<std::mutex> g(shared.jobs.mu);
        job.frame.attachments = outgoing_attachments(attachments, &shared.jobs.copies);
    }
    return job;
}

// Starts what the pool asked for, and the manager thread once, in one call to the host.
void start_what_is_needed(ProcessPoolShared& shared, const std::shared_ptr<ProcessPoolShared>& owner, std::size_t workers) {
    // Claimed before the call: the host runs Python code, during which another first submit (a
    // free-threaded build, or a GIL switch) must not start a second manager.
    bool first = !shared.manager_started.exchange(true);
    if (!workers && !first) return;
    py::object manager = first ? py::cast(std::make_shared<ProcessPoolHandle>(ProcessPoolHandle{owner})) : py::none();
    try {
        start_through_host(shared, workers, manager);
    } catch (...) {
        if (first) shared.manager_started = false;  // a later submit tries again
        throw;
    }
    if (first) shared.pool.manager_started();
}

// A task timeout in seconds (a positive number; 0: none) as nanoseconds.
std::chrono::nanoseconds timeout_of(double s) {
    if (s == 0) return std::chrono::nanoseconds(0);
    if (!(s > 0) || s > 1e9) raise(PyExc_ValueError, "task_timeout must be a positive number of seconds or None");
    return std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9));
}

// submit(fn, /, *args, **kwargs) with `opts` (a task timeout of 0: the executor's). Throws; the
// vectorcall entry points below turn that into a Python error.
PyObject* submit_call(PyObject* self, CallArguments call, const SubmitOptions& opts) {
    PyProcessPoolExecutor* ex = native_ptr<PyProcessPoolExecutor>(self, g_process_executor_base);
    if (!ex) raise(PyExc_TypeError, "ProcessPoolExecutor.__init__() was not called");
    const std::shared_ptr<ProcessPoolShared>& owner = ex->handle.shared;
    ProcessPoolShared& shared = *owner;
    check_submittable(PoolKind::Process, shared, shared, pstd().BrokenProcessPool);

    py::object future = new_future();
    py::tuple fn_args_kwargs = py::make_tuple(py::handle(call.fn), call.args, call.kwargs);
    std::optional<py::tuple> pickled = pickle_call(shared, call, fn_args_kwargs, future);
    if (!pickled) {
        // (Its future failed already; counted here, before submit returns it.)
        shared.pool.counters().count_submitted();
        shared.pool.counters().count(core::Outcome::Failed);
        // The stdlib starts its workers at submit even when the call cannot be pickled.
        start_what_is_needed(shared, owner, shared.pool.submit_without_job());
        return future.release().ptr();
    }
    std::uint64_t tag = shared.jobs.add(future, fn_args_kwargs);
    core::ProcessPool::Job job;
    try {
        auto timeout = timeout_of(opts.task_timeout);
        job = make_job(shared, tag, *pickled, as_future(future.ptr()), timeout.count() ? timeout : shared.task_timeout);
        job.priority = opts.priority;
    } catch (...) {
        Py_XDECREF(shared.jobs.take(tag));
        throw;
    }
    std::vector<core::OutgoingFrame> sent;  // released after the pool's lock, GIL held
    core::ProcessPool::SubmitAnswer answer{};
    try {
        offer_until_room(shared, opts, [&](bool after_wait) {
            if (after_wait) check_submittable(PoolKind::Process, shared, shared, pstd().BrokenProcessPool);
            answer = shared.pool.submit(std::move(job), &sent);
            return answer.status == core::ProcessPool::Submit::Full;
        });
    } catch (...) {
        Py_XDECREF(shared.jobs.take(tag));
        throw;
    }
    sent.clear();
    if (answer.status != core::ProcessPool::Submit::Queued) {  // broken or shut down since the checks
        Py_XDECREF(shared.jobs.take(tag));
        bool broken = answer.status == core::ProcessPool::Submit::Broken;
        refuse_submit(broken ? Refusal::Broken : Refusal::Shutdown, pstd().BrokenProcessPool,
                      shared.broken_message());
    }
    try {
        start_what_is_needed(shared, owner, answer.start_workers);
    } catch (...) {
        // submit raises, so its caller has no future: the call must not run later either (a
        // later submit that starts the workers would run it). Cancelled, the manager drops it
        // unrun; if no manager ever runs, the executor's end does (fail_leftovers).
        bool cancelled = false;
        if (PyFuture* f = as_future(future.ptr())) {
            if (!future_cancel(*f, future.ptr(), &cancelled)) PyErr_Clear();
        }
        throw;
    }
    return future.release().ptr();
}

PyObject* process_submit(PyObject* self, PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames) {
    static const SubmitOptions plain;
    return guarded([&]() -> PyObject* {
        return submit_call(self, unpack_submit_arguments(argv, nargsf, kwnames), plain);
    });
}

// _submit_with(options, fn, /, *args, **kwargs): what executor.options(...).submit() calls.
PyObject* process_submit_with(PyObject* self, PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames) {
    return guarded([&]() -> PyObject* {
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        if (nargs < 2) raise(PyExc_TypeError, "_submit_with() takes options and a callable");
        SubmitOptions opts = submit_options_from(argv[0]);
        return submit_call(self, unpack_submit_arguments(argv + 1, nargs - 1, kwnames), opts);
    });
}

}  // namespace

void register_process_pool(py::module_& m) {
    py::class_<PyProcessPoolExecutor> cls(m, "ProcessPoolBase");
    g_process_executor_base = reinterpret_cast<PyTypeObject*>(cls.ptr());
    cls.def(py::init([](std::size_t max_workers, bool start_all, int max_tasks, py::handle host,
                        py::handle task_timeout, bool replace_dead_workers, bool cancel_running,
                        bool workers_leave_early, std::size_t max_queue) {
                auto* ex = new PyProcessPoolExecutor(max_workers, start_all, max_tasks, replace_dead_workers,
                                                     workers_leave_early, max_queue, ProcessHost::of(host));
                double seconds = task_timeout.is_none() ? 0.0 : PyFloat_AsDouble(task_timeout.ptr());
                if (seconds == -1.0 && PyErr_Occurred()) throw py::error_already_set();
                ex->handle.shared->task_timeout = timeout_of(seconds);
                if (cancel_running) allow_cancel_running(ex->handle.shared);
                return ex;
            }),
            py::arg("max_workers"), py::arg("start_all_at_once"), py::arg("max_tasks_per_child"),
            py::arg("host"), py::arg("task_timeout") = py::none(), py::arg("replace_dead_workers") = false,
            py::arg("cancel_running") = false, py::arg("workers_leave_early") = false,
            py::arg("max_queue") = 0)
        .def("_shutdown_pool", [](PyProcessPoolExecutor& ex, bool cancel_futures) {
            ex.handle.shutdown(cancel_futures);
        }, py::arg("cancel_futures"))
        .def_property_readonly("_broken", [](PyProcessPoolExecutor& ex) -> py::object {
            ProcessPoolShared& s = *ex.handle.shared;
            if (!s.pool.is_broken()) return py::bool_(false);
            return s.broken_message();
        })
        // The stdlib sets it at shutdown() and when the pool breaks.
        .def_property_readonly("_shutdown_thread", [](PyProcessPoolExecutor& ex) {
            core::ProcessPool& pool = ex.handle.shared->pool;
            return pool.is_shutdown() || pool.is_broken();
        })
        .def("_stats", [](PyProcessPoolExecutor& ex) { return stats_tuple(ex.handle.shared->pool.stats()); })
        // What cfutures.process turns into the stdlib's executor._pending_work_items.
        .def("_pending_jobs", [](PyProcessPoolExecutor& ex) { return ex.handle.shared->jobs.snapshot(); });
    add_submit_methods(cls, &process_submit, &process_submit_with, PoolKind::Process);

    py::class_<ProcessPoolHandle, std::shared_ptr<ProcessPoolHandle>>(m, "ProcessPoolHandle")
        .def("run_manager", &ProcessPoolHandle::run_manager)
        .def("shutdown", &ProcessPoolHandle::shutdown, py::arg("cancel_futures"));

    m.def("_set_process_interpreter_shutdown",
          [] { interpreter_exiting(PoolKind::Process).store(true); });
}

}  // namespace cfutures::bindings
