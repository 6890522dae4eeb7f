#include "executor.hpp"

#include <cstdio>
#include <limits>
#include <string>

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

void add_submit_methods(py::handle cls, VectorcallMethod submit, VectorcallMethod submit_with, PoolKind kind) {
    // The stdlib's docstrings, after the text signature that inspect reads.
    static const char* const docs[] = {
        "submit($self, fn, /, *args, **kwargs)\n--\n\n"
        "Submits a callable to be executed with the given arguments.\n\n"
        "Schedules the callable to be executed as fn(*args, **kwargs) and returns\n"
        "a Future instance representing the execution of the callable.\n\n"
        "Returns:\n    A Future representing the given call.\n",
        "submit($self, fn, /, *args, **kwargs)\n--\n\n"
        "Submits a callable to be executed with the given arguments.\n\n"
        "Schedules the callable to be executed as fn(*args, **kwargs) in a worker\n"
        "process and returns a Future instance representing the execution of the\n"
        "callable.\n\nReturns:\n    A Future representing the given call.\n",
    };
    // Lives as long as the class (for the process's life): the descriptor points at it.
    auto* def = new PyMethodDef{"submit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(submit)),
                                METH_FASTCALL | METH_KEYWORDS, docs[kind == PoolKind::Process]};
    add_raw_method(cls, def);
    auto* with = new PyMethodDef{
        "_submit_with", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(submit_with)),
        METH_FASTCALL | METH_KEYWORDS,
        "_submit_with($self, options, fn, /, *args, **kwargs)\n--\n\nsubmit() with executor.options()'s "
        "options: (priority, block, block_timeout, task_timeout)."};
    add_raw_method(cls, with);
}

SubmitOptions submit_options_from(PyObject* options) {
    if (!PyTuple_Check(options) || PyTuple_GET_SIZE(options) != 4)
        raise(PyExc_TypeError, "options must be a (priority, block, block_timeout, task_timeout) tuple");
    SubmitOptions o;
    int overflow = 0;
    long priority = PyLong_AsLongAndOverflow(PyTuple_GET_ITEM(options, 0), &overflow);
    if (priority == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow || priority <= std::numeric_limits<int>::min() || priority > std::numeric_limits<int>::max())
        raise(PyExc_OverflowError, "priority out of range");
    o.priority = static_cast<int>(priority);
    o.block = PyObject_IsTrue(PyTuple_GET_ITEM(options, 1)) == 1;
    PyObject* block_timeout = PyTuple_GET_ITEM(options, 2);
    if (block_timeout != Py_None) {
        o.block_timeout = PyFloat_AsDouble(block_timeout);
        if (*o.block_timeout == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    }
    PyObject* task_timeout = PyTuple_GET_ITEM(options, 3);
    if (task_timeout != Py_None) {
        o.task_timeout = PyFloat_AsDouble(task_timeout);
        if (o.task_timeout == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    }
    return o;
}

void raise_queue_full(std::size_t bound, const SubmitOptions& opts) {
    std::string text = "the executor's queue is full: " + std::to_string(bound) + " tasks wait to start (max_queue)";
    if (opts.block && opts.block_timeout) {
        char waited[64];
        std::snprintf(waited, sizeof waited, "; no room within block_timeout=%g s", *opts.block_timeout);
        text += waited;
    }
    PyErr_SetString(stdlib().QueueFull, text.c_str());
    throw py::error_already_set();
}

py::object exception_of(const py::error_already_set& e) {
    py::object exc = e.value();
    if (e.trace() && !e.trace().is_none() && PyExceptionInstance_Check(exc.ptr()))
        PyException_SetTraceback(exc.ptr(), e.trace().ptr());
    return exc;
}

py::tuple stats_tuple(const core::ExecutorStats& s) {
    return py::make_tuple(s.submitted, s.queued, s.running, s.completed, s.failed, s.cancelled, s.workers,
                          s.idle_workers, s.workers_replaced, s.calls_inlined);
}

}  // namespace cfutures::bindings
