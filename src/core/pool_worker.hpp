// WorkerRecord: what the process pool's manager knows of one worker process: its descriptors,
// the jobs it has in flight, where it is in its life, and which frames it may send now.
//
// Lifecycle (phase(); each arrow names what moves it, all on the manager thread or under the
// pool's lock):
//
//   add_worker() --adopted--> Starting --Ready frame--> Ready
//        |                       |                        |--Exiting frame--------> Leaving --+
//        |                       |                        |  (allowance spent, nothing in     |
//        |                       |                        |   flight; or, in a pool whose     |
//        |                       |                        |   workers may leave early, after  |
//        |                       |                        |   any answer)                     |
//        |                       |                        |--SIGKILL for its job--> Killed ---+
//        |                       |                        |  (timeout, cancel_running)        |
//        |                       +--Stop frame sent-------+--Stop frame sent------> Stopping -+
//        |                          (shutdown, broken)                                        |
//        +--------------------------------- exit (pidfd) ------------------------------------+--> gone
//
// A worker takes jobs in Starting and Ready (they start once it is Ready) while can_take(). Its
// exit is expected in Stopping and Leaving with nothing in flight; in Killed it ends the one job
// it was killed for; anywhere else it breaks the pool, or with replace_dead_workers (once Ready)
// fails the job it ran. A worker that leaves early (max_worker_memory: its memory grew past the
// bound) runs none of the jobs it still has in flight: they were sent ahead and go again when
// it exits, as a killed worker's do. The later phases are not exclusive in the flags (a Killed
// worker of a pool that then breaks is also sent Stop); phase() names the one that decides.
//
// Invariants: in_flight lists, in the order sent, the jobs the worker has not answered; its
// first is the job running once Ready. held has a frame only for a job in in_flight; revoking
// only jobs in in_flight and held. victim, when set, is the job that was first in flight when
// the worker was killed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "process_batch.hpp"
#include "frame_io.hpp"

namespace cfutures::core {

// A started worker's pid and the parent's ends of its channel, handed over by add_worker().
struct NewWorker {
    int pid, pidfd, task_fd, result_fd, attachment_fd;
};

enum class WorkerPhase { Starting, Ready, Stopping, Leaving, Killed };

struct WorkerRecord {
    explicit WorkerRecord(const NewWorker& nw)
        : pid(nw.pid), pidfd(nw.pidfd), task_fd(nw.task_fd), result_fd(nw.result_fd),
          attachment_fd(nw.attachment_fd), reader(Direction::FromWorker, nw.attachment_fd),
          writer(nw.attachment_fd) {}
    int pid, pidfd, task_fd, result_fd, attachment_fd;
    FrameReader reader;  // the manager thread's alone
    FrameWriter writer;
    std::deque<std::uint64_t> in_flight;
    // When its first job in flight began: sent to it idle, or its previous answer arrived.
    std::chrono::steady_clock::time_point busy_since{};
    std::map<std::uint64_t, OutgoingFrame> held;  // sent ahead, kept in case they come back
    std::vector<std::uint64_t> revoking;          // asked back, not yet answered either way
    std::uint64_t victim = 0;  // Killed while running this job; 0: not killed
    StopCause victim_cause = StopCause::TimedOut;
    int tasks_left = -1;    // max_tasks_per_child countdown; -1: unlimited
    bool may_leave_early = false;  // its pool lets it leave after any answer (max_worker_memory)
    bool ready = false;     // sent Ready: jobs sent to it start from now on
    bool stop_sent = false; // Stopping
    bool leaving = false;   // Leaving: announced Exiting (max_tasks_per_child, max_worker_memory)
    bool want_out = false;  // EPOLLOUT registered on task_fd
    bool reading = true;    // result_fd watched (EPOLLIN)

    WorkerPhase phase() const {
        if (victim) return WorkerPhase::Killed;
        if (leaving) return WorkerPhase::Leaving;
        if (stop_sent) return WorkerPhase::Stopping;
        return ready ? WorkerPhase::Ready : WorkerPhase::Starting;
    }
};

// Whether the worker may be sent another job now.
inline bool can_take(const WorkerRecord& w) {
    WorkerPhase p = w.phase();
    return (p == WorkerPhase::Starting || p == WorkerPhase::Ready) && w.tasks_left != 0 && w.reading;
}

// Why the worker may not send a frame of this kind and tag now ("" if it may). A worker that
// does is not trusted any more: the pool breaks (BreakCause::Protocol).
inline std::string illegal_frame(const WorkerRecord& w, FrameKind kind, std::uint64_t tag) {
    if (w.leaving) return "a message after its Exiting message";
    if (kind == FrameKind::Ready) return w.ready ? "a second Ready message" : "";
    if (kind == FrameKind::Exiting) {
        // Only a worker whose max_tasks_per_child allowance is spent, and which has answered
        // everything, may leave on its own; in a pool whose workers may leave early, any worker
        // that is Ready (it runs the jobs it was sent in order, so those left in flight never
        // started: they go again).
        if (w.may_leave_early && w.ready) return "";
        if (w.tasks_left != 0 || !w.in_flight.empty()) return "an Exiting message it was not entitled to";
        return "";
    }
    if (std::find(w.in_flight.begin(), w.in_flight.end(), tag) == w.in_flight.end())
        return "an answer to a job it was not given";
    // A job asked back may have become the first in flight meanwhile (the one before it was
    // answered, and the Revoke reached the worker before it started this one): it may come back
    // all the same.
    if (kind == FrameKind::Revoked &&
        (std::find(w.revoking.begin(), w.revoking.end(), tag) == w.revoking.end() || !w.held.count(tag)))
        return "a job back that it was not asked for";
    return "";
}

}  // namespace cfutures::core
