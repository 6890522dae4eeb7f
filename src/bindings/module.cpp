// _cfutures: wiring only. Each register_* lives with the code it exposes; they run on first use
// (kGroups below).

#include <span>
#include <string>

#include "build_info.hpp"
#include "common.hpp"
#include "../core/spin_policy.hpp"

namespace cfutures::bindings {
void register_future(py::module_& m);
void register_wait(py::module_& m);
void register_thread_pool(py::module_& m);
void register_process_pool(py::module_& m);
void register_process_worker(py::module_& m);
void register_channel(py::module_& m);
void register_subinterpreter(py::module_& m);

namespace {
// The bindings are registered on first use, a group at a time, through the module's
// __getattr__ (PEP 562): registering every class and method cost 2.5M instructions (callgrind),
// a fifth of what importing cfutures adds to a process pool's start, and a worker process needs
// only its channel. A name not yet there registers the groups in this order until it appears,
// so the order puts first what the smallest users need: a worker process (its channel), then
// futures, the process pool, wait(), the thread pool, subinterpreters.
PyObject* g_module = nullptr;

// The module's own names and the import system's questions (__name__, __path__, __spec__...).
bool is_dunder(PyObject* name) {
    return PyUnicode_Tailmatch(name, py::str("__").ptr(), 0, 2, -1) == 1;
}

template <void (*Register)(py::module_&)>
void register_once() {
    // Once per process, and safe against a thread that registers meanwhile (free-threaded
    // builds; on others, a garbage collection run by the registration can switch threads).
    // The group is built in a private module of the same name and published when complete:
    // pybind11 puts a class into its scope as soon as the type exists, before its constructor,
    // methods and type record, and a thread that found it there (without __getattr__, so without
    // this once) would use it half-made ("No constructor defined!", an abort in instance
    // allocation; tests/test_startup.py). The private module has no __getattr__, so pybind11's
    // look-ups of each new name (clash check, overload chaining) find nothing there.
    static MadeOnce<bool> once;
    once.get([] {
        py::module_ staging = py::reinterpret_steal<py::module_>(PyModule_New(PyModule_GetName(g_module)));
        if (!staging) throw py::error_already_set();
        Register(staging);
        PyObject* published = PyModule_GetDict(g_module);
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        PyObject* built = PyModule_GetDict(staging.ptr());
        while (PyDict_Next(built, &pos, &key, &value)) {
            if (is_dunder(key)) continue;  // the staging module's own
            if (PyDict_SetItem(published, key, value) != 0) throw py::error_already_set();
        }
        return true;
    });
}

using Group = void (*)();
constexpr Group kGroups[] = {
    [] { register_once<register_channel>(); register_once<register_process_worker>(); },
    [] { register_once<register_future>(); },
    [] { register_once<register_channel>(); register_once<register_process_pool>(); },
    [] { register_once<register_wait>(); },
    [] { register_once<register_thread_pool>(); },
    [] { register_once<register_subinterpreter>(); },
};

py::object module_getattr(const py::str& name) {
    PyObject* dict = PyModule_GetDict(g_module);
    // A dunder name is never a binding.
    for (Group group : is_dunder(name.ptr()) ? std::span<const Group>() : std::span<const Group>(kGroups)) {
        group();
        if (PyObject* value = PyDict_GetItemWithError(dict, name.ptr())) return py::reinterpret_borrow<py::object>(value);
        if (PyErr_Occurred()) throw py::error_already_set();
    }
    throw py::attribute_error("module 'cfutures._cfutures' has no attribute '" + std::string(name) + "'");
}

py::list module_dir() {
    for (Group group : kGroups) group();
    py::list names = py::reinterpret_borrow<py::dict>(PyModule_GetDict(g_module)).attr("keys")();
    names.attr("sort")();
    return names;
}
}  // namespace
}  // namespace cfutures::bindings

PYBIND11_MODULE(_cfutures, m, pybind11::mod_gil_not_used()) {
    using namespace cfutures::bindings;
    m.doc() = "The native half of cfutures: futures, waiting, the thread, process and interpreter pools.";
    g_module = m.ptr();  // borrowed: the module outlives every call of its functions
    refresh_main_thread();
    init_gil_probe();
    m.def("_build_info", [] {
        py::dict info;
        info["compiler"] = CFUTURES_CXX_COMPILER;
        info["flags"] = CFUTURES_CXX_FLAGS;
        info["build_type"] = CFUTURES_BUILD_TYPE;
        info["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." + std::to_string(PYBIND11_VERSION_MINOR) +
                           "." + std::to_string(PYBIND11_VERSION_PATCH);
        info["gil_not_used"] = true;  // matches mod_gil_not_used() above
        info["gil_probe"] = gil_probe_enabled();
        return info;
    });
    // What the spin policy counts on (core/cpu_limits.hpp), as last read.
    m.def("_cpu_limits", [] {
        cfutures::core::CpuLimits limits = cfutures::core::LoadGauge::instance().limits();
        py::dict d;
        d["affinity_cpus"] = limits.affinity_cpus;
        d["quota_cpus"] = limits.quota_cpus ? py::object(py::float_(*limits.quota_cpus)) : py::object(py::none());
        d["quota_source"] = limits.quota_source;
        d["usable_cpus"] = limits.usable_cpus;
        return d;
    });
    // Last: pybind11 looks each new name up before it defines it, which would register every
    // group (kGroups) at once.
    m.def("__getattr__", &module_getattr);
    m.def("__dir__", &module_dir);
}
