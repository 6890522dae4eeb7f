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
// Breaking. The pool breaks when a worker exits unasked (BreakCause::WorkerDied), sends a frame
// the protocol or the pool does not allow (Protocol: a malformed frame, an answer to a job it
// was not given, an Exiting it was not entitled to), when the owner asks (Owner: an answer that
// cannot be unpickled, a replacement worker that cannot be started), or when the manager itself
// fails (Internal: an exception in its loop).
// Then every queued and in-flight job is reported lost, with the reason, and later submits
// answer Broken; the workers get SIGTERM, and SIGKILL kKillGrace later if still there (a task
// may ignore SIGTERM; nothing outlives its pool). run() returns once every worker is gone. The
// manager thread never dies silently: whatever ends it has been reported through deliver().
//
// Stopping one job (opt-in: a job's timeout, stop_job() for cancel_running,
// replace_dead_workers). The job a worker runs is known (running()), so one job can end without
// breaking the pool: its worker is sent SIGKILL (a task cannot be interrupted any other way),
// and when its exit is seen the job is reported in ProcessBatch::stopped with the cause, the
// jobs sent ahead to that worker go back to the front of the queue (committed: their futures
// stay RUNNING) and a replacement is started. The victim is the job that was running when the worker was stopped: if its answer
// was already in the pipe, the answer wins and the victim is not reported (exactly one outcome);
// a job that started after it is dispatched again. Deadlines (the job's timeout from when it
// started) are kept by the manager's event loop, not a thread per job. With
// replace_dead_workers, a worker that dies on its own once Ready fails only its running job
// (StopCause::WorkerDied); one that dies before Ready (its initializer failed) still breaks the
// pool. To dispatch jobs again, every Task frame a worker has in flight is kept (Worker::held)
// once anything can stop a job; only frames without attachments are ever asked back (Revoke).
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

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "executor_stats.hpp"
#include "future_state.hpp"
#include "pidfd.hpp"
#include "protocol.hpp"
#include "spin_policy.hpp"

namespace cfutures::core {

enum class BreakCause { None, WorkerDied, Protocol, Owner, Internal };

// Why a job ended without an answer while the pool goes on (see "Stopping one job" below).
enum class StopCause { TimedOut, Cancelled, WorkerDied };
struct StoppedJob {
    std::uint64_t tag;
    StopCause cause;
    int pid;             // of its worker
    bool exitcode_known; // the worker is this process's child (not under forkserver)
    int exitcode;        // if known: multiprocessing's convention, -N for signal N
};

// What one round of the manager loop hands to the owner, in one call (one GIL acquisition).
struct ProcessBatch {
    std::vector<IncomingFrame> answers;        // Result / Exception frames, tag = job id
    std::vector<OutgoingFrame> released;       // outgoing frames done with (sent or dropped)
    std::vector<std::uint64_t> cancelled;      // jobs dropped at dispatch: their future was cancelled
    std::vector<FrameWriter::Unsendable> unsendable;  // jobs whose attachments could not be made
    std::vector<int> exited;                   // pids of workers that exited (to reap)
    std::vector<std::uint64_t> lost;           // jobs that will never complete: the pool broke
    std::vector<StoppedJob> stopped;           // jobs whose worker was stopped or died; pool goes on
    BreakCause broken = BreakCause::None;      // set in the batch where the pool broke
    std::string broken_reason;                 // ... and why, in words
    std::size_t start_workers = 0;             // workers to start (replacing ones that left)
    bool empty() const {
        return answers.empty() && released.empty() && cancelled.empty() && unsendable.empty() &&
               exited.empty() && lost.empty() && stopped.empty() && broken == BreakCause::None &&
               start_workers == 0;
    }
};

class ProcessPoolHooks {
public:
    virtual ~ProcessPoolHooks() = default;
    // Runs on the manager thread. May unwind the thread (the bindings' GIL acquisition during
    // interpreter finalization); any other exception breaks the pool (BreakCause::Internal).
    virtual void deliver(ProcessBatch& batch) = 0;
};

class ProcessPool {
public:
    struct Job {
        OutgoingFrame frame;            // kind Task, tag = job id
        FutureCore* future = nullptr;   // kept alive by the owner until the job is reported
        bool committed = false;         // given back by a worker: its future is RUNNING already
        std::chrono::nanoseconds timeout{0};  // how long it may run once started; 0: no limit
    };
    enum class Submit { Queued, Shutdown, Broken };
    struct SubmitAnswer {
        Submit status;
        std::size_t start_workers;  // how many workers the owner must start now
    };

    // Jobs sent ahead to one worker, at most: about 16 per pool, 2 to 8 per worker. More hides
    // the round trip of small tasks; fewer keeps most of a backlog cancellable (the stdlib
    // commits max_workers + 1).
    static std::size_t default_in_flight(std::size_t max_workers) {
        return std::clamp<std::size_t>(16 / std::max<std::size_t>(max_workers, 1), 2, 8);
    }
    // Prefetch policy. A job sent to a busy worker waits there even if another worker frees up
    // first (a pipe cannot take it back), so how many jobs a worker gets ahead depends on how
    // long jobs take: as many as fit in kPrefetchWindow of measured service time, between 1 and
    // default_in_flight(). Service time is measured by the manager: from when a worker's current
    // job began (it was sent to an idle worker, or the previous answer arrived) to its answer,
    // averaged over recent answers (weight kServiceWeight for the newest). Until the first
    // answer nothing is known, and each worker gets one job at a time: a long first task strands
    // nothing, and small tasks reach full depth after their first answer (tens of microseconds).
    // Jobs sent ahead behind a task much longer than the recent ones are asked back: when a
    // worker idles with nothing queued while another's current job has run kRevokeFactor times
    // the recent service time (and at least kPrefetchWindow), the manager sends Revoke for that
    // worker's jobs waiting behind it (those without attachments, whose frames it keeps until
    // they start); the ones the worker had not started come back (Revoked) and go first in the
    // queue, their futures still RUNNING (as the stdlib's call queue holds RUNNING items).
    static constexpr std::chrono::microseconds kPrefetchWindow{2000};
    static constexpr double kRevokeFactor = 4;
    static constexpr double kServiceWeight = 0.25;
    static std::size_t prefetch_depth(double service_ns, std::size_t max_depth) {
        if (service_ns < 0) return 1;  // nothing measured yet
        double fit = std::chrono::nanoseconds(kPrefetchWindow).count() / std::max(service_ns, 1.0);
        return std::clamp<std::size_t>(static_cast<std::size_t>(fit), 1, max_depth);
    }
    // How long a worker of a broken pool has to leave after SIGTERM before SIGKILL.
    static constexpr std::chrono::milliseconds kKillGrace{2000};

    ProcessPool(std::size_t max_workers, bool start_all_at_once, int max_tasks_per_child,
                bool replace_dead_workers = false)
        : max_workers_(max_workers), start_all_(start_all_at_once),
          max_tasks_per_child_(max_tasks_per_child), replace_dead_(replace_dead_workers),
          max_in_flight_(default_in_flight(max_workers)), keep_frames_(replace_dead_workers) {
        wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (wake_fd_ < 0 || epoll_fd_ < 0) throw std::system_error(errno, std::generic_category());
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kWakeTag;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    }
    ProcessPool(const ProcessPool&) = delete;
    ProcessPool& operator=(const ProcessPool&) = delete;
    ~ProcessPool() {
        for (auto& [id, w] : live_) close_worker(w);
        for (auto& nw : new_workers_) close_new_worker(nw);
        ::close(wake_fd_);
        ::close(epoll_fd_);
    }

    // --- owner side (any thread) ---------------------------------------------------------------

    // When a worker is idle and nothing is queued ahead, a job without attachments is written to
    // that worker's pipe right here: the manager thread's wake-up is not on the round trip of
    // a lone small task. Frames that are done with come back in `released` (to be dropped
    // without the lock). A job with attachments always goes through the manager thread, which
    // copies them into memfds without the GIL.
    SubmitAnswer submit(Job job, std::vector<OutgoingFrame>* released = nullptr) {
        SubmitAnswer answer{Submit::Queued, 0};
        bool need_wake = true;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (broken_) return {Submit::Broken, 0};
            if (shutdown_) return {Submit::Shutdown, 0};
            bool direct = queue_.empty() && new_workers_.empty() && job.frame.attachments.empty();
            counters_.count_submitted();
            bool timed = job.timeout.count() > 0;
            if (timed) {
                timeouts_[job.frame.tag] = job.timeout;
                keep_frames_ = true;
            }
            queue_.push_back(std::move(job));
            answer.start_workers = workers_to_start_locked();
            // A timed job's deadline is the manager's to keep: it must hear of the job.
            if (direct && released) need_wake = !dispatch_directly_locked(released) || timed;
        }
        if (need_wake) wake();
        return answer;
    }

    // A submit whose call never reached the queue (it could not be pickled) still starts
    // workers as the stdlib's does: returns how many the owner must start.
    std::size_t submit_without_job() {
        std::lock_guard<std::mutex> g(mu_);
        if (broken_ || shutdown_) return 0;
        return workers_to_start_locked();
    }

    void worker_start_failed() {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (workers_ > 0) --workers_;
        }
        wake();
    }

    // Takes ownership of the parent's ends of a started worker's channel (protocol.hpp): the
    // pipe to it, the pipe from it, the socket for attachments.
    void add_worker(int pid, int task_fd, int result_fd, int attachment_fd) {
        NewWorker nw{pid, open_pidfd(pid), task_fd, result_fd, attachment_fd};
        LoadGauge::instance().add_relative(pid);  // its spinning is this pool's, not load
        {
            std::lock_guard<std::mutex> g(mu_);
            new_workers_.push_back(nw);
        }
        wake();
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
                std::deque<Job> kept;
                for (Job& job : queue_) {
                    if (job.committed) {
                        kept.push_back(std::move(job));
                    } else {
                        counters_.count(Outcome::Cancelled);  // the owner cancels them
                        drained.push_back(std::move(job));
                    }
                }
                queue_ = std::move(kept);
            }
        }
        wake();
        return drained;
    }

    // Waits until the manager thread has run a dispatch round that began after this call (so
    // that idle workers have been given what they can take). Returns at once when no manager
    // runs. Must not be called while holding anything the manager's hooks need (the GIL).
    void sync_dispatch() {
        std::unique_lock<std::mutex> lock(mu_);
        if (!manager_running_) return;
        std::uint64_t want = ++rounds_requested_;
        wake();
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
        wake();
    }

    // Stops the job `tag`, dispatched and not answered yet (its future RUNNING), for
    // cancel_running; returns false when the pool no longer has it (answered, lost). Where it is:
    //   - running on a worker: the worker is killed (the job is reported stopped, Cancelled,
    //     unless its answer beats the kill); the jobs sent ahead to it go again;
    //   - given back and queued: it leaves the queue (its frame in `released`);
    //   - sent ahead to a worker: it is asked back (Revoke) and dropped when it comes back;
    //     should it start first (it has attachments, or the Revoke came late), its worker is
    //     killed as above, and an answer that beats that is dropped.
    bool stop_job(std::uint64_t tag, std::vector<OutgoingFrame>& released) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (broken_) return false;
            if (Worker* w = worker_running_locked(tag)) {
                stop_worker_locked(*w, StopCause::Cancelled);
            } else {
                auto queued = std::find_if(queue_.begin(), queue_.end(),
                                           [&](const Job& j) { return j.frame.tag == tag; });
                if (queued != queue_.end()) {
                    timeouts_.erase(tag);
                    counters_.count(Outcome::Cancelled);
                    released.push_back(std::move(queued->frame));
                    queue_.erase(queued);
                    return true;
                }
                Worker* holder = nullptr;
                for (auto& [id, w] : live_)
                    if (std::find(w.in_flight.begin(), w.in_flight.end(), tag) != w.in_flight.end()) holder = &w;
                if (!holder) return false;
                dropped_.insert(tag);
                auto held = holder->held.find(tag);
                bool revocable = held != holder->held.end() && held->second.attachments.empty() && holder->ready &&
                                 holder->in_flight.front() != tag;
                if (revocable && std::find(holder->revoking.begin(), holder->revoking.end(), tag) == holder->revoking.end()) {
                    holder->revoking.push_back(tag);
                    holder->writer.push(OutgoingFrame::make(FrameKind::Revoke, tag, ""));
                }
            }
            timeouts_.erase(tag);
            counters_.count(Outcome::Cancelled);  // the owner cancels its future (stats: at once)
        }
        wake();
        return true;
    }

    // Where the owner counts the outcomes it decides (answers, jobs it fails itself); the pool
    // counts the rest (executor_stats.hpp).
    OutcomeCounters& counters() { return counters_; }
    ExecutorStats stats() const {
        auto done = counters_.outcomes();
        std::lock_guard<std::mutex> g(mu_);
        std::uint64_t queued = 0, pending_cancelled = 0;
        for (const Job& job : queue_) {
            if (job.committed) continue;  // given back by a worker: RUNNING, as in the stdlib
            ++(job.future && is_cancelled(job.future->state()) ? pending_cancelled : queued);
        }
        ExecutorStats s = OutcomeCounters::combine(done, counters_.submitted.load(std::memory_order_relaxed),
                                                   queued, pending_cancelled);
        s.workers = workers_;
        for (auto& [id, w] : live_)
            if (w.ready && w.in_flight.empty() && can_take_locked(w)) ++s.idle_workers;
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
    std::size_t queued() const {
        std::lock_guard<std::mutex> g(mu_);
        return queue_.size();
    }

    // Which job each busy worker runs, and since when. A worker reports once that it is ready
    // (Ready: started, initializer done); from then on it runs its jobs one at a time, in the
    // order sent, so the answer to one job is the report that the next one (if it was sent)
    // started: the job running is the first of the worker's in flight, since it was sent to the
    // worker idle, the previous answer arrived, or the worker became ready
    // (Worker::busy_since). A job given back (Revoked) had not started. No frame per task.
    struct RunningJob {
        int pid;
        std::uint64_t tag;
        std::chrono::steady_clock::time_point since;
    };
    std::vector<RunningJob> running() const {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<RunningJob> out;
        for (auto& [id, w] : live_)
            if (w.ready && !w.in_flight.empty()) out.push_back({w.pid, w.in_flight.front(), w.busy_since});
        return out;
    }

    // --- manager thread --------------------------------------------------------------------------

    // Returns when the pool is shut down (or broken) and every worker has exited. Never throws
    // but for a thread being unwound (see ProcessPoolHooks::deliver).
    void run(ProcessPoolHooks& hooks) {
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

private:
    static constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};
    enum EventKind : std::uint64_t { kResults = 0, kTasks = 1, kExit = 2 };

    struct NewWorker {
        int pid, pidfd, task_fd, result_fd, attachment_fd;
    };
    struct Worker {
        explicit Worker(const NewWorker& nw)
            : pid(nw.pid), pidfd(nw.pidfd), task_fd(nw.task_fd), result_fd(nw.result_fd),
              attachment_fd(nw.attachment_fd), reader(Direction::FromWorker, nw.attachment_fd),
              writer(nw.attachment_fd) {}
        int pid, pidfd, task_fd, result_fd, attachment_fd;
        FrameReader reader;
        FrameWriter writer;
        std::deque<std::uint64_t> in_flight;
        // When its first job in flight began: sent to it idle, or its previous answer arrived.
        std::chrono::steady_clock::time_point busy_since{};
        std::map<std::uint64_t, OutgoingFrame> held;  // sent ahead, kept in case they come back
        std::vector<std::uint64_t> revoking;          // asked back, not yet answered either way
        std::uint64_t victim = 0;  // stopped (SIGKILL sent) while running this job; 0: not stopped
        StopCause victim_cause = StopCause::TimedOut;
        int tasks_left = -1;    // max_tasks_per_child countdown; -1: unlimited
        bool ready = false;     // sent Ready: jobs sent to it start from now on
        bool stop_sent = false;
        bool leaving = false;   // announced Exiting (max_tasks_per_child reached)
        bool want_out = false;  // EPOLLOUT registered on task_fd
        bool reading = true;    // result_fd watched (EPOLLIN)
    };

    static void close_new_worker(NewWorker& nw) {
        LoadGauge::instance().remove_relative(nw.pid);
        for (int fd : {nw.pidfd, nw.task_fd, nw.result_fd, nw.attachment_fd})
            if (fd >= 0) ::close(fd);
    }
    void close_worker(Worker& w) {
        LoadGauge::instance().remove_relative(w.pid);
        for (int* fd : {&w.pidfd, &w.task_fd, &w.result_fd, &w.attachment_fd}) {
            if (*fd >= 0) {
                ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, *fd, nullptr);
                ::close(*fd);
                *fd = -1;
            }
        }
    }

    void loop(ProcessPoolHooks& hooks) {
        std::vector<epoll_event> events(64);
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
            int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                                 wait_timeout_ms());
            if (n < 0) {
                if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "epoll_wait");
                n = 0;
            }
            ProcessBatch io;
            for (int i = 0; i < n; ++i) handle_event(events[i], io);
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

    // How long the manager may sleep in epoll_wait. Reads broken_ without the lock: only this
    // thread writes it.
    int wait_timeout_ms() const {
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

    // The manager cannot go on (an exception in its own loop): break the pool, kill and reap
    // what is left, and report it all in one last batch.
    void give_up(ProcessPoolHooks& hooks, const std::string& why) {
        ProcessBatch batch;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (!broken_) break_locked(BreakCause::Internal, why, batch);
            for (auto& [id, w] : live_) {
                ::kill(w.pid, SIGKILL);
                batch.exited.push_back(w.pid);
                release_frames(w, batch);
                close_worker(w);
            }
            live_.clear();
            for (auto& nw : new_workers_) {
                ::kill(nw.pid, SIGKILL);
                batch.exited.push_back(nw.pid);
                close_new_worker(nw);
            }
            new_workers_.clear();
            workers_ = 0;
        }
        hooks.deliver(batch);
    }

    // Sends the (only) queued job to an idle worker from the submitting thread. Returns false
    // when the manager must take over (no idle worker, or the write did not complete).
    bool dispatch_directly_locked(std::vector<OutgoingFrame>* released) {
        Worker* idle = nullptr;
        for (auto& [id, w] : live_) {
            if (can_take_locked(w) && w.in_flight.empty() && w.writer.empty() && !w.want_out) {
                idle = &w;
                break;
            }
        }
        if (!idle) return false;
        ProcessBatch unused;
        // A fresh future is neither cancelled nor inside an edit; if it were, the manager decides.
        if (!dispatch_to_locked(*idle, unused) || !unused.cancelled.empty()) return false;
        return idle->writer.flush(idle->task_fd, released) == IoStatus::Ok;
    }

    bool can_take_locked(const Worker& w) const {
        return !w.stop_sent && !w.leaving && w.tasks_left != 0 && w.reading && !w.victim;
    }

    // The stdlib's policy: reuse an idle worker if there is one (one token per answer
    // received), otherwise start one, up to max_workers (all at once under 'fork').
    std::size_t workers_to_start_locked() {
        if (idle_tokens_ > 0) {
            --idle_tokens_;
            return 0;
        }
        if (workers_ >= max_workers_) return 0;
        std::size_t n = start_all_ ? max_workers_ - workers_ : 1;
        workers_ += n;
        return n;
    }

    void wake() {
        std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }

    void watch(int fd, std::uint32_t events, std::uint32_t id, EventKind kind, int op) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = (std::uint64_t{id} << 2) | kind;
        ::epoll_ctl(epoll_fd_, op, fd, &ev);
    }

    void adopt_new_workers_locked() {
        for (NewWorker& nw : new_workers_) {
            std::uint32_t id = next_id_++;
            Worker& w = live_.try_emplace(id, nw).first->second;
            w.tasks_left = max_tasks_per_child_;
            watch(w.result_fd, EPOLLIN, id, kResults, EPOLL_CTL_ADD);
            watch(w.task_fd, 0, id, kTasks, EPOLL_CTL_ADD);  // EPOLLOUT only while a write waits
            if (w.pidfd >= 0) watch(w.pidfd, EPOLLIN, id, kExit, EPOLL_CTL_ADD);
            if (broken_) ::kill(w.pid, SIGTERM);
        }
        new_workers_.clear();
    }

    void dispatch_locked(ProcessBatch& batch) {
        retry_dispatch_ = false;
        std::size_t depth = prefetch_depth(service_ns_, max_in_flight_);
        auto long_since = std::chrono::steady_clock::now() - patience_locked();
        while (!queue_.empty()) {
            Worker* best = nullptr;
            for (auto& [id, w] : live_) {
                if (!can_take_locked(w) || w.in_flight.size() >= depth) continue;
                // Nothing is sent ahead to a worker whose job has run long: it would strand.
                if (!w.in_flight.empty() && w.busy_since < long_since) continue;
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
    bool dispatch_to_locked(Worker& w, ProcessBatch& batch) {
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
        queue_.pop_front();
        if (w.in_flight.empty()) w.busy_since = std::chrono::steady_clock::now();
        w.in_flight.push_back(job.frame.tag);
        if (w.tasks_left > 0) --w.tasks_left;
        w.writer.push(std::move(job.frame));
        return true;
    }

    bool revokes_outstanding_locked() const {
        for (const auto& [id, w] : live_)
            if (!w.revoking.empty()) return true;
        return false;
    }

    // Once nothing more will be dispatched: Stop follows the tasks a worker already has, so a
    // worker whose answers are lost in its pipe (a task wrote into it) still leaves.
    void send_stops_locked() {
        for (auto& [id, w] : live_) {
            if (!w.stop_sent && !w.leaving) {
                w.writer.push(OutgoingFrame::make(FrameKind::Stop, 0, ""));
                w.stop_sent = true;
            }
        }
    }

    void flush_writers(ProcessBatch& batch) {
        std::lock_guard<std::mutex> g(mu_);
        for (auto& [id, w] : live_) {
            if (w.writer.empty() || w.task_fd < 0) continue;
            std::size_t failed_before = batch.unsendable.size();
            std::vector<OutgoingFrame> sent;
            IoStatus s = w.writer.flush(w.task_fd, &sent, &batch.unsendable);
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
                // The worker is going away; its exit (pidfd) decides what that means.
                for (auto& f : w.writer.take_all()) batch.released.push_back(std::move(f));
            }
            if (want_out != w.want_out) {
                w.want_out = want_out;
                watch(w.task_fd, want_out ? std::uint32_t{EPOLLOUT} : 0u, id, kTasks, EPOLL_CTL_MOD);
            }
        }
    }

    // Stops listening to a worker's answers (it closed its end, or cannot be trusted).
    void stop_reading(Worker& w) {
        if (!w.reading) return;
        w.reading = false;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w.result_fd, nullptr);
    }

    void handle_event(const epoll_event& ev, ProcessBatch& batch) {
        if (ev.data.u64 == kWakeTag) {
            std::uint64_t v;
            while (::read(wake_fd_, &v, sizeof v) > 0) {
            }
            return;
        }
        auto id = static_cast<std::uint32_t>(ev.data.u64 >> 2);
        auto kind = static_cast<EventKind>(ev.data.u64 & 3);
        auto it = live_.find(id);
        if (it == live_.end()) return;
        if (kind == kExit) {
            worker_exited(id, batch);
            return;
        }
        // kTasks (EPOLLOUT): flush_writers() does the writing at the top of the next round.
        Worker& w = it->second;
        if (kind != kResults || !w.reading) return;
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
    void take_answers_locked(Worker& w, ProcessBatch& batch) {
        std::size_t got = 0;
        std::vector<Job> given_back;
        while (w.reading) {
            auto f = w.reader.pop();
            if (!f) break;
            std::string why = illegal_locked(w, f->kind, f->tag);
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
        queue_.insert(queue_.begin(), std::make_move_iterator(given_back.begin()),
                      std::make_move_iterator(given_back.end()));
        if (got) measure_service_locked(w, got);
        idle_tokens_ += got;
        if (const IncomingFrame* next = w.reading ? w.reader.frame_in_progress() : nullptr) {
            std::string why = illegal_locked(w, next->kind, next->tag);
            if (!why.empty()) fail_protocol_locked(w, why, batch);
        }
    }

    // `answered` answers from `w` arrived together: the time since its current job began is
    // theirs, shared (several arriving at once were short). Measured by the manager thread only.
    void measure_service_locked(Worker& w, std::size_t answered) {
        auto now = std::chrono::steady_clock::now();
        double each = std::chrono::duration<double, std::nano>(now - w.busy_since).count() /
                      static_cast<double>(answered);
        service_ns_ = service_ns_ < 0 ? each : service_ns_ + kServiceWeight * (each - service_ns_);
        w.busy_since = now;
    }

    // Why the worker may not send a frame of this kind and tag now ("" if it may).
    std::string illegal_locked(const Worker& w, FrameKind kind, std::uint64_t tag) const {
        if (w.leaving) return "a message after its Exiting message";
        if (kind == FrameKind::Ready) return w.ready ? "a second Ready message" : "";
        if (kind == FrameKind::Exiting) {
            // Only a worker whose max_tasks_per_child allowance is spent, and which has
            // answered everything, may leave on its own.
            if (w.tasks_left != 0 || !w.in_flight.empty()) return "an Exiting message it was not entitled to";
            return "";
        }
        if (std::find(w.in_flight.begin(), w.in_flight.end(), tag) == w.in_flight.end())
            return "an answer to a job it was not given";
        // A job asked back may have become the first in flight meanwhile (the one before it was
        // answered, and the Revoke reached the worker before it started this one): it may come
        // back all the same.
        if (kind == FrameKind::Revoked &&
            (std::find(w.revoking.begin(), w.revoking.end(), tag) == w.revoking.end() || !w.held.count(tag)))
            return "a job back that it was not asked for";
        return "";
    }

    // A worker that breaks the protocol cannot be trusted: stop listening to it, break the pool.
    void fail_protocol_locked(Worker& w, const std::string& what, ProcessBatch& batch) {
        stop_reading(w);
        if (!broken_) {
            break_locked(BreakCause::Protocol,
                         "A process in the process pool sent " + what +
                             "; the process pool is not usable anymore",
                         batch);
        }
    }

    void poll_exits_without_pidfd(ProcessBatch& batch) {
        std::vector<std::uint32_t> gone;
        for (auto& [id, w] : live_) {
            if (w.pidfd >= 0) continue;
            siginfo_t info{};
            if (::waitid(P_PID, static_cast<id_t>(w.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                info.si_pid == w.pid) {
                gone.push_back(id);
            }
        }
        for (auto id : gone) worker_exited(id, batch);
    }

    void worker_exited(std::uint32_t id, ProcessBatch& batch) {
        Worker& w = live_.at(id);
        // Answers it wrote just before exiting are still in the pipe: take them first.
        IoStatus s = w.reading ? w.reader.fill(w.result_fd) : IoStatus::Eof;
        std::lock_guard<std::mutex> g(mu_);
        take_answers_locked(w, batch);
        if (s == IoStatus::Error && !broken_) {
            fail_protocol_locked(w, "a malformed message: " + w.reader.error(), batch);
        }
        bool expected = (w.stop_sent || w.leaving) && w.in_flight.empty();
        // Stopped on purpose, or died running a job in a pool that survives deaths: one job ends.
        bool one_job = !expected && !broken_ && (w.victim || (replace_dead_ && w.ready));
        int pid = w.pid;
        if (one_job) {
            std::uint64_t victim = w.victim;
            StopCause cause = w.victim_cause;
            if (!victim && !w.in_flight.empty()) {
                victim = w.in_flight.front();
                cause = StopCause::WorkerDied;
            }
            std::vector<Job> again;
            for (std::uint64_t tag : w.in_flight) {
                auto held = w.held.find(tag);
                if (dropped_.erase(tag)) continue;  // stopped by stop_job(): not sent again
                if (tag == victim || held == w.held.end()) {
                    // (A frame not kept can only be the victim's: keep_frames_ holds the rest.)
                    if (cause != StopCause::Cancelled) counters_.count(Outcome::Failed);  // stop_job counted those
                    int code = 0;
                    bool known = exit_code_of(pid, code);
                    batch.stopped.push_back({tag, cause, pid, known, code});
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
            queue_.insert(queue_.begin(), std::make_move_iterator(again.begin()),
                          std::make_move_iterator(again.end()));
        }
        release_frames(w, batch);
        for (std::uint64_t tag : w.in_flight)
            if (!taken_by_stop_job(w, tag)) counters_.count(Outcome::Failed);  // lost, below (if not expected)
        std::deque<std::uint64_t> orphans = std::move(w.in_flight);
        close_worker(w);
        live_.erase(id);
        batch.exited.push_back(pid);
        if (workers_ > 0) --workers_;
        if (one_job) {
            if ((!shutdown_ || !queue_.empty()) && workers_ < max_workers_) {
                ++workers_;
                ++batch.start_workers;
            }
        } else if (!expected && !broken_) {
            for (auto tag : orphans) batch.lost.push_back(tag);
            break_locked(BreakCause::WorkerDied,
                         "A process in the process pool was terminated abruptly while the future "
                         "was running or pending.",
                         batch);
        } else if (!broken_ && (!shutdown_ || !queue_.empty()) && workers_ < max_workers_) {
            // It left on its own (max_tasks_per_child): replace it, and during shutdown only
            // while queued work remains.
            ++workers_;
            ++batch.start_workers;
        }
    }

    void break_locked(BreakCause cause, const std::string& why, ProcessBatch& batch) {
        broken_ = true;
        timeouts_.clear();
        batch.broken = cause;
        batch.broken_reason = why;
        for (Job& job : queue_) {
            bool cancelled = !job.committed && job.future && is_cancelled(job.future->state());
            counters_.count(cancelled ? Outcome::Cancelled : Outcome::Failed);
            batch.lost.push_back(job.frame.tag);
            batch.released.push_back(std::move(job.frame));
        }
        queue_.clear();
        for (auto& [id, w] : live_) {
            for (auto tag : w.in_flight) {
                if (!taken_by_stop_job(w, tag)) counters_.count(Outcome::Failed);
                batch.lost.push_back(tag);
            }
            w.in_flight.clear();
            release_frames(w, batch);
            w.stop_sent = true;
            ::kill(w.pid, SIGTERM);
        }
        dropped_.clear();
        kill_at_ = std::chrono::steady_clock::now() + kKillGrace;
    }

    // Hands every outgoing frame the worker still has (unsent or kept) back to the owner.
    static void release_frames(Worker& w, ProcessBatch& batch) {
        for (auto& f : w.writer.take_all()) batch.released.push_back(std::move(f));
        for (auto& [tag, f] : w.held) batch.released.push_back(std::move(f));
        w.held.clear();
        w.revoking.clear();
    }

    // How long a job may run before the jobs behind it count as stranded.
    std::chrono::nanoseconds patience_locked() const {
        auto recent = std::chrono::nanoseconds(static_cast<std::int64_t>(kRevokeFactor * std::max(service_ns_, 0.0)));
        return std::max<std::chrono::nanoseconds>(kPrefetchWindow, recent);
    }

    // Asks back the jobs stranded behind a long one (see kRevokeFactor) when a worker idles with
    // nothing queued; returns when to look again (time_point::max() if nothing may strand).
    std::chrono::steady_clock::time_point revoke_stranded_locked() {
        auto never = std::chrono::steady_clock::time_point::max();
        if (shutdown_ || broken_ || !queue_.empty()) return never;
        bool someone_idle = false;
        for (auto& [id, w] : live_)
            if (can_take_locked(w) && w.in_flight.empty()) someone_idle = true;
        if (!someone_idle) return never;
        auto now = std::chrono::steady_clock::now();
        auto patience = patience_locked();
        auto next = never;
        for (auto& [id, w] : live_) {
            if (w.in_flight.size() < 2 || !w.reading || w.stop_sent || w.victim) continue;
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

    // Whether stop_job() took `tag` (counted already; its owner no longer waits for it).
    bool taken_by_stop_job(const Worker& w, std::uint64_t tag) const {
        return dropped_.count(tag) || (w.victim == tag && w.victim_cause == StopCause::Cancelled);
    }

    // The worker running `tag` now (Ready, first in flight, not being stopped), or nullptr.
    Worker* worker_running_locked(std::uint64_t tag) {
        for (auto& [id, w] : live_)
            if (w.ready && !w.victim && !w.in_flight.empty() && w.in_flight.front() == tag) return &w;
        return nullptr;
    }

    // Kills `w` for the job it runs now; its exit (pidfd) ends that job (see "Stopping one job").
    void stop_worker_locked(Worker& w, StopCause cause) {
        w.victim = w.in_flight.front();
        w.victim_cause = cause;
        ::kill(w.pid, SIGKILL);
    }

    // Stops the workers whose running job is past its deadline (its timeout from when it
    // started); returns the next deadline (time_point::max() if none).
    std::chrono::steady_clock::time_point enforce_deadlines_locked() {
        auto next = std::chrono::steady_clock::time_point::max();
        if ((timeouts_.empty() && dropped_.empty()) || broken_) return next;
        auto now = std::chrono::steady_clock::now();
        for (auto& [id, w] : live_) {
            if (!w.ready || w.victim || w.in_flight.empty()) continue;
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

    // The exit status of an exited, not yet reaped child, as multiprocessing reports it (-N for
    // signal N); false when it is not this process's child (a forkserver's). WNOWAIT: the owner
    // reaps it.
    static bool exit_code_of(int pid, int& code) {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != pid)
            return false;
        code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
        return true;
    }

    // Workers of a broken pool still there kKillGrace after their SIGTERM.
    void kill_stragglers_locked() {
        if (std::chrono::steady_clock::now() < kill_at_) return;
        for (auto& [id, w] : live_) ::kill(w.pid, SIGKILL);
    }

    const std::size_t max_workers_;
    const bool start_all_;
    const int max_tasks_per_child_;
    const bool replace_dead_;
    const std::size_t max_in_flight_;
    int wake_fd_ = -1;
    int epoll_fd_ = -1;

    mutable std::mutex mu_;
    std::deque<Job> queue_;
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
