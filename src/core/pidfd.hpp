// Process descriptors (pidfd): how cfutures learns at once that another process has exited.
//
// A pidfd becomes readable when its process exits, so it can sit in an epoll set or a poll()
// beside the pipes and sockets: no timeout, no SIGCHLD handler, no guessing from EOF (which a
// sibling forked from the same parent could hold open). Kernels older than 5.3 have no
// pidfd_open; open_pidfd() then returns -1 and the callers fall back to polling (waitid).
#pragma once

#include <sys/syscall.h>
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

}  // namespace cfutures::core
