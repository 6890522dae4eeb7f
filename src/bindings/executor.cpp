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

py::object exception_of(const py::error_already_set& e) {
    py::object exc = e.value();
    if (e.trace() && !e.trace().is_none() && PyExceptionInstance_Check(exc.ptr()))
        PyException_SetTraceback(exc.ptr(), e.trace().ptr());
    return exc;
}

}  // namespace cfutures::bindings
