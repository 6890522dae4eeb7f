// SmallMutex: a 4-byte mutex for per-future state.
//
// One exists per Future, so its size counts (std::mutex is 40 bytes). Critical sections guarded by
// it are a few dozen instructions and never block, so a short spin followed by a futex wait
// (C++20 atomic wait) is enough. It guards nothing itself; the owner's header says what it covers.
#pragma once

#include <atomic>

namespace cfutures::core {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

class SmallMutex {
public:
    void lock() noexcept {
        int expected = kUnlocked;
        if (state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) return;
        lock_contended();
    }

    bool try_lock() noexcept {
        int expected = kUnlocked;
        return state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire);
    }

    void unlock() noexcept {
        if (state_.exchange(kUnlocked, std::memory_order_release) == kLockedWithSleepers) {
            state_.notify_one();
        }
    }

private:
    static constexpr int kUnlocked = 0;
    static constexpr int kLocked = 1;
    static constexpr int kLockedWithSleepers = 2;
    // Holders never block inside the section, so a waiter usually gets in within this many pauses.
    static constexpr int kSpins = 128;

    void lock_contended() noexcept {
        for (int i = 0; i < kSpins; ++i) {
            int expected = kUnlocked;
            if (state_.load(std::memory_order_relaxed) == kUnlocked &&
                state_.compare_exchange_weak(expected, kLocked, std::memory_order_acquire)) {
                return;
            }
            cpu_relax();
        }
        // Marking "sleepers" may be pessimistic (a spurious notify at unlock), never lossy.
        while (state_.exchange(kLockedWithSleepers, std::memory_order_acquire) != kUnlocked) {
            state_.wait(kLockedWithSleepers, std::memory_order_relaxed);
        }
    }

    std::atomic<int> state_{kUnlocked};
};

}  // namespace cfutures::core
