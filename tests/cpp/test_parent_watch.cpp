#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/worker_channel.hpp"
#include "helpers.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

namespace {

enum class Worker { Busy, BusyIgnoringSigterm, Idle };

// Forks a stand-in pool process and a worker watching it, kills the pool, and returns the
// worker's wait status, or -1 if it was still running after `limit` (then it is killed).
int worker_status_after_pool_death(Worker kind, std::chrono::milliseconds limit) {
    int pool = ::fork();
    REQUIRE(pool >= 0);
    if (pool == 0) {
        ::pause();
        ::_exit(0);
    }
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    int worker = ::fork();
    REQUIRE(worker >= 0);
    if (worker == 0) {
        // (doctest's own handler, inherited through fork, would catch SIGTERM.)
        ::signal(SIGTERM, kind == Worker::BusyIgnoringSigterm ? SIG_IGN : SIG_DFL);
        ParentWatch watch(pool, 200ms);
        if (kind == Worker::Idle) watch.set_idle(true);  // as while waiting in recv_frame
        [[maybe_unused]] ssize_t n = ::write(ready[1], "r", 1);
        std::this_thread::sleep_for(kind == Worker::Idle ? 1500ms : 30s);
        ::_exit(0);
    }
    // The watch holds a pidfd of the pool once constructed (a fixed pause was too short for a
    // sanitized build on a loaded machine).
    char byte;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    ::close(ready[0]);
    ::close(ready[1]);
    ::kill(pool, SIGKILL);
    ::waitpid(pool, nullptr, 0);
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(worker, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(worker, SIGKILL);
            ::waitpid(worker, nullptr, 0);
            return -1;
        }
        std::this_thread::sleep_for(10ms);
    }
    return status;
}

}  // namespace

TEST_SUITE("ParentWatch") {
    TEST_CASE("a busy worker gets SIGTERM when its pool dies") {
        int status = worker_status_after_pool_death(Worker::Busy, 5s);
        REQUIRE(status != -1);
        CHECK(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == SIGTERM);
    }

    TEST_CASE("a worker that ignores SIGTERM is ended after the grace period") {
        int status = worker_status_after_pool_death(Worker::BusyIgnoringSigterm, 5s);
        REQUIRE(status != -1);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 1);
    }

    TEST_CASE("an idle worker is left to notice by itself") {
        int status = worker_status_after_pool_death(Worker::Idle, 5s);
        REQUIRE(status != -1);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
}
