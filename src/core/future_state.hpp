// FutureCore: the state machine of one future, the list of waiters watching it, and edits.
//
//     PENDING --cancel()--> CANCELLED --set_running_or_notify_cancel()--> CANCELLED_AND_NOTIFIED
//        |                                                                  ^
//        +--set_running_or_notify_cancel()--> RUNNING --cancel_running()----+  (opt-in, see there)
//        |                                       +------finish()--> FINISHED
//        +--finish()-----------------------------------------------> FINISHED
//
// The outcome (result, exception, callbacks) belongs to the derived class, which stores it inside
// the callbacks passed to the transitions so that it is written under the same lock as the state.
// `mu_` guards the waiter list, the edit fields, the stamps and every write of `state_`; `state_`
// is also an atomic so that done()/result() on a finished future read it without locking (the
// release store publishes the outcome written before it). Waiters are notified with `mu_` held;
// see waiter.hpp for the lock order.
//
// Edits. Code written against the stdlib's internals (CPython's test-suite; the stdlib's own
// wait() and as_completed() when handed a cfutures future) opens `with future._condition:` and
// reads or assigns `_state`, `_result`, `_waiters` inside, counting on that lock to keep other
// threads' transitions out. An edit is that lock: re-entrant, owned by one thread; other threads'
// transitions and edits wait until it closes (through the blocking hook, which lets the bindings
// release the GIL the owner may need to close it). Native waiters hear of what the owner changed
// when the edit closes. `edit_depth_` is also an atomic so that the lock-free readers can tell.
//
// Stamps order the collective transitions against registrations of "foreign" waiters (the
// stdlib's Python waiter objects, which cannot be called under `mu_`): a foreign waiter registered
// with a stamp older than `collective_at_` is owed a notification.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "small_mutex.hpp"
#include "waiter.hpp"

namespace cfutures::core {

enum class FutureState : std::uint8_t { Pending, Running, Cancelled, CancelledAndNotified, Finished };

constexpr bool is_done(FutureState s) { return s >= FutureState::Cancelled; }
constexpr bool is_cancelled(FutureState s) {
    return s == FutureState::Cancelled || s == FutureState::CancelledAndNotified;
}
// What wait()/as_completed() count as done: a plain CANCELLED future is still pending for them.
constexpr bool is_done_for_collective(FutureState s) {
    return s == FutureState::CancelledAndNotified || s == FutureState::Finished;
}

enum class CancelOutcome : std::uint8_t { Cancelled, AlreadyCancelled, Refused };
// Busy: another thread has an edit open and the caller asked not to wait for it.
enum class StartOutcome : std::uint8_t { Running, Cancelled, Invalid, Busy };

// How a thread blocks until another thread's edit closes: `wait(arg)` does the blocking. The
// default calls it directly; the bindings install one that releases the GIL around it.
using BlockingHook = void (*)(void (*wait)(void*), void* arg);
inline std::atomic<BlockingHook>& edit_blocking_hook() {
    static std::atomic<BlockingHook> hook{nullptr};
    return hook;
}

// Where threads sleep while an edit they wait for is open: one for all futures (edits are rare
// and short). Leaked so that it outlives every thread at exit.
struct EditGate {
    std::mutex mu;
    std::condition_variable cv;
};
inline EditGate& edit_gate() {
    static EditGate* gate = new EditGate;
    return *gate;
}

class FutureCore {
public:
    FutureCore() = default;
    FutureCore(const FutureCore&) = delete;
    FutureCore& operator=(const FutureCore&) = delete;

    FutureState state() const noexcept { return state_.load(std::memory_order_acquire); }
    // True while a `with future._condition:` block is open (see begin_edit).
    bool editing() const noexcept { return edit_depth_.load(std::memory_order_acquire) != 0; }
    // Done and readable without the lock.
    bool settled() const noexcept { return is_done(state()) && !editing(); }
    bool has_exception() const noexcept { return has_exception_.load(std::memory_order_acquire); }

    // On Cancelled, the caller must run the done-callbacks (once: only this call reports it).
    CancelOutcome cancel() {
        std::unique_lock<SmallMutex> g(mu_, std::defer_lock);
        lock_between_edits(g);
        switch (state_.load(std::memory_order_relaxed)) {
            case FutureState::Running:
            case FutureState::Finished: return CancelOutcome::Refused;
            case FutureState::Cancelled:
            case FutureState::CancelledAndNotified: return CancelOutcome::AlreadyCancelled;
            case FutureState::Pending: break;
        }
        state_.store(FutureState::Cancelled, std::memory_order_release);
        fire_locked(Completion::Cancelled, /*collective=*/false);
        return CancelOutcome::Cancelled;
    }

    // RUNNING -> CANCELLED_AND_NOTIFIED: the call was stopped by its pool (a process pool made
    // with cancel_running=True; the stdlib never cancels a running call). Returns whether it
    // did; on true the caller must run the done-callbacks.
    bool cancel_running() {
        std::unique_lock<SmallMutex> g(mu_, std::defer_lock);
        lock_between_edits(g);
        if (state_.load(std::memory_order_relaxed) != FutureState::Running) return false;
        state_.store(FutureState::CancelledAndNotified, std::memory_order_release);
        collective_at_ = ++clock_;
        fire_locked(Completion::Cancelled, /*collective=*/true);
        return true;
    }

    // `may_wait` false: returns Busy instead of waiting for another thread's edit (for callers
    // that hold locks of their own).
    StartOutcome set_running_or_notify_cancel(bool may_wait = true) {
        std::unique_lock<SmallMutex> g(mu_, std::defer_lock);
        if (may_wait) {
            lock_between_edits(g);
        } else {
            g.lock();
            if (edit_open_elsewhere_locked()) return StartOutcome::Busy;
        }
        switch (state_.load(std::memory_order_relaxed)) {
            case FutureState::Pending:
                state_.store(FutureState::Running, std::memory_order_release);
                return StartOutcome::Running;
            case FutureState::Cancelled:
                state_.store(FutureState::CancelledAndNotified, std::memory_order_release);
                collective_at_ = ++clock_;
                fire_locked(Completion::Cancelled, /*collective=*/true);
                return StartOutcome::Cancelled;
            default: return StartOutcome::Invalid;
        }
    }

    // PENDING/RUNNING -> FINISHED. `store()` writes the outcome under the lock. Returns false (and
    // does not call store) when the future is already cancelled or finished.
    template <class Store>
    bool finish(Completion how, Store&& store) {
        std::unique_lock<SmallMutex> g(mu_, std::defer_lock);
        lock_between_edits(g);
        FutureState s = state_.load(std::memory_order_relaxed);
        if (s != FutureState::Pending && s != FutureState::Running) return false;
        store();
        has_exception_.store(how == Completion::Exception, std::memory_order_relaxed);
        state_.store(FutureState::Finished, std::memory_order_release);
        collective_at_ = ++clock_;
        fire_locked(how, /*collective=*/true);
        return true;
    }

    // Runs `f` under the lock (for reading or writing the outcome consistently).
    template <class F>
    decltype(auto) locked(F&& f) {
        std::lock_guard<SmallMutex> g(mu_);
        return f();
    }

    // Links `link` unless the future is already done from the link's point of view; returns
    // whether it linked. A waiter must unlink every link it linked before it goes away.
    bool link(WaiterLink& link) {
        std::lock_guard<SmallMutex> g(mu_);
        if (!editing()) {
            FutureState s = state_.load(std::memory_order_relaxed);
            if (link.wants_cancel ? is_done(s) : is_done_for_collective(s)) return false;
        }
        link.prev = nullptr;
        link.next = waiters_;
        if (waiters_) waiters_->prev = &link;
        waiters_ = &link;
        link.linked = true;
        return true;
    }

    void unlink(WaiterLink& link) {
        std::lock_guard<SmallMutex> g(mu_);
        unlink_locked(link);
    }

    // A stamp for a foreign waiter registered now (call inside locked()).
    std::uint32_t stamp_locked() { return ++clock_; }
    // The stamp of the last collective transition (0: none yet).
    std::uint32_t collective_at_locked() const { return collective_at_; }

    // --- Edits (see the header). Direct assignments of the state, made by code that sets
    // `_state` by hand, go through force_state; they are not transitions (foreign waiters are not
    // told, as the stdlib does not tell its waiters).
    void force_state(FutureState s, bool has_exception) {
        std::unique_lock<SmallMutex> g(mu_, std::defer_lock);
        lock_between_edits(g);
        has_exception_.store(has_exception, std::memory_order_relaxed);
        state_.store(s, std::memory_order_release);
        if (!editing()) fire_for_current_state_locked();
    }
    void set_has_exception(bool v) { has_exception_.store(v, std::memory_order_release); }

    // Opens (or re-enters) this thread's edit, `depth` levels deep; false if `deadline` passed
    // while another thread's edit was open.
    bool begin_edit(std::optional<Clock::time_point> deadline = std::nullopt, std::uint32_t depth = 1) {
        std::unique_lock<SmallMutex> g(mu_, std::defer_lock);
        if (!lock_between_edits(g, deadline)) return false;
        if (edit_depth_.load(std::memory_order_relaxed) == 0) edit_owner_ = std::this_thread::get_id();
        edit_depth_.fetch_add(depth, std::memory_order_acq_rel);
        return true;
    }
    // Closes one level of this thread's edit; false when this thread has none open.
    bool end_edit() { return close_edit(false) != 0; }
    // Closes this thread's edit whatever its depth (Condition.wait() releases an RLock fully);
    // returns the depth to reopen with begin_edit, 0 when there was none.
    std::uint32_t suspend_edit() { return close_edit(true); }
    bool edit_open_here() {
        std::lock_guard<SmallMutex> g(mu_);
        return edit_depth_.load(std::memory_order_relaxed) != 0 && !edit_open_elsewhere_locked();
    }

protected:
    ~FutureCore() = default;

private:
    // Locks `g` (on mu_) once no other thread has an edit open; false, unlocked, if `deadline`
    // passes first.
    bool lock_between_edits(std::unique_lock<SmallMutex>& g,
                            std::optional<Clock::time_point> deadline = std::nullopt) {
        g.lock();
        while (edit_open_elsewhere_locked()) {
            if (deadline && Clock::now() >= *deadline) {
                g.unlock();
                return false;
            }
            ++edit_waiting_;
            g.unlock();
            sleep_until_edit_closes(deadline);
            g.lock();
            --edit_waiting_;
        }
        return true;
    }

    void sleep_until_edit_closes(std::optional<Clock::time_point> deadline) {
        struct Sleep {
            const FutureCore* future;
            std::optional<Clock::time_point> deadline;
        } sleep{this, deadline};
        auto wait = [](void* arg) {
            auto& s = *static_cast<Sleep*>(arg);
            EditGate& gate = edit_gate();
            std::unique_lock<std::mutex> lock(gate.mu);
            while (s.future->edit_depth_.load(std::memory_order_acquire) != 0) {
                if (!s.deadline) gate.cv.wait(lock);
                else if (gate.cv.wait_until(lock, *s.deadline) == std::cv_status::timeout) return;
            }
        };
        BlockingHook hook = edit_blocking_hook().load(std::memory_order_acquire);
        if (hook) hook(wait, &sleep);
        else wait(&sleep);
    }

    bool edit_open_elsewhere_locked() const {
        return edit_depth_.load(std::memory_order_relaxed) != 0 &&
               edit_owner_ != std::this_thread::get_id();
    }

    std::uint32_t close_edit(bool all) {
        std::uint32_t closed;
        bool wake;
        {
            std::lock_guard<SmallMutex> g(mu_);
            std::uint32_t depth = edit_depth_.load(std::memory_order_relaxed);
            if (depth == 0 || edit_owner_ != std::this_thread::get_id()) return 0;
            closed = all ? depth : 1;
            edit_depth_.fetch_sub(closed, std::memory_order_acq_rel);
            if (closed != depth) return closed;
            edit_owner_ = std::thread::id();
            fire_for_current_state_locked();
            wake = edit_waiting_ != 0;
        }
        if (wake) {
            // Taking the gate's mutex orders this wake-up after any sleeper's last check.
            { std::lock_guard<std::mutex> lock(edit_gate().mu); }
            edit_gate().cv.notify_all();
        }
        return closed;
    }

    void unlink_locked(WaiterLink& link) {
        if (!link.linked) return;
        if (link.prev) link.prev->next = link.next;
        else waiters_ = link.next;
        if (link.next) link.next->prev = link.prev;
        link.prev = link.next = nullptr;
        link.linked = false;
    }

    // Notifies and unlinks the waiters that this transition concerns: `collective` transitions
    // (finished, cancellation notified) concern every waiter, a plain cancel only result() waiters.
    void fire_locked(Completion how, bool collective) {
        if (editing()) return;
        WaiterLink* link = waiters_;
        while (link) {
            WaiterLink* next = link->next;
            if (collective || link->wants_cancel) {
                unlink_locked(*link);
                link->waiter->notify(link->tag, how);
            }
            link = next;
        }
    }

    void fire_for_current_state_locked() {
        FutureState s = state_.load(std::memory_order_relaxed);
        if (s == FutureState::Finished) {
            fire_locked(has_exception_.load(std::memory_order_relaxed) ? Completion::Exception
                                                                        : Completion::Result,
                        true);
        } else if (is_cancelled(s)) {
            fire_locked(Completion::Cancelled, s == FutureState::CancelledAndNotified);
        }
    }

    SmallMutex mu_;
    std::atomic<FutureState> state_{FutureState::Pending};
    std::atomic<bool> has_exception_{false};
    std::atomic<std::uint32_t> edit_depth_{0};
    std::uint32_t edit_waiting_ = 0;  // threads asleep in lock_between_edits
    std::thread::id edit_owner_;
    std::uint32_t clock_ = 0;
    std::uint32_t collective_at_ = 0;
    WaiterLink* waiters_ = nullptr;
};

}  // namespace cfutures::core
