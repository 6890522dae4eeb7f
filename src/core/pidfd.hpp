// Process descriptors (pidfd): how cfutures learns at once that another process has exited.
//
// A pidfd becomes readable when its process exits, so it can sit in an epoll set or a poll()
// beside the pipes and sockets: no timeout, no SIGCHLD handler, no guessing from EOF (which a
// sibling forked from the same parent could hold open). Kernels older than 5.3 have no
// pidfd_open; open_pidfd() then returns -1 and the callers fall back to polling (waitid).
// The waitid() checks below never reap: WNOWAIT leaves that to the process's owner (in the
// bindings, multiprocessing's Process.join()). This header is the process pool's only door to the
// OS calls on its children (pidfd_open, waitid, kill); manager_events.hpp holds epoll and eventfd.
#pragma once

#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cfutures::core {

// A new pidfd for `pid` (close-on-exec), or -1 when the kernel has none or the process is gone.
inline int open_pidfd(int pid) {
#ifdef SYS_pidfd_open
    if (pid <= 0) return -1;
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) return static_cast<int>(fd);
#else
    (void)pid;
#endif
    return -1;
}

// Whether child `pid` has exited (not reaped yet).
inline bool child_exited(int pid) {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

// The exit status of an exited, not yet reaped child, as multiprocessing reports it (-N for
// signal N); false when it has not exited or is not this process's child (a forkserver's).
inline bool child_exit_code(int pid, int& code) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != pid)
        return false;
    code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    return true;
}

// Sends `sig` to child `pid`. An exited child stays a zombie until its owner reaps it, so the pid
// cannot be reused under us while the pool still holds it; a failure (ESRCH) needs no handling.
inline void signal_child(int pid, int sig) {
    if (pid > 0) ::kill(pid, sig);
}

}  // namespace cfutures::core
