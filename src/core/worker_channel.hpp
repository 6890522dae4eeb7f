// The worker process's end of its channel (protocol.hpp): blocking receive and send, and the
// watch that ends the worker when its pool process dies.
//
// A worker has nothing else to do while it waits, so its calls block (in poll, which the
// bindings call without the GIL), after a short spin when the spin policy allows (kIdleSpin).
// Besides its pipe, a receive watches a pidfd of the pool process: an idle worker leaves as soon
// as its pool is gone. A worker in the middle of a long
// task is not in recv(); for that case ParentWatch runs a detached thread blocked on its own
// pidfd of the pool: when the pool is gone and the worker is busy (running a task or its
// initializer), it sends the process SIGTERM (which a task's own handler may act on), and if the
// process is still there after `grace`, ends it with _exit. So no worker outlives its pool by
// more than the grace period.
//
// State shared with the watch thread is one atomic flag, owned jointly (shared_ptr) so that the
// watch may outlive its creator. No locks.
//
// Giving tasks back. The pool sends tasks ahead of the one a worker runs, and may ask for them
// back (Revoke) when another worker idles while this one runs a long task. Tasks wait in the
// worker's memory (read ahead into `pending_`), so only the worker can give them back, and its
// main thread is busy: once a task has run kEngageAfter, the revoker thread reads the pipe in its
// stead, removes each revoked task that has not started and answers Revoked. While the main
// thread waits for a task it reads the pipe itself (no hand-over on the path of a small task).
// The revoker looks at the main thread every kLookEvery instead of being woken at each task: a
// wake-up per task cost the small-task throughput a core's worth of context switches.
// `mu_` guards the reader, `pending_`, `busy_`, `busy_since_`, `closing_` and the reader's end
// state; `send_mu_` orders whole frames on the pipe to the parent (answers from the main
// thread, Revoked from the revoker).
#pragma once

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pidfd.hpp"
#include "frame_io.hpp"
#include "spin_policy.hpp"

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

    // How long a task runs before the revoker thread starts reading the pipe for Revoke frames,
    // and how often the revoker looks (so a task may run up to their sum before it does).
    static constexpr auto kEngageAfter = std::chrono::milliseconds(1);
    static constexpr auto kLookEvery = std::chrono::milliseconds(10);
    // How long an idle worker reads its pipe without blocking before it sleeps in poll, when
    // the spin policy allows (spin_policy.hpp): a task that comes within it starts at once,
    // where a wake-up from poll costs tens of microseconds on an idle VM.
    static constexpr auto kIdleSpin = std::chrono::microseconds(50);

    // The channel's descriptors (protocol.hpp: frames in, frames out, attachments) stay the
    // caller's; `pool_pid` is the pool process to watch (0: none). With
    // `end_if_orphaned_while_busy`, a ParentWatch ends the process if the pool dies during a task.
    WorkerEnd(int in_fd, int out_fd, int attachment_fd, int pool_pid, bool end_if_orphaned_while_busy = false)
        : in_fd_(in_fd), out_fd_(out_fd), attachment_fd_(attachment_fd), pool_fd_(open_pidfd(pool_pid)),
          reader_(Direction::FromParent, attachment_fd) {
        if (end_if_orphaned_while_busy) watch_.emplace(pool_pid);
        if (pool_pid > 0) LoadGauge::instance().count_family_of(pool_pid);
        // The reader drains the pipe until EAGAIN; waiting is poll's job.
        for (int fd : {in_fd, out_fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    WorkerEnd(const WorkerEnd&) = delete;
    WorkerEnd& operator=(const WorkerEnd&) = delete;
    ~WorkerEnd() {
        stop_revoker();
        if (pool_fd_ >= 0) ::close(pool_fd_);
    }

    // Blocks for the next frame (Revoke frames are handled here, never returned). Interrupted: a
    // signal arrived (the caller runs its handlers and calls again). Closed: the parent closed
    // the channel; PoolGone: the pool process died. A Task returned counts as started.
    Recv recv(IncomingFrame& out, std::string& error) {
        // The revoker starts once a first task has run, off the path of the pool's first
        // result. Until then the pool sends a worker nothing ahead, unless it measured task
        // times on other workers already (a replacement worker); a Revoke that comes then is
        // served by this thread when the task ends, later but still correctly.
        if (took_a_task_ && !revoker_.joinable()) revoker_ = std::thread([this] { revoker_loop(); });
        if (watch_) watch_->set_idle(true);
        {
            std::lock_guard<std::mutex> g(mu_);
            busy_ = false;
        }
        auto began = std::chrono::steady_clock::now();
        Recv r = recv_idle(out, error);
        if (r == Recv::Frame) idle_spin_.record_wait(std::chrono::steady_clock::now() - began);
        if (r == Recv::Frame && out.kind == FrameKind::Task) {
            took_a_task_ = true;
            std::lock_guard<std::mutex> g(mu_);
            busy_ = true;
            busy_since_ = std::chrono::steady_clock::now();
        }
        if (watch_) watch_->set_idle(false);
        return r;
    }

    // Tells the pool that this worker is set up (its initializer ran) and takes tasks now: the
    // pool counts a task's time from here, not from when it was sent (process_pool.hpp).
    bool announce_ready(std::string& error) { return send(OutgoingFrame::make(FrameKind::Ready, 0, ""), error); }

    // Blocks until `f` is written; false with `error` set if it cannot be. `f` is handed back
    // (its payload and attachments may need releasing where the caller chooses). Exiting is the
    // last frame the pool accepts: the revoker thread is stopped before it goes, so that no
    // Revoked follows it (a worker leaving early, max_worker_memory, still has tasks sent ahead
    // that the pool may ask back meanwhile).
    bool send(OutgoingFrame&& f, std::string& error) { return send(f, error); }
    bool send(OutgoingFrame& f, std::string& error) {
        if (f.kind == FrameKind::Exiting) stop_revoker();
        std::lock_guard<std::mutex> g(send_mu_);
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
    // Ends the revoker thread (a Revoked it is sending goes first); the main thread's calls.
    void stop_revoker() {
        {
            std::lock_guard<std::mutex> g(mu_);
            closing_ = true;
        }
        cv_.notify_all();
        if (revoker_.joinable()) revoker_.join();
    }

    Recv recv_idle(IncomingFrame& out, std::string& error) {
        bool spun = false;
        for (;;) {
            std::vector<std::uint64_t> revoked;
            bool got = false;
            IoStatus ended;
            {
                std::lock_guard<std::mutex> g(mu_);
                take_frames_locked(revoked);
                if (!pending_.empty()) {
                    out = std::move(pending_.front());
                    pending_.pop_front();
                    got = true;
                }
                ended = ended_;
                if (ended == IoStatus::Error) error = reader_.error();
            }
            answer_revoked(revoked);
            if (got) return Recv::Frame;
            if (ended == IoStatus::Error) return Recv::Error;
            if (ended != IoStatus::Ok) return Recv::Closed;
            if (!spun) {
                spun = true;
                if (spin_for_frame()) continue;
            }
            pollfd fds[2] = {{in_fd_, POLLIN, 0}, {pool_fd_, POLLIN, 0}};
            if (::poll(fds, pool_fd_ >= 0 ? 2 : 1, -1) < 0) {
                if (errno == EINTR) return Recv::Interrupted;
                error = std::strerror(errno);
                return Recv::Error;
            }
            if (fds[0].revents) {
                std::lock_guard<std::mutex> g(mu_);
                fill_locked();
                continue;
            }
            if (pool_fd_ >= 0 && fds[1].revents) return Recv::PoolGone;
        }
    }

    // Reads the pipe without blocking until a frame or the end of the stream is there, for as
    // long as the spin policy allows (kIdleSpin at most).
    bool spin_for_frame() {
        return SpinSite::spin_for(idle_spin_.budget(), [&] {
            std::lock_guard<std::mutex> g(mu_);
            fill_locked();
            return reader_.has_ready() || ended_ != IoStatus::Ok;
        });
    }

    // Reads what the pipe has; the end of the stream or an error is kept (frames read before it
    // are still taken first).
    void fill_locked() {
        if (ended_ != IoStatus::Ok) return;
        IoStatus s = reader_.fill(in_fd_);
        if (s == IoStatus::Error || s == IoStatus::Eof) ended_ = s;
    }

    // Moves complete frames into pending_, applying Revoke frames to it: each revoked task not
    // yet started leaves pending_ and its tag goes to `revoked` (to answer outside the lock).
    void take_frames_locked(std::vector<std::uint64_t>& revoked) {
        while (auto f = reader_.pop()) {
            if (f->kind != FrameKind::Revoke) {
                pending_.push_back(std::move(*f));
                continue;
            }
            for (auto it = pending_.begin(); it != pending_.end(); ++it) {
                if (it->kind == FrameKind::Task && it->tag == f->tag) {
                    pending_.erase(it);
                    revoked.push_back(f->tag);
                    break;
                }
            }
        }
    }

    void answer_revoked(const std::vector<std::uint64_t>& revoked) {
        std::string error;
        for (auto tag : revoked) send(OutgoingFrame::make(FrameKind::Revoked, tag, ""), error);
    }

    // The revoker thread (see the header): reads the pipe while a task has run kEngageAfter.
    void revoker_loop() {
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            cv_.wait_for(lock, kLookEvery, [&] { return closing_; });  // only closing notifies
            if (closing_) return;
            if (!busy_ || ended_ != IoStatus::Ok ||
                std::chrono::steady_clock::now() - busy_since_ < kEngageAfter)
                continue;
            auto since = busy_since_;
            auto same_task = [&] { return busy_ && busy_since_ == since && !closing_; };
            while (same_task() && ended_ == IoStatus::Ok) {
                lock.unlock();
                pollfd p{in_fd_, POLLIN, 0};
                int n = ::poll(&p, 1, static_cast<int>(kLookEvery.count()));
                lock.lock();
                if (!same_task()) break;  // the main thread is back: it reads
                if (n <= 0 || !p.revents) continue;
                fill_locked();
                std::vector<std::uint64_t> revoked;
                take_frames_locked(revoked);
                if (revoked.empty()) continue;
                lock.unlock();
                answer_revoked(revoked);
                lock.lock();
            }
        }
    }

    int in_fd_, out_fd_, attachment_fd_;
    int pool_fd_;
    std::mutex mu_;
    std::condition_variable cv_;
    FrameReader reader_;
    std::deque<IncomingFrame> pending_;
    IoStatus ended_ = IoStatus::Ok;  // Eof or Error once nothing more will come
    bool busy_ = false;
    std::chrono::steady_clock::time_point busy_since_{};
    bool closing_ = false;
    std::mutex send_mu_;
    std::optional<ParentWatch> watch_;
    std::thread revoker_;       // started by recv() once a first task has run
    bool took_a_task_ = false;  // the calling (main) thread's alone
    SpinSite idle_spin_{kIdleSpin};
};

}  // namespace cfutures::core
