// What every binding file shares: the GIL rules, the stdlib objects cfutures re-raises, and the
// interruptible wait.
//
// GIL rules (every file in src/bindings obeys them):
//  1. Release the GIL around anything that can block: waiting for a future, a waiter or a task.
//  2. Core locks (future, waiter, pool) never call out while held, so taking one with the GIL
//     held is safe; never do the opposite (ask for the GIL while holding a core lock).
//  3. Hold the GIL only to run Python code (tasks, callbacks) and to create or drop objects;
//     a worker keeps it across consecutive tasks instead of bouncing it per task.
//  4. Blocking waits wake every kSignalTick on the main thread to run signal handlers, so Ctrl-C
//     in result() raises KeyboardInterrupt promptly.
//  5. The GIL is never the only guard of state that two Python threads can reach: the module
//     declares Py_MOD_GIL_NOT_USED, so on a free-threaded build they run at once. Such state sits
//     under a core lock (futures, pools) or a binding-level mutex (the process pool's job table).
//  6. Exit. While the interpreter finalizes, CPython ends any other thread that takes the GIL
//     back: before 3.14 by unwinding it (pthread_exit), from 3.14 by hanging it. An unwind through
//     our frames would call std::terminate at the first noexcept frame or destructor that re-takes
//     the GIL, and release Python references without the GIL on the way. So the GIL is taken
//     back only through restore_gil() (directly, or by without_gil()), which parks such a thread
//     for good where it stands, as 3.14 does, and the process exits around it. Python code
//     itself re-takes the GIL (a sleep, a lock, a write), so an unwind can start inside any call
//     into Python. Any thread but the main one can meet finalization: pool workers, the process
//     pool's manager, and the user's own threads (a daemon thread that submits, starting a worker
//     thread or pickling a call, or waits on a stdlib future, when the main thread ends). So every
//     call into Python that native code makes goes through call_python() or the helpers built on
//     it (call_parking, call_object, call_method), which catch the unwind in the frame of the
//     call and park. Between the call and that catch, no
//     frame may own a Python reference (a py::object, pybind11's own call machinery, a
//     py::error_already_set: their destructors would run during the unwind, detached from the
//     interpreter; 3.13t crashes on that). Nothing re-takes the GIL in a destructor, and no frame
//     on such a thread is noexcept.
#pragma once

#include <pybind11/pybind11.h>

#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <initializer_list>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>

#include <functional>

#include "../core/waiter.hpp"

namespace cfutures::bindings {

namespace py = pybind11;
using core::Clock;

// Objects from the stdlib's concurrent.futures that cfutures hands out as its own (same classes,
// same constants), looked up once, when cfutures._base registers its Future class (before any
// future exists; a worker process, which never makes one, does not import the stdlib's package).
// Held for the life of the process: they must outlive every future, and tearing them down at
// exit would race the interpreter's own finalization.
struct Stdlib {
    PyObject* CancelledError;
    PyObject* TimeoutError;
    PyObject* InvalidStateError;
    PyObject* Future;                 // the class whose methods a future in the stdlib's mode runs
    PyObject* state_names[5];         // PENDING ... FINISHED, in core::FutureState order
    PyObject* state_descriptions[5];  // 'pending' ... 'finished', as repr() prints them
    PyObject* run_callback;           // cfutures._base._run_callback(fn, future), set at import
    PyObject* QueueFull;              // cfutures.QueueFull (not the stdlib's), set at import
};
Stdlib& stdlib();
void load_stdlib();  // fills stdlib(), but run_callback

// Whether this thread is attached to the interpreter (holds the GIL on a GIL build). Not
// PyGILState_Check(), which CPython makes answer "yes" everywhere once a subinterpreter exists
// (an InterpreterPoolExecutor's workers, from 3.14).
inline bool attached() {
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked() != nullptr;
#else
    return _PyThreadState_UncheckedGet() != nullptr;
#endif
}

// Raises `type(*args)`-style errors the way Python code would.
[[noreturn]] inline void raise(PyObject* type, const char* message = nullptr) {
    if (message) PyErr_SetString(type, message);
    else PyErr_SetNone(type);
    throw py::error_already_set();
}

// The C++ object inside an instance of `base` (a pybind11 class with a single C++ type, as all of
// ours are) or of a Python subclass of it; nullptr when `obj` is something else. Cheaper than a
// pybind11 cast, which matters on every submit() and result().
template <class T>
T* native_ptr(PyObject* obj, PyTypeObject* base) {
    if (!base || !PyObject_TypeCheck(obj, base)) return nullptr;
    auto* inst = reinterpret_cast<py::detail::instance*>(obj);
    void* p = inst->simple_layout ? inst->simple_value_holder[0]
                                  : inst->get_value_and_holder().value_ptr();
    return static_cast<T*>(p);
}

// The body of a raw CPython function: C++ exceptions become Python errors. Not noexcept: a thread
// ended by interpreter finalization may pass through (rule 6).
template <class Body>
PyObject* guarded(Body&& body) {
    try {
        return body();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (py::builtin_exception& e) {  // py::type_error and kin: their own Python type
        e.set_error();
    } catch (std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

// --- Rule 6: taking the GIL back -----------------------------------------------------------------

// Blocks the calling thread until the process exits.
[[noreturn]] void park_forever();

// PyEval_RestoreThread(saved), unless the interpreter is ending this thread: then the thread
// parks here for good (rule 6). When another thread holds the GIL, it first spins (within the
// spin policy) until that thread lets go, so that CPython's take_gil() does not put it to sleep
// (gil_probe.h has the measurements).
void restore_gil(PyThreadState* saved);

// Finds the main interpreter's GIL flag for restore_gil() (at import, GIL held).
void init_gil_probe();
bool gil_probe_enabled();

// Runs `f` with the GIL released, and takes it back (restore_gil) however `f` ends.
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
    PyThreadState* saved = PyEval_SaveThread();
    try {
        if constexpr (std::is_void_v<decltype(f())>) {
            f();
            restore_gil(saved);
        } else {
            decltype(f()) r = f();
            restore_gil(saved);
            return r;
        }
    } catch (abi::__forced_unwind&) {
        park_forever();  // `f` took the GIL itself and is being ended: stay off the stack above
    } catch (...) {
        restore_gil(saved);
        throw;
    }
}

// Runs `f`, a call into Python, on a thread that finalization may end (rule 6): if it does, by
// unwinding out of the Python code, the thread parks here instead of unwinding our frames. So
// `f` must own nothing whose destructor touches Python: one C API call, on borrowed arguments.
template <class F>
auto call_python(F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (abi::__forced_unwind&) {
        park_forever();
    }
}

// callable(*args) through call_python(): a new reference, or nullptr with the error set.
inline PyObject* call_parking(PyObject* callable, std::initializer_list<PyObject*> args) {
    return call_python([&] {
        return PyObject_Vectorcall(callable, args.begin(), args.size(), nullptr);
    });
}

// The same, as a py::object; throws error_already_set when the call raised.
inline py::object call_object(py::handle callable, std::initializer_list<PyObject*> args) {
    PyObject* r = call_parking(callable.ptr(), args);
    if (!r) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(r);
}

// import name, through call_python() (an import runs the module's code).
inline py::object import_module(const char* name) {
    PyObject* m = call_python([&] { return PyImport_ImportModule(name); });
    if (!m) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(m);
}

// self.name(*args) through call_python(), as a py::object; throws error_already_set when the
// call raised.
inline py::object call_method(py::handle self, const char* name, std::initializer_list<PyObject*> args = {}) {
    py::str method(name);
    PyObject* argv[4] = {self.ptr()};  // self, then at most three arguments
    if (args.size() > 3) throw std::invalid_argument("call_method: at most three arguments");
    std::copy(args.begin(), args.end(), argv + 1);
    PyObject* r = call_python([&] {
        return PyObject_VectorcallMethod(method.ptr(), argv, 1 + args.size(), nullptr);
    });
    if (!r) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(r);
}

// A value made once per process, by the first thread that asks (`make` needs the GIL and calls
// into Python through call_python). Threads that ask meanwhile wait for it with the GIL released
// (lock order: the once, then the GIL), and take the GIL back through restore_gil(), which parks
// a thread that finalization ends (rule 6; pybind11's gil_safe_call_once_and_store re-takes it in
// a destructor, and a daemon thread importing cfutures at exit aborted there). The value is
// never destroyed: it would outlive the interpreter. A `make` that throws leaves it unmade, for
// the next thread to try. Constant-initialized, so a function-local static one has no guard.
template <class T>
class MadeOnce {
public:
    template <class Make>
    T& get(Make&& make) {
        if (!made_.load(std::memory_order_acquire)) {
            PyThreadState* saved = PyEval_SaveThread();
            try {
                std::call_once(once_, [&] {
                    restore_gil(saved);
                    struct Detach {
                        PyThreadState*& saved;
                        ~Detach() { saved = PyEval_SaveThread(); }
                    } detach{saved};
                    ::new (storage_) T(make());
                    made_.store(true, std::memory_order_release);
                });
            } catch (...) {
                restore_gil(saved);
                throw;
            }
            restore_gil(saved);
        }
        return *std::launder(reinterpret_cast<T*>(storage_));
    }

private:
    std::once_flag once_;
    std::atomic<bool> made_{false};
    alignas(T) unsigned char storage_[sizeof(T)];
};

// PyErr_WriteUnraisable(obj) through call_python(): sys.unraisablehook may be Python code, and
// writing to stderr re-takes the GIL.
inline void write_unraisable(PyObject* obj) {
    call_python([&] { PyErr_WriteUnraisable(obj); });
}

// Reports a caught error as unraisable, about `obj`. Not e.discard_as_unraisable(): an unwind
// from inside the hook would destroy `e`, and its destructor takes the GIL.
inline void write_unraisable(py::error_already_set& e, PyObject* obj) {
    e.restore();
    write_unraisable(obj);
}
inline void write_unraisable(py::error_already_set& e, const char* where) {
    py::str text(where);
    write_unraisable(e, text.ptr());
}

// Adds a raw (vectorcall) method to a pybind11 class: for the hottest calls, where pybind11's
// argument dispatch would cost more than the work, and where `fn` must be positional-only.
inline void add_raw_method(py::handle cls, PyMethodDef* def) {
    PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), def);
    if (!descr || PyObject_SetAttrString(cls.ptr(), def->ml_name, descr) < 0) {
        Py_XDECREF(descr);
        throw py::error_already_set();
    }
    Py_DECREF(descr);
}

// timeout=None -> no deadline; numbers -> now + timeout (negative means "already passed").
std::optional<Clock::time_point> deadline_from(const py::object& timeout);

// On the main thread, runs the handlers of signals that arrived while it waited with the GIL
// released; throws error_already_set when one raised (KeyboardInterrupt). Called after every
// such wait, also one that ended because what it waited for happened: the stdlib's wait, a lock
// acquire, is interrupted first, so Ctrl-C during result() raises from result(), never after it
// returned (a worker that got the same Ctrl-C answers at once; its KeyboardInterrupt raised
// from result() met the local one in the traceback's printing, and Python lost sys.stderr).
void run_pending_signal_handlers();

// Called with the GIL held: one call of wait(until) with the GIL released, where `until` is
// `deadline` cut to the next signal tick on the main thread, which then runs the signal handlers
// (run_pending_signal_handlers). Returns what wait() returned. Throws error_already_set when a
// handler raised (KeyboardInterrupt).
bool wait_slice_interruptibly(const std::function<bool(std::optional<Clock::time_point>)>& wait,
                              std::optional<Clock::time_point> deadline);

// Called with the GIL held; releases it while waiting on `w`. Returns whether the waiter fired.
// Throws error_already_set when a signal handler raised (KeyboardInterrupt).
bool wait_interruptibly(core::Waiter& w, std::optional<Clock::time_point> deadline);

// The thread that runs signal handlers (refreshed after fork).
void refresh_main_thread();

// Bumped in a forked child. A pool created under another generation belongs to threads that do
// not exist in this process: its locks may be held forever, so nothing may touch it.
unsigned fork_generation();
void after_fork_in_child();

}  // namespace cfutures::bindings
