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
//   1. A free core. LoadGauge measures, over the last kLoadSampleInterval, how many cores the
//      rest of the machine kept busy: the machine's busy time (/proc/stat: user, nice, system,
//      irq, softirq and steal, since a VM's stolen time is not ours to use either) minus this
//      process's own CPU time (getrusage), divided by the wall time. Spinning pays while the
//      others leave more than one core: others_busy < cores - 1 (on 2 cores: less than one
//      busy core). The estimate is noisy by up to about 0.8 core while this process blocks a
//      lot (the kernel's wake-up work counts as nobody's, and /proc/stat is sampled at each
//      tick while getrusage is exact), which a tighter bound mistook for load. It is sampled by
//      whichever waiter finds the sample stale, at most once per interval. The instantaneous
//      runnable count (/proc/loadavg) was tried first and misjudged an idle VM as loaded: kernel
//      threads there count as runnable while using no CPU. Where /proc cannot be read, cores
//      count as free (the behaviour before this policy).
//   2. Recent waits at the site. Each SpinSite (one per kind of wait: a worker waiting for a task,
//      result() waiting for a future) is told how long each of its waits took, spun or blocked.
//      After kLongWaitsToStop waits in a row longer than kLongWait (a worker fed every few
//      milliseconds, result() on long tasks) it stops spinning; the next shorter wait resumes
//      it. Counting only spins that caught their event was tried first: two threads that wait
//      for each other (a round trip) each missed while the other blocked, and both stayed
//      blocked.
//   A wait spins (up to the site's budget) iff both hold; otherwise it blocks at once.
//
// Everything here is advisory and uses relaxed atomics: a stale or raced value costs at most one
// wait's spin or one futex sleep, never correctness (every waiter blocks after its spin, on the
// condition it waits for).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <thread>

#include "small_mutex.hpp"  // cpu_relax

namespace cfutures::core {

// The busy and total jiffies of the first line of /proc/stat ("cpu  user nice system idle iowait
// irq softirq steal ..."), or false when the line does not have that shape.
inline bool busy_jiffies_from_stat(std::string_view text, std::uint64_t& busy, std::uint64_t& total) {
    if (text.substr(0, 4) != "cpu ") return false;
    std::uint64_t field[8] = {};
    std::size_t i = 4, n = 0;
    while (n < 8 && i < text.size() && text[i] != '\n') {
        while (i < text.size() && text[i] == ' ') ++i;
        if (i >= text.size() || text[i] < '0' || text[i] > '9') break;
        std::uint64_t v = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') v = v * 10 + static_cast<std::uint64_t>(text[i++] - '0');
        field[n++] = v;
    }
    if (n < 4) return false;
    // user nice system idle iowait irq softirq steal
    busy = field[0] + field[1] + field[2] + field[5] + field[6] + field[7];
    total = busy + field[3] + field[4];
    return true;
}

// Whether spinning can use a core without taking it from anyone (see 1. above).
constexpr bool core_is_free(double others_busy_cores, long cores) {
    return others_busy_cores < static_cast<double>(cores) - 1.0;
}

class LoadGauge {
public:
    static constexpr auto kLoadSampleInterval = std::chrono::milliseconds(100);

    static LoadGauge& instance() {
        static LoadGauge* gauge = new LoadGauge;  // leaked: waiters may run during exit
        return *gauge;
    }

    bool core_free() {
        auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        if (now >= next_sample_.load(std::memory_order_relaxed) && sample_mu_.try_lock()) {
            // One sampler at a time, the others go on with the last answer.
            if (now >= next_sample_.load(std::memory_order_relaxed)) {
                next_sample_.store(now + std::chrono::nanoseconds(kLoadSampleInterval).count(),
                                   std::memory_order_relaxed);
                sample(now);
            }
            sample_mu_.unlock();
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
        ticks_per_second_ = ::sysconf(_SC_CLK_TCK);
        fd_ = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
    }

    // One sample, under sample_mu_ (which guards the previous values).
    void sample(std::int64_t now_ns) {
        if (fd_ < 0 || ticks_per_second_ <= 0) return;
        char buf[256];
        ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
        std::uint64_t busy = 0, total = 0;
        if (n <= 0 || !busy_jiffies_from_stat(std::string_view(buf, static_cast<std::size_t>(n)), busy, total)) return;
        rusage self{};
        ::getrusage(RUSAGE_SELF, &self);
        double own = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                     static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) * 1e-6;
        if (last_ns_ != 0 && now_ns > last_ns_) {
            double wall = static_cast<double>(now_ns - last_ns_) * 1e-9;
            double machine = static_cast<double>(busy - last_busy_) / static_cast<double>(ticks_per_second_);
            double others = (machine - (own - last_own_)) / wall;
            free_.store(core_is_free(others, cores_), std::memory_order_relaxed);
        }
        last_ns_ = now_ns;
        last_busy_ = busy;
        last_own_ = own;
    }

    long cores_ = 1;
    long ticks_per_second_ = 0;
    int fd_ = -1;
    std::atomic<std::int64_t> next_sample_{0};
    std::atomic<bool> free_{true};
    std::mutex sample_mu_;
    std::int64_t last_ns_ = 0;
    std::uint64_t last_busy_ = 0;
    double last_own_ = 0;
};

class SpinSite {
public:
    static constexpr auto kLongWait = std::chrono::milliseconds(1);
    static constexpr unsigned kLongWaitsToStop = 4;

    constexpr explicit SpinSite(std::chrono::nanoseconds budget) : budget_(budget) {}

    // How long this wait may spin before it blocks: the site's budget, or zero.
    std::chrono::nanoseconds budget() {
        if (long_waits_.load(std::memory_order_relaxed) >= kLongWaitsToStop) return std::chrono::nanoseconds(0);
        if (!LoadGauge::instance().core_free()) return std::chrono::nanoseconds(0);
        return budget_;
    }

    // How long a wait at this site took, from its start to its event, spun or blocked.
    void record_wait(std::chrono::nanoseconds took) {
        if (took > kLongWait) {
            if (long_waits_.load(std::memory_order_relaxed) < kLongWaitsToStop)
                long_waits_.fetch_add(1, std::memory_order_relaxed);
        } else {
            long_waits_.store(0, std::memory_order_relaxed);
        }
    }

    // Spins until `ready()`, the budget runs out or `cap` passes; returns ready().
    template <class Ready>
    bool spin_until(Ready&& ready,
                    std::chrono::steady_clock::time_point cap = std::chrono::steady_clock::time_point::max()) {
        if (ready()) return true;
        return spin_for(budget(), ready, cap);
    }

    // The same with a budget the caller took from budget() (to skip releasing the GIL when it
    // is zero).
    template <class Ready>
    static bool spin_for(std::chrono::nanoseconds budget, Ready&& ready,
                         std::chrono::steady_clock::time_point cap = std::chrono::steady_clock::time_point::max()) {
        if (budget.count() == 0) return ready();
        auto now = std::chrono::steady_clock::now();
        auto until = cap - now < budget ? cap : now + budget;
        unsigned n = 0;
        for (;;) {
            if (ready()) return true;
            cpu_relax();
            if ((++n & 63) == 0 && std::chrono::steady_clock::now() >= until) return false;
        }
    }

private:
    const std::chrono::nanoseconds budget_;
    std::atomic<unsigned> long_waits_{0};
};

}  // namespace cfutures::core
