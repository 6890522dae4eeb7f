#include "common.hpp"

#include <pythread.h>

#include <unistd.h>

#include <atomic>
#include <cmath>

#include "gil_probe.h"
#include "../core/spin_policy.hpp"

namespace cfutures::bindings {

namespace {
// Short enough that Ctrl-C feels immediate, long enough that a blocked main thread costs nothing.
constexpr auto kSignalTick = std::chrono::milliseconds(50);
std::atomic<unsigned long> g_main_thread{0};
std::atomic<unsigned> g_fork_generation{0};

// Taking the GIL back (gil_probe.h): a thread spins up to this long for the GIL to be let go
// before it asks for it, when the spin policy allows. Long enough to cover the holder's last
// steps before it releases (a submitter between submit() and result(), a worker between
// publishing a result and going idle: 1-3 us here), short enough to cost little when the holder
// runs on (then the site's record of long waits stops the spinning).
core::SpinSite g_gil_spin{std::chrono::microseconds(30)};
const int* g_gil_locked = nullptr;
const int* g_gil_enabled = nullptr;  // free-threaded builds only
PyInterpreterState* g_main_interpreter = nullptr;

bool gil_is_held() {
    return (!g_gil_enabled || __atomic_load_n(g_gil_enabled, __ATOMIC_RELAXED) != 0) &&
           __atomic_load_n(g_gil_locked, __ATOMIC_RELAXED) != 0;
}

// Whether the GIL that `saved` needs is held by another thread right now, as far as the probe
// can tell (only the main interpreter's GIL is probed).
bool gil_is_held_for(PyThreadState* saved) {
    return g_gil_locked && PyThreadState_GetInterpreter(saved) == g_main_interpreter && gil_is_held();
}
}  // namespace

void init_gil_probe() {
    g_main_interpreter = PyInterpreterState_Main();
    bool on = cfutures_gil_probe_init();
    g_gil_locked = on ? cfutures_gil_locked_flag() : nullptr;
    g_gil_enabled = on ? cfutures_gil_enabled_flag() : nullptr;
}

bool gil_probe_enabled() { return g_gil_locked != nullptr; }

unsigned fork_generation() { return g_fork_generation.load(std::memory_order_relaxed); }

void after_fork_in_child() {
    g_fork_generation.fetch_add(1);
    refresh_main_thread();
}

Stdlib& stdlib() {
    static Stdlib s{};
    return s;
}

void load_stdlib() {
    Stdlib& s = stdlib();
    py::module_ base = py::module_::import("concurrent.futures._base");
    s.CancelledError = py::object(base.attr("CancelledError")).release().ptr();
    s.TimeoutError = py::object(base.attr("TimeoutError")).release().ptr();
    s.InvalidStateError = py::object(base.attr("InvalidStateError")).release().ptr();
    s.Future = py::object(base.attr("Future")).release().ptr();
    const char* names[5] = {"PENDING", "RUNNING", "CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"};
    py::dict descriptions = base.attr("_STATE_TO_DESCRIPTION_MAP");
    for (int i = 0; i < 5; ++i) {
        py::object name = base.attr(names[i]);
        s.state_names[i] = name.release().ptr();
        s.state_descriptions[i] = py::object(descriptions[py::handle(s.state_names[i])]).release().ptr();
    }
}

void refresh_main_thread() {
    // Called at import (from the importing thread's view of threading.main_thread()) and after fork.
    py::object main = py::module_::import("threading").attr("main_thread")();
    g_main_thread.store(main.attr("ident").cast<unsigned long>(), std::memory_order_relaxed);
}

std::optional<Clock::time_point> deadline_from(const py::object& timeout) {
    if (timeout.is_none()) return std::nullopt;
    // Numbers only (a str is a TypeError, as in the stdlib, never parsed).
    double seconds = PyFloat_AsDouble(timeout.ptr());
    if (seconds == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    auto now = Clock::now();
    if (std::isnan(seconds)) raise(PyExc_ValueError, "Invalid value NaN (not a number)");
    if (seconds <= 0) return now;
    // Beyond a century is "forever" for our purposes, and keeps the arithmetic in range.
    if (seconds > 3.2e9) return std::nullopt;
    return now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

namespace {
bool on_main_thread() {
    return PyThread_get_thread_ident() == g_main_thread.load(std::memory_order_relaxed);
}

bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}
}  // namespace

void park_forever() {
    for (;;) ::pause();
}

void restore_gil(PyThreadState* saved) {
    // The main thread is the one that finalizes: it always gets the GIL back.
    if (interpreter_finalizing() && !on_main_thread()) park_forever();
    // Spins, when that pays, until the holder lets go, so that take_gil() does not sleep
    // (gil_probe.h); each such wait is timed up to the GIL in hand, for the spin policy.
    const bool contended = gil_is_held_for(saved);
    const auto began = contended ? Clock::now() : Clock::time_point{};
    if (contended) g_gil_spin.spin_until([] { return !gil_is_held(); });
    try {
        PyEval_RestoreThread(saved);
        if (contended) g_gil_spin.record_wait(Clock::now() - began);
    } catch (abi::__forced_unwind&) {
        // Finalization began while this thread waited for the GIL (CPython < 3.14).
        park_forever();
    }
}

bool wait_slice_interruptibly(const std::function<bool(std::optional<Clock::time_point>)>& wait,
                              std::optional<Clock::time_point> deadline) {
    const bool on_main = on_main_thread();
    std::optional<Clock::time_point> slice = deadline;
    if (on_main) {
        auto tick = Clock::now() + kSignalTick;
        if (!slice || tick < *slice) slice = tick;
    }
    bool answer = without_gil([&] { return wait(slice); });
    if (on_main && PyErr_CheckSignals() != 0) throw py::error_already_set();
    return answer;
}

void run_pending_signal_handlers() {
    if (on_main_thread() && PyErr_CheckSignals() != 0) throw py::error_already_set();
}

bool wait_interruptibly(core::Waiter& w, std::optional<Clock::time_point> deadline) {
    auto wait = [&](std::optional<Clock::time_point> until) { return w.wait_until(until); };
    for (;;) {
        if (wait_slice_interruptibly(wait, deadline)) return true;
        if (deadline && Clock::now() >= *deadline) return false;
    }
}

}  // namespace cfutures::bindings
