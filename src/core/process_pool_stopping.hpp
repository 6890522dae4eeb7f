// Stopping one job while the pool goes on: part of ProcessPool (process_pool.hpp, which
// includes this file at its end; the data flow is drawn there).
//
// Opt-in: a job's timeout, stop_job() for cancel_running, replace_dead_workers. The job a worker
// runs is known (running()), so one job can end without breaking the pool: its worker is sent
// SIGKILL (a task cannot be interrupted any other way), and when its exit is seen
// (worker_exited(), process_pool_manager.hpp) the job is reported in ProcessBatch::stopped with
// the cause, the jobs sent ahead to that worker go back to the front of the queue (committed:
// their futures stay RUNNING; send_again_locked(), which also serves a worker that leaves early
// under max_worker_memory) and a replacement is started. The victim is the job that was
// running when the worker was stopped: if its answer was already in the pipe, the answer wins
// and the victim is not reported (exactly one outcome); a job that started after it is
// dispatched again. Deadlines (the job's timeout from when it started) are kept by the
// manager's event loop, not a thread per job. With replace_dead_workers, a worker that dies on
// its own once Ready fails only its running job (StopCause::WorkerDied); one that dies before
// Ready (its initializer failed) still breaks the pool. To dispatch jobs again, every Task frame
// a worker has in flight is kept (WorkerRecord::held) once anything can stop a job (or a worker
// may leave early), whether the manager or submit() wrote it; only frames without attachments
// are ever asked back (Revoke).
//
// State (under the pool's mu_): timeouts_ (timed jobs not yet answered, stopped or lost),
// dropped_ (jobs stopped while sent ahead), and each worker's victim. stop_job() counts the job
// Cancelled; the owner must then take it out of its own table in the same critical section as
// its call (bindings: JobTable::stop), so that an answer cannot complete it too.
#pragma once

namespace cfutures::core {

// Stops the job `tag`, dispatched and not answered yet (its future RUNNING), for
// cancel_running; returns false when the pool no longer has it (answered, lost). Where it is:
//   - running on a worker: the worker is killed (the job is reported stopped, Cancelled,
//     unless its answer beats the kill); the jobs sent ahead to it go again;
//   - given back and queued: it leaves the queue (its frame in `released`);
//   - sent ahead to a worker: it is asked back (Revoke) and dropped when it comes back;
//     should it start first (it has attachments, or the Revoke came late), its worker is
//     killed as above, and an answer that beats that is dropped.
inline bool ProcessPool::stop_job(std::uint64_t tag, std::vector<OutgoingFrame>& released) {
    {
        std::lock_guard<std::mutex> g(mu_);
        if (broken_) return false;
        if (Worker* w = worker_running_locked(tag)) {
            stop_worker_locked(*w, StopCause::Cancelled);
        } else {
            Job queued;
            if (queue_.remove_first([&](const Job& j) { return j.frame.tag == tag; }, queued)) {
                timeouts_.erase(tag);
                counters_.count(Outcome::Cancelled);
                released.push_back(std::move(queued.frame));
                return true;
            }
            Worker* holder = nullptr;
            for (auto& [id, w] : live_)
                if (std::find(w.in_flight.begin(), w.in_flight.end(), tag) != w.in_flight.end()) holder = &w;
            if (!holder) return false;
            dropped_.insert(tag);
            auto held = holder->held.find(tag);
            // (A Leaving worker runs none of its jobs: dropped when it exits, not asked back.)
            bool revocable = held != holder->held.end() && held->second.attachments.empty() && holder->ready &&
                             !holder->leaving && holder->in_flight.front() != tag;
            if (revocable && std::find(holder->revoking.begin(), holder->revoking.end(), tag) == holder->revoking.end()) {
                holder->revoking.push_back(tag);
                holder->writer.push(OutgoingFrame::make(FrameKind::Revoke, tag, ""));
            }
        }
        timeouts_.erase(tag);
        counters_.count(Outcome::Cancelled);  // the owner cancels its future (stats: at once)
    }
    events_.wake();
    return true;
}

// Whether stop_job() took `tag` (counted already; its owner no longer waits for it).
inline bool ProcessPool::taken_by_stop_job(const Worker& w, std::uint64_t tag) const {
    return dropped_.count(tag) || (w.victim == tag && w.victim_cause == StopCause::Cancelled);
}

// The worker running `tag` now (Ready, first in flight, not being stopped, not Leaving: a
// Leaving worker's jobs never start), or nullptr.
inline ProcessPool::Worker* ProcessPool::worker_running_locked(std::uint64_t tag) {
    for (auto& [id, w] : live_)
        if (w.ready && !w.victim && !w.leaving && !w.in_flight.empty() && w.in_flight.front() == tag) return &w;
    return nullptr;
}

// Kills `w` for the job it runs now; its exit (pidfd) ends that job (see "Stopping one job").
inline void ProcessPool::stop_worker_locked(Worker& w, StopCause cause) {
    w.victim = w.in_flight.front();
    w.victim_cause = cause;
    signal_child(w.pid, SIGKILL);
}

// Stops the workers whose running job is past its deadline (its timeout from when it
// started); returns the next deadline (time_point::max() if none).
inline std::chrono::steady_clock::time_point ProcessPool::enforce_deadlines_locked() {
    auto next = std::chrono::steady_clock::time_point::max();
    if ((timeouts_.empty() && dropped_.empty()) || broken_) return next;
    auto now = std::chrono::steady_clock::now();
    for (auto& [id, w] : live_) {
        if (!w.ready || w.victim || w.leaving || w.in_flight.empty()) continue;
        if (dropped_.count(w.in_flight.front())) {
            // Stopped by stop_job() while sent ahead, and it started all the same.
            stop_worker_locked(w, StopCause::Cancelled);
            continue;
        }
        auto timeout = timeouts_.find(w.in_flight.front());
        if (timeout == timeouts_.end()) continue;
        auto deadline = w.busy_since + timeout->second;
        if (now >= deadline) stop_worker_locked(w, StopCause::TimedOut);
        else next = std::min(next, deadline);
    }
    return next;
}

}  // namespace cfutures::core
