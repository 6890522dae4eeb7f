#include <chrono>

#include "helpers.hpp"
#include "core/spin_policy.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

TEST_SUITE("SpinPolicy") {
    TEST_CASE("the runnable count is read from a /proc/loadavg line") {
        CHECK(runnable_from_loadavg("0.52 0.58 0.59 3/412 12345\n") == 3);
        CHECK(runnable_from_loadavg("10.00 9.00 8.00 17/2048 1") == 17);
        CHECK(runnable_from_loadavg("garbage") == -1);
        CHECK(runnable_from_loadavg("0.1 0.2 0.3 x/12 5") == -1);
        CHECK(runnable_from_loadavg("") == -1);
    }

    TEST_CASE("a core is free while runnable threads do not outnumber the cores") {
        CHECK(core_is_free(2, 2));  // the spinner and the thread it waits for
        CHECK_FALSE(core_is_free(3, 2));
        CHECK(core_is_free(-1, 2));  // unreadable: as before the policy
    }

    TEST_CASE("the machine's own gauge answers") {
        LoadGauge::instance().unpin_for_tests();
        (void)LoadGauge::instance().core_free();  // reads /proc/loadavg without failing
    }

    TEST_CASE("a site stops spinning after repeated misses, probes now and then, resumes on a hit") {
        LoadGauge::instance().pin_for_tests(true);
        SpinSite site(5us);
        CHECK(site.budget() == 5us);
        for (unsigned i = 0; i < SpinSite::kMissesToStop; ++i) CHECK_FALSE(site.spin_until([] { return false; }));
        unsigned spun = 0;
        for (unsigned i = 0; i < 4 * SpinSite::kProbeEvery; ++i) spun += site.budget().count() != 0;
        CHECK(spun == 4);  // one probe every kProbeEvery waits
        site.record(true);
        CHECK(site.budget() == 5us);
        CHECK(site.spin_until([] { return true; }));
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
