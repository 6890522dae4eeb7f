// The process pool's dispatch policy, as pure functions of what the manager measures: how many
// jobs a worker gets ahead, how recent service times are averaged, how long a job may run
// before the jobs sent ahead behind it count as stranded, and whether a worker may be sent one
// more job. No descriptors, no locks: tests/cpp/test_dispatch_policy.cpp checks them alone.
// process_pool_dispatch.hpp applies them.
//
// Prefetch. A job sent to a busy worker waits there even if another worker frees up first (a
// pipe cannot take it back), so how many jobs a worker gets ahead depends on how long jobs
// take: as many as fit in kPrefetchWindow of measured service time, between 1 and
// default_in_flight(). Service time is measured by the manager: from when a worker's current
// job began (it was sent to an idle worker, or the previous answer arrived) to its answer,
// averaged over recent answers (weight kServiceWeight for the newest). Until the first answer
// nothing is known, and each worker gets one job at a time: a long first task strands nothing,
// and small tasks reach full depth after their first answer (tens of microseconds).
//
// Revoking. Jobs sent ahead behind a task much longer than the recent ones are asked back: when
// a worker idles with nothing queued while another's current job has run longer than
// patience() (kRevokeFactor times the recent service time, and at least kPrefetchWindow), the
// manager sends Revoke for that worker's jobs waiting behind it (those without attachments,
// whose frames it keeps until they start); the ones the worker had not started come back
// (Revoked) and go first in the queue, their futures still RUNNING (as the stdlib's call queue
// holds RUNNING items).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace cfutures::core::dispatch_policy {

inline constexpr std::chrono::microseconds kPrefetchWindow{2000};
inline constexpr double kRevokeFactor = 4;
inline constexpr double kServiceWeight = 0.25;

// Jobs sent ahead to one worker, at most: about 16 per pool, 2 to 8 per worker. More hides the
// round trip of small tasks; fewer keeps most of a backlog cancellable (the stdlib commits
// max_workers + 1).
inline std::size_t default_in_flight(std::size_t max_workers) {
    return std::clamp<std::size_t>(16 / std::max<std::size_t>(max_workers, 1), 2, 8);
}

// How many jobs a worker may have in flight, given the recent service time (-1: none yet).
inline std::size_t prefetch_depth(double service_ns, std::size_t max_depth) {
    if (service_ns < 0) return 1;  // nothing measured yet
    double fit = std::chrono::nanoseconds(kPrefetchWindow).count() / std::max(service_ns, 1.0);
    return std::clamp<std::size_t>(static_cast<std::size_t>(fit), 1, max_depth);
}

// The recent service time once an answer that took `each_ns` arrived (`average_ns` -1: none).
inline double updated_service(double average_ns, double each_ns) {
    return average_ns < 0 ? each_ns : average_ns + kServiceWeight * (each_ns - average_ns);
}

// How long a job may run before the jobs behind it count as stranded.
inline std::chrono::nanoseconds patience(double service_ns) {
    auto recent = std::chrono::nanoseconds(static_cast<std::int64_t>(kRevokeFactor * std::max(service_ns, 0.0)));
    return std::max<std::chrono::nanoseconds>(kPrefetchWindow, recent);
}

// Whether a worker that can take jobs, with `in_flight` of them (the first running for
// `running_for`), may be sent one more: nothing is sent ahead to a worker whose job has run
// past patience (it would strand).
inline bool may_send(std::size_t in_flight, std::size_t depth, std::chrono::nanoseconds running_for,
                     std::chrono::nanoseconds patience) {
    if (in_flight >= depth) return false;
    return in_flight == 0 || running_for <= patience;
}

}  // namespace cfutures::core::dispatch_policy
