#include <chrono>
#include <memory>

#include "core/thread_pool.hpp"
#include "helpers.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

namespace {
struct CountingTask final : Task {
    std::atomic<int>* ran;
    std::atomic<int>* abandoned;
    std::chrono::microseconds work{0};
    CountingTask(std::atomic<int>* r, std::atomic<int>* a) : ran(r), abandoned(a) {}
    void run() noexcept override {
        if (work.count()) std::this_thread::sleep_for(work);
        ran->fetch_add(1);
    }
    void abandon(Abandon) noexcept override { abandoned->fetch_add(1); }
};
}  // namespace

TEST_SUITE("ThreadPool") {
    TEST_CASE("runs every task, from many submitting threads") {
        for (unsigned n : test::kThreadCounts) {
            CAPTURE(n);
            std::atomic<int> ran{0}, abandoned{0};
            {
                StdThreadPool pool(n);
                test::run_threads(4, [&](unsigned) {
                    for (int i = 0; i < 2000; ++i)
                        pool.submit(std::make_unique<CountingTask>(&ran, &abandoned));
                });
                pool.shutdown(false, true);
                CHECK(pool.threads_started() == 0);  // joined
            }
            CHECK(ran.load() == 8000);
            CHECK(abandoned.load() == 0);
        }
    }

    TEST_CASE("starts a worker only when none is idle, never more than max") {
        std::atomic<int> ran{0}, abandoned{0};
        StdThreadPool pool(3);
        for (int i = 0; i < 3; ++i) {
            pool.submit(std::make_unique<CountingTask>(&ran, &abandoned));
            while (ran.load() < i + 1) std::this_thread::yield();
            // wait until the worker counts itself idle again
            while (pool.pool().idle_workers() == 0) std::this_thread::yield();
        }
        CHECK(pool.threads_started() == 1);
        for (int i = 0; i < 30; ++i) {
            auto t = std::make_unique<CountingTask>(&ran, &abandoned);
            t->work = 2ms;
            pool.submit(std::move(t));
        }
        CHECK(pool.threads_started() == 3);
        pool.shutdown(false, true);
        CHECK(ran.load() == 33);
    }

    TEST_CASE("shutdown with cancel abandons what is queued") {
        std::atomic<int> ran{0}, abandoned{0};
        StdThreadPool pool(1);
        for (int i = 0; i < 50; ++i) {
            auto t = std::make_unique<CountingTask>(&ran, &abandoned);
            t->work = 1ms;
            pool.submit(std::move(t));
        }
        pool.shutdown(true, true);
        CHECK(ran.load() + abandoned.load() == 50);
        CHECK(abandoned.load() > 0);
        CHECK(pool.pool().submit(std::make_unique<CountingTask>(&ran, &abandoned)) ==
              ThreadPool::Submit::Shutdown);
    }

    TEST_CASE("a broken pool drains its queue and refuses work") {
        std::atomic<int> ran{0}, abandoned{0};
        ThreadPool pool(1);
        CHECK(pool.submit(std::make_unique<CountingTask>(&ran, &abandoned)) ==
              ThreadPool::Submit::NeedsWorker);
        auto drained = pool.break_pool();
        CHECK(drained.size() == 1);
        for (Task* t : drained) delete t;
        CHECK(pool.submit(std::make_unique<CountingTask>(&ran, &abandoned)) ==
              ThreadPool::Submit::Broken);
    }

    TEST_CASE("release_idle_workers lets workers exit without refusing submits") {
        std::atomic<int> ran{0}, abandoned{0};
        ThreadPool pool(1);
        CHECK(pool.submit(std::make_unique<CountingTask>(&ran, &abandoned)) ==
              ThreadPool::Submit::NeedsWorker);
        struct NoHooks final : WorkerHooks {
            void acquire() override {}
            void release() override {}
        } hooks;
        pool.release_idle_workers();
        std::thread worker([&] { pool.worker_loop(hooks); });
        worker.join();  // returns once the queue is empty
        CHECK(ran.load() == 1);
        CHECK(pool.workers() == 0);
        CHECK(pool.submit(std::make_unique<CountingTask>(&ran, &abandoned)) ==
              ThreadPool::Submit::NeedsWorker);
        for (Task* t : pool.shutdown(true)) delete t;
    }
}
