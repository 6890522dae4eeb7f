// Shared pieces of the core tests: a FutureCore with an int outcome, and thread counts.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "core/future_state.hpp"

namespace test {

struct IntFuture final : cfutures::core::FutureCore {
    int value = 0;
    bool set(int v) {
        return finish(cfutures::core::Completion::Result, [&] { value = v; });
    }
    bool fail() {
        return finish(cfutures::core::Completion::Exception, [] {});
    }
};

// Tests that race threads run once per count, named "Suite.Nthreads" in their subcases.
inline const std::vector<unsigned> kThreadCounts{1, 2, 4, 8};

inline void run_threads(unsigned n, const std::function<void(unsigned)>& body) {
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < n; ++i) ts.emplace_back(body, i);
    for (auto& t : ts) t.join();
}

}  // namespace test
