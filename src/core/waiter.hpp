// Waiter: one blocked caller of result(), wait() or as_completed(), and the links that tie it to
// the futures it watches.
//
// A Waiter is notified by futures as they complete (FutureCore::fire, with that future's lock
// held) and by adapters for foreign futures. `mu_` guards pending_, fired_, sleeping_ and
// completed_. Lock order: a future's lock, then a waiter's lock; a Waiter never takes a future's
// lock while holding its own, which is what makes unlinking (FutureCore::unlink) safe.
//
//     core::Waiter w(core::WaitMode::AllDone);
//     for (...) { w.add_pending(); if (!future.link(link_i)) w.notify(tag_i, how_i); }
//     w.release_guard();
//     w.wait_until(deadline);   // true when the condition holds
//     for (...) future.unlink(link_i);
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace cfutures::core {

using Clock = std::chrono::steady_clock;

// How a future completed, as the waiters see it.
enum class Completion : std::uint8_t { Result, Exception, Cancelled };

// When a waiter fires; these mirror concurrent.futures' return_when plus as_completed's stream.
enum class WaitMode : std::uint8_t {
    AnyDone,         // FIRST_COMPLETED, and a single result()/exception() call
    FirstException,  // FIRST_EXCEPTION: an exception, or everything done
    AllDone,         // ALL_COMPLETED
    Stream,          // as_completed: fired while completions are waiting to be taken
                     // (the caller counts what is still pending)
};

class Waiter {
public:
    // Starts with one "guard" pending so that nothing can fire before all links are installed;
    // release_guard() drops it.
    explicit Waiter(WaitMode mode) : mode_(mode) {}
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;

    void add_pending() {
        std::lock_guard<std::mutex> g(mu_);
        ++pending_;
    }

    void release_guard() { notify_impl(nullptr, Completion::Result); }

    // A watched future completed. `tag` is whatever the registrant chose (an index, usually).
    void notify(std::uintptr_t tag, Completion how) { notify_impl(&tag, how); }

    // Blocks until the condition holds or `deadline` passes (nullopt: no deadline).
    bool wait_until(std::optional<Clock::time_point> deadline) {
        std::unique_lock<std::mutex> lock(mu_);
        while (!fired_) {
            sleeping_ = true;
            if (deadline) {
                if (cv_.wait_until(lock, *deadline) == std::cv_status::timeout) {
                    sleeping_ = false;
                    return fired_;
                }
            } else {
                cv_.wait(lock);
            }
            sleeping_ = false;
        }
        return true;
    }

    bool fired() const {
        std::lock_guard<std::mutex> g(mu_);
        return fired_;
    }

    std::size_t pending() const {
        std::lock_guard<std::mutex> g(mu_);
        return pending_;
    }

    // Completions so far, in completion order; in Stream mode this also re-arms the waiter.
    std::vector<std::uintptr_t> take_completed() {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<std::uintptr_t> out;
        out.swap(completed_);
        if (mode_ == WaitMode::Stream) fired_ = false;
        return out;
    }

private:
    void notify_impl(const std::uintptr_t* tag, Completion how) {
        bool wake = false;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (pending_ > 0) --pending_;
            if (tag) completed_.push_back(*tag);
            bool now_fired = false;
            switch (mode_) {
                case WaitMode::AnyDone: now_fired = tag != nullptr || pending_ == 0; break;
                case WaitMode::FirstException:
                    now_fired = (tag && how == Completion::Exception) || pending_ == 0;
                    break;
                case WaitMode::AllDone: now_fired = pending_ == 0; break;
                case WaitMode::Stream: now_fired = !completed_.empty(); break;
            }
            if (now_fired && !fired_) {
                fired_ = true;
                wake = sleeping_;
            }
        }
        // Only pay for a futex wake when someone is actually asleep.
        if (wake) cv_.notify_all();
    }

    mutable std::mutex mu_;
    std::condition_variable cv_;
    const WaitMode mode_;
    std::size_t pending_ = 1;  // the guard
    bool fired_ = false;
    bool sleeping_ = false;
    std::vector<std::uintptr_t> completed_;
};

// One (future, waiter) registration; lives in the waiter's owner, linked into the future's list.
// All fields but `waiter`/`tag`/`wants_cancel` are guarded by the future's lock.
struct WaiterLink {
    Waiter* waiter = nullptr;
    std::uintptr_t tag = 0;
    // result()/exception() wake on cancel(); wait()/as_completed() only once the cancellation is
    // "notified" (set_running_or_notify_cancel), exactly as concurrent.futures does.
    bool wants_cancel = false;
    bool linked = false;
    WaiterLink* prev = nullptr;
    WaiterLink* next = nullptr;
};

}  // namespace cfutures::core
