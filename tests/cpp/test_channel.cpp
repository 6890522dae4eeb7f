#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "core/channel.hpp"
#include "helpers.hpp"

using namespace cfutures::core;

namespace {
struct Pipe {
    int r = -1, w = -1;
    explicit Pipe(bool nonblocking = true) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~Pipe() {
        if (r >= 0) ::close(r);
        if (w >= 0) ::close(w);
    }
    void close_write() {
        ::close(w);
        w = -1;
    }
};

std::string header_bytes(std::uint32_t len, std::uint16_t magic, std::uint16_t kind, std::uint64_t tag) {
    FrameHeader h{len, magic, kind, tag};
    return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}
}  // namespace

TEST_SUITE("Channel") {
    TEST_CASE("frames round-trip through a pipe, several per read") {
        Pipe p;
        FrameWriter w;
        for (std::uint64_t i = 0; i < 100; ++i)
            w.push(Frame::make(FrameKind::Result, i, std::string(i, 'x')));
        w.push(Frame::make(FrameKind::Stop, 999, ""));
        REQUIRE(w.flush(p.w) == IoStatus::Ok);
        FrameReader r;
        CHECK(r.fill(p.r) == IoStatus::WouldBlock);
        for (std::uint64_t i = 0; i < 100; ++i) {
            auto f = r.pop();
            REQUIRE(f);
            CHECK(f->kind == FrameKind::Result);
            CHECK(f->tag == i);
            CHECK(f->payload() == std::string(i, 'x'));
        }
        auto stop = r.pop();
        REQUIRE(stop);
        CHECK(stop->kind == FrameKind::Stop);
        CHECK(stop->size == 0);
        CHECK_FALSE(r.pop());
    }

    TEST_CASE("any split of the byte stream gives the same frames") {
        std::string stream;
        for (std::uint64_t i = 0; i < 20; ++i) {
            std::string payload(i * 37 % 200, static_cast<char>('a' + i));
            stream += header_bytes(static_cast<std::uint32_t>(payload.size()), kFrameMagic, 3, i) + payload;
        }
        for (std::size_t step : {1u, 2u, 7u, 16u, 17u, 1000u}) {
            CAPTURE(step);
            FrameReader r;
            for (std::size_t off = 0; off < stream.size(); off += step)
                r.feed(stream.data() + off, std::min(step, stream.size() - off));
            for (std::uint64_t i = 0; i < 20; ++i) {
                auto f = r.pop();
                REQUIRE(f);
                CHECK(f->tag == i);
                CHECK(f->size == i * 37 % 200);
            }
            CHECK_FALSE(r.mid_frame());
        }
    }

    TEST_CASE("partial writes and reads of a large frame across a small pipe") {
        Pipe p;
        ::fcntl(p.w, F_SETPIPE_SZ, 4096);
        std::string big(8 * 1024 * 1024 + 13, '\0');
        for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131);
        std::thread writer([&] {
            FrameWriter w;
            w.push(Frame::make(FrameKind::Task, 42, big));
            int rounds = 0;
            while (w.flush(p.w) == IoStatus::WouldBlock) {
                pollfd pf{p.w, POLLOUT, 0};
                ::poll(&pf, 1, 1000);
                ++rounds;
            }
            CHECK(rounds > 1);  // it really was split
        });
        FrameReader r;
        Frame got;
        std::string err;
        REQUIRE(recv_frame(p.r, -1, r, got, &err) == RecvStatus::Frame);
        writer.join();
        CHECK(got.tag == 42);
        CHECK(got.size == big.size());
        CHECK(got.payload() == big);
    }

    TEST_CASE("a peer that vanishes mid-frame is an error, between frames an EOF") {
        {
            Pipe p;
            std::string bytes = header_bytes(100, kFrameMagic, 3, 1) + std::string(40, 'y');
            REQUIRE(::write(p.w, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
            p.close_write();
            FrameReader r;
            CHECK(r.fill(p.r) == IoStatus::Error);
            CHECK(r.error().find("middle of a frame") != std::string::npos);
            CHECK_FALSE(r.pop());
        }
        {
            Pipe p;
            FrameWriter w;
            w.push(Frame::make(FrameKind::Result, 5, "done"));
            REQUIRE(w.flush(p.w) == IoStatus::Ok);
            p.close_write();
            FrameReader r;
            CHECK(r.fill(p.r) == IoStatus::Eof);
            auto f = r.pop();
            REQUIRE(f);
            CHECK(f->payload() == "done");
            Frame out;
            CHECK(recv_frame(p.r, -1, r, out, nullptr) == RecvStatus::Eof);
        }
    }

    TEST_CASE("malformed headers are refused, never guessed at") {
        for (auto bad : {header_bytes(4, 0xBEEF, 3, 1), header_bytes(4, kFrameMagic, 99, 1),
                         header_bytes(0xFFFFFFFFu, kFrameMagic, 3, 1)}) {
            FrameReader r;
            std::string bytes = bad + "abcd";
            r.feed(bytes.data(), bytes.size());
            CHECK(r.failed());
            CHECK(r.error() == "malformed frame header");
            CHECK_FALSE(r.pop());
        }
    }

    TEST_CASE("writing to a closed pipe reports EOF, not a crash") {
        Pipe p;
        ::close(p.r);
        p.r = -1;
        FrameWriter w;
        w.push(Frame::make(FrameKind::Task, 1, "x"));
        CHECK(w.flush(p.w) == IoStatus::Eof);  // SIGPIPE is ignored by main() below
        CHECK(w.take_all().size() == 1);
    }

    TEST_CASE("a watched descriptor ends a blocking receive") {
        Pipe data, watch;
        REQUIRE(::write(watch.w, "!", 1) == 1);
        FrameReader r;
        Frame out;
        CHECK(recv_frame(data.r, watch.r, r, out, nullptr) == RecvStatus::ParentGone);
    }
}
