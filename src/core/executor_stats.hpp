// ExecutorStats and OutcomeCounters: what Executor.stats() reports, for both pools.
//
// A pool counts what became of its tasks in OutcomeCounters, where the outcome is decided:
// relaxed atomics, no lock on the hot path (a task's submit, and its end). What is queued and
// what runs is not counted as it changes: stats() reads the pool's queue under the pool's own
// lock, and takes the running tasks as the rest. So, whenever no call is in flight,
//
//     submitted == queued + running + completed + failed + cancelled
//
// and once every submitted future is done, queued == running == 0 (a future cancelled while
// queued counts as cancelled at once, not when a worker comes to it).
//
// Invariants the pools keep: `submitted` is bumped before the task can be seen in the queue (under
// the pool's lock); every task that leaves the queue ends in exactly one of completed, failed and
// cancelled. Readers load the outcomes before `submitted`, so `running` never comes out negative.
//
// Besides the tasks, `workers_replaced` counts the workers a process pool started in place of
// one that left or was stopped while the pool ran: a worker that left on its own
// (max_tasks_per_child, max_worker_memory), or whose job was stopped (task_timeout,
// cancel_running) or died with on_worker_death="replace". Counted when the pool asks its owner
// for the replacement (a start that then fails breaks the pool). Not counted: the workers a pool
// starts as work comes (up to max_workers), nor any in a broken pool. A thread pool replaces
// nothing: 0. `calls_inlined` counts the calls a process pool sent with their large buffers
// inside the frame because no memfd could be made or sent (protocol.hpp, INLINE ATTACHMENTS):
// the cost of a hostile environment, made visible.
#pragma once

#include <atomic>
#include <cstdint>

#include "future_state.hpp"

namespace cfutures::core {

struct ExecutorStats {
    std::uint64_t submitted = 0, queued = 0, running = 0, completed = 0, failed = 0, cancelled = 0;
    std::uint64_t workers = 0, idle_workers = 0;
    std::uint64_t workers_replaced = 0, calls_inlined = 0;  // outside the identity above
};

enum class Outcome : std::uint8_t { Completed, Failed, Cancelled };

// The outcome a done future stands for (a future not done yet left its pool unrun: cancelled).
inline Outcome outcome_of(const FutureCore& f) {
    FutureState s = f.state();
    if (s == FutureState::Finished) return f.has_exception() ? Outcome::Failed : Outcome::Completed;
    return Outcome::Cancelled;
}

struct OutcomeCounters {
    std::atomic<std::uint64_t> submitted{0};
    std::atomic<std::uint64_t> completed{0}, failed{0}, cancelled{0};
    std::atomic<std::uint64_t> workers_replaced{0}, calls_inlined{0};

    void count_submitted() { submitted.fetch_add(1, std::memory_order_relaxed); }
    void count_replacement() { workers_replaced.fetch_add(1, std::memory_order_relaxed); }
    void count_inlined(std::uint64_t n) { calls_inlined.fetch_add(n, std::memory_order_relaxed); }
    void count(Outcome how) {
        auto& c = how == Outcome::Completed ? completed : how == Outcome::Failed ? failed : cancelled;
        c.fetch_add(1, std::memory_order_relaxed);
    }

    // The outcomes so far (load them first: see the header). `pending_cancelled` are queued
    // tasks whose futures are cancelled already; `queued` the other queued ones, read with
    // `submitted_now` under the pool's lock.
    struct Outcomes {
        std::uint64_t completed, failed, cancelled;
    };
    Outcomes outcomes() const {
        return {completed.load(std::memory_order_acquire), failed.load(std::memory_order_acquire),
                cancelled.load(std::memory_order_acquire)};
    }
    static ExecutorStats combine(const Outcomes& done, std::uint64_t submitted_now, std::uint64_t queued,
                                 std::uint64_t pending_cancelled) {
        ExecutorStats s;
        s.submitted = submitted_now;
        s.queued = queued;
        s.completed = done.completed;
        s.failed = done.failed;
        s.cancelled = done.cancelled + pending_cancelled;
        std::uint64_t accounted = queued + s.completed + s.failed + s.cancelled;
        s.running = submitted_now > accounted ? submitted_now - accounted : 0;
        return s;
    }
};

}  // namespace cfutures::core
