// The manager thread's loop: part of ProcessPool (process_pool.hpp, which includes this file at
// its end; the data flow is drawn there).
//
// Each round, under mu_: adopt new workers, dispatch, ask stranded jobs back, enforce
// deadlines, send Stop once nothing more will be dispatched; then, without the lock, write what
// the workers were sent, hand the round's batch to the owner, and sleep on the events
// (manager_events.hpp) until a worker answers, can be written to again, or exits, or another
// thread wakes the manager. Answers are checked frame by frame against the worker's record
// (illegal_frame(), pool_worker.hpp) before they are believed.
#pragma once

namespace cfutures::core {

// Returns when the pool is shut down (or broken) and every worker has exited. Never throws
// but for a thread being unwound (see ProcessPoolHooks::deliver).
inline void ProcessPool::run(ProcessPoolHooks& hooks) {
    {
        std::lock_guard<std::mutex> g(mu_);
        manager_running_ = true;
    }
    try {
        loop(hooks);
    } catch (const std::exception& e) {
        give_up(hooks, std::string("the process pool's manager failed: ") + e.what());
    }
    std::lock_guard<std::mutex> g(mu_);
    manager_running_ = false;
    rounds_cv_.notify_all();
}

inline void ProcessPool::loop(ProcessPoolHooks& hooks) {
    for (;;) {
        ProcessBatch batch;
        bool finished;
        {
            std::lock_guard<std::mutex> g(mu_);
            std::uint64_t round = rounds_requested_;
            adopt_new_workers_locked();
            if (!break_request_.empty() && !broken_) {
                std::string why = std::move(break_request_);
                break_locked(BreakCause::Owner, why, batch);
            }
            if (!broken_) dispatch_locked(batch);
            revoke_at_ = revoke_stranded_locked();
            deadline_at_ = enforce_deadlines_locked();
            // Not while a job asked back may still come back to the queue: a worker told to
            // stop would leave it stranded (the pool would need a replacement, which cannot
            // start once the interpreter is exiting).
            if (queue_.empty() && (broken_ || (shutdown_ && !revokes_outstanding_locked())))
                send_stops_locked();
            if (broken_) kill_stragglers_locked();
            finished = (shutdown_ || broken_) && workers_ == 0 && live_.empty();
            if (rounds_done_ != round) {
                rounds_done_ = round;
                rounds_cv_.notify_all();
            }
        }
        flush_writers(batch);
        if (!batch.empty()) hooks.deliver(batch);
        if (finished) return;
        ProcessBatch io;
        for (const ManagerEvents::Event& ev : events_.wait(wait_timeout_ms())) handle_event(ev, io);
        poll_exits_without_pidfd(io);
        // Refill the workers that just answered before delivering: delivering may wait for
        // the GIL, and the workers should not wait with it.
        {
            std::lock_guard<std::mutex> g(mu_);
            if (!broken_) dispatch_locked(io);
            revoke_at_ = revoke_stranded_locked();
            deadline_at_ = enforce_deadlines_locked();
        }
        flush_writers(io);
        if (!io.empty()) hooks.deliver(io);
    }
}

// How long the manager may sleep on its events. Reads broken_ without the lock: only this
// thread writes it.
inline int ProcessPool::wait_timeout_ms() const {
    if (retry_dispatch_) return 1;
    int ms = -1;
    for (auto at : {revoke_at_, deadline_at_}) {
        if (at == std::chrono::steady_clock::time_point::max()) continue;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            at - std::chrono::steady_clock::now()).count();
        int until = static_cast<int>(std::clamp<long long>(left + 1, 1, 60000));
        ms = ms < 0 ? until : std::min(ms, until);
    }
    for (auto& [id, w] : live_)
        if (w.pidfd < 0) ms = ms < 0 ? 50 : std::min(ms, 50);  // no pidfd: exits are polled
    if (broken_ && !live_.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            kill_at_ - std::chrono::steady_clock::now()).count();
        int until_kill = static_cast<int>(std::clamp<long long>(left + 1, 1, 60000));
        ms = ms < 0 ? until_kill : std::min(ms, until_kill);
    }
    return ms;
}

inline void ProcessPool::adopt_new_workers_locked() {
    for (NewWorker& nw : new_workers_) {
        std::uint32_t id = next_id_++;
        Worker& w = live_.try_emplace(id, nw).first->second;
        w.tasks_left = max_tasks_per_child_;
        w.may_leave_early = leave_early_;
        events_.watch(w.result_fd, EPOLLIN, id, ManagerEvents::kResults);
        events_.watch(w.task_fd, 0, id, ManagerEvents::kTasks);  // EPOLLOUT only while a write waits
        if (w.pidfd >= 0) events_.watch(w.pidfd, EPOLLIN, id, ManagerEvents::kExit);
        if (broken_) signal_child(w.pid, SIGTERM);
    }
    new_workers_.clear();
}

inline void ProcessPool::flush_writers(ProcessBatch& batch) {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [id, w] : live_) {
        if (w.writer.empty() || w.task_fd < 0) continue;
        std::size_t failed_before = batch.unsendable.size();
        std::vector<OutgoingFrame> sent;
        const std::uint64_t inlined_before = w.writer.inlined();
        IoStatus s = w.writer.flush(w.task_fd, &sent, &batch.unsendable);
        counters_.count_inlined(w.writer.inlined() - inlined_before);
        for (auto& f : sent) {
            // A job sent ahead of the one running may be asked back: keep its frame. Once a
            // job can be stopped, keep every frame in flight: a stopped worker's jobs go again.
            bool ahead = f.kind == FrameKind::Task && f.attachments.empty() && !w.in_flight.empty() &&
                         w.in_flight.front() != f.tag;
            bool keep = ahead || (keep_frames_ && f.kind == FrameKind::Task &&
                                  std::find(w.in_flight.begin(), w.in_flight.end(), f.tag) != w.in_flight.end());
            if (keep) w.held.emplace(f.tag, std::move(f));
            else batch.released.push_back(std::move(f));
        }
        for (std::size_t i = failed_before; i < batch.unsendable.size(); ++i) {
            counters_.count(Outcome::Failed);  // the owner fails it
            // Never sent: the worker does not expect it, and it still may take another.
            auto pos = std::find(w.in_flight.begin(), w.in_flight.end(), batch.unsendable[i].frame.tag);
            if (pos != w.in_flight.end()) w.in_flight.erase(pos);
            if (w.tasks_left >= 0) ++w.tasks_left;
        }
        bool want_out = s == IoStatus::WouldBlock;
        if (s == IoStatus::Eof || s == IoStatus::Error) {
            // The worker is going away; its exit (pidfd) decides what that means (its jobs may
            // go again: their frames are kept).
            keep_unsent_locked(w, batch);
        }
        if (want_out != w.want_out) {
            w.want_out = want_out;
            events_.change(w.task_fd, want_out ? std::uint32_t{EPOLLOUT} : 0u, id, ManagerEvents::kTasks);
        }
    }
}

// Stops listening to a worker's answers (it closed its end, or cannot be trusted).
inline void ProcessPool::stop_reading(Worker& w) {
    if (!w.reading) return;
    w.reading = false;
    events_.forget(w.result_fd);
}

inline void ProcessPool::handle_event(const ManagerEvents::Event& ev, ProcessBatch& batch) {
    if (ev.wake) return;  // another thread wants a round: the loop runs one anyway
    auto it = live_.find(ev.id);
    if (it == live_.end()) return;
    if (ev.kind == ManagerEvents::kExit) {
        worker_exited(ev.id, batch);
        return;
    }
    // kTasks (EPOLLOUT): flush_writers() does the writing at the top of the next round.
    Worker& w = it->second;
    if (ev.kind != ManagerEvents::kResults || !w.reading) return;
    IoStatus s = w.reader.fill(w.result_fd);  // the reader is this thread's alone
    std::lock_guard<std::mutex> g(mu_);
    take_answers_locked(w, batch);
    if (s == IoStatus::Error && !broken_) {
        fail_protocol_locked(w, "a malformed message: " + w.reader.error(), batch);
    } else if (s == IoStatus::Eof || s == IoStatus::Error) {
        // The worker closed its end: its exit (pidfd) will follow.
        stop_reading(w);
    }
}

// Moves the worker's complete frames into the batch, checking that each is allowed now, and
// judges the frame still arriving by its header: an answer to a job the worker was not
// given is refused before its payload comes (a forged header could announce any length).
inline void ProcessPool::take_answers_locked(Worker& w, ProcessBatch& batch) {
    std::size_t got = 0;
    std::vector<Job> given_back;
    while (w.reading) {
        auto f = w.reader.pop();
        if (!f) break;
        std::string why = illegal_frame(w, f->kind, f->tag);
        if (!why.empty()) {
            fail_protocol_locked(w, why, batch);
            break;
        }
        if (f->kind == FrameKind::Exiting) {
            w.leaving = true;
            continue;
        }
        if (f->kind == FrameKind::Ready) {
            // A job sent while it was starting begins now: its time so far was not service.
            w.ready = true;
            if (!w.in_flight.empty()) w.busy_since = std::chrono::steady_clock::now();
            continue;
        }
        bool was_first = w.in_flight.front() == f->tag;
        w.in_flight.erase(std::find(w.in_flight.begin(), w.in_flight.end(), f->tag));
        auto asked = std::find(w.revoking.begin(), w.revoking.end(), f->tag);
        if (asked != w.revoking.end()) w.revoking.erase(asked);
        auto held = w.held.find(f->tag);
        bool dropped = dropped_.erase(f->tag) != 0;  // stopped by stop_job(): nobody waits for it
        if (f->kind == FrameKind::Revoked && dropped) {
            batch.released.push_back(std::move(held->second));
            w.held.erase(held);
            if (w.tasks_left >= 0) ++w.tasks_left;
            if (was_first) w.busy_since = std::chrono::steady_clock::now();
            continue;
        }
        if (f->kind == FrameKind::Revoked) {
            // Given back: first in line again (after others given back in this batch).
            Job job;
            job.frame = std::move(held->second);
            job.committed = true;
            w.held.erase(held);
            if (w.tasks_left >= 0) ++w.tasks_left;
            given_back.push_back(std::move(job));
            // It had not started: the next one begins now.
            if (was_first) w.busy_since = std::chrono::steady_clock::now();
            continue;
        }
        if (held != w.held.end()) {
            batch.released.push_back(std::move(held->second));
            w.held.erase(held);
        }
        timeouts_.erase(f->tag);
        if (!dropped) batch.answers.push_back(std::move(*f));
        ++got;
    }
    for (auto it = given_back.rbegin(); it != given_back.rend(); ++it) queue_.push_front(std::move(*it), kGivenBack);
    if (got) measure_service_locked(w, got);
    idle_tokens_ += got;
    if (const IncomingFrame* next = w.reading ? w.reader.frame_in_progress() : nullptr) {
        std::string why = illegal_frame(w, next->kind, next->tag);
        if (!why.empty()) fail_protocol_locked(w, why, batch);
    }
}

// `answered` answers from `w` arrived together: the time since its current job began is
// theirs, shared (several arriving at once were short). Measured by the manager thread only.
inline void ProcessPool::measure_service_locked(Worker& w, std::size_t answered) {
    auto now = std::chrono::steady_clock::now();
    double each = std::chrono::duration<double, std::nano>(now - w.busy_since).count() /
                  static_cast<double>(answered);
    service_ns_ = dispatch_policy::updated_service(service_ns_, each);
    w.busy_since = now;
}

inline void ProcessPool::poll_exits_without_pidfd(ProcessBatch& batch) {
    std::vector<std::uint32_t> gone;
    for (auto& [id, w] : live_) {
        if (w.pidfd < 0 && child_exited(w.pid)) gone.push_back(id);
    }
    for (auto id : gone) worker_exited(id, batch);
}

inline void ProcessPool::worker_exited(std::uint32_t id, ProcessBatch& batch) {
    Worker& w = live_.at(id);
    // Answers it wrote just before exiting are still in the pipe: take them first.
    IoStatus s = w.reading ? w.reader.fill(w.result_fd) : IoStatus::Eof;
    std::lock_guard<std::mutex> g(mu_);
    take_answers_locked(w, batch);
    if (s == IoStatus::Error && !broken_) {
        fail_protocol_locked(w, "a malformed message: " + w.reader.error(), batch);
    }
    bool expected = (w.stop_sent || w.leaving) && w.in_flight.empty();
    // Left on its own with jobs sent ahead that it never started (a pool whose workers may
    // leave early: max_worker_memory): they go again, nothing fails.
    bool left_early = !expected && !broken_ && w.leaving && !w.victim;
    // Stopped on purpose, or died running a job in a pool that survives deaths: one job ends.
    bool one_job = !expected && !left_early && !broken_ && (w.victim || (replace_dead_ && w.ready));
    int pid = w.pid;
    if (one_job) {
        std::uint64_t victim = w.victim;
        StopCause cause = w.victim_cause;
        if (!victim && !w.in_flight.empty()) {
            victim = w.in_flight.front();
            cause = StopCause::WorkerDied;
        }
        send_again_locked(w, victim, cause, batch);
    } else if (left_early) {
        send_again_locked(w, 0, StopCause::WorkerDied, batch);
    }
    release_frames(w, batch);
    for (std::uint64_t tag : w.in_flight)
        if (!taken_by_stop_job(w, tag)) counters_.count(Outcome::Failed);  // lost, below (if not expected)
    std::deque<std::uint64_t> orphans = std::move(w.in_flight);
    close_worker(w);
    live_.erase(id);
    batch.exited.push_back(pid);
    if (workers_ > 0) --workers_;
    if (!expected && !left_early && !one_job && !broken_) {
        for (auto tag : orphans) batch.lost.push_back(tag);
        break_locked(BreakCause::WorkerDied,
                     "A process in the process pool was terminated abruptly while the future "
                     "was running or pending.",
                     batch);
    } else if (!broken_ && (!shutdown_ || !queue_.empty()) && workers_ < max_workers_) {
        // Stopped for its job, or left on its own (max_tasks_per_child, max_worker_memory):
        // replace it, and during shutdown only while queued work remains.
        ++workers_;
        ++batch.start_workers;
        counters_.count_replacement();
    }
}

// The jobs `w` (stopped, dead, or gone early) has in flight, once it has exited: `victim` (0:
// none) is reported in batch.stopped with `cause`, as is a job whose frame was not kept (only
// the victim's can be: keep_frames_ holds the rest); a job stop_job() took is dropped; the others
// never started and go back to the front of the queue, in their order (committed: their
// futures stay RUNNING). The one path by which a worker's jobs go again.
inline void ProcessPool::send_again_locked(Worker& w, std::uint64_t victim, StopCause cause, ProcessBatch& batch) {
    keep_unsent_locked(w, batch);
    std::vector<Job> again;
    for (std::uint64_t tag : w.in_flight) {
        auto held = w.held.find(tag);
        if (dropped_.erase(tag)) continue;  // stopped by stop_job(): not sent again
        if (tag == victim || held == w.held.end()) {
            if (cause != StopCause::Cancelled) counters_.count(Outcome::Failed);  // stop_job counted those
            int code = 0;
            bool known = child_exit_code(w.pid, code);
            auto timeout = timeouts_.find(tag);
            double limit = timeout == timeouts_.end() ? 0 : std::chrono::duration<double>(timeout->second).count();
            batch.stopped.push_back({tag, cause, w.pid, known, code, limit});
            timeouts_.erase(tag);
            continue;
        }
        Job job;
        job.frame = std::move(held->second);
        job.committed = true;
        w.held.erase(held);
        again.push_back(std::move(job));
    }
    w.in_flight.clear();
    for (auto it = again.rbegin(); it != again.rend(); ++it) queue_.push_front(std::move(*it), kGivenBack);
}

// The frames `w`'s writer still has (unsent, or cut short by the worker's exit): with
// keep_frames_, a job in flight keeps its frame (held) to go again; the rest are released.
inline void ProcessPool::keep_unsent_locked(Worker& w, ProcessBatch& batch) {
    for (auto& f : w.writer.take_all()) {
        bool job_in_flight = f.kind == FrameKind::Task &&
                             std::find(w.in_flight.begin(), w.in_flight.end(), f.tag) != w.in_flight.end();
        if (keep_frames_ && job_in_flight && !w.held.count(f.tag)) w.held.emplace(f.tag, std::move(f));
        else batch.released.push_back(std::move(f));
    }
}

// Once nothing more will be dispatched: Stop follows the tasks a worker already has, so a
// worker whose answers are lost in its pipe (a task wrote into it) still leaves.
inline void ProcessPool::send_stops_locked() {
    for (auto& [id, w] : live_) {
        if (!w.stop_sent && !w.leaving) {
            w.writer.push(OutgoingFrame::make(FrameKind::Stop, 0, ""));
            w.stop_sent = true;
        }
    }
}

inline bool ProcessPool::revokes_outstanding_locked() const {
    for (const auto& [id, w] : live_)
        if (!w.revoking.empty()) return true;
    return false;
}

inline void ProcessPool::close_new_worker(NewWorker& nw) {
    LoadGauge::instance().remove_relative(nw.pid);
    for (int fd : {nw.pidfd, nw.task_fd, nw.result_fd, nw.attachment_fd})
        if (fd >= 0) ::close(fd);
}

inline void ProcessPool::close_worker(Worker& w) {
    LoadGauge::instance().remove_relative(w.pid);
    for (int* fd : {&w.pidfd, &w.task_fd, &w.result_fd, &w.attachment_fd}) {
        if (*fd >= 0) {
            events_.forget(*fd);
            ::close(*fd);
            *fd = -1;
        }
    }
}

}  // namespace cfutures::core
