// _cfutures: wiring only. Each register_* lives with the code it exposes.
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

}  // namespace cfutures::bindings

PYBIND11_MODULE(_cfutures, m, pybind11::mod_gil_not_used()) {
    using namespace cfutures::bindings;
    m.doc() = "Native core of cfutures (futures, waiters, thread pools).";
    refresh_main_thread();
    init_gil_probe();
    register_future(m);
    register_wait(m);
    register_thread_pool(m);
    register_channel(m);
    register_process_pool(m);
    register_process_worker(m);
    register_subinterpreter(m);
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
}
