// FutureCore: the state machine of one future, and the list of waiters watching it.
//
//     PENDING --cancel()--> CANCELLED --set_running_or_notify_cancel()--> CANCELLED_AND_NOTIFIED
//        |                                             
//        +--set_running_or_notify_cancel()--> RUNNING --finish()--> FINISHED
//        +--finish()-----------------------------------------------> FINISHED
//
// The outcome (result, exception, callbacks) belongs to the derived class, which stores it inside
// the callbacks passed to the transitions so that it is written under the same lock as the state.
// `mu_` guards the waiter list, `edit_depth_` and every write of `state_`; `state_` is also an
// atomic so that done()/result() on a finished future read it without locking (the release store
// publishes the outcome written before it). Waiters are notified with `mu_` held; see waiter.hpp
// for the lock order.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

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
enum class StartOutcome : std::uint8_t { Running, Cancelled, Invalid };

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
        std::lock_guard<SmallMutex> g(mu_);
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

    StartOutcome set_running_or_notify_cancel() {
        std::lock_guard<SmallMutex> g(mu_);
        switch (state_.load(std::memory_order_relaxed)) {
            case FutureState::Pending:
                state_.store(FutureState::Running, std::memory_order_release);
                return StartOutcome::Running;
            case FutureState::Cancelled:
                state_.store(FutureState::CancelledAndNotified, std::memory_order_release);
                fire_locked(Completion::Cancelled, /*collective=*/true);
                return StartOutcome::Cancelled;
            default: return StartOutcome::Invalid;
        }
    }

    // PENDING/RUNNING -> FINISHED. `store()` writes the outcome under the lock. Returns false (and
    // does not call store) when the future is already cancelled or finished.
    template <class Store>
    bool finish(Completion how, Store&& store) {
        std::lock_guard<SmallMutex> g(mu_);
        FutureState s = state_.load(std::memory_order_relaxed);
        if (s != FutureState::Pending && s != FutureState::Running) return false;
        store();
        has_exception_.store(how == Completion::Exception, std::memory_order_relaxed);
        state_.store(FutureState::Finished, std::memory_order_release);
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

    // --- Direct state edits. CPython's test-suite (and code written against the stdlib's
    // internals) assigns `_state`, `_result` and `_exception` by hand, usually inside
    // `with future._condition:`. These keep such code working: an edit made inside a begin_edit /
    // end_edit pair becomes visible to waiters only when the pair closes.
    void force_state(FutureState s, bool has_exception) {
        std::lock_guard<SmallMutex> g(mu_);
        has_exception_.store(has_exception, std::memory_order_relaxed);
        state_.store(s, std::memory_order_release);
        if (!editing()) fire_for_current_state_locked();
    }
    void set_has_exception(bool v) { has_exception_.store(v, std::memory_order_release); }
    void begin_edit() {
        std::lock_guard<SmallMutex> g(mu_);
        edit_depth_.fetch_add(1, std::memory_order_acq_rel);
    }
    // Returns false when there was no open edit.
    bool end_edit() {
        std::lock_guard<SmallMutex> g(mu_);
        if (edit_depth_.load(std::memory_order_relaxed) == 0) return false;
        if (edit_depth_.fetch_sub(1, std::memory_order_acq_rel) == 1) fire_for_current_state_locked();
        return true;
    }

protected:
    ~FutureCore() = default;

private:
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
    std::atomic<std::uint8_t> edit_depth_{0};
    std::atomic<bool> has_exception_{false};
    WaiterLink* waiters_ = nullptr;
};

}  // namespace cfutures::core
