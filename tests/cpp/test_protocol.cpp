#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <cstring>
#include <string>
#include <thread>

#include "core/frame_io.hpp"
#include "core/worker_channel.hpp"
#include "helpers.hpp"

using namespace cfutures::core;

namespace {
// A worker's channel (protocol.hpp): a pipe each way and a socketpair for attachments.
struct Channel {
    int to_worker[2] = {-1, -1}, from_worker[2] = {-1, -1}, sockets[2] = {-1, -1};
    Channel() {
        REQUIRE(::pipe2(to_worker, O_CLOEXEC | O_NONBLOCK) == 0);
        REQUIRE(::pipe2(from_worker, O_CLOEXEC | O_NONBLOCK) == 0);
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sockets) == 0);
    }
    ~Channel() {
        for (int fd : {to_worker[0], to_worker[1], from_worker[0], from_worker[1], sockets[0], sockets[1]})
            if (fd >= 0) ::close(fd);
    }
    // The parent's ends, then the worker's.
    int parent_out() const { return to_worker[1]; }
    int parent_in() const { return from_worker[0]; }
    int parent_socket() const { return sockets[0]; }
    int worker_in() const { return to_worker[0]; }
    int worker_out() const { return from_worker[1]; }
    int worker_socket() const { return sockets[1]; }
    // Writes one frame to the worker whole.
    void send_to_worker(OutgoingFrame f) const {
        FrameWriter w(parent_socket());
        w.push(std::move(f));
        REQUIRE(w.flush(parent_out()) == IoStatus::Ok);
    }
    void close_worker() {
        for (int* fd : {&to_worker[0], &from_worker[1], &sockets[1]}) {
            ::close(*fd);
            *fd = -1;
        }
    }
};

std::string header_bytes(std::uint32_t magic, std::uint16_t kind, std::uint16_t attachments,
                         std::uint64_t tag, std::uint64_t length) {
    FrameHeader h{magic, kind, attachments, tag, length};
    return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}

std::shared_ptr<SealedCopy> copy_of(const std::string& s) {
    auto keep = std::make_shared<std::string>(s);
    return std::make_shared<SealedCopy>(keep->data(), keep->size(), keep);
}

void write_all(int fd, const std::string& bytes) {
    REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

// Sends `bytes` with descriptors `fds` as ancillary data, in one sendmsg (as attachments go).
void send_with_fds(int fd, const std::string& bytes, const std::vector<int>& fds) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    REQUIRE(::sendmsg(fd, &msg, 0) == static_cast<ssize_t>(bytes.size()));
}

std::string region_text(const MappedRegion& r) { return std::string(r.data(), r.size()); }
}  // namespace

TEST_SUITE("Protocol") {
    TEST_CASE("frames round-trip through a socket, several per read") {
        Channel ch;
        FrameWriter w(ch.worker_socket());
        for (std::uint64_t i = 0; i < 100; ++i)
            w.push(OutgoingFrame::make(FrameKind::Result, i, std::string(i, 'x')));
        w.push(OutgoingFrame::make(FrameKind::Exiting, 0, ""));
        std::vector<OutgoingFrame> sent;
        REQUIRE(w.flush(ch.worker_out(), &sent) == IoStatus::Ok);
        CHECK(sent.size() == 101);
        FrameReader r(Direction::FromWorker, ch.parent_socket());
        CHECK(r.fill(ch.parent_in()) == IoStatus::WouldBlock);
        for (std::uint64_t i = 0; i < 100; ++i) {
            auto f = r.pop();
            REQUIRE(f);
            CHECK(f->kind == FrameKind::Result);
            CHECK(f->tag == i);
            CHECK(f->payload.view() == std::string(i, 'x'));
        }
        auto last = r.pop();
        REQUIRE(last);
        CHECK(last->kind == FrameKind::Exiting);
        CHECK(last->payload.empty());
        CHECK_FALSE(r.pop());
    }

    TEST_CASE("any split of the byte stream gives the same frames") {
        std::string stream;
        for (std::uint64_t i = 0; i < 20; ++i) {
            std::string payload(i * 37 % 200, static_cast<char>('a' + i));
            stream += header_bytes(kFrameMagic, 3, 0, i, payload.size()) + payload;
        }
        for (std::size_t step : {1u, 2u, 7u, 23u, 24u, 25u, 1000u}) {
            CAPTURE(step);
            FrameReader r(Direction::FromWorker);
            for (std::size_t off = 0; off < stream.size(); off += step)
                REQUIRE(r.feed(stream.data() + off, std::min(step, stream.size() - off)));
            for (std::uint64_t i = 0; i < 20; ++i) {
                auto f = r.pop();
                REQUIRE(f);
                CHECK(f->tag == i);
                CHECK(f->payload.size() == i * 37 % 200);
            }
            CHECK_FALSE(r.mid_frame());
        }
    }

    TEST_CASE("attachments travel as sealed memfds, mapped copy-on-write") {
        Channel ch;
        FrameWriter w(ch.parent_socket());
        OutgoingFrame f = OutgoingFrame::make(FrameKind::Task, 7, "pickle");
        std::string big(3 << 20, 'q');
        big[12345] = 'Z';
        auto shared = copy_of(big);
        f.attachments = {shared, copy_of(""), copy_of("small one")};
        w.push(std::move(f));
        OutgoingFrame again = OutgoingFrame::make(FrameKind::Task, 8, "again");
        again.attachments = {shared};  // one copy for every frame that carries it
        w.push(std::move(again));
        REQUIRE(w.flush(ch.parent_out()) == IoStatus::Ok);

        FrameReader r(Direction::FromParent, ch.worker_socket());
        while (r.fill(ch.worker_in()) != IoStatus::WouldBlock) {}
        auto got = r.pop();
        REQUIRE(got);
        CHECK(got->payload.view() == "pickle");
        REQUIRE(got->attachments.size() == 3);
        CHECK(region_text(got->attachments[0]) == big);
        CHECK(got->attachments[1].size() == 0);
        CHECK(region_text(got->attachments[2]) == "small one");
        got->attachments[0].data()[0] = '!';  // private to this mapping
        auto second = r.pop();
        REQUIRE(second);
        REQUIRE(second->attachments.size() == 1);
        CHECK(second->attachments[0].data()[0] == 'q');
        CHECK(second->attachments[0].data()[12345] == 'Z');
    }

    TEST_CASE("attachments that cannot be sent as memfds travel inside the frame") {
        Channel ch;
        // No socket: no memfd can go, as when memfd_create is refused or descriptors run out.
        FrameWriter w(-1);
        OutgoingFrame f = OutgoingFrame::make(FrameKind::Result, 7, "pickle");
        std::string big(3 << 20, 'q');
        big[12345] = 'Z';
        f.attachments = {copy_of(big), copy_of(""), copy_of("small one")};
        w.push(std::move(f));
        w.push(OutgoingFrame::make(FrameKind::Result, 8, "next"));
        std::vector<FrameWriter::Unsendable> unsendable;
        FrameReader r(Direction::FromWorker, ch.parent_socket());
        // The pipe takes the 3 MiB in pieces: read while writing.
        for (int i = 0; i < 10000 && (!w.empty() || !r.has_ready()); ++i) {
            IoStatus s = w.flush(ch.worker_out(), nullptr, &unsendable);
            REQUIRE(s != IoStatus::Error);
            REQUIRE(r.fill(ch.parent_in()) != IoStatus::Error);
        }
        CHECK(unsendable.empty());
        CHECK(w.inlined() == 1);
        CHECK(w.inline_reason().find("no channel for attachments") != std::string::npos);
        auto got = r.pop();
        REQUIRE(got);
        CHECK(got->kind == FrameKind::Result);
        CHECK(got->tag == 7);
        CHECK(got->payload.view() == "pickle");
        REQUIRE(got->attachments.size() == 3);
        CHECK(region_text(got->attachments[0]) == big);
        CHECK(got->attachments[1].size() == 0);
        CHECK(region_text(got->attachments[2]) == "small one");
        while (!r.has_ready()) REQUIRE(r.fill(ch.parent_in()) != IoStatus::Error);
        auto next = r.pop();
        REQUIRE(next);
        CHECK(next->payload.view() == "next");
        CHECK(next->attachments.empty());
    }

    TEST_CASE("inline attachments whose trailer does not fit the frame are refused") {
        auto u64 = [](std::uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); };
        const std::uint16_t result = 3 | kInlineAttachments;
        struct Case {
            std::string header, payload;
            const char* error;
        };
        for (const Case& c : {
                 Case{header_bytes(kFrameMagic, result, 0, 1, 4), "abcd", "without their count"},
                 Case{header_bytes(kFrameMagic, result, 0, 1, 8), u64(kMaxAttachments + 1),
                      "inline attachments"},
                 Case{header_bytes(kFrameMagic, result, 0, 1, 8), u64(2), "do not fit"},
                 Case{header_bytes(kFrameMagic, result, 0, 1, 20), "abcd" + u64(5) + u64(1),
                      "do not fit"},
                 Case{header_bytes(kFrameMagic, result, 0, 1, 16), u64(~std::uint64_t{0}) + u64(1),
                      "do not fit"},
                 Case{header_bytes(kFrameMagic, result, 1, 1, 8), u64(0), "both inline"},
             }) {
            CAPTURE(c.error);
            FrameReader r(Direction::FromWorker, -1);
            std::string bytes = c.header + c.payload;
            CHECK_FALSE(r.feed(bytes.data(), bytes.size()));
            CHECK(r.error().find(c.error) != std::string::npos);
            CHECK_FALSE(r.pop());
        }
        // Sizes that add up exactly: the pickle is what is left ("ab").
        FrameReader r(Direction::FromWorker, -1);
        std::string ok = header_bytes(kFrameMagic, result, 0, 1, 2 + 3 + 16) + "ab" + "xyz" +
                         u64(3) + u64(1);
        REQUIRE(r.feed(ok.data(), ok.size()));
        auto got = r.pop();
        REQUIRE(got);
        CHECK(got->payload.view() == "ab");
        REQUIRE(got->attachments.size() == 1);
        CHECK(region_text(got->attachments[0]) == "xyz");
    }

    TEST_CASE("a large frame crosses a small pipe in pieces") {
        Channel ch;
        ::fcntl(ch.parent_out(), F_SETPIPE_SZ, 4096);
        std::string big(8 * 1024 * 1024 + 13, '\0');
        for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131);
        std::thread writer([&] {
            FrameWriter w;
            w.push(OutgoingFrame::make(FrameKind::Task, 42, big));
            int rounds = 0;
            while (w.flush(ch.parent_out()) == IoStatus::WouldBlock) {
                pollfd pf{ch.parent_out(), POLLOUT, 0};
                ::poll(&pf, 1, 1000);
                ++rounds;
            }
            CHECK(rounds > 1);  // it really was split
        });
        WorkerEnd end(ch.worker_in(), ch.worker_out(), ch.worker_socket(), 0);
        IncomingFrame got;
        std::string err;
        REQUIRE(end.recv(got, err) == WorkerEnd::Recv::Frame);
        writer.join();
        CHECK(got.tag == 42);
        CHECK(got.payload.view() == big);
    }

    TEST_CASE("frames written together arrive whole and in order, whatever the pipe takes at a time") {
        Channel ch;
        ::fcntl(ch.parent_out(), F_SETPIPE_SZ, 4096);
        // More than one writev's worth of frames (32), of sizes that end writes mid-header and
        // mid-payload; two carry attachments, which end a batch (sent before their header).
        std::vector<std::string> payloads;
        for (int i = 0; i < 150; ++i) payloads.push_back(std::string(static_cast<std::size_t>((i * 397) % 3000), static_cast<char>('a' + i % 26)));
        std::thread writer([&] {
            FrameWriter w(ch.parent_socket());
            for (std::size_t i = 0; i < payloads.size(); ++i) {
                OutgoingFrame f = OutgoingFrame::make(FrameKind::Task, i, payloads[i]);
                if (i == 40 || i == 41) f.attachments = {copy_of("attached " + std::to_string(i))};
                w.push(std::move(f));
            }
            std::vector<OutgoingFrame> done;
            while (w.flush(ch.parent_out(), &done) == IoStatus::WouldBlock) {
                pollfd pf{ch.parent_out(), POLLOUT, 0};
                ::poll(&pf, 1, 1000);
            }
            CHECK(done.size() == payloads.size());
            for (std::size_t i = 0; i < done.size(); ++i) CHECK(done[i].tag == i);
        });
        WorkerEnd end(ch.worker_in(), ch.worker_out(), ch.worker_socket(), 0);
        for (std::size_t i = 0; i < payloads.size(); ++i) {
            IncomingFrame got;
            std::string err;
            REQUIRE(end.recv(got, err) == WorkerEnd::Recv::Frame);
            CHECK(got.tag == i);
            CHECK(got.payload.view() == payloads[i]);
            if (i == 40 || i == 41) {
                REQUIRE(got.attachments.size() == 1);
                CHECK(region_text(got.attachments[0]) == "attached " + std::to_string(i));
            } else {
                CHECK(got.attachments.empty());
            }
        }
        writer.join();
    }

    // 64-bit lengths: a payload of 4 GiB or more arrives whole, not cut to 32 bits.
    TEST_CASE("a payload over 4 GiB arrives whole" * doctest::skip(std::getenv("CFUTURES_SANITIZED") != nullptr)) {
        const std::size_t size = (std::size_t{4} << 30) + 5;
        // Zero pages cost nothing until written: only the reader's copy takes real memory.
        void* src = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(src != MAP_FAILED);
        static_cast<char*>(src)[size - 1] = 'E';
        Channel ch;
        std::thread writer([&] {
            FrameWriter w;
            OutgoingFrame f;
            f.kind = FrameKind::Result;
            f.tag = 9;
            f.data = static_cast<const char*>(src);
            f.size = size;
            w.push(std::move(f));
            w.push(OutgoingFrame::make(FrameKind::Result, 10, "after"));
            while (w.flush(ch.worker_out()) == IoStatus::WouldBlock) {
                pollfd pf{ch.worker_out(), POLLOUT, 0};
                ::poll(&pf, 1, 1000);
            }
        });
        FrameReader r(Direction::FromWorker);
        while (!r.has_ready() || !r.failed()) {
            if (r.fill(ch.parent_in()) == IoStatus::Error) break;
            auto f = r.pop();
            if (!f) {
                pollfd pf{ch.parent_in(), POLLIN, 0};
                ::poll(&pf, 1, 1000);
                continue;
            }
            CHECK(f->tag == 9);
            REQUIRE(f->payload.size() == size);
            CHECK(f->payload.view()[size - 1] == 'E');
            CHECK(f->payload.view()[size / 2] == '\0');
            break;
        }
        writer.join();
        r.fill(ch.parent_in());
        auto after = r.pop();
        REQUIRE(after);  // the next frame is intact: nothing of the big one was read as a frame
        CHECK(after->payload.view() == "after");
        ::munmap(src, size);
    }

    TEST_CASE("a header announcing a huge payload allocates only what arrives") {
        FrameReader r(Direction::FromWorker);
        std::string bytes = header_bytes(kFrameMagic, 3, 0, 1, std::uint64_t{1} << 39) + "ten bytes!";
        REQUIRE(r.feed(bytes.data(), bytes.size()));
        CHECK(r.mid_frame());
        CHECK_FALSE(r.pop());
        // The payload buffer holds what came, rounded up to one chunk (checked under ASan's
        // allocator too: a 512 GiB allocation would fail there).
    }

    TEST_CASE("a peer that vanishes mid-frame is an error, between frames an EOF") {
        {
            Channel ch;
            write_all(ch.worker_out(), header_bytes(kFrameMagic, 3, 0, 1, 100) + std::string(40, 'y'));
            ch.close_worker();
            FrameReader r(Direction::FromWorker);
            CHECK(r.fill(ch.parent_in()) == IoStatus::Error);
            CHECK(r.error().find("middle of a frame") != std::string::npos);
            CHECK_FALSE(r.pop());
        }
        // Between frames, an EOF; also when the peer exits without reading what it was sent.
        for (bool unread_task : {false, true}) {
            CAPTURE(unread_task);
            Channel ch;
            if (unread_task) {
                FrameWriter w;
                w.push(OutgoingFrame::make(FrameKind::Task, 1, "never read"));
                REQUIRE(w.flush(ch.parent_out()) == IoStatus::Ok);
            }
            FrameWriter answer;
            answer.push(OutgoingFrame::make(FrameKind::Result, 1, "done"));
            REQUIRE(answer.flush(ch.worker_out()) == IoStatus::Ok);
            ch.close_worker();
            FrameReader r(Direction::FromWorker);
            CHECK(r.fill(ch.parent_in()) == IoStatus::Eof);
            auto f = r.pop();
            REQUIRE(f);
            CHECK(f->payload.view() == "done");
        }
    }

    TEST_CASE("malformed headers are refused for good, never guessed at") {
        struct Case {
            std::string bytes;
            const char* error;
        };
        for (const Case& c : {
                 Case{header_bytes(0xBEEF, 3, 0, 1, 4), "wrong magic"},
                 Case{header_bytes(kFrameMagic, 99, 0, 1, 4), "kind 99"},
                 Case{header_bytes(kFrameMagic, 1, 0, 1, 4), "kind 1 from the wrong end"},
                 Case{header_bytes(kFrameMagic, 3, 0, 1, kMaxPayload + 1), "bytes"},
                 Case{header_bytes(kFrameMagic, 3, kMaxAttachments + 1, 1, 4), "attachments"},
                 Case{header_bytes(kFrameMagic, 3, 2, 1, 4), "attachments where none may come"},
             }) {
            CAPTURE(c.error);
            FrameReader r(Direction::FromWorker);
            std::string bytes = c.bytes + "abcd";
            CHECK_FALSE(r.feed(bytes.data(), bytes.size()));
            CHECK(r.failed());
            CHECK(r.error().find(c.error) != std::string::npos);
            CHECK_FALSE(r.pop());
            // Stays failed: a good frame afterwards is not read.
            std::string good = header_bytes(kFrameMagic, 3, 0, 2, 1) + "x";
            CHECK_FALSE(r.feed(good.data(), good.size()));
            CHECK_FALSE(r.pop());
        }
    }

    TEST_CASE("attachments must be memfds sealed against shrinking") {
        int pipe_fds[2];
        REQUIRE(::pipe(pipe_fds) == 0);
        int unsealed = ::memfd_create("test", MFD_CLOEXEC);
        REQUIRE(::ftruncate(unsealed, 4096) == 0);
        for (int bad : {pipe_fds[0], unsealed}) {
            Channel ch;
            send_with_fds(ch.worker_socket(), "x", {bad});
            write_all(ch.worker_out(), header_bytes(kFrameMagic, 3, 1, 1, 0));
            FrameReader r(Direction::FromWorker, ch.parent_socket());
            CHECK(r.fill(ch.parent_in()) == IoStatus::Error);
            CHECK(r.error().find("sealed memfd") != std::string::npos);
        }
        for (int fd : {pipe_fds[0], pipe_fds[1], unsealed}) ::close(fd);
    }

    TEST_CASE("a frame takes exactly the one message of descriptors sent before it") {
        struct Case {
            int sent;       // descriptors in the message (-1: no message)
            int announced;  // attachments in the header
        };
        for (Case c : {Case{-1, 1}, Case{2, 1}, Case{1, 2}, Case{kMaxAttachments + 1, 1}}) {
            CAPTURE(c.sent);
            CAPTURE(c.announced);
            Channel ch;
            std::vector<int> fds;
            for (int i = 0; i < c.sent; ++i) {
                int fd = ::memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
                fds.push_back(fd);
            }
            if (c.sent >= 0) send_with_fds(ch.worker_socket(), "x", fds);
            for (int fd : fds) ::close(fd);
            write_all(ch.worker_out(), header_bytes(kFrameMagic, 3, static_cast<std::uint16_t>(c.announced), 1, 0));
            FrameReader r(Direction::FromWorker, ch.parent_socket());
            CHECK(r.fill(ch.parent_in()) == IoStatus::Error);
            CHECK(r.error().find("attachments did not arrive") != std::string::npos);
        }
    }

    TEST_CASE("writing to a closed pipe reports EOF, not a crash") {
        Channel ch;
        ch.close_worker();
        FrameWriter w;
        w.push(OutgoingFrame::make(FrameKind::Task, 1, "x"));
        CHECK(w.flush(ch.parent_out()) == IoStatus::Eof);
        CHECK(w.take_all().size() == 1);
    }

    TEST_CASE("a worker's revoker thread starts once a first task has run, not on its path") {
        auto threads = [] {
            int n = 0;
            DIR* d = ::opendir("/proc/self/task");
            REQUIRE(d != nullptr);
            while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
            ::closedir(d);
            return n;
        };
        Channel ch;
        int before = threads();
        WorkerEnd end(ch.worker_in(), ch.worker_out(), ch.worker_socket(), 0);
        std::string err;
        REQUIRE(end.announce_ready(err));
        ch.send_to_worker(OutgoingFrame::make(FrameKind::Task, 1, "first"));
        IncomingFrame got;
        REQUIRE(end.recv(got, err) == WorkerEnd::Recv::Frame);
        CHECK(threads() == before);  // Ready sent and the first task taken: still no revoker
        REQUIRE(end.send(OutgoingFrame::make(FrameKind::Result, 1, ""), err));
        ch.send_to_worker(OutgoingFrame::make(FrameKind::Stop, 0, ""));
        REQUIRE(end.recv(got, err) == WorkerEnd::Recv::Frame);
        CHECK(threads() == before + 1);
    }

    TEST_CASE("a receiving worker hears of its pool's death") {
        Channel ch;
        int pool = ::fork();
        REQUIRE(pool >= 0);
        if (pool == 0) ::_exit(0);
        WorkerEnd end(ch.worker_in(), ch.worker_out(), ch.worker_socket(), pool);  // readable once it exits
        IncomingFrame out;
        std::string err;
        CHECK(end.recv(out, err) == WorkerEnd::Recv::PoolGone);
        ::waitpid(pool, nullptr, 0);
    }
}
