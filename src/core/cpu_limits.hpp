// CpuLimits: how many CPUs this process may really use, for the spin policy (spin_policy.hpp).
//
// /proc/stat and the core count describe the host, not what a process is allowed: a container
// or a systemd unit gets a CFS quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` over
// `cpu.cfs_period_us`), and `taskset` or a cpuset narrows the affinity mask. Spinning needs two
// CPUs at once, the spinner's and the one of the thread it waits for; under a quota every
// microsecond spun is taken from the quota (the group is throttled once it is used up), so a
// spinner costs the very work it waits for. Hence the usable CPU count is the affinity count,
// capped by the whole CPUs of the tightest quota on the way from this process's cgroup to the
// root (floor: a quota of 1.5 CPUs cannot keep two threads running), and at least 1.
//
// Everything below is a pure function of file contents (tested with fixed texts), apart from
// read_cpu_limits(), which reads /proc/self/{cgroup,mountinfo} and the cgroup files. It keeps
// no state; the caller decides how often to read again (a process can be moved between
// cgroups, and limits can change, while it runs).
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace cfutures::core {

struct CpuLimits {
    int affinity_cpus = 1;           // CPUs in the affinity mask (sched_getaffinity)
    std::optional<double> quota_cpus;  // the tightest CFS quota, in CPUs; none: no quota
    std::string quota_source;        // the file that set it, for `cfutures info` and bench
    int usable_cpus = 1;             // what spinning may count on (see the header)
};

// A cgroup v2 `cpu.max` ("max 100000" or "50000 100000"): the quota in CPUs, or none.
inline std::optional<double> quota_from_cpu_max(std::string_view text) {
    std::size_t space = text.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    std::string_view quota = text.substr(0, space);
    if (quota == "max") return std::nullopt;
    double q = 0, p = 0;
    try {
        q = std::stod(std::string(quota));
        p = std::stod(std::string(text.substr(space + 1)));
    } catch (...) {
        return std::nullopt;
    }
    if (q <= 0 || p <= 0) return std::nullopt;
    return q / p;
}

// cgroup v1 `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`: the quota in CPUs, or none.
inline std::optional<double> quota_from_cfs(std::string_view quota_text, std::string_view period_text) {
    double q = 0, p = 0;
    try {
        q = std::stod(std::string(quota_text));
        p = std::stod(std::string(period_text));
    } catch (...) {
        return std::nullopt;
    }
    if (q <= 0 || p <= 0) return std::nullopt;
    return q / p;
}

// The affinity count capped by the quota's whole CPUs, at least 1.
inline int usable_cpus(int affinity_cpus, std::optional<double> quota_cpus) {
    int n = affinity_cpus < 1 ? 1 : affinity_cpus;
    if (quota_cpus) {
        // A hair under a whole number is that number (2 CPUs written as 199999/100000).
        double whole = std::floor(*quota_cpus + 1e-6);
        if (whole < n) n = whole < 1 ? 1 : static_cast<int>(whole);
    }
    return n;
}

// Whether a comma-separated list ("cpu,cpuacct", "rw,cpu") holds `word` as a whole item.
inline bool comma_list_has(std::string_view list, std::string_view word) {
    for (std::size_t from = 0;;) {
        std::size_t comma = list.find(',', from);
        if (list.substr(from, comma == std::string_view::npos ? std::string_view::npos : comma - from) == word) return true;
        if (comma == std::string_view::npos) return false;
        from = comma + 1;
    }
}

// The fields of one line, split at single spaces.
inline std::vector<std::string_view> split_fields(std::string_view line) {
    std::vector<std::string_view> fields;
    for (std::size_t i = 0; i <= line.size();) {
        std::size_t sp = line.find(' ', i);
        if (sp == std::string_view::npos) sp = line.size();
        fields.push_back(line.substr(i, sp - i));
        i = sp + 1;
    }
    return fields;
}

// Calls `each(line)` for every line of `text`.
template <class Each>
void for_each_line(std::string_view text, Each&& each) {
    for (std::size_t at = 0; at < text.size();) {
        std::size_t eol = text.find('\n', at);
        if (eol == std::string_view::npos) eol = text.size();
        each(text.substr(at, eol - at));
        at = eol + 1;
    }
}

// Where a process's cgroup of one hierarchy lives: the line of /proc/self/cgroup
// ("id:controllers:path") for the v1 hierarchy with the "cpu" controller (`v1`), or for v2
// ("0::/path").
inline std::optional<std::string> cgroup_path_from_proc(std::string_view text, bool v1) {
    std::optional<std::string> found;
    for_each_line(text, [&](std::string_view line) {
        std::size_t c1 = line.find(':');
        std::size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
        if (found || c2 == std::string_view::npos) return;
        std::string_view id = line.substr(0, c1), controllers = line.substr(c1 + 1, c2 - c1 - 1);
        bool match = v1 ? comma_list_has(controllers, "cpu") : (id == "0" && controllers.empty());
        if (match) found = std::string(line.substr(c2 + 1));
    });
    return found;
}

// A mount of a cgroup hierarchy, from /proc/self/mountinfo: its root inside the hierarchy and
// where it is mounted. v1: fstype "cgroup" with "cpu" among the super options; v2: "cgroup2".
struct CgroupMount {
    std::string root;
    std::string mount_point;
};
inline std::optional<CgroupMount> cgroup_mount_from_mountinfo(std::string_view text, bool v1) {
    std::optional<CgroupMount> found;
    for_each_line(text, [&](std::string_view line) {
        // id parent major:minor root mount_point options [optional...] - fstype source super_options
        if (found) return;
        std::vector<std::string_view> f = split_fields(line);
        std::size_t dash = 5;
        while (dash < f.size() && f[dash] != "-") ++dash;
        if (dash + 3 >= f.size()) return;
        std::string_view fstype = f[dash + 1], super = f[dash + 3];
        bool match = v1 ? (fstype == "cgroup" && comma_list_has(super, "cpu")) : fstype == "cgroup2";
        if (match) found = CgroupMount{std::string(f[3]), std::string(f[4])};
    });
    return found;
}

// The directories from a cgroup up to its mount's root, as files would be read: the process's
// cgroup path is relative to the hierarchy, the mount shows the subtree under `mount.root`.
inline std::vector<std::string> cgroup_dirs_up(const CgroupMount& mount, std::string_view cgroup_path) {
    std::string rel(cgroup_path);
    if (mount.root != "/" && rel.compare(0, mount.root.size(), mount.root) == 0) rel.erase(0, mount.root.size());
    std::vector<std::string> dirs;
    for (;;) {
        while (rel.size() > 1 && rel.back() == '/') rel.pop_back();
        dirs.push_back(mount.mount_point + (rel == "/" ? "" : rel));
        if (rel.empty() || rel == "/") break;
        std::size_t slash = rel.rfind('/');
        rel = slash == 0 || slash == std::string::npos ? "/" : rel.substr(0, slash);
    }
    return dirs;
}

namespace cpu_limits_detail {
inline bool read_file(const std::string& path, std::string& out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[8192];
    out.clear();
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.size() > (1u << 20)) break;  // a mountinfo this long is not worth reading further
    }
    ::close(fd);
    return !out.empty();
}

inline void take_tighter(CpuLimits& limits, std::optional<double> quota, const std::string& source) {
    if (quota && (!limits.quota_cpus || *quota < *limits.quota_cpus)) {
        limits.quota_cpus = quota;
        limits.quota_source = source;
    }
}
}  // namespace cpu_limits_detail

// What this process may use now (a few small file reads; call it now and then, not per wait).
inline CpuLimits read_cpu_limits() {
    using namespace cpu_limits_detail;
    CpuLimits limits;
    cpu_set_t set;
    CPU_ZERO(&set);
    limits.affinity_cpus = sched_getaffinity(0, sizeof set, &set) == 0
                               ? CPU_COUNT(&set)
                               : static_cast<int>(std::thread::hardware_concurrency());
    if (limits.affinity_cpus < 1) limits.affinity_cpus = 1;
    std::string cgroups, mounts, a, b;
    if (read_file("/proc/self/cgroup", cgroups) && read_file("/proc/self/mountinfo", mounts)) {
        for (bool v1 : {true, false}) {
            auto path = cgroup_path_from_proc(cgroups, v1);
            auto mount = cgroup_mount_from_mountinfo(mounts, v1);
            if (!path || !mount) continue;
            for (const std::string& dir : cgroup_dirs_up(*mount, *path)) {
                if (v1) {
                    if (read_file(dir + "/cpu.cfs_quota_us", a) && read_file(dir + "/cpu.cfs_period_us", b))
                        take_tighter(limits, quota_from_cfs(a, b), dir + "/cpu.cfs_quota_us");
                } else if (read_file(dir + "/cpu.max", a)) {
                    take_tighter(limits, quota_from_cpu_max(a), dir + "/cpu.max");
                }
            }
        }
    }
    limits.usable_cpus = usable_cpus(limits.affinity_cpus, limits.quota_cpus);
    return limits;
}

}  // namespace cfutures::core
