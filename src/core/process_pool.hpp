// ProcessPool: the parent side of a pool of worker processes: the job queue, dispatch to the
// workers over their channels (protocol.hpp), collection of answers, crash detection, all driven
// by one manager thread that never needs the GIL.
//
//   owner (submit, GIL held)          manager thread (run(), no GIL)              worker process
//   ------------------------          ------------------------------              --------------
//   pickle (fn, args, kwargs)
//   submit(job) --queue_--+--wake-->  dispatch: future -> RUNNING, Task frame to the
//                                     least-loaded worker (<= max_in_flight) ---> pipe ----> run
//                                     answers <------------------------------------ pipe <---+
//                                     pidfd readable: the worker exited
//                                     -> hooks.deliver(batch): answers, exits, losses (GIL there)
//
// Workers are started by the owner when submit() or a batch asks for them, then handed over
// with add_worker(). A worker's exit is seen at once through its pidfd (not by a timeout, not by
// EOF, which siblings forked from the same parent could hold open).
//
// This diagram is the one picture of the data flow; the other headers point here. The class is
// declared here with the owner's side; its parts, one capability each, are defined in:
//   process_batch.hpp           what a round hands to the owner (ProcessBatch), and why
//   pool_worker.hpp             a worker's record: its lifecycle, which frames it may send
//   dispatch_policy.hpp         prefetch depth, patience, revoking: pure functions
//   process_pool_dispatch.hpp   where queued jobs go (applying the policy), asking jobs back
//   process_pool_manager.hpp    the manager thread's loop: events, answers, exits
//   process_pool_stopping.hpp   ending one job while the pool goes on (timeouts, cancel_running,
//                               replace_dead_workers)
//   process_pool_breaking.hpp   breaking the pool, and the manager giving up
//   manager_events.hpp, pidfd.hpp   the OS calls (epoll, eventfd, pidfd, waitid, kill)
//
// Locking. `mu_` guards queue_, new_workers_, the flags, workers_, idle_tokens_, service_ns_,
// and in the Worker records everything but the reader; live_ itself changes only on the manager
// thread, which may therefore read it without the lock. submit() may write a job without
// attachments to an idle worker's pipe itself, under `mu_`. A reader belongs to the manager
// thread alone, so reads happen without the lock. Nothing is called out while `mu_` is held, except
// FutureCore::set_running_or_notify_cancel(may_wait=false), which never waits on another lock.
// Outgoing frames are never destroyed here while the pool runs: they go back to the owner in
// ProcessBatch::released, to be dropped where the owner may (their payloads are Python objects).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dispatch_policy.hpp"
#include "executor_stats.hpp"
#include "future_state.hpp"
#include "manager_events.hpp"
#include "pending_queue.hpp"
#include "pidfd.hpp"
#include "pool_worker.hpp"
#include "process_batch.hpp"
#include "frame_io.hpp"
#include "spin_policy.hpp"

namespace cfutures::core {

class ProcessPool {
public:
    struct Job {
        OutgoingFrame frame;            // kind Task, tag = job id
        FutureCore* future = nullptr;   // kept alive by the owner until the job is reported
        bool committed = false;         // given back by a worker: its future is RUNNING already
        std::chrono::nanoseconds timeout{0};  // how long it may run once started; 0: no limit
        int priority = 0;               // lower starts first (pending_queue.hpp)
    };
    // The lane of jobs given back unstarted (Revoked, or sent again): they were chosen to start
    // before everything still queued, so they go first.
    static constexpr int kGivenBack = std::numeric_limits<int>::min();
    enum class Submit { Queued, Shutdown, Broken, Full };
    struct SubmitAnswer {
        Submit status;
        std::size_t start_workers;  // how many workers the owner must start now
    };

    // How long a worker of a broken pool has to leave after SIGTERM before SIGKILL.
    static constexpr std::chrono::milliseconds kKillGrace{2000};

    // `max_queued` > 0 bounds the jobs waiting to be sent (back-pressure); 0: no bound.
    // With `workers_leave_early`, a worker may announce Exiting after any answer, with jobs
    // still sent ahead to it (max_worker_memory: the worker decides, the pool only allows it);
    // those go again, and the worker is replaced (process_pool_manager.hpp, worker_exited()).
    ProcessPool(std::size_t max_workers, bool start_all_at_once, int max_tasks_per_child,
                bool replace_dead_workers = false, bool workers_leave_early = false, std::size_t max_queued = 0)
        : max_workers_(max_workers), start_all_(start_all_at_once),
          max_tasks_per_child_(max_tasks_per_child), replace_dead_(replace_dead_workers),
          leave_early_(workers_leave_early), max_in_flight_(dispatch_policy::default_in_flight(max_workers)),
          queue_(max_queued), keep_frames_(replace_dead_workers || workers_leave_early) {}
    ProcessPool(const ProcessPool&) = delete;
    ProcessPool& operator=(const ProcessPool&) = delete;
    ~ProcessPool() {
        for (auto& [id, w] : live_) close_worker(w);
        for (auto& nw : new_workers_) close_new_worker(nw);
    }

    // --- owner side (any thread) ---------------------------------------------------------------

    // When a worker is idle and nothing is queued ahead, a job without attachments is written to
    // that worker's pipe right here: the manager thread's wake-up is not on the round trip of
    // a lone small task. Frames that are done with come back in `released` (to be dropped
    // without the lock). A job with attachments always goes through the manager thread, which
    // copies them into memfds without the GIL. `job` is taken unless the answer is Shutdown,
    // Broken or Full (the queue is at its bound: see wait_for_room()).
    SubmitAnswer submit(Job&& job, std::vector<OutgoingFrame>* released = nullptr) {
        SubmitAnswer answer{Submit::Queued, 0};
        bool need_wake = true;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (broken_) return {Submit::Broken, 0};
            if (shutdown_) return {Submit::Shutdown, 0};
            if (!queue_.has_room()) return {Submit::Full, 0};
            bool direct = queue_.empty() && new_workers_.empty() && job.frame.attachments.empty();
            counters_.count_submitted();
            bool timed = job.timeout.count() > 0;
            if (timed) {
                timeouts_[job.frame.tag] = job.timeout;
                keep_frames_ = true;
            }
            int priority = job.priority;
            queue_.push_back(std::move(job), priority);
            answer.start_workers = workers_to_start_locked();
            // A timed job's deadline is the manager's to keep: it must hear of the job.
            if (direct && released) need_wake = !dispatch_directly_locked(released) || timed;
        }
        if (need_wake) events_.wake();
        return answer;
    }

    // A submit whose call never reached the queue (it could not be pickled) still starts
    // workers as the stdlib's does: returns how many the owner must start.
    std::size_t submit_without_job() {
        std::lock_guard<std::mutex> g(mu_);
        if (broken_ || shutdown_) return 0;
        return workers_to_start_locked();
    }

    // After Submit::Full: blocks until the queue may have room, the pool stops taking jobs, or
    // `until`; the caller then submits again (another submitter may have taken the place).
    void wait_for_room(std::chrono::steady_clock::time_point until) {
        std::unique_lock<std::mutex> lock(mu_);
        if (queue_.has_room() || shutdown_ || broken_) return;
        queue_.wait_for_room(lock, until);
    }
    // A submitter that waited gives up without submitting: a place it was woken for goes on.
    void stop_waiting_for_room() {
        std::lock_guard<std::mutex> g(mu_);
        queue_.pass_on_room();
    }

    void worker_start_failed() {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (workers_ > 0) --workers_;
        }
        events_.wake();
    }

    // Takes ownership of the parent's ends of a started worker's channel (protocol.hpp): the
    // pipe to it, the pipe from it, the socket for attachments; and of `exit_fd` (or -1), a
    // descriptor that becomes readable when the worker exits (multiprocessing's sentinel), which
    // stands in for its pidfd where pidfd_open is refused (a container's seccomp profile, a
    // kernel before 5.3): a forkserver's worker is not this process's child, so waitid cannot
    // poll its exit.
    void add_worker(int pid, int task_fd, int result_fd, int attachment_fd, int exit_fd = -1) {
        int pidfd = open_pidfd(pid);
        if (pidfd < 0) {
            pidfd = exit_fd;
        } else if (exit_fd >= 0) {
            ::close(exit_fd);
        }
        NewWorker nw{pid, pidfd, task_fd, result_fd, attachment_fd};
        LoadGauge::instance().add_relative(pid);  // its spinning is this pool's, not load
        {
            std::lock_guard<std::mutex> g(mu_);
            new_workers_.push_back(nw);
        }
        events_.wake();
    }

    // No new jobs; workers finish the queue (or, with cancel_pending, the queued jobs are
    // returned for the owner to cancel), then each gets a Stop frame and exits.
    std::vector<Job> shutdown(bool cancel_pending) {
        std::vector<Job> drained;
        {
            std::lock_guard<std::mutex> g(mu_);
            shutdown_ = true;
            if (cancel_pending) {
                // Jobs given back by a worker are RUNNING: they run, as in the stdlib.
                drained = queue_.take_unless([](const Job& job) { return job.committed; });
                for (std::size_t i = 0; i < drained.size(); ++i) counters_.count(Outcome::Cancelled);
            }
            queue_.wake_all_waiting();
        }
        events_.wake();
        return drained;
    }

    // Waits until the manager thread has run a dispatch round that began after this call (so
    // that idle workers have been given what they can take). Returns at once when no manager
    // runs. Must not be called while holding anything the manager's hooks need (the GIL).
    void sync_dispatch() {
        std::unique_lock<std::mutex> lock(mu_);
        if (!manager_running_) return;
        std::uint64_t want = ++rounds_requested_;
        events_.wake();
        rounds_cv_.wait(lock, [&] { return rounds_done_ >= want || !manager_running_; });
    }

    // The owner started a thread that will call run(): from now on sync_dispatch() waits for it.
    void manager_started() {
        std::lock_guard<std::mutex> g(mu_);
        manager_running_ = true;
    }

    // Breaks the pool from the owner's side (an answer that could not be unpickled).
    void break_pool(std::string reason) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (!broken_ && break_request_.empty()) break_request_ = std::move(reason);
        }
        events_.wake();
    }

    // Where the owner counts the outcomes it decides (answers, jobs it fails itself); the pool
    // counts the rest (executor_stats.hpp).
    OutcomeCounters& counters() { return counters_; }
    ExecutorStats stats() const {
        auto done = counters_.outcomes();
        std::lock_guard<std::mutex> g(mu_);
        std::uint64_t queued = 0, pending_cancelled = 0;
        queue_.for_each([&](const Job& job) {
            if (job.committed) return;  // given back by a worker: RUNNING, as in the stdlib
            ++(job.future && is_cancelled(job.future->state()) ? pending_cancelled : queued);
        });
        ExecutorStats s = OutcomeCounters::combine(done, counters_.submitted.load(std::memory_order_relaxed),
                                                   queued, pending_cancelled);
        s.workers = workers_;
        s.workers_replaced = counters_.workers_replaced.load(std::memory_order_relaxed);
        s.calls_inlined = counters_.calls_inlined.load(std::memory_order_relaxed);
        for (auto& [id, w] : live_)
            if (w.ready && w.in_flight.empty() && can_take(w)) ++s.idle_workers;
        // As the thread pool's: a worker the next dispatch gives a queued job is not idle.
        s.idle_workers = s.idle_workers > queued ? s.idle_workers - queued : 0;
        return s;
    }
    // From now on every in-flight frame is kept, so that a stopped worker's jobs can be sent again
    // (before the first job that stop_job() may be asked to stop is dispatched).
    void keep_frames() {
        std::lock_guard<std::mutex> g(mu_);
        keep_frames_ = true;
    }

    bool is_broken() const {
        std::lock_guard<std::mutex> g(mu_);
        return broken_;
    }
    bool is_shutdown() const {
        std::lock_guard<std::mutex> g(mu_);
        return shutdown_;
    }
    std::size_t max_queued() const { return queue_.bound(); }
    std::size_t queued() const {
        std::lock_guard<std::mutex> g(mu_);
        return queue_.size();
    }

    // Which job each busy worker runs, and since when. A worker reports once that it is ready
    // (Ready: started, initializer done); from then on it runs its jobs one at a time, in the
    // order sent, so the answer to one job is the report that the next one (if it was sent)
    // started: the job running is the first of the worker's in flight, since it was sent to the
    // worker idle, the previous answer arrived, or the worker became ready
    // (WorkerRecord::busy_since). A job given back (Revoked) had not started. No frame per task.
    struct RunningJob {
        int pid;
        std::uint64_t tag;
        std::chrono::steady_clock::time_point since;
    };
    std::vector<RunningJob> running() const {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<RunningJob> out;
        for (auto& [id, w] : live_)  // (a Leaving worker runs nothing: its jobs go again)
            if (w.ready && !w.leaving && !w.in_flight.empty()) out.push_back({w.pid, w.in_flight.front(), w.busy_since});
        return out;
    }

    // Stops the job `tag` for cancel_running (process_pool_stopping.hpp).
    bool stop_job(std::uint64_t tag, std::vector<OutgoingFrame>& released);

    // The manager thread's body (process_pool_manager.hpp): returns when the pool is shut down
    // (or broken) and every worker has exited. Never throws but for a thread being unwound (see
    // ProcessPoolHooks::deliver).
    void run(ProcessPoolHooks& hooks);

private:
    using Worker = WorkerRecord;

    // process_pool_dispatch.hpp
    std::size_t workers_to_start_locked();
    bool dispatch_directly_locked(std::vector<OutgoingFrame>* released);
    void dispatch_locked(ProcessBatch& batch);
    bool dispatch_to_locked(Worker& w, ProcessBatch& batch);
    std::chrono::steady_clock::time_point revoke_stranded_locked();

    // process_pool_manager.hpp
    void loop(ProcessPoolHooks& hooks);
    int wait_timeout_ms() const;
    void adopt_new_workers_locked();
    void send_stops_locked();
    bool revokes_outstanding_locked() const;
    void flush_writers(ProcessBatch& batch);
    void stop_reading(Worker& w);
    void handle_event(const ManagerEvents::Event& ev, ProcessBatch& batch);
    void take_answers_locked(Worker& w, ProcessBatch& batch);
    void measure_service_locked(Worker& w, std::size_t answered);
    void poll_exits_without_pidfd(ProcessBatch& batch);
    void worker_exited(std::uint32_t id, ProcessBatch& batch);
    void send_again_locked(Worker& w, std::uint64_t victim, StopCause cause, ProcessBatch& batch);
    void keep_unsent_locked(Worker& w, ProcessBatch& batch);
    static void close_new_worker(NewWorker& nw);
    void close_worker(Worker& w);

    // process_pool_stopping.hpp
    bool taken_by_stop_job(const Worker& w, std::uint64_t tag) const;
    Worker* worker_running_locked(std::uint64_t tag);
    void stop_worker_locked(Worker& w, StopCause cause);
    std::chrono::steady_clock::time_point enforce_deadlines_locked();

    // process_pool_breaking.hpp
    void break_locked(BreakCause cause, const std::string& why, ProcessBatch& batch);
    void fail_protocol_locked(Worker& w, const std::string& what, ProcessBatch& batch);
    void give_up(ProcessPoolHooks& hooks, const std::string& why);
    void kill_stragglers_locked();
    static void release_frames(Worker& w, ProcessBatch& batch);

    const std::size_t max_workers_;
    const bool start_all_;
    const int max_tasks_per_child_;
    const bool replace_dead_;
    const bool leave_early_;
    const std::size_t max_in_flight_;
    ManagerEvents events_;

    mutable std::mutex mu_;
    PendingQueue<Job> queue_;
    std::vector<NewWorker> new_workers_;
    bool shutdown_ = false;
    bool broken_ = false;                 // written by the manager thread only (break_locked)
    std::string break_request_;
    std::chrono::steady_clock::time_point kill_at_{};
    std::size_t workers_ = 0;      // started or being started, not yet exited
    std::size_t idle_tokens_ = 0;
    bool manager_running_ = false;
    std::uint64_t rounds_requested_ = 0, rounds_done_ = 0;
    std::condition_variable rounds_cv_;

    std::map<std::uint32_t, Worker> live_;  // the manager thread's (dispatch_locked too)
    bool retry_dispatch_ = false;            // the manager thread's: a start was Busy
    double service_ns_ = -1;                 // recent service time per job (mu_); -1: none yet
    bool keep_frames_;                       // (mu_) keep every frame in flight: jobs may be stopped
    OutcomeCounters counters_;               // `submitted` and the pool's outcomes bumped under mu_
    // (mu_) The timeouts of timed jobs not yet answered, stopped or lost, by job id.
    std::unordered_map<std::uint64_t, std::chrono::nanoseconds> timeouts_;
    // (mu_) Jobs stopped by stop_job() while sent ahead to a worker: dropped when they come back
    // or are answered, their worker killed should they start.
    std::unordered_set<std::uint64_t> dropped_;
    // The manager thread's: when revoke_stranded_locked() and enforce_deadlines_locked() want to
    // look again.
    std::chrono::steady_clock::time_point revoke_at_ = std::chrono::steady_clock::time_point::max();
    std::chrono::steady_clock::time_point deadline_at_ = std::chrono::steady_clock::time_point::max();
    std::uint32_t next_id_ = 0;
};

}  // namespace cfutures::core

#include "process_pool_breaking.hpp"
#include "process_pool_dispatch.hpp"
#include "process_pool_manager.hpp"
#include "process_pool_stopping.hpp"
