// PendingQueue alone: the start order with priorities, and the room a bound gives submitters.
#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "core/pending_queue.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

namespace {
std::vector<int> drain_in_order(PendingQueue<int>& q) {
    std::vector<int> out;
    while (!q.empty()) {
        out.push_back(q.front());
        q.pop_front();
    }
    return out;
}
}  // namespace

TEST_SUITE("PendingQueue") {
    TEST_CASE("lower priorities first, equal ones in the order pushed, 0 between") {
        PendingQueue<int> q;
        q.push_back(1, 0);
        q.push_back(2, 5);
        q.push_back(3, -1);
        q.push_back(4, 0);
        q.push_back(5, -1);
        q.push_back(6, 5);
        std::vector<int> seen;
        q.for_each([&](int v) { seen.push_back(v); });
        CHECK(seen == std::vector<int>{3, 5, 1, 4, 2, 6});
        CHECK(q.size() == 6);
        CHECK(drain_in_order(q) == std::vector<int>{3, 5, 1, 4, 2, 6});
    }

    TEST_CASE("push_front goes before the others of its priority") {
        PendingQueue<int> q;
        q.push_back(1, 0);
        q.push_back(2, 3);
        q.push_front(9, 3);
        q.push_front(8, std::numeric_limits<int>::min());
        CHECK(drain_in_order(q) == std::vector<int>{8, 1, 9, 2});
    }

    TEST_CASE("remove_first and take_unless keep the order and the size, and leave no empty lane") {
        PendingQueue<int> q;
        for (int i = 0; i < 6; ++i) q.push_back(i, i % 3 - 1);  // priorities -1, 0, 1, -1, 0, 1
        int out = -1;
        CHECK(q.remove_first([](int v) { return v == 4; }, out));
        CHECK(out == 4);
        CHECK_FALSE(q.remove_first([](int v) { return v == 42; }, out));
        auto odd = q.take_unless([](int v) { return v % 2 == 0; });
        CHECK(odd == std::vector<int>{3, 1, 5});
        CHECK(q.size() == 2);
        CHECK(drain_in_order(q) == std::vector<int>{0, 2});
        q.push_back(7, 2);
        CHECK(q.take_all() == std::vector<int>{7});
        CHECK(q.empty());
    }

    TEST_CASE("a bound: no room at N, and each pop wakes one waiter") {
        std::mutex mu;
        PendingQueue<int> q(2);
        q.push_back(1, 0);
        CHECK(q.has_room());
        q.push_back(2, 0);
        CHECK_FALSE(q.has_room());
        std::atomic<int> woken{0};
        std::vector<std::thread> waiters;
        for (int i = 0; i < 3; ++i) {
            waiters.emplace_back([&] {
                std::unique_lock<std::mutex> lock(mu);
                while (!q.has_room()) q.wait_for_room(lock, std::chrono::steady_clock::now() + 10s);
                q.push_back(10, 0);  // takes the place it was woken for
                woken.fetch_add(1);
            });
        }
        auto all_waiting = [&] {
            std::lock_guard<std::mutex> g(mu);
            return q.waiting_for_room() == 3;
        };
        while (!all_waiting()) std::this_thread::sleep_for(1ms);
        for (int i = 0; i < 3; ++i) {
            {
                std::lock_guard<std::mutex> g(mu);
                q.pop_front();
            }
            auto until = std::chrono::steady_clock::now() + 5s;
            while (woken.load() < i + 1 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
            std::this_thread::sleep_for(20ms);
            CHECK(woken.load() == i + 1);  // one place, one submitter in
        }
        for (auto& t : waiters) t.join();
        CHECK(q.size() == 2);
    }

    TEST_CASE("a waiter that gives up passes the wake-up on, and wake_all_waiting wakes everyone") {
        std::mutex mu;
        PendingQueue<int> q(1);
        q.push_back(1, 0);
        // Two waiters; whichever the one place wakes gives up (as on a timeout) and passes it
        // on: without that the other would sleep to its 10 s deadline.
        std::atomic<int> gave_up{0}, took{0};
        auto waiter = [&] {
            std::unique_lock<std::mutex> lock(mu);
            for (;;) {
                q.wait_for_room(lock, std::chrono::steady_clock::now() + 10s);
                if (!q.has_room()) continue;
                if (gave_up.fetch_add(1) == 0) {
                    q.pass_on_room();
                    return;
                }
                q.push_back(2, 0);
                took = 1;
                return;
            }
        };
        std::thread a(waiter), b(waiter);
        auto both_waiting = [&] {
            std::lock_guard<std::mutex> g(mu);
            return q.waiting_for_room() == 2;
        };
        while (!both_waiting()) std::this_thread::sleep_for(1ms);
        auto began = std::chrono::steady_clock::now();
        {
            std::lock_guard<std::mutex> g(mu);
            q.pop_front();  // one place: wakes one waiter
        }
        a.join();
        b.join();
        CHECK(took.load() == 1);
        CHECK(std::chrono::steady_clock::now() - began < 5s);

        std::atomic<int> woken{0};
        std::vector<std::thread> waiters;
        for (int i = 0; i < 3; ++i) {
            waiters.emplace_back([&] {
                std::unique_lock<std::mutex> lock(mu);
                q.wait_for_room(lock, std::chrono::steady_clock::now() + 10s);
                woken.fetch_add(1);
            });
        }
        auto all_waiting = [&] {
            std::lock_guard<std::mutex> g(mu);
            return q.waiting_for_room() == 3;
        };
        while (!all_waiting()) std::this_thread::sleep_for(1ms);
        began = std::chrono::steady_clock::now();
        {
            std::lock_guard<std::mutex> g(mu);
            q.wake_all_waiting();  // shutdown
        }
        for (auto& t : waiters) t.join();
        CHECK(woken.load() == 3);
        CHECK(std::chrono::steady_clock::now() - began < 5s);
    }
}
