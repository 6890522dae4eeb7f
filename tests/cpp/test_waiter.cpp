#include <chrono>
#include <memory>

#include "helpers.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;
using test::IntFuture;

namespace {
// Links `w` to every future; returns the links (to unlink later).
std::vector<std::unique_ptr<WaiterLink>> watch(Waiter& w, std::vector<IntFuture>& fs) {
    std::vector<std::unique_ptr<WaiterLink>> links;
    for (std::size_t i = 0; i < fs.size(); ++i) {
        auto l = std::make_unique<WaiterLink>();
        l->waiter = &w;
        l->tag = i;
        w.add_pending();
        if (!fs[i].link(*l)) w.notify(i, Completion::Result);
        links.push_back(std::move(l));
    }
    w.release_guard();
    return links;
}
}  // namespace

TEST_SUITE("Waiter") {
    TEST_CASE("all done waits for every future") {
        std::vector<IntFuture> fs(5);
        Waiter w(WaitMode::AllDone);
        auto links = watch(w, fs);
        for (std::size_t i = 0; i + 1 < fs.size(); ++i) fs[i].set(1);
        CHECK_FALSE(w.wait_until(Clock::now() + 10ms));
        fs.back().set(1);
        CHECK(w.wait_until(Clock::now() + 1s));
        CHECK(w.take_completed().size() == 5);
    }

    TEST_CASE("first exception fires on an exception") {
        std::vector<IntFuture> fs(3);
        Waiter w(WaitMode::FirstException);
        auto links = watch(w, fs);
        fs[0].set(1);
        CHECK_FALSE(w.fired());
        fs[2].fail();
        CHECK(w.fired());
        for (std::size_t i = 0; i < fs.size(); ++i) fs[i].unlink(*links[i]);
        CHECK_FALSE(links[1]->linked);
    }

    TEST_CASE("stream keeps completion order and re-arms") {
        std::vector<IntFuture> fs(4);
        Waiter w(WaitMode::Stream);
        auto links = watch(w, fs);
        CHECK_FALSE(w.fired());
        fs[2].set(1);
        fs[0].set(1);
        CHECK(w.fired());
        CHECK(w.take_completed() == std::vector<std::uintptr_t>{2, 0});
        CHECK_FALSE(w.fired());
        fs[3].set(1);
        CHECK(w.take_completed() == std::vector<std::uintptr_t>{3});
        fs[1].unlink(*links[1]);
    }

    TEST_CASE("completions from many threads wake one sleeper") {
        for (unsigned n : test::kThreadCounts) {
            CAPTURE(n);
            std::vector<IntFuture> fs(n * 50);
            Waiter w(WaitMode::AllDone);
            auto links = watch(w, fs);
            std::thread sleeper([&] { CHECK(w.wait_until(std::nullopt)); });
            test::run_threads(n, [&](unsigned t) {
                for (std::size_t i = t; i < fs.size(); i += n) fs[i].set(static_cast<int>(i));
            });
            sleeper.join();
            CHECK(w.take_completed().size() == fs.size());
        }
    }

    TEST_CASE("a waiter that times out can unlink while futures complete") {
        for (int round = 0; round < 200; ++round) {
            std::vector<IntFuture> fs(8);
            auto w = std::make_unique<Waiter>(WaitMode::AllDone);
            auto links = watch(*w, fs);
            std::thread completer([&] {
                for (auto& f : fs) f.set(1);
            });
            w->wait_until(Clock::now() + 1us);
            for (std::size_t i = 0; i < fs.size(); ++i) fs[i].unlink(*links[i]);
            w.reset();  // nothing may touch it now (ASan/TSan check this)
            completer.join();
        }
    }
}
