// ManagerEvents: what the process pool's manager thread sleeps on: one epoll set over the
// workers' descriptors (answers readable, the task pipe writable again, the pidfd of an exit)
// and an eventfd that any thread writes to wake it. The only place the pool calls epoll.
//
// Thread-safety: wake() from any thread; everything else from the manager thread, or before it
// starts. Each watched descriptor carries (worker id, kind) in its event.
//
// Wakes are coalesced: wake() writes the eventfd only when no earlier wake is pending (not yet
// drained by wait()). A submit loop used to pay one write(2) per task on the submitting thread
// (20,000 for 20,000 tasks, `perf record -e raw_syscalls:sys_enter` over the bench's process
// submit+result row, Intel Xeon). No wake is lost: wait() clears the flag after draining, and
// the manager then takes the pool's lock and looks at everything; a waker that still saw the
// flag set changed its state under that lock before, so the manager sees it (were its change
// after the manager's look, its exchange would have come after the clear, and read false).
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include <vector>

namespace cfutures::core {

class ManagerEvents {
public:
    enum Kind : std::uint64_t { kResults = 0, kTasks = 1, kExit = 2 };
    struct Event {
        bool wake;         // the eventfd (drained already); id and kind mean nothing then
        std::uint32_t id;  // the worker's
        Kind kind;
    };

    ManagerEvents() {
        wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (wake_fd_ < 0 || epoll_fd_ < 0) {
            int err = errno;
            close_all();
            throw std::system_error(err, std::generic_category());
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kWakeTag;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    }
    ManagerEvents(const ManagerEvents&) = delete;
    ManagerEvents& operator=(const ManagerEvents&) = delete;
    ~ManagerEvents() { close_all(); }

    void wake() {
        if (wake_pending_.exchange(true)) return;
        std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }

    void watch(int fd, std::uint32_t events, std::uint32_t id, Kind kind) { control(EPOLL_CTL_ADD, fd, events, id, kind); }
    void change(int fd, std::uint32_t events, std::uint32_t id, Kind kind) { control(EPOLL_CTL_MOD, fd, events, id, kind); }
    void forget(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

    // Sleeps up to timeout_ms (-1: until an event) and returns what happened; an interrupted
    // wait returns nothing.
    std::vector<Event> wait(int timeout_ms) {
        epoll_event raw[64];
        int n = ::epoll_wait(epoll_fd_, raw, 64, timeout_ms);
        if (n < 0) {
            if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "epoll_wait");
            n = 0;
        }
        std::vector<Event> out;
        out.reserve(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) {
            if (raw[i].data.u64 == kWakeTag) {
                std::uint64_t v;
                while (::read(wake_fd_, &v, sizeof v) > 0) {
                }
                wake_pending_.store(false);
                out.push_back({true, 0, kResults});
                continue;
            }
            out.push_back({false, static_cast<std::uint32_t>(raw[i].data.u64 >> 2),
                           static_cast<Kind>(raw[i].data.u64 & 3)});
        }
        return out;
    }

private:
    static constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};

    void control(int op, int fd, std::uint32_t events, std::uint32_t id, Kind kind) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = (std::uint64_t{id} << 2) | kind;
        ::epoll_ctl(epoll_fd_, op, fd, &ev);
    }
    void close_all() {
        if (wake_fd_ >= 0) ::close(wake_fd_);
        if (epoll_fd_ >= 0) ::close(epoll_fd_);
    }

    int wake_fd_ = -1;
    int epoll_fd_ = -1;
    std::atomic<bool> wake_pending_{false};  // the eventfd was written and not yet drained
};

}  // namespace cfutures::core
