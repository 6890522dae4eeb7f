// Where queued jobs go: part of ProcessPool (process_pool.hpp, which includes this file at its
// end; the data flow is drawn there). The policy itself (prefetch depth, patience) is
// dispatch_policy.hpp; this applies it to the pool's workers, under mu_.
//
// Dispatch moves the first queued job to the least-loaded worker that may take one
// (can_take(), dispatch_policy::may_send()), turning its future RUNNING; a job whose future was
// cancelled meanwhile is dropped instead. submit() may dispatch a lone job itself
// (dispatch_directly_locked) so that the manager's wake-up is not on its round trip.
#pragma once

namespace cfutures::core {

// Sends the (only) queued job to an idle worker from the submitting thread. Returns false
// when the manager must take over (no idle worker, or the write did not complete).
inline bool ProcessPool::dispatch_directly_locked(std::vector<OutgoingFrame>* released) {
    Worker* idle = nullptr;
    for (auto& [id, w] : live_) {
        if (can_take(w) && w.in_flight.empty() && w.writer.empty() && !w.want_out) {
            idle = &w;
            break;
        }
    }
    if (!idle) return false;
    ProcessBatch unused;
    // A fresh future is neither cancelled nor inside an edit; if it were, the manager decides.
    if (!dispatch_to_locked(*idle, unused) || !unused.cancelled.empty()) return false;
    std::vector<OutgoingFrame> sent;
    IoStatus s = idle->writer.flush(idle->task_fd, &sent);
    for (auto& f : sent) {
        // Once a job can be stopped or its worker leave early, its frame is kept, as
        // flush_writers() keeps it: the job may have to go again.
        if (keep_frames_ && f.kind == FrameKind::Task) idle->held.emplace(f.tag, std::move(f));
        else released->push_back(std::move(f));
    }
    return s == IoStatus::Ok;
}

// The stdlib's policy: reuse an idle worker if there is one (one token per answer
// received), otherwise start one, up to max_workers (all at once under 'fork').
inline std::size_t ProcessPool::workers_to_start_locked() {
    if (idle_tokens_ > 0) {
        --idle_tokens_;
        return 0;
    }
    if (workers_ >= max_workers_) return 0;
    std::size_t n = start_all_ ? max_workers_ - workers_ : 1;
    workers_ += n;
    return n;
}

inline void ProcessPool::dispatch_locked(ProcessBatch& batch) {
    retry_dispatch_ = false;
    std::size_t depth = dispatch_policy::prefetch_depth(service_ns_, max_in_flight_);
    auto patience = dispatch_policy::patience(service_ns_);
    auto now = std::chrono::steady_clock::now();
    while (!queue_.empty()) {
        Worker* best = nullptr;
        for (auto& [id, w] : live_) {
            if (!can_take(w) || !dispatch_policy::may_send(w.in_flight.size(), depth, now - w.busy_since, patience))
                continue;
            if (!best || w.in_flight.size() < best->in_flight.size()) best = &w;
        }
        if (!best) return;
        if (!dispatch_to_locked(*best, batch)) {
            retry_dispatch_ = true;
            return;
        }
    }
}

// Moves the first queued job to `w` (or drops it if its future was cancelled meanwhile).
// Returns false when the job's future is inside another thread's edit (`with
// future._condition:`): it cannot start now, and waiting for the edit while holding mu_ could
// deadlock, so the job stays first in line and the manager retries shortly.
inline bool ProcessPool::dispatch_to_locked(Worker& w, ProcessBatch& batch) {
    if (queue_.front().future && !queue_.front().committed) {
        switch (queue_.front().future->set_running_or_notify_cancel(/*may_wait=*/false)) {
            case StartOutcome::Running: break;
            case StartOutcome::Busy: return false;
            case StartOutcome::Cancelled:
            case StartOutcome::Invalid:
                counters_.count(outcome_of(*queue_.front().future));
                batch.cancelled.push_back(queue_.front().frame.tag);
                batch.released.push_back(std::move(queue_.front().frame));
                queue_.pop_front();
                return true;
        }
    }
    Job job = std::move(queue_.front());
    queue_.pop_front();  // room for a submitter waiting (max_queue)
    if (w.in_flight.empty()) w.busy_since = std::chrono::steady_clock::now();
    w.in_flight.push_back(job.frame.tag);
    if (w.tasks_left > 0) --w.tasks_left;
    w.writer.push(std::move(job.frame));
    return true;
}

// Asks back the jobs stranded behind a long one (dispatch_policy.hpp) when a worker idles with
// nothing queued; returns when to look again (time_point::max() if nothing may strand).
inline std::chrono::steady_clock::time_point ProcessPool::revoke_stranded_locked() {
    auto never = std::chrono::steady_clock::time_point::max();
    if (shutdown_ || broken_ || !queue_.empty()) return never;
    bool someone_idle = false;
    for (auto& [id, w] : live_)
        if (can_take(w) && w.in_flight.empty()) someone_idle = true;
    if (!someone_idle) return never;
    auto now = std::chrono::steady_clock::now();
    auto patience = dispatch_policy::patience(service_ns_);
    auto next = never;
    for (auto& [id, w] : live_) {
        if (w.in_flight.size() < 2 || !w.reading || w.stop_sent || w.victim || w.leaving) continue;
        // Behind the running job: those whose frames are kept and not asked back yet.
        std::vector<std::uint64_t> behind;
        for (std::size_t i = 1; i < w.in_flight.size(); ++i) {
            std::uint64_t tag = w.in_flight[i];
            auto held = w.held.find(tag);
            if (held != w.held.end() && held->second.attachments.empty() &&
                std::find(w.revoking.begin(), w.revoking.end(), tag) == w.revoking.end())
                behind.push_back(tag);
        }
        if (behind.empty()) continue;
        if (now - w.busy_since < patience) {
            next = std::min(next, w.busy_since + patience);
            continue;
        }
        for (std::uint64_t tag : behind) {
            w.revoking.push_back(tag);
            w.writer.push(OutgoingFrame::make(FrameKind::Revoke, tag, ""));
        }
    }
    return next;
}

}  // namespace cfutures::core
