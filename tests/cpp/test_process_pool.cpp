#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <thread>

#include "core/process_pool.hpp"
#include "helpers.hpp"

using namespace cfutures::core;

namespace {

enum class Behaviour { Echo, CrashOnFirstTask, MalformedReply };

// Forks a worker process that serves one channel with `behaviour`; returns its pid and hands
// back the parent's ends (task write, result read).
int fork_worker(Behaviour behaviour, int* task_fd, int* result_fd) {
    int task[2], result[2];
    REQUIRE(::pipe2(task, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(result, O_CLOEXEC) == 0);
    int pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(task[1]);
        ::close(result[0]);
        ::fcntl(task[0], F_SETFL, O_NONBLOCK);
        FrameReader reader;
        Frame f;
        while (recv_frame(task[0], -1, reader, f, nullptr) == RecvStatus::Frame) {
            if (f.kind == FrameKind::Stop) ::_exit(0);
            if (behaviour == Behaviour::CrashOnFirstTask) ::_exit(3);
            if (behaviour == Behaviour::MalformedReply) {
                const char junk[32] = "this is not a frame header....";
                [[maybe_unused]] ssize_t n = ::write(result[1], junk, sizeof junk);
                ::pause();  // wait to be killed
            }
            send_frame(result[1], Frame::make(FrameKind::Result, f.tag, std::string(f.payload())));
        }
        ::_exit(0);
    }
    ::close(task[0]);
    ::close(result[1]);
    ::fcntl(task[1], F_SETFL, O_NONBLOCK);
    ::fcntl(result[0], F_SETFL, O_NONBLOCK);
    *task_fd = task[1];
    *result_fd = result[0];
    return pid;
}

struct Recorder final : ProcessPoolHooks {
    std::mutex mu;
    std::vector<std::string> results;
    std::vector<std::uint64_t> lost;
    std::vector<int> exited;
    std::string broken;
    void deliver(ProcessBatch& b) override {
        std::lock_guard<std::mutex> g(mu);
        for (auto& f : b.results) results.emplace_back(f.payload());
        lost.insert(lost.end(), b.lost.begin(), b.lost.end());
        exited.insert(exited.end(), b.exited.begin(), b.exited.end());
        if (!b.broken_reason.empty()) broken = b.broken_reason;
        for (int pid : b.exited) ::waitpid(pid, nullptr, 0);  // reap, as the bindings do
    }
};

ProcessPool::Job job(std::uint64_t tag, std::string payload) {
    ProcessPool::Job j;
    j.frame = Frame::make(FrameKind::Task, tag, std::move(payload));
    return j;
}

// Starts `n` workers (before any thread exists: forking a threaded process is unsafe).
std::vector<int> start_workers(ProcessPool& pool, int n, Behaviour b) {
    std::vector<int> pids;
    for (int i = 0; i < n; ++i) {
        int t, r;
        pids.push_back(fork_worker(b, &t, &r));
        pool.add_worker(pids.back(), t, r);
    }
    return pids;
}

}  // namespace

TEST_SUITE("ProcessPool") {
    TEST_CASE("jobs go out and results come back; shutdown stops the workers") {
        ProcessPool pool(2, true, -1);
        auto pids = start_workers(pool, 2, Behaviour::Echo);
        Recorder rec;
        std::thread manager([&] { pool.run(rec); });
        for (std::uint64_t i = 1; i <= 200; ++i) {
            auto answer = pool.submit(job(i, "payload-" + std::to_string(i)));
            CHECK(answer.status == ProcessPool::Submit::Queued);
        }
        pool.shutdown(false);
        manager.join();  // returns only once both workers have exited
        CHECK(rec.results.size() == 200);
        CHECK(rec.lost.empty());
        CHECK(rec.broken.empty());
        CHECK(rec.exited.size() == 2);
        CHECK(pool.submit(job(999, "late")).status == ProcessPool::Submit::Shutdown);
    }

    TEST_CASE("a worker that dies breaks the pool and every pending job is reported lost") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::CrashOnFirstTask);
        Recorder rec;
        for (std::uint64_t i = 1; i <= 5; ++i) pool.submit(job(i, "x"));
        std::thread manager([&] { pool.run(rec); });
        manager.join();  // broken, and its only worker is gone: the loop ends by itself
        CHECK(rec.broken.find("terminated abruptly") != std::string::npos);
        CHECK(rec.lost.size() == 5);
        CHECK(rec.exited.size() == 1);
        CHECK(pool.is_broken());
        CHECK(pool.submit(job(6, "x")).status == ProcessPool::Submit::Broken);
    }

    TEST_CASE("a malformed frame from a worker breaks the pool with a clear error") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::MalformedReply);
        Recorder rec;
        pool.submit(job(1, "x"));
        std::thread manager([&] { pool.run(rec); });
        manager.join();  // the misbehaving worker is sent SIGTERM, and its exit ends the loop
        CHECK(rec.broken.find("malformed") != std::string::npos);
        CHECK(rec.lost == std::vector<std::uint64_t>{1});
        CHECK(rec.exited.size() == 1);
    }
}
