#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "core/manager_events.hpp"
#include "core/process_pool.hpp"
#include "core/worker_channel.hpp"
#include "helpers.hpp"

using namespace cfutures::core;
using namespace std::chrono_literals;

namespace {

enum class Behaviour {
    Echo,
    CrashOnFirstTask,
    MalformedReply,        // junk instead of a frame
    UnaskedExiting,        // announces Exiting with its allowance unspent, then idles
    AnswersUnknownJob,     // answers a tag it was never given
    HugeHeader,            // a header announcing 4 GiB, then a few bytes, then idles
    IgnoresSigterm,        // crashes the pool via junk, and ignores the SIGTERM that follows
    AnswersBeforeGivingBack,  // answers "hold" only once a Revoke came, then gives back (raw frames)
    SlowStart,             // echoes, but announces Ready only 300 ms after it started
    ReadyTwice,            // announces Ready twice
    DiesBeforeReady,       // exits before Ready, as after a failing initializer
    LeavesEarly,           // echoes; "leave" is answered once tasks were sent behind it, then Exiting
};

// "sleep:N" tasks take N ms: a task that takes time.
void sleep_if_asked(std::string_view payload) {
    if (payload.rfind("sleep:", 0) == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(std::string(payload.substr(6)))));
}

// The channel end of the workers below, which speak the protocol by hand: frames come in with a
// deadline (the process leaves at the end of the stream), and go out whole.
struct HandWrittenEnd {
    int in, out, sock;
    FrameReader reader;
    HandWrittenEnd(int in_fd, int out_fd, int sock_fd)
        : in(in_fd), out(out_fd), sock(sock_fd), reader(Direction::FromParent, sock_fd) {
        ::fcntl(in, F_SETFL, ::fcntl(in, F_GETFL) | O_NONBLOCK);
    }
    // The next frame, or nothing once `until` passed.
    std::optional<IncomingFrame> next(std::chrono::steady_clock::time_point until = std::chrono::steady_clock::time_point::max()) {
        for (;;) {
            if (auto f = reader.pop()) return std::move(*f);
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd p{in, POLLIN, 0};
            ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
            IoStatus s = reader.fill(in);
            if (s == IoStatus::Eof || s == IoStatus::Error) ::_exit(0);
        }
    }
    void send(FrameKind kind, std::uint64_t tag, std::string payload) {
        FrameWriter w(sock);
        w.push(OutgoingFrame::make(kind, tag, std::move(payload)));
        if (w.flush(out) != IoStatus::Ok) ::_exit(2);
    }
};

// A worker that leaves as one whose memory grew past max_worker_memory does: on a "leave" task it
// waits (at most 2 s) until 3 more tasks were sent behind it, answers "leave:N" (N: how many it
// holds), sends Exiting and exits without running them. On "answer-then-leave" it answers
// first, then waits (at most 2 s) for one more task (sent to it as to an idle worker), and leaves
// without running it.
[[noreturn]] void leaves_early(int in, int out, int sock) {
    HandWrittenEnd end(in, out, sock);
    end.send(FrameKind::Ready, 0, "");
    for (;;) {
        IncomingFrame f = *end.next();
        if (f.kind != FrameKind::Task) ::_exit(0);
        if (f.payload.view() == "answer-then-leave") {
            end.send(FrameKind::Result, f.tag, "answer-then-leave");
            auto until = std::chrono::steady_clock::now() + 2s;
            for (auto g = end.next(until); g && g->kind != FrameKind::Task; g = end.next(until)) {}
            end.send(FrameKind::Exiting, 0, "");
            ::_exit(0);
        }
        if (f.payload.view() != "leave") {
            end.send(FrameKind::Result, f.tag, std::string(f.payload.view()));
            continue;
        }
        int behind = 0;
        auto until = std::chrono::steady_clock::now() + 2s;
        while (behind < 3) {
            auto g = end.next(until);
            if (!g) break;
            if (g->kind == FrameKind::Task) ++behind;
        }
        end.send(FrameKind::Result, f.tag, "leave:" + std::to_string(behind));
        end.send(FrameKind::Exiting, 0, "");
        ::_exit(0);
    }
}

// A worker speaking the protocol by hand, to order frames as a real one only does by chance: it
// holds the answer to a "hold" task until the pool asks back a task sent behind it, then sends
// that answer first and the task back after it. The pool, which takes the first job in flight
// for the running one, sees the job it asked back come back as the first in flight. It never
// waits for a Revoke forever: one the pool was never bound to send (nothing was sent ahead
// behind "hold") once left it waiting, and the pool's shutdown with it (CI's ASan run timed out
// there). After 10 s, or on Stop, it answers "hold: nothing asked back" instead.
// "sleep:N" answers after N ms.
[[noreturn]] void answers_before_giving_back(int in, int out, int sock) {
    HandWrittenEnd end(in, out, sock);
    std::deque<IncomingFrame> pending;
    auto give_back = [&](std::uint64_t tag) {
        for (auto it = pending.begin(); it != pending.end(); ++it) {
            if (it->tag == tag) {
                pending.erase(it);
                end.send(FrameKind::Revoked, tag, "");
                return true;
            }
        }
        return false;
    };
    end.send(FrameKind::Ready, 0, "");
    for (;;) {
        IncomingFrame f;
        if (!pending.empty()) {
            f = std::move(pending.front());
            pending.pop_front();
        } else {
            f = *end.next();
        }
        if (f.kind == FrameKind::Stop) ::_exit(0);
        if (f.kind == FrameKind::Revoke) {
            give_back(f.tag);
            continue;
        }
        if (f.payload.view() == "hold") {
            std::vector<std::uint64_t> asked;
            auto until = std::chrono::steady_clock::now() + 10s;
            while (asked.empty() && (pending.empty() || pending.back().kind != FrameKind::Stop)) {
                std::optional<IncomingFrame> g = end.next(until);
                if (!g) break;
                if (g->kind == FrameKind::Revoke) asked.push_back(g->tag);
                else pending.push_back(std::move(*g));
            }
            end.send(FrameKind::Result, f.tag, asked.empty() ? "hold: nothing asked back" : "hold");
            for (auto tag : asked) give_back(tag);
            continue;
        }
        sleep_if_asked(f.payload.view());
        end.send(FrameKind::Result, f.tag, std::string(f.payload.view()));
    }
}

void worker_main(int in, int out, int sock, Behaviour behaviour) {
    // (doctest's own handler, inherited through fork, would report SIGTERM as a crash.)
    ::signal(SIGTERM, behaviour == Behaviour::IgnoresSigterm ? SIG_IGN : SIG_DFL);
    if (behaviour == Behaviour::AnswersBeforeGivingBack) answers_before_giving_back(in, out, sock);
    if (behaviour == Behaviour::LeavesEarly) leaves_early(in, out, sock);
    WorkerEnd end(in, out, sock, 0);
    IncomingFrame f;
    std::string err;
    if (behaviour == Behaviour::SlowStart) std::this_thread::sleep_for(300ms);  // an initializer
    if (behaviour == Behaviour::DiesBeforeReady) ::_exit(1);
    end.announce_ready(err);
    if (behaviour == Behaviour::ReadyTwice) end.announce_ready(err);
    while (end.recv(f, err) == WorkerEnd::Recv::Frame) {
        if (f.kind == FrameKind::Stop) ::_exit(0);
        switch (behaviour) {
            case Behaviour::Echo:
            case Behaviour::SlowStart:
                sleep_if_asked(f.payload.view());
                break;
            case Behaviour::CrashOnFirstTask: ::_exit(3);
            case Behaviour::MalformedReply:
            case Behaviour::IgnoresSigterm: {
                const char junk[32] = "this is not a frame header....";
                [[maybe_unused]] ssize_t n = ::write(out, junk, sizeof junk);
                for (;;) ::pause();  // until killed
            }
            case Behaviour::UnaskedExiting:
                end.send(OutgoingFrame::make(FrameKind::Exiting, 0, ""), err);
                for (;;) ::pause();
            case Behaviour::AnswersUnknownJob: f.tag += 1000; break;
            case Behaviour::AnswersBeforeGivingBack: break;  // (served above)
            case Behaviour::ReadyTwice: break;
            case Behaviour::DiesBeforeReady: break;
            case Behaviour::LeavesEarly: break;  // (served above)
            case Behaviour::HugeHeader: {
                // As a task writing into its worker's socket: the real answer follows, swallowed.
                FrameHeader h{kFrameMagic, 3, 0, f.tag, std::uint64_t{0xFFFFFFF0}};
                [[maybe_unused]] ssize_t n = ::write(out, &h, sizeof h);
                n = ::write(out, "0123456789", 10);
                break;
            }
        }
        end.send(OutgoingFrame::make(FrameKind::Result, f.tag, std::string(f.payload.view())), err);
    }
    ::_exit(0);
}

// Forks a worker process that serves one channel with `behaviour`; returns its pid and hands
// back the parent's ends (to it, from it, attachments).
int fork_worker(Behaviour behaviour, int* task_fd, int* result_fd, int* sock_fd) {
    int to[2], from[2], sock[2];
    REQUIRE(::pipe2(to, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(from, O_CLOEXEC) == 0);
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) == 0);
    int pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(to[1]);
        ::close(from[0]);
        ::close(sock[0]);
        worker_main(to[0], from[1], sock[1], behaviour);
    }
    ::close(to[0]);
    ::close(from[1]);
    ::close(sock[1]);
    for (int fd : {to[1], from[0], sock[0]}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
    *task_fd = to[1];
    *result_fd = from[0];
    *sock_fd = sock[0];
    return pid;
}

struct Recorder final : ProcessPoolHooks {
    std::mutex mu;
    std::vector<std::string> results;
    std::vector<std::uint64_t> lost;
    std::vector<int> exited;
    BreakCause cause = BreakCause::None;
    std::string broken;
    std::vector<StoppedJob> stopped;
    int throw_in_delivery = -1;  // deliver() throws on this call (0-based), to test Internal
    int deliveries = 0;
    // Replacement workers cannot be forked here (threads run): the pool hears they failed,
    // unless a spare forked beforehand is left (fork_spare()).
    ProcessPool* pool = nullptr;
    std::vector<NewWorker> spares;
    ~Recorder() {
        for (NewWorker& nw : spares) {  // not needed after all
            for (int fd : {nw.task_fd, nw.result_fd, nw.attachment_fd}) ::close(fd);
            ::kill(nw.pid, SIGKILL);
            ::waitpid(nw.pid, nullptr, 0);
        }
    }
    void deliver(ProcessBatch& b) override {
        if (pool) {
            for (std::size_t i = 0; i < b.start_workers; ++i) {
                if (spares.empty()) {
                    pool->worker_start_failed();
                    continue;
                }
                NewWorker nw = spares.back();
                spares.pop_back();
                pool->add_worker(nw.pid, nw.task_fd, nw.result_fd, nw.attachment_fd);
            }
        }
        std::lock_guard<std::mutex> g(mu);
        stopped.insert(stopped.end(), b.stopped.begin(), b.stopped.end());
        for (auto& f : b.answers) results.emplace_back(f.payload.view());
        lost.insert(lost.end(), b.lost.begin(), b.lost.end());
        exited.insert(exited.end(), b.exited.begin(), b.exited.end());
        if (b.broken != BreakCause::None) {
            cause = b.broken;
            broken = b.broken_reason;
        }
        for (int pid : b.exited) ::waitpid(pid, nullptr, 0);  // reap, as the bindings do
        if (deliveries++ == throw_in_delivery) throw std::runtime_error("deliberate");
    }
};

ProcessPool::Job job(std::uint64_t tag, std::string payload, std::chrono::nanoseconds timeout = 0ns) {
    ProcessPool::Job j;
    j.frame = OutgoingFrame::make(FrameKind::Task, tag, std::move(payload));
    j.timeout = timeout;
    return j;
}

// Submits as an owner that cannot start workers here (threads run): a worker the pool asks for
// (to replace one it stopped) is reported as failed to start, so that none is counted that will
// never come (shutdown waits for every counted worker).
ProcessPool::SubmitAnswer submit_without_starting(ProcessPool& pool, ProcessPool::Job j) {
    auto answer = pool.submit(std::move(j));
    for (std::size_t i = 0; i < answer.start_workers; ++i) pool.worker_start_failed();
    return answer;
}

// Waits (at most 20 s) until `done()` holds under the recorder's lock.
template <class Done>
void wait_until(Recorder& rec, Done&& done) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
        {
            std::lock_guard<std::mutex> g(rec.mu);
            if (done() || std::chrono::steady_clock::now() > deadline) return;
        }
        std::this_thread::sleep_for(1ms);
    }
}

// Starts `n` workers (before any thread exists: forking a threaded process is unsafe).
std::vector<int> start_workers(ProcessPool& pool, int n, Behaviour b) {
    std::vector<int> pids;
    for (int i = 0; i < n; ++i) {
        int task_fd, result_fd, sock_fd;
        pids.push_back(fork_worker(b, &task_fd, &result_fd, &sock_fd));
        pool.add_worker(pids.back(), task_fd, result_fd, sock_fd);
    }
    return pids;
}

// Forks a worker for `rec` to hand to its pool as a replacement (before any thread exists).
void fork_spare(Recorder& rec, Behaviour b) {
    NewWorker nw{};
    nw.pid = fork_worker(b, &nw.task_fd, &nw.result_fd, &nw.attachment_fd);
    nw.pidfd = -1;
    rec.spares.push_back(nw);
}

// Runs a one-worker pool with a misbehaving worker and one job; returns what it recorded.
void run_broken_by(Behaviour b, Recorder& rec, std::chrono::milliseconds* took = nullptr) {
    ProcessPool pool(1, true, -1);
    start_workers(pool, 1, b);
    pool.submit(job(1, "x"));
    auto t0 = std::chrono::steady_clock::now();
    std::thread manager([&] { pool.run(rec); });
    manager.join();  // the worker is sent SIGTERM (SIGKILL later), and its exit ends the loop
    if (took) *took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    CHECK(pool.is_broken());
    CHECK(pool.submit(job(2, "x")).status == ProcessPool::Submit::Broken);
    CHECK(rec.lost == std::vector<std::uint64_t>{1});
    CHECK(rec.exited.size() == 1);
}

// On a 2-worker pool of `b` workers: 40 short jobs (after which jobs are sent ahead), then
// `long_job`, then 12 `short_job`s, waiting for every answer (at most 20 s), then shutdown.
// Returns whether the pool was broken before shutdown.
bool run_long_then_short(Behaviour b, const char* long_job, Recorder& rec,
                         std::chrono::nanoseconds long_timeout = 0ns, const char* short_job = "short") {
    ProcessPool pool(2, true, -1);
    rec.pool = &pool;
    start_workers(pool, 2, b);
    std::thread manager([&] { pool.run(rec); });
    auto answered = [&] {
        std::lock_guard<std::mutex> g(rec.mu);
        return rec.results.size();
    };
    std::uint64_t tag = 1;
    for (int i = 0; i < 40; ++i) submit_without_starting(pool, job(tag++, "warm"));
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (answered() < 40 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    submit_without_starting(pool, job(tag++, long_job, long_timeout));
    for (int i = 0; i < 12; ++i) submit_without_starting(pool, job(tag++, short_job));
    std::size_t want = long_timeout.count() ? 52 : 53;
    while (answered() < want && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    if (long_timeout.count()) wait_until(rec, [&] { return !rec.stopped.empty(); });
    bool broken = pool.is_broken();
    pool.shutdown(false);
    manager.join();
    return broken;
}

}  // namespace

TEST_SUITE("ManagerEvents") {
    TEST_CASE("wakes are coalesced until drained, and none is lost after") {
        ManagerEvents events;
        auto wakes = [&](int timeout_ms) {
            int n = 0;
            for (const auto& ev : events.wait(timeout_ms)) n += ev.wake;
            return n;
        };
        CHECK(wakes(0) == 0);
        events.wake();
        events.wake();  // pending already: no second write
        events.wake();
        CHECK(wakes(0) == 1);
        CHECK(wakes(0) == 0);  // drained
        events.wake();         // after the drain: written again
        CHECK(wakes(1000) == 1);
        // From another thread, while the manager sleeps.
        std::thread waker([&] {
            std::this_thread::sleep_for(20ms);
            events.wake();
        });
        CHECK(wakes(5000) == 1);
        waker.join();
    }
}

TEST_SUITE("ProcessPool") {
    TEST_CASE("jobs sent ahead behind a long one are asked back when another worker idles") {
        Recorder rec;
        run_long_then_short(Behaviour::Echo, "sleep:1500", rec);
        REQUIRE(rec.results.size() == 53);
        CHECK(rec.results.back() == "sleep:1500");  // every short job ran on the other worker
        CHECK(rec.lost.empty());
    }

    TEST_CASE("a job past its timeout has its worker killed; the jobs sent ahead to it run elsewhere") {
        Recorder rec;
        auto t0 = std::chrono::steady_clock::now();
        CHECK_FALSE(run_long_then_short(Behaviour::Echo, "sleep:10000", rec, 300ms));
        CHECK(std::chrono::steady_clock::now() - t0 < 8s);
        CHECK(rec.results.size() == 52);  // every other job answered, none lost
        CHECK(rec.lost.empty());
        CHECK(rec.broken.empty());
        REQUIRE(rec.stopped.size() == 1);
        CHECK(rec.stopped[0].tag == 41);
        CHECK(rec.stopped[0].cause == StopCause::TimedOut);
        CHECK(rec.stopped[0].exitcode == -SIGKILL);
    }

    TEST_CASE("a timed job answered in time is not stopped, and its clock starts when it starts") {
        ProcessPool pool(1, true, -1);
        Recorder rec;
        rec.pool = &pool;
        start_workers(pool, 1, Behaviour::SlowStart);  // Ready after 300 ms
        std::thread manager([&] { pool.run(rec); });
        pool.submit(job(1, "sleep:200", 400ms));  // would time out if counted from the submit
        pool.submit(job(2, "sleep:10", 400ms));
        wait_until(rec, [&] { return rec.results.size() + rec.stopped.size() == 2; });
        pool.shutdown(false);
        manager.join();
        CHECK(rec.results == std::vector<std::string>{"sleep:200", "sleep:10"});
        CHECK(rec.stopped.empty());
    }

    TEST_CASE("stop_job() kills the worker of a running job only") {
        ProcessPool pool(2, true, -1);
        Recorder rec;
        rec.pool = &pool;
        pool.keep_frames();
        start_workers(pool, 2, Behaviour::Echo);
        std::thread manager([&] { pool.run(rec); });
        pool.submit(job(1, "sleep:10000"));
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (pool.running().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
        std::vector<OutgoingFrame> released;
        CHECK_FALSE(pool.stop_job(2, released));  // not a job of the pool
        CHECK(pool.stop_job(1, released));
        // Its worker's exit first, then the submits: they ask for the worker it left free.
        wait_until(rec, [&] { return rec.stopped.size() == 1; });
        for (std::uint64_t i = 2; i <= 6; ++i) submit_without_starting(pool, job(i, "after"));
        wait_until(rec, [&] { return rec.results.size() == 5 && rec.stopped.size() == 1; });
        pool.shutdown(false);
        manager.join();
        REQUIRE(rec.stopped.size() == 1);
        CHECK(rec.stopped[0].tag == 1);
        CHECK(rec.stopped[0].cause == StopCause::Cancelled);
        CHECK(rec.results.size() == 5);
        CHECK(rec.broken.empty());
    }

    TEST_CASE("replace_dead_workers: a worker dying fails its running job only") {
        ProcessPool pool(2, true, -1, /*replace_dead_workers=*/true);
        Recorder rec;
        rec.pool = &pool;
        start_workers(pool, 1, Behaviour::CrashOnFirstTask);
        start_workers(pool, 1, Behaviour::Echo);
        std::thread manager([&] { pool.run(rec); });
        for (std::uint64_t i = 1; i <= 8; ++i) submit_without_starting(pool, job(i, "x"));
        wait_until(rec, [&] { return rec.results.size() + rec.stopped.size() == 8; });
        pool.shutdown(false);
        manager.join();
        REQUIRE(rec.stopped.size() == 1);
        CHECK(rec.stopped[0].cause == StopCause::WorkerDied);
        CHECK(rec.stopped[0].exitcode == 3);
        CHECK(rec.results.size() == 7);
        CHECK(rec.lost.empty());
        CHECK(rec.broken.empty());
    }

    TEST_CASE("replace_dead_workers: a worker dying before Ready (its initializer) still breaks the pool") {
        ProcessPool pool(1, true, -1, /*replace_dead_workers=*/true);
        Recorder rec;
        rec.pool = &pool;
        start_workers(pool, 1, Behaviour::DiesBeforeReady);
        pool.submit(job(1, "x"));
        std::thread manager([&] { pool.run(rec); });
        manager.join();
        CHECK(rec.cause == BreakCause::WorkerDied);
        CHECK(rec.lost == std::vector<std::uint64_t>{1});
        CHECK(rec.stopped.empty());
    }

    TEST_CASE("workers_leave_early: a worker leaving after an answer has the jobs sent ahead to it run elsewhere") {
        ProcessPool pool(1, true, -1, /*replace_dead_workers=*/false, /*workers_leave_early=*/true);
        Recorder rec;
        rec.pool = &pool;
        start_workers(pool, 1, Behaviour::LeavesEarly);
        fork_spare(rec, Behaviour::Echo);
        std::thread manager([&] { pool.run(rec); });
        // Short jobs first: once their times are known, jobs are sent ahead.
        for (std::uint64_t i = 1; i <= 20; ++i) pool.submit(job(i, "warm"));
        wait_until(rec, [&] { return rec.results.size() == 20; });
        pool.submit(job(21, "leave"));
        for (std::uint64_t i = 22; i <= 27; ++i) pool.submit(job(i, "after-" + std::to_string(i)));
        wait_until(rec, [&] { return rec.results.size() == 27; });
        ExecutorStats s = pool.stats();
        pool.shutdown(false);
        manager.join();
        CHECK(rec.broken.empty());
        CHECK(rec.lost.empty());
        CHECK(rec.stopped.empty());
        REQUIRE(rec.results.size() == 27);
        std::string leave;
        for (std::uint64_t i = 22; i <= 27; ++i)
            CHECK(std::count(rec.results.begin(), rec.results.end(), "after-" + std::to_string(i)) == 1);
        for (auto& r : rec.results)
            if (r.rfind("leave:", 0) == 0) leave = r;
        CAPTURE(leave);
        CHECK(leave != "leave:0");  // it held jobs it never ran (sent ahead), and they ran on its replacement
        CHECK(s.failed == 0);
        CHECK(s.workers_replaced == 1);
        CHECK(rec.exited.size() == 2);
    }

    TEST_CASE("workers_leave_early: a job sent straight from submit() to a worker about to leave goes again") {
        ProcessPool pool(1, true, -1, /*replace_dead_workers=*/false, /*workers_leave_early=*/true);
        Recorder rec;
        rec.pool = &pool;
        start_workers(pool, 1, Behaviour::LeavesEarly);
        fork_spare(rec, Behaviour::Echo);
        std::thread manager([&] { pool.run(rec); });
        pool.submit(job(1, "answer-then-leave"));
        wait_until(rec, [&] { return rec.results.size() == 1; });
        // The worker looks idle: submit() writes the job to its pipe itself (no manager round).
        std::vector<OutgoingFrame> released;
        pool.submit(job(2, "late"), &released);
        CHECK(released.empty());  // kept, in case it has to go again
        wait_until(rec, [&] { return rec.results.size() == 2; });
        ExecutorStats s = pool.stats();
        pool.shutdown(false);
        manager.join();
        CHECK(rec.results == std::vector<std::string>{"answer-then-leave", "late"});
        CHECK(rec.stopped.empty());
        CHECK(rec.lost.empty());
        CHECK(rec.broken.empty());
        CHECK(s.workers_replaced == 1);
    }

    TEST_CASE("without workers_leave_early an Exiting with jobs in flight still breaks the pool") {
        ProcessPool pool(1, true, -1);
        Recorder rec;
        rec.pool = &pool;
        start_workers(pool, 1, Behaviour::LeavesEarly);
        std::thread manager([&] { pool.run(rec); });
        for (std::uint64_t i = 1; i <= 20; ++i) pool.submit(job(i, "warm"));
        wait_until(rec, [&] { return rec.results.size() == 20; });
        pool.submit(job(21, "leave"));
        // The worker leaves once 3 jobs are behind "leave": the pool may break (and refuse the
        // rest) before this thread has submitted all 6, when it is descheduled (once in 125
        // runs under ASan).
        std::size_t refused = 0;
        for (std::uint64_t i = 22; i <= 27; ++i)
            refused += pool.submit(job(i, "after")).status == ProcessPool::Submit::Broken;
        manager.join();  // broken, and its only worker is gone: the loop ends by itself
        CHECK(rec.cause == BreakCause::Protocol);
        CHECK(rec.broken.find("Exiting message it was not entitled to") != std::string::npos);
        CHECK(rec.lost.size() >= 3);  // the ones it held
        CHECK(rec.lost.size() + refused == 6);
    }

    TEST_CASE("a job sent to a worker still starting runs from when the worker is ready") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::SlowStart);
        Recorder rec;
        std::thread manager([&] { pool.run(rec); });
        auto t0 = std::chrono::steady_clock::now();
        pool.submit(job(1, "sleep:300"));
        std::this_thread::sleep_for(150ms);
        CHECK(pool.running().empty());  // sent, but the worker is in its "initializer"
        auto deadline = t0 + 10s;
        while (pool.running().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
        auto running = pool.running();
        REQUIRE(running.size() == 1);
        CHECK(running[0].tag == 1);
        CHECK(running[0].since - t0 >= 250ms);
        pool.shutdown(false);
        manager.join();
        CHECK(rec.results == std::vector<std::string>{"sleep:300"});
    }

    TEST_CASE("a job asked back may come back after the job before it was answered") {
        Recorder rec;
        // Short jobs that take 30 ms: the other worker cannot take all 12 at once (8 in flight
        // at most), so some are sent ahead behind "hold", to be asked back. Instant ones could
        // all run on the other worker, leaving nothing to ask back (1 run in 90 here).
        CHECK_FALSE(run_long_then_short(Behaviour::AnswersBeforeGivingBack, "hold", rec, 0ns, "sleep:30"));
        CHECK(rec.broken == "");
        CHECK(rec.results.size() == 53);
        CHECK(std::count(rec.results.begin(), rec.results.end(), "hold") == 1);  // one was asked back
        CHECK(rec.lost.empty());
    }

    TEST_CASE("the pool knows which job each worker runs and since when; one job at a time until task times are known") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::Echo);
        Recorder rec;
        std::thread manager([&] { pool.run(rec); });
        pool.submit(job(1, "sleep:300"));
        pool.submit(job(2, "sleep:300"));
        auto running_tag = [&]() -> std::uint64_t {
            auto r = pool.running();
            return r.empty() ? 0 : r.front().tag;
        };
        auto deadline = std::chrono::steady_clock::now() + 10s;
        while (running_tag() != 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
        auto first = pool.running();
        REQUIRE(first.size() == 1);
        CHECK(first[0].tag == 1);
        CHECK(pool.queued() == 1);  // nothing measured yet: not sent ahead
        while (running_tag() != 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
        auto second = pool.running();
        REQUIRE(second.size() == 1);
        CHECK(second[0].tag == 2);
        CHECK(second[0].since - first[0].since >= 250ms);  // it began when job 1 was answered
        pool.shutdown(false);
        manager.join();
        CHECK(rec.results == std::vector<std::string>{"sleep:300", "sleep:300"});
    }

    TEST_CASE("jobs go out and results come back; shutdown stops the workers") {
        ProcessPool pool(2, true, -1);
        start_workers(pool, 2, Behaviour::Echo);
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

    TEST_CASE("stats(): the pool counts what it decides, the owner the answers") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::Echo);
        struct Counting final : ProcessPoolHooks {
            ProcessPool* pool;
            std::atomic<int> answers{0};
            void deliver(ProcessBatch& b) override {
                for (std::size_t i = 0; i < b.answers.size(); ++i) pool->counters().count(Outcome::Completed);
                answers += static_cast<int>(b.answers.size());
                for (int pid : b.exited) ::waitpid(pid, nullptr, 0);
            }
        } hooks;
        hooks.pool = &pool;
        for (std::uint64_t i = 1; i <= 5; ++i) pool.submit(job(i, "sleep:20"));
        ExecutorStats before = pool.stats();
        CHECK(before.submitted == 5);
        CHECK(before.queued + before.running == 5);
        std::thread manager([&] { pool.run(hooks); });
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (hooks.answers < 5 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
        ExecutorStats after = pool.stats();
        CHECK(after.completed == 5);
        CHECK(after.queued == 0);
        CHECK(after.running == 0);
        CHECK(after.workers == 1);
        pool.shutdown(false);
        manager.join();
    }

    TEST_CASE("a worker that dies breaks the pool and every pending job is reported lost") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::CrashOnFirstTask);
        Recorder rec;
        for (std::uint64_t i = 1; i <= 5; ++i) pool.submit(job(i, "x"));
        std::thread manager([&] { pool.run(rec); });
        manager.join();  // broken, and its only worker is gone: the loop ends by itself
        ExecutorStats s = pool.stats();
        CHECK(s.submitted == 5);
        CHECK(s.failed == 5);  // lost, counted by the pool
        CHECK(s.queued + s.running + s.completed + s.cancelled == 0);
        CHECK(rec.cause == BreakCause::WorkerDied);
        CHECK(rec.broken.find("terminated abruptly") != std::string::npos);
        CHECK(rec.lost.size() == 5);
        CHECK(rec.exited.size() == 1);
        CHECK(pool.is_broken());
        CHECK(pool.submit(job(6, "x")).status == ProcessPool::Submit::Broken);
    }

    TEST_CASE("frames a worker may not send break the pool, naming the cause") {
        struct Case {
            Behaviour behaviour;
            const char* words;
        };
        for (const Case& c : {Case{Behaviour::MalformedReply, "wrong magic"},
                              Case{Behaviour::UnaskedExiting, "Exiting message it was not entitled to"},
                              Case{Behaviour::AnswersUnknownJob, "a job it was not given"},
                              Case{Behaviour::ReadyTwice, "a second Ready message"}}) {
            CAPTURE(c.words);
            Recorder rec;
            run_broken_by(c.behaviour, rec);
            CHECK(rec.cause == BreakCause::Protocol);
            CHECK(rec.broken.find(c.words) != std::string::npos);
            CHECK(rec.broken.find("not usable anymore") != std::string::npos);
        }
    }

    TEST_CASE("a header announcing 4 GiB neither allocates it nor hangs shutdown") {
        ProcessPool pool(1, true, -1);
        start_workers(pool, 1, Behaviour::HugeHeader);
        Recorder rec;
        pool.submit(job(1, "x"));
        std::thread manager([&] { pool.run(rec); });
        std::this_thread::sleep_for(100ms);
        // The worker gets Stop though its job looks unanswered, exits, and the half frame it
        // leaves behind breaks the pool: the job fails instead of waiting forever.
        pool.shutdown(false);
        manager.join();
        CHECK(rec.cause == BreakCause::Protocol);
        CHECK(rec.broken.find("middle of a frame") != std::string::npos);
        CHECK(rec.lost == std::vector<std::uint64_t>{1});
    }

    TEST_CASE("a worker that ignores SIGTERM is killed after the grace period") {
        Recorder rec;
        std::chrono::milliseconds took;
        run_broken_by(Behaviour::IgnoresSigterm, rec, &took);
        CHECK(rec.cause == BreakCause::Protocol);
        CHECK(took >= ProcessPool::kKillGrace - 100ms);
        CHECK(took < ProcessPool::kKillGrace + 5s);
    }

    TEST_CASE("an exception in the manager loop breaks the pool and ends the loop") {
        ProcessPool pool(2, true, -1);
        start_workers(pool, 2, Behaviour::Echo);
        Recorder rec;
        rec.throw_in_delivery = 0;
        for (std::uint64_t i = 1; i <= 20; ++i) pool.submit(job(i, "x"));
        std::thread manager([&] { pool.run(rec); });
        manager.join();
        CHECK(rec.cause == BreakCause::Internal);
        CHECK(rec.broken.find("deliberate") != std::string::npos);
        CHECK(rec.exited.size() == 2);  // killed and reaped
        CHECK(rec.results.size() + rec.lost.size() == 20);
        CHECK(pool.submit(job(99, "x")).status == ProcessPool::Submit::Broken);
    }
}
