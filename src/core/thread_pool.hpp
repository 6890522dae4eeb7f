// ThreadPool: the task queue, the worker bookkeeping and the worker loop of a thread pool.
//
// The pool does not start threads itself: submit() answers NeedsWorker when the stdlib's policy
// ("start a thread only when no worker is idle and fewer than max_workers exist") asks for one,
// and the owner starts a thread that calls worker_loop() (Python threads in the bindings, so they
// are real threading.Thread objects; std::thread in StdThreadPool and the C++ tests).
//
// `mu_` guards the queue (pending_: priorities, and the bound with its waiting submitters, in
// pending_queue.hpp), shutdown_, broken_, release_idle_, workers_, idle_,
// sleepers_ and every write of acquiring_. `queued_` and `acquiring_` are also atomics, for the
// lock-free spin in wait_for_task(). Nothing is called out (no task, no hook) while `mu_` is
// held, so a hook may take any lock, the GIL included.
//
// Counters: workers_ counts workers started and not yet exited; idle_ the workers between finding
// the queue empty and taking their next task (or exiting), spinning or asleep; sleepers_ the idle
// workers blocked on cv_; acquiring_ the workers that took a task while idle and are taking their
// hooks (the GIL) to run it (0 or 1, by G1).
// cv_ is a FutexCondition, not a std::condition_variable: glibc's notify can sleep, and here it
// would sleep on the submitting thread (futex_condition.hpp has the measurement).
//
// One taker at a time (G1, G2). In the bindings a task needs the GIL, and an idle worker has let
// go of it. While one worker that took a task waits for the GIL, a second one that takes a task
// would only wait behind it for the same GIL, and each release of the GIL would wake one of them
// for nothing; meanwhile the worker that gets the GIL runs the queued tasks itself (it keeps the
// hooks across consecutive tasks). Measured on dask's threaded scheduler (4 workers, its
// scheduler thread holding the GIL most of the time; `perf record -e sched:sched_switch
// --call-graph dwarf`): 5,600 context switches for one compute, 2,228 of them workers asleep in
// take_gil() with a task in hand, against 2,300 in all with the stdlib; with G1 and G2, 2,550.
//   G1. An idle worker takes a task only while acquiring_ == 0 (a worker that holds its hooks
//       takes tasks regardless: it has nothing to acquire).
//   G2. A worker that finishes acquiring with tasks still queued wakes one sleeper, so that a
//       task that lets go of the GIL while it runs (I/O, sleep, a lock) does not keep the queue
//       waiting behind it; once stopping, it wakes them all (they may exit).
//
// Invariants (each kept under `mu_`; together they say that no task stays queued while every
// worker that could take it sleeps):
//   W1. A worker blocks on cv_ only in the same critical section in which it found the queue
//       empty or another worker acquiring, and counts itself in sleepers_ there.
//   W2. Every push made while sleepers_ > 0 and acquiring_ == 0 is followed by a notify_one()
//       (after the unlock); a push made while a worker acquires is that worker's to run or to
//       hand on (G2).
//   W3. A worker that wakes up (notified or not) looks at the queue again before it may block.
//   From W1-W3 and G2: when a task is pushed, either no worker is blocked, or one is being woken
//   and will pop (this task or an earlier one; a busy worker may have taken it first, then the
//   woken worker finds the queue empty and blocks again, and a later push wakes it again by W2),
//   or a worker is acquiring, which runs queued tasks once it holds its hooks and wakes a
//   sleeper as it gets them (G2). No wake-up is owed to a particular worker, so none can be
//   lost: there is no per-worker claim.
//   S1. submit() asks for a new worker iff, after its push, the queue is longer than idle_ (the
//       idle workers cannot take every queued task) and workers_ < max_workers. An idle worker
//       is thus never counted for two tasks, without any bookkeeping that could go stale.
// A worker counts itself idle before it lets go of its hooks (the GIL), so that a caller woken
// by the task it just finished already sees it idle (the stdlib's idle semaphore is released
// the same way, before the next get()).
//
// Forced unwinding: in the bindings, acquire() and Task::run() may unwind the thread (CPython
// ends a thread that takes the GIL back during interpreter finalization). Neither is noexcept,
// and worker_loop() keeps workers_ and acquiring_ right on that path; the task being run is then
// leaked, on purpose (releasing it would need the GIL the thread is being denied).
//
//     core::StdThreadPool pool(4);
//     pool.submit(std::make_unique<MyTask>(...));
//     pool.shutdown(/*cancel_pending=*/false, /*wait=*/true);
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor_stats.hpp"
#include "futex_condition.hpp"
#include "pending_queue.hpp"
#include "spin_policy.hpp"

namespace cfutures::core {

class Task {
public:
    virtual ~Task() = default;
    // Runs on a worker, with the worker's hooks acquired (the GIL, in the bindings). Reports the
    // task's own failures itself; may unwind the thread (see the header), so it is not noexcept.
    virtual void run() = 0;
    // The task will never run: shutdown(cancel_futures=True) drained it. Called by whoever
    // drained it, outside the pool's lock.
    virtual void abandon() = 0;
    // Whether its future was cancelled while it waits in the queue (for stats(); called under
    // the pool's lock, so it must not lock anything).
    virtual bool cancelled() const { return false; }

private:
    friend class ThreadPool;
    int priority_ = 0;  // pending_'s lane; set by submit()
};

// What a worker does around the tasks it runs. The bindings hold the GIL between acquire() and
// release(); worker_loop() is entered and left in the acquired state. yield() lets whoever waits
// for what acquire() takes have it, then takes it back.
class WorkerHooks {
public:
    virtual ~WorkerHooks() = default;
    virtual void acquire() = 0;
    virtual void release() = 0;
    virtual void yield() {
        release();
        acquire();
    }
};

// Where a test can hold a worker between two steps (see ThreadPool::set_probe).
enum class ThreadPoolStep {
    Woken,  // a worker blocked on the condition variable woke up, before it looks at the queue
};
class ThreadPoolProbe {
public:
    virtual ~ThreadPoolProbe() = default;
    virtual void at(ThreadPoolStep step) = 0;
};

class ThreadPool {
public:
    enum class Submit { Queued, NeedsWorker, Shutdown, Broken, Full };

    // `max_queued` > 0 bounds the tasks waiting to start (back-pressure); 0: no bound.
    explicit ThreadPool(std::size_t max_workers, std::size_t max_queued = 0)
        : max_workers_(max_workers), pending_(max_queued) {}
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() {
        for (Task* t : pending_.take_all()) delete t;
    }

    // Takes ownership of `task` (lower `priority` starts first) unless the answer is Shutdown,
    // Broken or Full (the queue is at its bound: see wait_for_room()). On NeedsWorker the caller
    // must start a worker, or call worker_start_failed() if it cannot.
    Submit submit(std::unique_ptr<Task>&& task, int priority = 0) {
        // (A unique_ptr of a derived class is refused below: it would convert into a temporary,
        // which would own, and on Full delete, the task the caller still points to.)
        bool wake;
        Submit answer = Submit::Queued;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (broken_) return Submit::Broken;
            if (shutdown_) return Submit::Shutdown;
            if (!pending_.has_room()) return Submit::Full;
            counters_.count_submitted();
            task->priority_ = priority;
            push_locked(task.release());
            if (queued_.load(std::memory_order_relaxed) > idle_ && workers_ < max_workers_) {  // S1
                ++workers_;
                answer = Submit::NeedsWorker;
            }
            wake = sleepers_ > 0 && acquiring_.load(std::memory_order_relaxed) == 0;  // W2
        }
        if (wake) cv_.notify_one();
        return answer;
    }

    // What the stdlib's _adjust_thread_count() does when code calls it by hand, to start workers
    // ahead of the first tasks: asks for one more worker while workers_ < max_workers (the
    // stdlib counts a worker idle only once it has run a task, so each call on a fresh pool
    // starts one). The caller starts it (or calls worker_start_failed()), as for
    // Submit::NeedsWorker.
    bool reserve_worker() {
        std::lock_guard<std::mutex> g(mu_);
        if (broken_ || shutdown_ || workers_ >= max_workers_) return false;
        ++workers_;
        return true;
    }

    // Removes the oldest queued task and hands it to the caller (the stdlib's
    // `executor._work_queue.get_nowait()`), or nullptr when none is queued.
    // It leaves the pool unrun: counted cancelled.
    std::unique_ptr<Task> take_queued() {
        std::lock_guard<std::mutex> g(mu_);
        Task* t = pop_locked();
        if (t) counters_.count(Outcome::Cancelled);
        return std::unique_ptr<Task>(t);
    }

    template <class Derived>
    Submit submit(std::unique_ptr<Derived>&& task, int priority = 0) = delete;

    // After Submit::Full: blocks until the queue may have room, the pool stops taking tasks, or
    // `until`; the caller then submits again (another submitter may have taken the place).
    void wait_for_room(std::chrono::steady_clock::time_point until) {
        std::unique_lock<std::mutex> lock(mu_);
        if (pending_.has_room() || shutdown_ || broken_) return;
        pending_.wait_for_room(lock, until);
    }
    // A submitter that waited gives up without submitting: a place it was woken for goes on.
    void stop_waiting_for_room() {
        std::lock_guard<std::mutex> g(mu_);
        pending_.pass_on_room();
    }

    void worker_start_failed() {
        std::lock_guard<std::mutex> g(mu_);
        if (workers_ > 0) --workers_;
    }

    // The body of a worker thread. Returns once the pool is shut down (or broken) and drained.
    void worker_loop(WorkerHooks& hooks) {
        // Counts the worker out however it leaves, an unwinding thread included.
        struct Leave {
            ThreadPool& pool;
            bool acquiring = false;  // unwound while acquiring: let the others take tasks (G1)
            ~Leave() {
                if (acquiring) pool.acquired();
                std::lock_guard<std::mutex> g(pool.mu_);
                --pool.workers_;
            }
        } leave{*this};
        bool held = true;
        auto held_since = std::chrono::steady_clock::now();
        std::size_t since_check = 0;
        for (;;) {
            Task* task = pop_or_go_idle();
            if (!task) {
                if (held) {
                    hooks.release();
                    held = false;
                }
                task = wait_for_task();
                if (!task) break;
                leave.acquiring = true;
            }
            if (!held) {
                hooks.acquire();
                held = true;
                leave.acquiring = false;
                acquired();
                held_since = std::chrono::steady_clock::now();
                since_check = 0;
            } else if (++since_check == kTasksPerClockCheck) {
                since_check = 0;
                auto now = std::chrono::steady_clock::now();
                if (now - held_since >= kHoldSlice) {
                    // Tasks that never run bytecode (builtins) never see the interpreter's
                    // request to drop the GIL: hand it over now and then.
                    hooks.yield();
                    held_since = std::chrono::steady_clock::now();
                }
            }
            task->run();
            delete task;
        }
        if (!held) hooks.acquire();
    }

    // Stops accepting tasks; workers finish what is queued, unless cancel_pending, in which case
    // the queued tasks are returned for the caller to abandon.
    std::vector<Task*> shutdown(bool cancel_pending) {
        std::vector<Task*> drained;
        {
            std::lock_guard<std::mutex> g(mu_);
            shutdown_ = true;
            if (cancel_pending) drained = drain_locked();
            pending_.wake_all_waiting();
        }
        cv_.notify_all();
        return drained;
    }

    // Lets workers exit once the queue is empty, without refusing submits: what interpreter exit
    // does (refusing new work is the caller's business there, with its own message).
    void release_idle_workers() {
        {
            std::lock_guard<std::mutex> g(mu_);
            release_idle_ = true;
            pending_.wake_all_waiting();
        }
        cv_.notify_all();
    }

    // Marks the pool broken (a worker's initializer failed): returns the queued tasks, which the
    // caller fails; later submits answer Broken and idle workers exit.
    std::vector<Task*> break_pool() {
        std::vector<Task*> drained;
        {
            std::lock_guard<std::mutex> g(mu_);
            broken_ = true;
            drained = drain_locked();
            pending_.wake_all_waiting();
        }
        cv_.notify_all();
        return drained;
    }

    bool is_shutdown() const {
        std::lock_guard<std::mutex> g(mu_);
        return shutdown_;
    }
    bool is_broken() const {
        std::lock_guard<std::mutex> g(mu_);
        return broken_;
    }
    std::size_t queued() const { return queued_.load(std::memory_order_relaxed); }
    std::size_t workers() const {
        std::lock_guard<std::mutex> g(mu_);
        return workers_;
    }
    std::size_t idle_workers() const {
        std::lock_guard<std::mutex> g(mu_);
        return idle_;
    }
    // Idle workers that no queued task will take: the value of the stdlib's `_idle_semaphore`.
    std::size_t unclaimed_idle_workers() const {
        std::lock_guard<std::mutex> g(mu_);
        std::size_t queued = queued_.load(std::memory_order_relaxed);
        return idle_ > queued ? idle_ - queued : 0;
    }
    std::size_t sleeping_workers() const {
        std::lock_guard<std::mutex> g(mu_);
        return sleepers_;
    }
    std::size_t max_workers() const { return max_workers_; }
    std::size_t max_queued() const { return pending_.bound(); }

    // Where the owner counts each task's outcome (executor_stats.hpp), once per task it ran or
    // abandoned, before the outcome is visible (take_queued() counts its own).
    OutcomeCounters& counters() { return counters_; }
    ExecutorStats stats() const {
        auto done = counters_.outcomes();
        std::lock_guard<std::mutex> g(mu_);
        std::uint64_t queued = 0, pending_cancelled = 0;
        pending_.for_each([&](const Task* t) { ++(t->cancelled() ? pending_cancelled : queued); });
        ExecutorStats s = OutcomeCounters::combine(done, counters_.submitted.load(std::memory_order_relaxed),
                                                   queued, pending_cancelled);
        s.workers = workers_;
        // Idle with nothing to take: an idle worker that a queued task will wake is not counted
        // (one waiting its turn for the GIL, G1, included), so idle_workers > 0 only once the
        // queue is empty.
        s.idle_workers = idle_ > queued ? idle_ - queued : 0;
        return s;
    }

    // Test seam: `probe` (outliving the pool's workers) is called at each ThreadPoolStep. Set it
    // before the first submit.
    void set_probe(ThreadPoolProbe* probe) { probe_ = probe; }

private:
    // Long enough to catch the next task of a submit/result loop (a few microseconds apart)
    // without a futex sleep and wake, short enough not to matter on a 2-core machine; spent only
    // when the spin policy allows (a free core, recent spins that caught their task).
    static constexpr auto kIdleSpin = std::chrono::microseconds(50);
    // A worker keeps its hooks acquired across consecutive tasks for about one interpreter switch
    // interval before it yields; the clock is read every few tasks only.
    static constexpr auto kHoldSlice = std::chrono::milliseconds(5);
    static constexpr std::size_t kTasksPerClockCheck = 32;

    void push_locked(Task* t) {
        pending_.push_back(t, t->priority_);
        queued_.fetch_add(1, std::memory_order_relaxed);
    }

    Task* pop_locked() {
        if (pending_.empty()) return nullptr;
        Task* t = pending_.front();
        pending_.pop_front();
        queued_.fetch_sub(1, std::memory_order_relaxed);
        return t;
    }

    std::vector<Task*> drain_locked() {
        std::vector<Task*> out = pending_.take_all();
        queued_.store(0, std::memory_order_relaxed);
        return out;
    }

    Task* pop_or_go_idle() {
        std::lock_guard<std::mutex> g(mu_);
        if (Task* t = pop_locked()) return t;
        ++idle_;
        return nullptr;
    }

    bool stopping_locked() const { return shutdown_ || broken_ || release_idle_; }

    // Called idle (counted in idle_); returns a task (the caller is then acquiring: G1), or
    // nullptr when the worker must exit.
    Task* wait_for_task() {
        // Spins only while that pays (spin_policy.hpp); W1-W3 hold either way.
        auto began = std::chrono::steady_clock::now();
        idle_spin_.spin_until([&] {
            return queued_.load(std::memory_order_relaxed) != 0 && acquiring_.load(std::memory_order_relaxed) == 0;
        });
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            const bool may_take = acquiring_.load(std::memory_order_relaxed) == 0;  // G1
            if (Task* t = may_take ? pop_locked() : nullptr) {
                --idle_;
                acquiring_.store(1, std::memory_order_relaxed);
                idle_spin_.record_wait(std::chrono::steady_clock::now() - began);
                return t;
            }
            // Queued tasks are left to the acquiring worker (G2): exit only with none left.
            if (stopping_locked() && (may_take || queued_.load(std::memory_order_relaxed) == 0)) {
                --idle_;
                return nullptr;
            }
            ++sleepers_;  // W1: in the section that saw the queue empty or a worker acquiring
            cv_.wait(lock);
            --sleepers_;
            if (probe_) {  // W3 holds whatever the probe does: the loop looks again
                lock.unlock();
                probe_->at(ThreadPoolStep::Woken);
                lock.lock();
            }
        }
    }

    // The worker that took a task holds its hooks now (G2).
    void acquired() {
        bool wake_one = false, wake_all = false;
        {
            std::lock_guard<std::mutex> g(mu_);
            acquiring_.store(0, std::memory_order_relaxed);
            if (sleepers_ > 0) {
                wake_all = stopping_locked();
                wake_one = !wake_all && queued_.load(std::memory_order_relaxed) != 0;
            }
        }
        if (wake_all) cv_.notify_all();
        else if (wake_one) cv_.notify_one();
    }

    mutable std::mutex mu_;
    FutexCondition cv_;  // notify never sleeps (futex_condition.hpp)
    const std::size_t max_workers_;
    std::atomic<std::size_t> queued_{0};
    std::atomic<unsigned> acquiring_{0};  // written under mu_ (G1)
    PendingQueue<Task*> pending_;
    bool shutdown_ = false;
    bool broken_ = false;
    bool release_idle_ = false;
    std::size_t workers_ = 0;
    std::size_t idle_ = 0;
    std::size_t sleepers_ = 0;
    ThreadPoolProbe* probe_ = nullptr;
    SpinSite idle_spin_{kIdleSpin};
    OutcomeCounters counters_;  // `submitted` bumped under mu_, the outcomes by the owner
};

// A ThreadPool whose workers are std::threads with no hooks: for C++ users and tests.
class StdThreadPool {
public:
    explicit StdThreadPool(std::size_t max_workers) : pool_(max_workers) {}
    ~StdThreadPool() { shutdown(false, true); }

    ThreadPool::Submit submit(std::unique_ptr<Task> task) {
        auto answer = pool_.submit(std::move(task));
        if (answer == ThreadPool::Submit::NeedsWorker) {
            std::lock_guard<std::mutex> g(threads_mu_);
            threads_.emplace_back([this] {
                NoHooks hooks;
                pool_.worker_loop(hooks);
            });
        }
        return answer;
    }

    void shutdown(bool cancel_pending, bool wait) {
        for (Task* t : pool_.shutdown(cancel_pending)) {
            t->abandon();
            delete t;
        }
        if (!wait) return;
        std::vector<std::thread> threads;
        {
            std::lock_guard<std::mutex> g(threads_mu_);
            threads.swap(threads_);
        }
        for (auto& t : threads) t.join();
    }

    ThreadPool& pool() { return pool_; }
    std::size_t threads_started() {
        std::lock_guard<std::mutex> g(threads_mu_);
        return threads_.size();
    }

private:
    struct NoHooks final : WorkerHooks {
        void acquire() override {}
        void release() override {}
    };
    ThreadPool pool_;
    std::mutex threads_mu_;
    std::vector<std::thread> threads_;
};

}  // namespace cfutures::core
