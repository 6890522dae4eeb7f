// SpinPolicy: whether a thread about to block should spin first, and for how long.
//
// Why spin at all: on this kind of VM a thread woken from a futex sleep runs again only after
// tens of microseconds (an idle vCPU sleeps deeply; a blocking pipe round trip between two
// processes costs about 40 us), so on an idle machine a short spin turns a wait of a few
// microseconds into a few microseconds. Why not always: when every core is busy, a spinning thread
// takes the CPU from the very thread it waits for, while the scheduler favours a thread that wakes
// from sleep over the busy ones; blocking at once is then faster (measured before this policy,
// with one busy process per core: a thread-pool round trip took 58 us spinning, 19 us with the
// stdlib, which always blocks).
//
// What is measured, and when it spins:
//   1. A free core. LoadGauge reads the number of runnable threads on the machine (the fourth
//      field of /proc/loadavg: an instantaneous count, not an average) at most once per
//      kLoadSampleInterval, by whichever waiter finds the sample stale. A core is free iff
//      runnable <= cores: the sampling thread, about to spin, counts itself, and so does the
//      thread it waits for if that one is running. Where /proc cannot be read, cores count as
//      free (the behaviour before this policy).
//   2. Recent waits at the site. Each SpinSite (one per kind of wait: a worker waiting for a task,
//      result() waiting for a future) records whether its spins end with the event (a hit) or
//      time out (a miss). After kMissesToStop misses in a row it stops spinning, and spins once
//      every kProbeEvery waits to find out whether waits got short again; a hit resumes spinning.
//   A wait spins (up to the site's budget) iff both hold; otherwise it blocks at once.
//
// Everything here is advisory and uses relaxed atomics: a stale or raced value costs at most one
// wait's spin or one futex sleep, never correctness (every waiter blocks after its spin, on the
// condition it waits for).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <thread>

#include "small_mutex.hpp"  // cpu_relax

namespace cfutures::core {

// The runnable-thread count in a /proc/loadavg line ("0.50 0.40 0.30 3/412 12345"), or -1 when
// the line does not have that shape.
inline long runnable_from_loadavg(std::string_view line) {
    std::size_t slash = line.find('/');
    if (slash == std::string_view::npos) return -1;
    std::size_t start = line.rfind(' ', slash);
    start = start == std::string_view::npos ? 0 : start + 1;
    if (start >= slash) return -1;
    long n = 0;
    for (std::size_t i = start; i < slash; ++i) {
        char c = line[i];
        if (c < '0' || c > '9') return -1;
        n = n * 10 + (c - '0');
    }
    return n;
}

// Whether spinning can use a core without taking it from anyone (see 1. above).
constexpr bool core_is_free(long runnable, long cores) { return runnable < 0 || runnable <= cores; }

class LoadGauge {
public:
    static constexpr auto kLoadSampleInterval = std::chrono::milliseconds(2);

    static LoadGauge& instance() {
        static LoadGauge* gauge = new LoadGauge;  // leaked: waiters may run during exit
        return *gauge;
    }

    bool core_free() {
        auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        auto due = next_sample_.load(std::memory_order_relaxed);
        if (now >= due && next_sample_.compare_exchange_strong(
                              due, now + std::chrono::nanoseconds(kLoadSampleInterval).count(),
                              std::memory_order_relaxed)) {
            free_.store(core_is_free(sample(), cores_), std::memory_order_relaxed);
        }
        return free_.load(std::memory_order_relaxed);
    }

    // Test seam: a gauge that always reports `free` (tests of the sites' own logic).
    void pin_for_tests(bool free) {
        next_sample_.store(INT64_MAX, std::memory_order_relaxed);
        free_.store(free, std::memory_order_relaxed);
    }
    void unpin_for_tests() { next_sample_.store(0, std::memory_order_relaxed); }

private:
    LoadGauge() {
        cpu_set_t set;
        CPU_ZERO(&set);
        cores_ = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                              : static_cast<long>(std::thread::hardware_concurrency());
        if (cores_ < 1) cores_ = 1;
        fd_ = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    }

    long sample() const {
        if (fd_ < 0) return -1;
        char buf[128];
        ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
        if (n <= 0) return -1;
        return runnable_from_loadavg(std::string_view(buf, static_cast<std::size_t>(n)));
    }

    long cores_ = 1;
    int fd_ = -1;
    std::atomic<std::int64_t> next_sample_{0};
    std::atomic<bool> free_{true};
};

class SpinSite {
public:
    static constexpr unsigned kMissesToStop = 4;
    static constexpr unsigned kProbeEvery = 16;

    constexpr explicit SpinSite(std::chrono::nanoseconds budget) : budget_(budget) {}

    // How long this wait may spin before it blocks: the site's budget, or zero.
    std::chrono::nanoseconds budget() {
        unsigned misses = misses_.load(std::memory_order_relaxed);
        if (misses >= kMissesToStop &&
            waits_since_stop_.fetch_add(1, std::memory_order_relaxed) % kProbeEvery != 0)
            return std::chrono::nanoseconds(0);
        if (!LoadGauge::instance().core_free()) return std::chrono::nanoseconds(0);
        return budget_;
    }

    // What the spin that budget() allowed came to: the event arrived during it, or not.
    void record(bool hit) {
        if (hit) {
            misses_.store(0, std::memory_order_relaxed);
            waits_since_stop_.store(0, std::memory_order_relaxed);
        } else {
            misses_.fetch_add(1, std::memory_order_relaxed);
        }
    }

    // Spins until `ready()`, the budget runs out or `cap` passes; returns ready() (and records
    // the outcome when it spun at all).
    template <class Ready>
    bool spin_until(Ready&& ready,
                    std::chrono::steady_clock::time_point cap = std::chrono::steady_clock::time_point::max()) {
        if (ready()) return true;
        return spin_for(budget(), ready, cap);
    }

    // The same with a budget the caller took from budget() (to skip releasing the GIL when it
    // is zero).
    template <class Ready>
    bool spin_for(std::chrono::nanoseconds budget, Ready&& ready,
                  std::chrono::steady_clock::time_point cap = std::chrono::steady_clock::time_point::max()) {
        if (budget.count() == 0) return ready();
        auto now = std::chrono::steady_clock::now();
        auto until = cap - now < budget ? cap : now + budget;
        unsigned n = 0;
        bool hit = false;
        for (;;) {
            if (ready()) {
                hit = true;
                break;
            }
            cpu_relax();
            if ((++n & 63) == 0 && std::chrono::steady_clock::now() >= until) break;
        }
        record(hit);
        return hit;
    }

private:
    const std::chrono::nanoseconds budget_;
    std::atomic<unsigned> misses_{0};
    std::atomic<unsigned> waits_since_stop_{0};
};

}  // namespace cfutures::core
