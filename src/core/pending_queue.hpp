// PendingQueue: the tasks of a pool that wait to start, in the order they will start, and the
// submitters that wait for room when the queue has a bound. Both pools keep theirs in one
// (ThreadPool's Task pointers, ProcessPool's jobs), under their own `mu_`: nothing here locks.
//
// Order. A task has a priority, 0 unless the submitter chose one (executor.options(priority=)).
// A lower priority starts first; equal priorities start in the order they were pushed, except
// that push_front() puts an item given back (a job a worker returned unstarted) before the
// others of its priority. Priority 0 has its own lane; the others live in a map that stays
// empty, and costs one test per operation, in a pool that never uses them.
//
// Room (back-pressure, executor(max_queue=N)). With a bound N > 0, has_room() is false while N
// items wait. A submitter that found no room waits in wait_for_room() with the pool's lock held
// in `lock` (a condition variable on that lock). Each pop_front() or remove_first() that makes
// room wakes one waiter, and only one: a single free place does not wake every submitter. A
// waiter that gives up without taking the place (a timeout, Ctrl-C) calls pass_on_room(), which
// wakes the next one if room is still there, so no place is lost with a waiter asleep. Shutdown
// and breaking the pool wake them all (wake_all_waiting()), and they see why when they look again.
//
// Invariant: size() == the items in all lanes; the map holds no empty lane.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace cfutures::core {

template <class T>
class PendingQueue {
public:
    explicit PendingQueue(std::size_t max_waiting = 0) : max_waiting_(max_waiting) {}

    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    std::size_t bound() const { return max_waiting_; }
    bool has_room() const { return max_waiting_ == 0 || size_ < max_waiting_; }

    void push_back(T item, int priority) {
        lane(priority).push_back(std::move(item));
        ++size_;
    }
    void push_front(T item, int priority) {
        lane(priority).push_front(std::move(item));
        ++size_;
    }

    // The item that starts next. Only when !empty().
    T& front() { return next_lane().front(); }

    void pop_front() {
        if (others_.empty()) {
            zero_.pop_front();
        } else {
            auto first = others_.begin();
            if (first->first < 0 || zero_.empty()) {
                first->second.pop_front();
                if (first->second.empty()) others_.erase(first);
            } else {
                zero_.pop_front();
            }
        }
        --size_;
        room_made();
    }

    // Removes the first item (in start order) for which pred(item) holds, into `out`.
    template <class Pred>
    bool remove_first(Pred&& pred, T& out) {
        bool found = false;
        visit_lanes([&](std::deque<T>& q, auto erase_if_empty) {
            if (found) return;
            for (auto it = q.begin(); it != q.end(); ++it) {
                if (!pred(*it)) continue;
                out = std::move(*it);
                q.erase(it);
                erase_if_empty();
                found = true;
                return;
            }
        });
        if (found) {
            --size_;
            room_made();
        }
        return found;
    }

    // Calls f(item) for each item, in start order.
    template <class F>
    void for_each(F&& f) const {
        auto first_positive = others_.lower_bound(1);
        for (auto it = others_.begin(); it != first_positive; ++it)
            for (const T& item : it->second) f(item);
        for (const T& item : zero_) f(item);
        for (auto it = first_positive; it != others_.end(); ++it)
            for (const T& item : it->second) f(item);
    }

    // Removes and returns every item for which keep(item) is false, in start order.
    template <class Keep>
    std::vector<T> take_unless(Keep&& keep) {
        std::vector<T> taken;
        visit_lanes([&](std::deque<T>& q, auto) {
            std::deque<T> kept;
            for (T& item : q) {
                if (keep(item)) kept.push_back(std::move(item));
                else taken.push_back(std::move(item));
            }
            q = std::move(kept);
        });
        for (auto it = others_.begin(); it != others_.end();) it = it->second.empty() ? others_.erase(it) : std::next(it);
        size_ -= taken.size();
        return taken;
    }
    std::vector<T> take_all() {
        return take_unless([](const T&) { return false; });
    }

    // --- room (the owner's lock held in `lock`) -----------------------------------------------

    // Blocks until woken (room was made, or wake_all_waiting()) or `until`; the caller looks
    // again either way.
    void wait_for_room(std::unique_lock<std::mutex>& lock, std::chrono::steady_clock::time_point until) {
        ++waiting_;
        room_cv_.wait_until(lock, until);
        --waiting_;
    }
    void pass_on_room() {
        if (waiting_ > 0 && has_room()) room_cv_.notify_one();
    }
    void wake_all_waiting() {
        if (waiting_ > 0) room_cv_.notify_all();
    }
    std::size_t waiting_for_room() const { return waiting_; }

private:
    std::deque<T>& lane(int priority) { return priority == 0 ? zero_ : others_[priority]; }

    std::deque<T>& next_lane() {
        if (others_.empty()) return zero_;
        auto first = others_.begin();
        return first->first < 0 || zero_.empty() ? first->second : zero_;
    }

    // f(lane, erase_if_empty) for each lane in start order; erase_if_empty() drops a map lane
    // that f emptied (and must be the last thing f does with it).
    template <class F>
    void visit_lanes(F&& f) {
        auto first_positive = others_.lower_bound(1);
        for (auto it = others_.begin(); it != first_positive;) {
            auto here = it++;
            f(here->second, [&] { if (here->second.empty()) others_.erase(here); });
        }
        f(zero_, [] {});
        for (auto it = first_positive; it != others_.end();) {
            auto here = it++;
            f(here->second, [&] { if (here->second.empty()) others_.erase(here); });
        }
    }

    void room_made() {
        if (waiting_ > 0 && has_room()) room_cv_.notify_one();
    }

    const std::size_t max_waiting_;
    std::size_t size_ = 0;
    std::deque<T> zero_;
    std::map<int, std::deque<T>> others_;
    std::size_t waiting_ = 0;
    std::condition_variable room_cv_;
};

}  // namespace cfutures::core
