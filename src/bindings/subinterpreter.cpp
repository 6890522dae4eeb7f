// _cfutures.Subinterpreter (3.12+): one subinterpreter with its own GIL, owned by the thread that
// created it (an InterpreterPoolExecutor worker, cfutures/interpreter.py), which runs pickled
// calls in it.
//
// What crosses between the interpreters is bytes, copied through C++ memory: no object of one
// interpreter is ever touched while the other one is current. The subinterpreter runs the
// worker module (cfutures/_interpreter_worker.py, given as source text, so the subinterpreter
// needs neither this extension module nor cfutures on its sys.path) and calls its
// run(bytes) -> bytes for each call.
//
// Invariants:
//  * Every method runs on the owning thread, attached to the main interpreter; they raise
//    RuntimeError elsewhere. Within a method the thread detaches from the main interpreter
//    before it attaches to the subinterpreter and goes back the same way (restore_gil, rule 6),
//    so the main interpreter's other threads run while a call runs here.
//  * `sub_` and `run_` are set between construction and close(), and null after. The
//    destructor never ends the interpreter (it may run on another thread, or in a forked child,
//    where the interpreter no longer exists): a pool always closes its workers' interpreters,
//    and CPython ends any left at exit.
#include "common.hpp"

#include <string>
#include <thread>

namespace cfutures::bindings {

#if PY_VERSION_HEX >= 0x030C0000
namespace {

// The pending error of the current interpreter as text, cleared.
std::string take_error_text() {
    PyObject* exc = PyErr_GetRaisedException();
    std::string text = "unknown error";
    if (exc) {
        PyObject* s = PyObject_Str(exc);
        const char* utf8 = s ? PyUnicode_AsUTF8(s) : nullptr;
        if (utf8) text = std::string(Py_TYPE(exc)->tp_name) + ": " + utf8;
        Py_XDECREF(s);
        Py_DECREF(exc);
        PyErr_Clear();
    }
    return text;
}

class Subinterpreter {
public:
    Subinterpreter(const std::string& worker_source, const std::string& filename)
        : owner_(std::this_thread::get_id()) {
        PyInterpreterConfig config{};
        config.use_main_obmalloc = 0;
        config.allow_fork = 0;
        config.allow_exec = 0;
        config.allow_threads = 1;
        config.allow_daemon_threads = 0;
        config.check_multi_interp_extensions = 1;
        config.gil = PyInterpreterConfig_OWN_GIL;
        PyThreadState* main = PyThreadState_Get();
        PyThreadState* sub = nullptr;
        PyStatus status = Py_NewInterpreterFromConfig(&sub, &config);
        if (PyStatus_Exception(status)) {
            // CPython has made `main` current again.
            PyErr_Format(PyExc_RuntimeError, "cannot create a subinterpreter: %s",
                         status.err_msg ? status.err_msg : "unknown error");
            throw py::error_already_set();
        }
        // Now `sub` is current (its GIL held) and the main interpreter's GIL is free.
        std::string error;
        PyObject* run = load_worker(worker_source, filename, error);
        if (!run) {
            Py_EndInterpreter(sub);
            restore_gil(main);
            throw std::runtime_error("cannot start the subinterpreter's worker: " + error);
        }
        PyEval_SaveThread();
        restore_gil(main);
        sub_ = sub;
        run_ = run;
    }

    // Runs the worker's run(payload) in the subinterpreter; returns its bytes.
    py::bytes call(const py::bytes& payload) {
        check_usable();
        std::string in = payload;  // copied: the main interpreter's bytes stay on its side
        std::string out, error;
        bool ok = inside([&] {
            PyObject* arg = PyBytes_FromStringAndSize(in.data(), static_cast<Py_ssize_t>(in.size()));
            std::string().swap(in);
            PyObject* answer = arg ? PyObject_CallOneArg(run_, arg) : nullptr;
            Py_XDECREF(arg);
            char* data = nullptr;
            Py_ssize_t size = 0;
            if (answer && PyBytes_AsStringAndSize(answer, &data, &size) == 0) out.assign(data, size);
            else error = take_error_text();
            Py_XDECREF(answer);
            return error.empty();
        });
        if (!ok) throw std::runtime_error("the subinterpreter's worker failed: " + error);
        return py::bytes(out);
    }

    // Ends the subinterpreter (it waits for the threads its calls started). Idempotent.
    void close() {
        if (!sub_) return;
        check_owner();
        PyThreadState* main = PyEval_SaveThread();
        PyEval_RestoreThread(sub_);
        Py_CLEAR(run_);
        Py_EndInterpreter(sub_);  // leaves no thread state current
        sub_ = nullptr;
        restore_gil(main);
    }

    bool closed() const { return sub_ == nullptr; }

private:
    static PyObject* load_worker(const std::string& source, const std::string& filename, std::string& error) {
        PyObject* code = Py_CompileString(source.c_str(), filename.c_str(), Py_file_input);
        PyObject* module = code ? PyImport_ExecCodeModuleEx("cfutures._interpreter_worker", code, filename.c_str())
                                : nullptr;
        Py_XDECREF(code);
        PyObject* run = module ? PyObject_GetAttrString(module, "run") : nullptr;
        Py_XDECREF(module);
        if (!run) error = take_error_text();
        return run;
    }

    void check_owner() const {
        if (std::this_thread::get_id() != owner_)
            raise(PyExc_RuntimeError, "a subinterpreter is used only by the thread that created it");
    }

    void check_usable() const {
        if (!sub_) raise(PyExc_RuntimeError, "the subinterpreter is closed");
        check_owner();
    }

    // Runs `body` with the subinterpreter current and the main interpreter released.
    template <class Body>
    bool inside(Body&& body) {
        PyThreadState* main = PyEval_SaveThread();
        PyEval_RestoreThread(sub_);
        bool ok = body();
        PyEval_SaveThread();
        restore_gil(main);
        return ok;
    }

    PyThreadState* sub_ = nullptr;
    PyObject* run_ = nullptr;  // an object of the subinterpreter
    std::thread::id owner_;
};

}  // namespace

void register_subinterpreter(py::module_& m) {
    py::class_<Subinterpreter>(m, "Subinterpreter")
        .def(py::init<const std::string&, const std::string&>(), py::arg("worker_source"),
             py::arg("filename"))
        .def("call", &Subinterpreter::call, py::arg("payload"))
        .def("close", &Subinterpreter::close)
        .def_property_readonly("closed", &Subinterpreter::closed);
}
#else
void register_subinterpreter(py::module_&) {}  // own-GIL subinterpreters are 3.12+
#endif

}  // namespace cfutures::bindings
