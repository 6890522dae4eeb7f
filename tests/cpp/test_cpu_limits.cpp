#include <doctest/doctest.h>

#include "core/cpu_limits.hpp"

using namespace cfutures::core;

TEST_SUITE("CpuLimits") {
    TEST_CASE("cgroup v2 cpu.max gives the quota in CPUs, or none") {
        CHECK(quota_from_cpu_max("50000 100000\n").value() == doctest::Approx(0.5));
        CHECK(quota_from_cpu_max("200000 100000").value() == doctest::Approx(2.0));
        CHECK_FALSE(quota_from_cpu_max("max 100000\n").has_value());
        CHECK_FALSE(quota_from_cpu_max("garbage").has_value());
        CHECK_FALSE(quota_from_cpu_max("x 100000").has_value());
        CHECK_FALSE(quota_from_cpu_max("0 100000").has_value());
    }

    TEST_CASE("cgroup v1 cfs quota and period give the quota in CPUs; -1 is none") {
        CHECK(quota_from_cfs("50000\n", "100000\n").value() == doctest::Approx(0.5));
        CHECK(quota_from_cfs("150000", "100000").value() == doctest::Approx(1.5));
        CHECK_FALSE(quota_from_cfs("-1\n", "100000\n").has_value());
        CHECK_FALSE(quota_from_cfs("", "100000").has_value());
        CHECK_FALSE(quota_from_cfs("50000", "0").has_value());
    }

    TEST_CASE("usable CPUs: the affinity count capped by the quota's whole CPUs, at least one") {
        CHECK(usable_cpus(2, std::nullopt) == 2);
        CHECK(usable_cpus(2, 0.5) == 1);
        CHECK(usable_cpus(2, 1.5) == 1);   // two threads cannot both run on 1.5 CPUs
        CHECK(usable_cpus(2, 1.999999) == 2);
        CHECK(usable_cpus(8, 3.0) == 3);
        CHECK(usable_cpus(1, 4.0) == 1);   // taskset -c 0 under a generous quota
        CHECK(usable_cpus(0, std::nullopt) == 1);
    }

    TEST_CASE("the process's cgroup is found for the v1 cpu hierarchy and for v2") {
        const char* text =
            "9:name=systemd:/\n"
            "4:memory:/box/a\n"
            "2:cpuacct,cpu:/box/b\n"
            "0::/unified/c\n";
        CHECK(cgroup_path_from_proc(text, true).value() == "/box/b");
        CHECK(cgroup_path_from_proc(text, false).value() == "/unified/c");
        CHECK(cgroup_path_from_proc("1:cpu:/\n", true).value() == "/");
        // "cpuset" is not "cpu"
        CHECK_FALSE(cgroup_path_from_proc("3:cpuset:/x\n0::/\n", true).has_value());
        CHECK_FALSE(cgroup_path_from_proc("1:cpu:/\n", false).has_value());
    }

    TEST_CASE("the hierarchy's mount is found in mountinfo") {
        const char* text =
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
            "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
            "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        auto v1 = cgroup_mount_from_mountinfo(text, true);
        REQUIRE(v1.has_value());
        CHECK(v1->root == "/docker/abc");
        CHECK(v1->mount_point == "/sys/fs/cgroup/cpu,cpuacct");
        auto v2 = cgroup_mount_from_mountinfo(text, false);
        REQUIRE(v2.has_value());
        CHECK(v2->mount_point == "/sys/fs/cgroup/unified");
        CHECK_FALSE(cgroup_mount_from_mountinfo("31 23 0:28 / /x rw - tmpfs tmpfs rw\n", true).has_value());
    }

    TEST_CASE("limits are read from the cgroup up to the mount's root") {
        CgroupMount at_root{"/", "/sys/fs/cgroup/cpu"};
        auto dirs = cgroup_dirs_up(at_root, "/a/b");
        REQUIRE(dirs.size() == 3);
        CHECK(dirs[0] == "/sys/fs/cgroup/cpu/a/b");
        CHECK(dirs[1] == "/sys/fs/cgroup/cpu/a");
        CHECK(dirs[2] == "/sys/fs/cgroup/cpu");
        CHECK(cgroup_dirs_up(at_root, "/") == std::vector<std::string>{"/sys/fs/cgroup/cpu"});
        // A container sees its own subtree mounted at the hierarchy's place.
        CgroupMount container{"/docker/abc", "/sys/fs/cgroup/cpu"};
        auto inside = cgroup_dirs_up(container, "/docker/abc/job");
        REQUIRE(inside.size() == 2);
        CHECK(inside[0] == "/sys/fs/cgroup/cpu/job");
        CHECK(inside[1] == "/sys/fs/cgroup/cpu");
    }

    TEST_CASE("this process's limits read without error") {
        CpuLimits limits = read_cpu_limits();
        CHECK(limits.affinity_cpus >= 1);
        CHECK(limits.usable_cpus >= 1);
        CHECK(limits.usable_cpus <= limits.affinity_cpus);
    }
}
