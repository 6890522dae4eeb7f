#include "executor.hpp"

namespace cfutures::bindings {

std::atomic<bool>& interpreter_exiting(PoolKind kind) {
    static std::atomic<bool> thread_pools{false}, process_pools{false};
    return kind == PoolKind::Thread ? thread_pools : process_pools;
}

void refuse_submit(Refusal why, PyObject* broken_type, py::handle broken_message) {
    switch (why) {
        case Refusal::Broken: PyErr_SetObject(broken_type, broken_message.ptr()); break;
        case Refusal::Shutdown:
            PyErr_SetString(PyExc_RuntimeError, "cannot schedule new futures after shutdown");
            break;
        case Refusal::InterpreterExit:
            PyErr_SetString(PyExc_RuntimeError,
                            "cannot schedule new futures after interpreter shutdown");
            break;
        case Refusal::Inherited:
            PyErr_SetString(PyExc_RuntimeError,
                            "cannot schedule new futures on an executor inherited through fork()");
            break;
    }
    throw py::error_already_set();
}

CallArguments unpack_submit_arguments(PyObject* const* argv, Py_ssize_t nargsf, PyObject* kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) raise(PyExc_TypeError, "submit() missing 1 required positional argument: 'fn'");
    CallArguments call{argv[0], py::tuple(nargs - 1), py::dict()};
    for (Py_ssize_t i = 1; i < nargs; ++i) {
        Py_INCREF(argv[i]);
        PyTuple_SET_ITEM(call.args.ptr(), i - 1, argv[i]);
    }
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
            if (PyDict_SetItem(call.kwargs.ptr(), PyTuple_GET_ITEM(kwnames, i), argv[nargs + i]) < 0)
                throw py::error_already_set();
        }
    }
    return call;
}

py::object fetch_exception() {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return py::reinterpret_steal<py::object>(value);
}

void add_submit_method(py::handle cls, PyObject* (*submit)(PyObject*, PyObject* const*, Py_ssize_t, PyObject*),
                       PoolKind kind) {
    // The stdlib's docstrings, after the text signature that inspect reads.
    static const char* const docs[] = {
        "submit(fn, /, *args, **kwargs)\n--\n\n"
        "Submits a callable to be executed with the given arguments.\n\n"
        "Schedules the callable to be executed as fn(*args, **kwargs) and returns\n"
        "a Future instance representing the execution of the callable.\n\n"
        "Returns:\n    A Future representing the given call.\n",
        "submit(fn, /, *args, **kwargs)\n--\n\n"
        "Submits a callable to be executed with the given arguments.\n\n"
        "Schedules the callable to be executed as fn(*args, **kwargs) in a worker\n"
        "process and returns a Future instance representing the execution of the\n"
        "callable.\n\nReturns:\n    A Future representing the given call.\n",
    };
    // Lives as long as the class (for the process's life): the descriptor points at it.
    auto* def = new PyMethodDef{"submit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(submit)),
                                METH_FASTCALL | METH_KEYWORDS, docs[kind == PoolKind::Process]};
    add_raw_method(cls, def);
}

py::object exception_of(const py::error_already_set& e) {
    py::object exc = e.value();
    if (e.trace() && !e.trace().is_none() && PyExceptionInstance_Check(exc.ptr()))
        PyException_SetTraceback(exc.ptr(), e.trace().ptr());
    return exc;
}

py::tuple stats_tuple(const core::ExecutorStats& s) {
    return py::make_tuple(s.submitted, s.queued, s.running, s.completed, s.failed, s.cancelled, s.workers,
                          s.idle_workers, s.workers_replaced);
}

}  // namespace cfutures::bindings
