// The worker process's end of its channel (protocol.hpp): blocking receive and send, and the
// watch that ends the worker when its pool process dies.
//
// A worker has nothing else to do while it waits, so its calls block (in poll, which the
// bindings call without the GIL). Besides its pipe, a receive watches a pidfd of the pool
// process: an idle worker leaves as soon as its pool is gone. A worker in the middle of a long
// task is not in recv(); for that case ParentWatch runs a detached thread blocked on its own
// pidfd of the pool: when the pool is gone and the worker is busy (running a task or its
// initializer), it sends the process SIGTERM (which a task's own handler may act on), and if the
// process is still there after `grace`, ends it with _exit. So no worker outlives its pool by
// more than the grace period.
//
// State shared with the watch thread is one atomic flag, owned jointly (shared_ptr) so that the
// watch may outlive its creator. No locks.
#pragma once

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "pidfd.hpp"
#include "protocol.hpp"

namespace cfutures::core {

class ParentWatch {
public:
    // Watches `pool_pid`; does nothing if there is no pidfd_open or the pool is already gone
    // (the worker's next receive then sees that).
    explicit ParentWatch(int pool_pid, std::chrono::milliseconds grace = std::chrono::seconds(2))
        : idle_(std::make_shared<std::atomic<bool>>(false)) {
        int fd = open_pidfd(pool_pid);
        if (fd < 0) return;
        std::thread([fd, grace, idle = idle_] {
            pollfd p{fd, POLLIN, 0};
            while (::poll(&p, 1, -1) < 0 && errno == EINTR) {}
            ::close(fd);
            // An idle worker's receive sees the death too and the process leaves by itself;
            // one that just took a task is caught on the next look.
            while (idle->load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            ::kill(::getpid(), SIGTERM);
            std::this_thread::sleep_for(grace);
            ::_exit(1);
        }).detach();
    }

    // Marks the worker as waiting for a task (true) or busy (false).
    void set_idle(bool idle) { idle_->store(idle); }

private:
    std::shared_ptr<std::atomic<bool>> idle_;
};

class WorkerEnd {
public:
    enum class Recv { Frame, Closed, PoolGone, Interrupted, Error };

    // The channel's descriptors (protocol.hpp: frames in, frames out, attachments) stay the
    // caller's; `pool_pid` is the pool process to watch (0: none). With
    // `end_if_orphaned_while_busy`, a ParentWatch ends the process if the pool dies during a task.
    WorkerEnd(int in_fd, int out_fd, int attachment_fd, int pool_pid, bool end_if_orphaned_while_busy = false)
        : in_fd_(in_fd), out_fd_(out_fd), attachment_fd_(attachment_fd), pool_fd_(open_pidfd(pool_pid)),
          reader_(Direction::FromParent, attachment_fd) {
        if (end_if_orphaned_while_busy) watch_.emplace(pool_pid);
        // The reader drains the pipe until EAGAIN; waiting is poll's job.
        for (int fd : {in_fd, out_fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    WorkerEnd(const WorkerEnd&) = delete;
    WorkerEnd& operator=(const WorkerEnd&) = delete;
    ~WorkerEnd() {
        if (pool_fd_ >= 0) ::close(pool_fd_);
    }

    // Blocks for the next frame. Interrupted: a signal arrived (the caller runs its handlers and
    // calls again). Closed: the parent closed the channel; PoolGone: the pool process died.
    Recv recv(IncomingFrame& out, std::string& error) {
        if (watch_) watch_->set_idle(true);
        Recv r = recv_idle(out, error);
        if (watch_) watch_->set_idle(false);
        return r;
    }

    // Blocks until `f` is written; false with `error` set if it cannot be. `f` is handed back
    // (its payload and attachments may need releasing where the caller chooses).
    bool send(OutgoingFrame&& f, std::string& error) { return send(f, error); }
    bool send(OutgoingFrame& f, std::string& error) {
        FrameWriter w(attachment_fd_);
        w.push(std::move(f));
        std::vector<OutgoingFrame> done;
        std::vector<FrameWriter::Unsendable> unsendable;
        bool ok = false;
        for (;;) {
            IoStatus s = w.flush(out_fd_, &done, &unsendable);
            if (!unsendable.empty()) {
                error = unsendable.front().error;
                f = std::move(unsendable.front().frame);
                return false;
            }
            if (s == IoStatus::Ok) {
                ok = true;
                break;
            }
            if (s != IoStatus::WouldBlock) {
                error = "the pool closed the channel";
                break;
            }
            pollfd p{out_fd_, POLLOUT, 0};
            if (::poll(&p, 1, -1) < 0 && errno != EINTR) {
                error = std::strerror(errno);
                break;
            }
        }
        if (!done.empty()) f = std::move(done.front());
        for (auto& left : w.take_all()) f = std::move(left);
        return ok;
    }

private:
    Recv recv_idle(IncomingFrame& out, std::string& error) {
        for (;;) {
            if (auto f = reader_.pop()) {
                out = std::move(*f);
                return Recv::Frame;
            }
            pollfd fds[2] = {{in_fd_, POLLIN, 0}, {pool_fd_, POLLIN, 0}};
            if (::poll(fds, pool_fd_ >= 0 ? 2 : 1, -1) < 0) {
                if (errno == EINTR) return Recv::Interrupted;
                error = std::strerror(errno);
                return Recv::Error;
            }
            if (fds[0].revents) {
                IoStatus s = reader_.fill(in_fd_);
                if (s == IoStatus::Error) {
                    error = reader_.error();
                    return Recv::Error;
                }
                if (s == IoStatus::Eof && !reader_.has_ready()) return Recv::Closed;
                continue;
            }
            if (pool_fd_ >= 0 && fds[1].revents) return Recv::PoolGone;
        }
    }

    int in_fd_, out_fd_, attachment_fd_;
    int pool_fd_;
    FrameReader reader_;
    std::optional<ParentWatch> watch_;
};

}  // namespace cfutures::core
