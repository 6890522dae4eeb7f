// Breaking the process pool: part of ProcessPool (process_pool.hpp, which includes this file at
// its end; the data flow is drawn there).
//
// The pool breaks when a worker exits unasked (BreakCause::WorkerDied), sends a frame the
// protocol or the pool does not allow (Protocol: a malformed frame, an answer to a job it was
// not given, an Exiting it was not entitled to), when the owner asks (Owner: an answer that
// cannot be unpickled, a replacement worker that cannot be started), or when the manager itself
// fails (Internal: an exception in its loop). Then every queued and in-flight job is reported
// lost, with the reason, and later submits answer Broken; the workers get SIGTERM, and SIGKILL
// kKillGrace later if still there (a task may ignore SIGTERM; nothing outlives its pool). run()
// returns once every worker is gone. The manager thread never dies silently: whatever ends it
// has been reported through deliver().
//
// broken_ is written here only, on the manager thread, under mu_.
#pragma once

namespace cfutures::core {

// The manager cannot go on (an exception in its own loop): break the pool, kill and reap
// what is left, and report it all in one last batch.
inline void ProcessPool::give_up(ProcessPoolHooks& hooks, const std::string& why) {
    ProcessBatch batch;
    {
        std::lock_guard<std::mutex> g(mu_);
        if (!broken_) break_locked(BreakCause::Internal, why, batch);
        for (auto& [id, w] : live_) {
            signal_child(w.pid, SIGKILL);
            batch.exited.push_back(w.pid);
            release_frames(w, batch);
            close_worker(w);
        }
        live_.clear();
        for (auto& nw : new_workers_) {
            signal_child(nw.pid, SIGKILL);
            batch.exited.push_back(nw.pid);
            close_new_worker(nw);
        }
        new_workers_.clear();
        workers_ = 0;
    }
    hooks.deliver(batch);
}

// A worker that breaks the protocol cannot be trusted: stop listening to it, break the pool.
inline void ProcessPool::fail_protocol_locked(Worker& w, const std::string& what, ProcessBatch& batch) {
    stop_reading(w);
    if (!broken_) {
        break_locked(BreakCause::Protocol,
                     "A process in the process pool sent " + what +
                         "; the process pool is not usable anymore",
                     batch);
    }
}

inline void ProcessPool::break_locked(BreakCause cause, const std::string& why, ProcessBatch& batch) {
    broken_ = true;
    timeouts_.clear();
    batch.broken = cause;
    batch.broken_reason = why;
    for (Job& job : queue_.take_all()) {
        bool cancelled = !job.committed && job.future && is_cancelled(job.future->state());
        counters_.count(cancelled ? Outcome::Cancelled : Outcome::Failed);
        batch.lost.push_back(job.frame.tag);
        batch.released.push_back(std::move(job.frame));
    }
    queue_.wake_all_waiting();
    for (auto& [id, w] : live_) {
        for (auto tag : w.in_flight) {
            if (!taken_by_stop_job(w, tag)) counters_.count(Outcome::Failed);
            batch.lost.push_back(tag);
        }
        w.in_flight.clear();
        release_frames(w, batch);
        w.stop_sent = true;
        signal_child(w.pid, SIGTERM);
    }
    dropped_.clear();
    kill_at_ = std::chrono::steady_clock::now() + kKillGrace;
}

// Hands every outgoing frame the worker still has (unsent or kept) back to the owner.
inline void ProcessPool::release_frames(Worker& w, ProcessBatch& batch) {
    for (auto& f : w.writer.take_all()) batch.released.push_back(std::move(f));
    for (auto& [tag, f] : w.held) batch.released.push_back(std::move(f));
    w.held.clear();
    w.revoking.clear();
}

// Workers of a broken pool still there kKillGrace after their SIGTERM.
inline void ProcessPool::kill_stragglers_locked() {
    if (std::chrono::steady_clock::now() < kill_at_) return;
    for (auto& [id, w] : live_) signal_child(w.pid, SIGKILL);
}

}  // namespace cfutures::core
