// ParentWatch: ends a worker process whose pool process died while the worker was busy.
//
// A worker waiting for its next task notices the pool's death itself (recv_frame watches the
// pool's pidfd). A worker in the middle of a long task does not: without this it would run to
// the end of the task with nobody to take the result, and outlive its pool by that long. So a
// detached thread blocks on a pidfd of the pool process; when the pool is gone and the worker is
// not waiting in recv_frame (`idle` is false: running a task or its initializer), it sends the process SIGTERM (which a task's own
// handler may act on), and, if the process is still there after `grace`, ends it with _exit.
//
// The state shared with the thread is one atomic flag, owned jointly (shared_ptr) so that the
// watch may outlive whoever created it. Nothing here needs a lock.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <thread>

namespace cfutures::core {

class ParentWatch {
public:
    // Watches `pool_pid`; does nothing if the kernel has no pidfd_open or the pool is already
    // gone (the worker's first recv then sees that).
    ParentWatch(int pool_pid, std::chrono::milliseconds grace = std::chrono::seconds(2))
        : idle_(std::make_shared<std::atomic<bool>>(false)) {
#ifdef SYS_pidfd_open
        int fd = pool_pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pool_pid, 0)) : -1;
        if (fd < 0) return;
        std::thread([fd, grace, idle = idle_] {
            pollfd p{fd, POLLIN, 0};
            while (::poll(&p, 1, -1) < 0 && errno == EINTR) {}
            ::close(fd);
            // An idle worker's recv_frame sees the death too and the process leaves by itself;
            // one that just took a task is caught on the next look.
            while (idle->load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            ::kill(::getpid(), SIGTERM);
            std::this_thread::sleep_for(grace);
            ::_exit(1);
        }).detach();
#else
        (void)pool_pid;
        (void)grace;
#endif
    }

    // Marks the worker as waiting for a task (true) or running one (false).
    void set_idle(bool idle) { idle_->store(idle); }

private:
    std::shared_ptr<std::atomic<bool>> idle_;
};

}  // namespace cfutures::core
