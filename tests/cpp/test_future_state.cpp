#include <string>
#include <thread>

#include "helpers.hpp"

using namespace cfutures::core;
using test::IntFuture;

TEST_SUITE("FutureState") {
    TEST_CASE("pending to finished") {
        IntFuture f;
        CHECK(f.state() == FutureState::Pending);
        CHECK_FALSE(f.settled());
        CHECK(f.set(7));
        CHECK(f.state() == FutureState::Finished);
        CHECK(f.settled());
        CHECK(f.value == 7);
        CHECK_FALSE(f.set(8));  // a second completion is refused and stores nothing
        CHECK(f.value == 7);
        CHECK_FALSE(f.fail());
        CHECK_FALSE(f.has_exception());
    }

    TEST_CASE("cancel rules follow concurrent.futures") {
        IntFuture pending;
        CHECK(pending.cancel() == CancelOutcome::Cancelled);
        CHECK(pending.cancel() == CancelOutcome::AlreadyCancelled);
        CHECK_FALSE(pending.set(1));
        CHECK(pending.set_running_or_notify_cancel() == StartOutcome::Cancelled);
        CHECK(pending.state() == FutureState::CancelledAndNotified);
        CHECK(pending.cancel() == CancelOutcome::AlreadyCancelled);

        IntFuture running;
        CHECK(running.set_running_or_notify_cancel() == StartOutcome::Running);
        CHECK(running.cancel() == CancelOutcome::Refused);
        CHECK(running.set_running_or_notify_cancel() == StartOutcome::Invalid);
        CHECK(running.fail());
        CHECK(running.has_exception());
        CHECK(running.cancel() == CancelOutcome::Refused);
    }

    TEST_CASE("single waiters wake on cancel, collective ones only once it is notified") {
        IntFuture f;
        Waiter single(WaitMode::AnyDone), collective(WaitMode::AnyDone);
        WaiterLink ls, lc;
        ls.waiter = &single;
        ls.wants_cancel = true;
        lc.waiter = &collective;
        single.add_pending();
        collective.add_pending();
        REQUIRE(f.link(ls));
        REQUIRE(f.link(lc));
        single.release_guard();
        collective.release_guard();
        f.cancel();
        CHECK(single.fired());
        CHECK_FALSE(collective.fired());
        CHECK_FALSE(ls.linked);
        CHECK(lc.linked);
        f.set_running_or_notify_cancel();
        CHECK(collective.fired());
        CHECK(collective.take_completed().size() == 1);
        CHECK_FALSE(lc.linked);
    }

    TEST_CASE("link refuses a future that is already done") {
        IntFuture f;
        f.set(1);
        Waiter w(WaitMode::AllDone);
        WaiterLink l;
        l.waiter = &w;
        CHECK_FALSE(f.link(l));
        CHECK_FALSE(l.linked);
    }

    TEST_CASE("an edit makes forced state visible only when it closes") {
        IntFuture f;
        Waiter w(WaitMode::AnyDone);
        WaiterLink l;
        l.waiter = &w;
        w.add_pending();
        REQUIRE(f.link(l));
        w.release_guard();
        f.begin_edit();
        f.force_state(FutureState::Finished, true);
        CHECK_FALSE(f.settled());
        CHECK_FALSE(w.fired());
        CHECK(f.end_edit());
        CHECK(w.fired());
        CHECK(f.settled());
        CHECK(f.has_exception());
        CHECK_FALSE(f.end_edit());  // unbalanced release is reported
    }

    TEST_CASE("an edit keeps other threads' transitions and edits out until it closes") {
        IntFuture f;
        REQUIRE(f.begin_edit());
        REQUIRE(f.begin_edit());  // re-entrant
        std::atomic<bool> set_done{false};
        std::thread setter([&] {
            CHECK(f.set(5));
            set_done = true;
        });
        std::thread other([&] {
            CHECK_FALSE(f.end_edit());  // not the owner
            CHECK_FALSE(f.begin_edit(Clock::now() + std::chrono::milliseconds(20)));
            CHECK(f.set_running_or_notify_cancel(/*may_wait=*/false) == StartOutcome::Busy);
        });
        other.join();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK_FALSE(set_done);
        CHECK(f.state() == FutureState::Pending);
        CHECK(f.end_edit());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK_FALSE(set_done);  // one level is still open
        CHECK(f.suspend_edit() == 1);
        setter.join();
        CHECK(set_done);
        CHECK(f.value == 5);
    }

    TEST_CASE("stamps order foreign registrations against the collective transition") {
        IntFuture f;
        std::uint32_t before = f.locked([&] { return f.stamp_locked(); });
        CHECK(f.locked([&] { return f.collective_at_locked(); }) == 0);
        REQUIRE(f.set(1));
        std::uint32_t at = f.locked([&] { return f.collective_at_locked(); });
        std::uint32_t after = f.locked([&] { return f.stamp_locked(); });
        CHECK(before < at);
        CHECK(at < after);
    }

    TEST_CASE("racing completions: exactly one wins") {
        for (unsigned n : test::kThreadCounts) {
            CAPTURE(n);
            for (int round = 0; round < 200; ++round) {
                IntFuture f;
                std::atomic<int> wins{0};
                test::run_threads(n, [&](unsigned i) {
                    bool won = (i % 3 == 0) ? f.cancel() == CancelOutcome::Cancelled
                                            : f.set(static_cast<int>(i) + 1);
                    if (won) wins.fetch_add(1);
                });
                CHECK(wins.load() == 1);
                CHECK(is_done(f.state()));
            }
        }
    }
}
