#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "helpers.hpp"
#include "core/spin_policy.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

TEST_SUITE("SpinPolicy") {
    TEST_CASE("busy and total jiffies are read from /proc/stat's first line") {
        std::uint64_t busy = 0, total = 0;
        REQUIRE(busy_jiffies_from_stat("cpu  10 2 30 400 5 6 7 8 0 0\ncpu0 1 2 3\n", busy, total));
        CHECK(busy == 10 + 2 + 30 + 6 + 7 + 8);
        CHECK(total == busy + 400 + 5);
        CHECK_FALSE(busy_jiffies_from_stat("garbage", busy, total));
        CHECK_FALSE(busy_jiffies_from_stat("cpu  1 2\n", busy, total));
    }

    TEST_CASE("a process's CPU ticks are read from /proc/PID/stat, whatever its name") {
        std::uint64_t ticks = 0;
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        REQUIRE(process_ticks_from_stat("42 (a) b) (c) S 1 42 42 0 -1 4194560 10 0 0 0 17 5 0 0 20 0\n", ticks));
        CHECK(ticks == 22);
        CHECK_FALSE(process_ticks_from_stat("42 (short) S 1 2\n", ticks));
        CHECK_FALSE(process_ticks_from_stat("no parenthesis", ticks));
        std::string text;
        {
            int fd = ::open("/proc/self/stat", O_RDONLY);
            char buf[1024];
            ssize_t n = ::read(fd, buf, sizeof buf);
            ::close(fd);
            REQUIRE(n > 0);
            text.assign(buf, static_cast<std::size_t>(n));
        }
        CHECK(process_ticks_from_stat(text, ticks));
    }

    TEST_CASE("CPU pressure is read from /proc/pressure/cpu's first line") {
        std::uint64_t us = 0;
        REQUIRE(cpu_stall_us_from_pressure(
            "some avg10=3.23 avg60=7.98 avg300=6.88 total=3837601460\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", us));
        CHECK(us == 3837601460u);
        CHECK_FALSE(cpu_stall_us_from_pressure("full avg10=0.00 total=5\n", us));
        CHECK_FALSE(cpu_stall_us_from_pressure("some avg10=0.00\nfull total=5\n", us));
    }

    TEST_CASE("a core is free while the others leave more than one core") {
        CHECK(core_is_free(0.0, 2));
        CHECK(core_is_free(0.8, 2));        // the estimate's own noise while we block
        CHECK_FALSE(core_is_free(1.0, 2));  // one busy process on a 2-core machine
        CHECK_FALSE(core_is_free(2.0, 2));
        CHECK(core_is_free(6.5, 8));
    }

    TEST_CASE("the machine's own gauge answers") {
        LoadGauge::instance().unpin_for_tests();
        (void)LoadGauge::instance().core_free();  // reads /proc/stat without failing
    }

    TEST_CASE("a site stops spinning after repeated long waits and resumes after a short one") {
        LoadGauge::instance().pin_for_tests(true);
        SpinSite site(5us);
        CHECK(site.budget() == 5us);
        for (unsigned i = 0; i + 1 < SpinSite::kLongWaitsToStop; ++i) site.record_wait(10ms);
        CHECK(site.budget() == 5us);
        site.record_wait(10ms);
        CHECK(site.budget() == 0ns);
        site.record_wait(50us);  // a blocked wait that was short: spinning pays again
        CHECK(site.budget() == 5us);
        CHECK(site.spin_until([] { return true; }));
        CHECK_FALSE(site.spin_until([] { return false; }));
        LoadGauge::instance().unpin_for_tests();
    }

    TEST_CASE("no spin while the cores are taken") {
        LoadGauge::instance().pin_for_tests(false);
        SpinSite site(1s);
        auto t0 = std::chrono::steady_clock::now();
        CHECK_FALSE(site.spin_until([] { return false; }));
        CHECK(std::chrono::steady_clock::now() - t0 < 500ms);
        CHECK(site.budget() == 0ns);
        LoadGauge::instance().unpin_for_tests();
    }

    TEST_CASE("a spin ends at its cap") {
        LoadGauge::instance().pin_for_tests(true);
        SpinSite site(10s);
        auto t0 = std::chrono::steady_clock::now();
        CHECK_FALSE(site.spin_until([] { return false; }, t0 + 2ms));
        CHECK(std::chrono::steady_clock::now() - t0 < 2s);
        LoadGauge::instance().unpin_for_tests();
    }
}
