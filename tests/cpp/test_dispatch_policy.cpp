// The process pool's dispatch policy alone: numbers in, decisions out (no processes, no fds).
#include <chrono>

#include "helpers.hpp"
#include "core/dispatch_policy.hpp"
#include "core/pool_worker.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

TEST_SUITE("DispatchPolicy") {
    TEST_CASE("default_in_flight: about 16 per pool, 2 to 8 per worker") {
        CHECK(dispatch_policy::default_in_flight(0) == 8);
        CHECK(dispatch_policy::default_in_flight(1) == 8);
        CHECK(dispatch_policy::default_in_flight(2) == 8);
        CHECK(dispatch_policy::default_in_flight(4) == 4);
        CHECK(dispatch_policy::default_in_flight(8) == 2);
        CHECK(dispatch_policy::default_in_flight(64) == 2);
    }

    TEST_CASE("prefetch_depth: one job until a time is known, then what fits in the window") {
        CHECK(dispatch_policy::prefetch_depth(-1, 8) == 1);
        CHECK(dispatch_policy::prefetch_depth(0, 8) == 8);        // instant tasks: full depth
        CHECK(dispatch_policy::prefetch_depth(500'000, 8) == 4);  // 0.5 ms: 4 fit in 2 ms
        CHECK(dispatch_policy::prefetch_depth(10'000'000, 8) == 1);  // long tasks: never ahead
        CHECK(dispatch_policy::prefetch_depth(1'000, 3) == 3);    // never past the maximum
    }

    TEST_CASE("updated_service: the first answer sets it, later ones move it by a quarter") {
        CHECK(dispatch_policy::updated_service(-1, 1000) == 1000);
        CHECK(dispatch_policy::updated_service(1000, 2000) == doctest::Approx(1250));
        CHECK(dispatch_policy::updated_service(1000, 0) == doctest::Approx(750));
    }

    TEST_CASE("patience: the window at least, else four recent service times") {
        CHECK(dispatch_policy::patience(-1) == 2ms);
        CHECK(dispatch_policy::patience(100'000) == 2ms);
        CHECK(dispatch_policy::patience(1'000'000) == 4ms);
    }

    TEST_CASE("may_send: below the depth, and never behind a job running past patience") {
        CHECK(dispatch_policy::may_send(0, 1, 1h, 2ms));   // an idle worker takes a job whatever
        CHECK(dispatch_policy::may_send(1, 4, 1ms, 2ms));
        CHECK_FALSE(dispatch_policy::may_send(1, 4, 3ms, 2ms));  // it would strand
        CHECK_FALSE(dispatch_policy::may_send(4, 4, 0ms, 2ms));
    }
}

TEST_SUITE("PoolWorker") {
    NewWorker ends{1234, -1, -1, -1, -1};

    TEST_CASE("a starting worker takes jobs; a stopping, leaving or killed one does not") {
        WorkerRecord w(ends);
        CHECK(w.phase() == WorkerPhase::Starting);
        CHECK(can_take(w));
        w.ready = true;
        CHECK(w.phase() == WorkerPhase::Ready);
        CHECK(can_take(w));
        w.tasks_left = 0;
        CHECK_FALSE(can_take(w));  // max_tasks_per_child spent
        w.tasks_left = -1;
        w.victim = 7;
        CHECK(w.phase() == WorkerPhase::Killed);
        CHECK_FALSE(can_take(w));
        w.victim = 0;
        w.stop_sent = true;
        CHECK(w.phase() == WorkerPhase::Stopping);
        CHECK_FALSE(can_take(w));
        w.leaving = true;
        CHECK(w.phase() == WorkerPhase::Leaving);
    }

    TEST_CASE("which frames a worker may send") {
        WorkerRecord w(ends);
        CHECK(illegal_frame(w, FrameKind::Ready, 0).empty());
        w.ready = true;
        CHECK(illegal_frame(w, FrameKind::Ready, 0) == "a second Ready message");
        CHECK(illegal_frame(w, FrameKind::Result, 5) == "an answer to a job it was not given");
        w.in_flight = {5, 6};
        CHECK(illegal_frame(w, FrameKind::Result, 6).empty());
        CHECK(illegal_frame(w, FrameKind::Revoked, 6) == "a job back that it was not asked for");
        w.revoking = {6};
        w.held.emplace(6, OutgoingFrame::make(FrameKind::Task, 6, "x"));
        CHECK(illegal_frame(w, FrameKind::Revoked, 6).empty());
        CHECK(illegal_frame(w, FrameKind::Exiting, 0) == "an Exiting message it was not entitled to");
        w.in_flight.clear();
        w.revoking.clear();
        w.tasks_left = 0;
        CHECK(illegal_frame(w, FrameKind::Exiting, 0).empty());
        w.leaving = true;
        CHECK(illegal_frame(w, FrameKind::Result, 5) == "a message after its Exiting message");
    }
}
