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
//      busy core), where `cores` is what this process may use, not what the host has
//      (cpu_limits.hpp: the affinity mask capped by the cgroup's CPU quota, read again every
//      second). With fewer than two usable CPUs it never spins: `taskset -c 0`, or a container
//      limited to 0.5 CPU, where a spin only burns the quota the awaited thread needs. The estimate is noisy by up to about 0.8 core while this process blocks a
//      lot (the kernel's wake-up work counts as nobody's, and /proc/stat is sampled at each
//      tick while getrusage is exact), which a tighter bound mistook for load. It is sampled by
//      whichever waiter finds the sample stale, at most once per interval. The instantaneous
//      runnable count (/proc/loadavg) was tried first and misjudged an idle VM as loaded: kernel
//      threads there count as runnable while using no CPU. Where /proc cannot be read, cores
//      count as free (the behaviour before this policy).
//      A process pool is one job spread over processes: its workers' CPU time is not load to
//      the pool process, nor the pool's (and the other workers') to a worker. Without that, a
//      round trip's two spinners each saw the other as a busy core and both stopped spinning
//      (a 1-worker round trip went from 20 us to 55 us). The pool registers its workers
//      (add_relative); a worker counts its pool and its parent's children (count_family_of).
//      Their CPU time is read from /proc/PID/stat, in clock ticks.
//   2. Nobody waits for a CPU. A free core by the measure above is not enough when this
//      process and its relatives alone want more CPUs than there are: two busy workers, the
//      thread submitting to them and the pool's manager on 2 cores, where a worker that spins
//      between tasks takes the CPU from the submitter (submit+result of small tasks lost a
//      quarter of its throughput). The kernel's CPU pressure (/proc/pressure/cpu, "some":
//      the share of time at least one runnable task waited for a CPU) tells: spinning pays
//      while its recent average (kPressureWeight per 10 ms sample) stays under
//      kMaxCpuPressure. Measured on this 2-core VM: 0.1 to 0.25 during a process-pool round
//      trip with both ends spinning (the manager thread wakes onto a spinner's core), 0.5 to
//      0.6 during small-task throughput, whether the workers spin or not. Without PSI (an
//      older kernel) this test passes.
//   3. Recent waits at the site. Each SpinSite (one per kind of wait: a worker waiting for a task,
//      result() waiting for a future) is told how long each of its waits took, spun or blocked.
//      After kLongWaitsToStop waits in a row longer than kLongWait (a worker fed every few
//      milliseconds, result() on long tasks) it stops spinning; the next shorter wait resumes
//      it. Counting only spins that caught their event was tried first: two threads that wait
//      for each other (a round trip) each missed while the other blocked, and both stayed
//      blocked.
//   A wait spins (up to the site's budget) iff all three hold; otherwise it blocks at once.
//
// Everything here is advisory and uses relaxed atomics: a stale or raced value costs at most one
// wait's spin or one futex sleep, never correctness (every waiter blocks after its spin, on the
// condition it waits for).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <dirent.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cpu_limits.hpp"
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

// A process's CPU time in clock ticks (utime + stime) from its /proc/PID/stat text, or false.
// The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
inline bool process_ticks_from_stat(std::string_view text, std::uint64_t& ticks) {
    std::size_t close = text.rfind(')');
    if (close == std::string_view::npos) return false;
    std::size_t i = close + 1;
    std::uint64_t utime = 0;
    // After ')': state is field 3; utime and stime are fields 14 and 15.
    for (int field = 3; field <= 15; ++field) {
        while (i < text.size() && text[i] == ' ') ++i;
        std::size_t start = i;
        while (i < text.size() && text[i] != ' ' && text[i] != '\n') ++i;
        if (start == i) return false;
        if (field < 14) continue;
        std::uint64_t v = 0;
        for (std::size_t k = start; k < i; ++k) {
            if (text[k] < '0' || text[k] > '9') return false;
            v = v * 10 + static_cast<std::uint64_t>(text[k] - '0');
        }
        if (field == 14) utime = v;
        else ticks = utime + v;
    }
    return true;
}

// The cumulative stall time ("some ... total=" in microseconds) of /proc/pressure/cpu, or false.
inline bool cpu_stall_us_from_pressure(std::string_view text, std::uint64_t& total_us) {
    if (text.substr(0, 5) != "some ") return false;
    std::size_t at = text.find("total=");
    std::size_t eol = text.find('\n');
    if (at == std::string_view::npos || (eol != std::string_view::npos && at > eol)) return false;
    std::size_t i = at + 6;
    if (i >= text.size() || text[i] < '0' || text[i] > '9') return false;
    std::uint64_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') v = v * 10 + static_cast<std::uint64_t>(text[i++] - '0');
    total_us = v;
    return true;
}

constexpr double kMaxCpuPressure = 0.3;
constexpr double kPressureWeight = 0.25;

// Whether spinning can use a core without taking it from anyone (see 1. above).
constexpr bool core_is_free(double others_busy_cores, long cores) {
    return others_busy_cores < static_cast<double>(cores) - 1.0;
}

class LoadGauge {
public:
    static constexpr auto kLoadSampleInterval = std::chrono::milliseconds(100);
    // CPU pressure is exact to the microsecond and reacts to this process's own spinning, so it
    // is looked at more often than the busy time, which counts in 10 ms clock ticks.
    static constexpr auto kPressureSampleInterval = std::chrono::milliseconds(10);

    static LoadGauge& instance() {
        static LoadGauge* gauge = new LoadGauge;  // leaked: waiters may run during exit
        return *gauge;
    }

    bool core_free() {
        auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        if (now >= next_pressure_sample_.load(std::memory_order_relaxed) && sample_mu_.try_lock()) {
            // One sampler at a time, the others go on with the last answer.
            if (now >= next_pressure_sample_.load(std::memory_order_relaxed)) {
                next_pressure_sample_.store(now + std::chrono::nanoseconds(kPressureSampleInterval).count(),
                                            std::memory_order_relaxed);
                sample_pressure(now);
                if (now >= next_sample_.load(std::memory_order_relaxed)) {
                    next_sample_.store(now + std::chrono::nanoseconds(kLoadSampleInterval).count(),
                                       std::memory_order_relaxed);
                    sample(now);
                }
            }
            sample_mu_.unlock();
        }
        return free_.load(std::memory_order_relaxed) && !pressed_.load(std::memory_order_relaxed);
    }

    // `pid` is a worker of this process's pool: its CPU time is ours (see 1. above).
    void add_relative(int pid) {
        std::uint64_t ticks = 0;
        bool known = read_process_ticks(pid, ticks);  // its baseline: its CPU time from now on is ours
        std::lock_guard<std::mutex> g(sample_mu_);
        relatives_.push_back(pid);
        if (known) last_relative_ticks_[pid] = ticks;
    }
    void remove_relative(int pid) {
        std::lock_guard<std::mutex> g(sample_mu_);
        relatives_.erase(std::remove(relatives_.begin(), relatives_.end(), pid), relatives_.end());
    }
    // This process is a worker of the pool process `pool_pid`: the pool's CPU time and that of
    // its parent's other children (its sibling workers) are ours.
    void count_family_of(int pool_pid) {
        std::lock_guard<std::mutex> g(sample_mu_);
        family_of_ = pool_pid;
    }

    // The CPU limits the policy counts on (cpu_limits.hpp), read again if the last reading is
    // stale.
    CpuLimits limits() {
        std::lock_guard<std::mutex> g(sample_mu_);
        auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        if (now >= next_limits_ns_) refresh_limits(now);
        return limits_;
    }

    // Test seam: a gauge that always reports `free` (tests of the sites' own logic).
    void pin_for_tests(bool free) {
        next_pressure_sample_.store(INT64_MAX, std::memory_order_relaxed);
        free_.store(free, std::memory_order_relaxed);
        pressed_.store(false, std::memory_order_relaxed);
    }
    void unpin_for_tests() {
        next_sample_.store(0, std::memory_order_relaxed);
        next_pressure_sample_.store(0, std::memory_order_relaxed);
    }

private:
    LoadGauge() {
        refresh_limits(std::chrono::steady_clock::now().time_since_epoch().count());
        ticks_per_second_ = ::sysconf(_SC_CLK_TCK);
        fd_ = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
        pressure_fd_ = ::open("/proc/pressure/cpu", O_RDONLY | O_CLOEXEC);
        // A forked child starts afresh: its own CPU time restarts at zero, its relatives are not
        // its parent's, and another thread of the parent may have held sample_mu_ at the fork.
        ::pthread_atfork(nullptr, nullptr, [] { instance().after_fork_in_child(); });
    }

    void after_fork_in_child() {
        // Made anew, not cleared: the parent may have been changing them at the fork (the old
        // ones leak).
        new (&sample_mu_) std::mutex;
        new (&relatives_) std::vector<int>;
        new (&last_relative_ticks_) std::unordered_map<int, std::uint64_t>;
        family_of_ = 0;
        last_ns_ = 0;
        last_pressure_ns_ = 0;
        pressure_ = -1;
        next_sample_.store(0, std::memory_order_relaxed);
        next_pressure_sample_.store(0, std::memory_order_relaxed);
    }

    static bool read_small_file(const std::string& path, std::string& out) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return false;
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        ::close(fd);
        if (n <= 0) return false;
        out.assign(buf, static_cast<std::size_t>(n));
        return true;
    }

    static bool read_process_ticks(int pid, std::uint64_t& ticks) {
        std::string text;
        return read_small_file("/proc/" + std::to_string(pid) + "/stat", text) && process_ticks_from_stat(text, ticks);
    }

    // The children of `pid` (of each of its threads: /proc/PID/task/TID/children).
    static void children_of(int pid, std::vector<int>& out) {
        std::string dir = "/proc/" + std::to_string(pid) + "/task";
        DIR* d = ::opendir(dir.c_str());
        if (!d) return;
        std::string text;
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            if (!read_small_file(dir + "/" + e->d_name + "/children", text)) continue;
            int v = 0;
            bool in_number = false;
            for (char c : text) {
                if (c >= '0' && c <= '9') {
                    v = v * 10 + (c - '0');
                    in_number = true;
                } else if (in_number) {
                    out.push_back(v);
                    v = 0;
                    in_number = false;
                }
            }
            if (in_number) out.push_back(v);
        }
        ::closedir(d);
    }

    // The relatives' CPU seconds since the last sample, under sample_mu_. A relative seen for
    // the first time only sets its baseline.
    double relatives_cpu_seconds_locked() {
        std::vector<int> pids = relatives_;
        if (family_of_ > 0) {
            pids.push_back(family_of_);
            children_of(static_cast<int>(::getppid()), pids);
        }
        std::sort(pids.begin(), pids.end());
        pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
        int self = static_cast<int>(::getpid());
        std::unordered_map<int, std::uint64_t> now;
        std::uint64_t delta = 0;
        for (int pid : pids) {
            std::uint64_t ticks = 0;
            if (pid == self || !read_process_ticks(pid, ticks)) continue;
            now[pid] = ticks;
            auto last = last_relative_ticks_.find(pid);
            if (last != last_relative_ticks_.end() && ticks > last->second) delta += ticks - last->second;
        }
        last_relative_ticks_ = std::move(now);
        return static_cast<double>(delta) / static_cast<double>(ticks_per_second_);
    }

    // The CPU pressure since the last look, under sample_mu_.
    void sample_pressure(std::int64_t now_ns) {
        if (pressure_fd_ < 0) return;
        char buf[256];
        ssize_t n = ::pread(pressure_fd_, buf, sizeof buf - 1, 0);
        std::uint64_t stalled_us = 0;
        if (n <= 0 || !cpu_stall_us_from_pressure(std::string_view(buf, static_cast<std::size_t>(n)), stalled_us)) return;
        if (last_pressure_ns_ != 0 && now_ns > last_pressure_ns_) {
            double share = static_cast<double>(stalled_us - last_stalled_us_) * 1e3 /
                           static_cast<double>(now_ns - last_pressure_ns_);
            pressure_ = pressure_ < 0 ? share : pressure_ + kPressureWeight * (share - pressure_);
            pressed_.store(pressure_ >= kMaxCpuPressure, std::memory_order_relaxed);
        }
        last_pressure_ns_ = now_ns;
        last_stalled_us_ = stalled_us;
    }

    // One sample of the busy time, under sample_mu_ (which guards the previous values).
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
        double relatives = relatives_cpu_seconds_locked();
        if (now_ns >= next_limits_ns_) refresh_limits(now_ns);
        if (last_ns_ != 0 && now_ns > last_ns_) {
            double wall = static_cast<double>(now_ns - last_ns_) * 1e-9;
            double machine = static_cast<double>(busy - last_busy_) / static_cast<double>(ticks_per_second_);
            double others = (machine - (own - last_own_) - relatives) / wall;
            free_.store(core_is_free(others, limits_.usable_cpus), std::memory_order_relaxed);
        }
        last_ns_ = now_ns;
        last_busy_ = busy;
        last_own_ = own;
    }

    // Under sample_mu_ (or in the constructor). A process can be moved into another cgroup, or
    // its limits changed, while it runs: they are read again every kLimitsInterval.
    void refresh_limits(std::int64_t now_ns) {
        limits_ = read_cpu_limits();
        next_limits_ns_ = now_ns + std::chrono::nanoseconds(kLimitsInterval).count();
        if (limits_.usable_cpus < 2) free_.store(false, std::memory_order_relaxed);
    }
    static constexpr auto kLimitsInterval = std::chrono::seconds(1);

    long ticks_per_second_ = 0;
    int fd_ = -1;
    int pressure_fd_ = -1;  // -1: no PSI
    std::atomic<std::int64_t> next_sample_{0};
    std::atomic<bool> free_{true};
    std::atomic<std::int64_t> next_pressure_sample_{0};
    std::atomic<bool> pressed_{false};
    std::mutex sample_mu_;  // guards what follows
    std::vector<int> relatives_;
    int family_of_ = 0;
    std::unordered_map<int, std::uint64_t> last_relative_ticks_;
    CpuLimits limits_;
    std::int64_t next_limits_ns_ = 0;
    std::int64_t last_ns_ = 0;
    std::int64_t last_pressure_ns_ = 0;
    double pressure_ = -1;  // recent CPU pressure (EWMA); -1: none yet
    std::uint64_t last_stalled_us_ = 0;
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
