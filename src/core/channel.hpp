// Channel: framed messages over pipes between the pool's parent and its worker processes.
//
// A frame is a 16-byte header (payload length u32, magic u16, kind u16, tag u64; host byte order,
// both ends run on the same machine) followed by the payload. FrameReader and FrameWriter are
// incremental: they work on non-blocking descriptors (the parent's manager loop feeds them
// whatever epoll says is ready) and cope with any split of a frame across reads or writes. A
// header that does not start with the magic, names an unknown kind or announces an oversized
// payload is a protocol error: the reader reports it and stops, it never guesses. They are not
// thread-safe: each belongs to the one thread that drives its descriptor.
//
//     FrameReader r;                       FrameWriter w;
//     r.fill(fd);  // after EPOLLIN        w.push(Frame::make(kind, tag, bytes));
//     while (auto f = r.pop()) use(*f);    w.flush(fd);  // after EPOLLOUT
#pragma once

#include <errno.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cfutures::core {

enum class FrameKind : std::uint16_t {
    Task = 1,       // parent -> worker: pickled (fn, args, kwargs)
    Stop = 2,       // parent -> worker: exit after the tasks already sent
    Result = 3,     // worker -> parent: pickled return value
    Exception = 4,  // worker -> parent: pickled exception (with its traceback text)
    Exiting = 5,    // worker -> parent: leaving on its own (max_tasks_per_child reached)
};

struct FrameHeader {
    std::uint32_t length;
    std::uint16_t magic;
    std::uint16_t kind;
    std::uint64_t tag;
};
static_assert(sizeof(FrameHeader) == 16, "the header is part of the protocol");

constexpr std::uint16_t kFrameMagic = 0xCF5A;
// One frame carries at most this much: more is a protocol error (large data is meant to travel
// in shared memory, not through the pipe).
constexpr std::uint32_t kMaxFramePayload = 0xFFFFFFF0u;

inline bool valid_kind(std::uint16_t k) { return k >= 1 && k <= 5; }

// An outgoing or received frame. The payload is either owned (`owned`) or borrowed from an
// object kept alive by `keep` (the bindings point it at a Python bytes object).
struct Frame {
    FrameKind kind{};
    std::uint64_t tag = 0;
    std::string owned;
    const char* data = nullptr;
    std::size_t size = 0;
    std::shared_ptr<void> keep;

    static Frame make(FrameKind kind, std::uint64_t tag, std::string payload) {
        Frame f;
        f.kind = kind;
        f.tag = tag;
        f.owned = std::move(payload);
        f.data = f.owned.data();
        f.size = f.owned.size();
        return f;
    }
    static Frame borrow(FrameKind kind, std::uint64_t tag, const char* data, std::size_t size,
                        std::shared_ptr<void> keep) {
        Frame f;
        f.kind = kind;
        f.tag = tag;
        f.data = data;
        f.size = size;
        f.keep = std::move(keep);
        return f;
    }
    Frame() = default;
    Frame(Frame&& o) noexcept { *this = std::move(o); }
    Frame& operator=(Frame&& o) noexcept {
        kind = o.kind;
        tag = o.tag;
        bool self_owned = o.data == o.owned.data();
        owned = std::move(o.owned);
        data = self_owned ? owned.data() : o.data;
        size = o.size;
        keep = std::move(o.keep);
        return *this;
    }
    std::string_view payload() const { return {data, size}; }
};

enum class IoStatus { Ok, WouldBlock, Eof, Error };

class FrameReader {
public:
    // Reads what the descriptor has (until EAGAIN, EOF or error). EOF in the middle of a frame is
    // reported as Error ("peer vanished mid-frame"); between frames as Eof.
    IoStatus fill(int fd) {
        for (;;) {
            if (failed_) return IoStatus::Error;
            char* dst;
            std::size_t want;
            if (in_payload_ && payload_big_) {
                dst = &current_.owned[payload_got_];
                want = current_.size - payload_got_;
            } else {
                if (staged_.size() - staged_end_ < kChunk) staged_.resize(staged_end_ + kChunk);
                dst = staged_.data() + staged_end_;
                want = staged_.size() - staged_end_;
            }
            ssize_t n = ::read(fd, dst, want);
            if (n > 0) {
                if (in_payload_ && payload_big_) payload_got_ += static_cast<std::size_t>(n);
                else staged_end_ += static_cast<std::size_t>(n);
                parse();
                continue;
            }
            if (n == 0) {
                if (mid_frame()) {
                    error_ = "peer closed the channel in the middle of a frame";
                    failed_ = true;
                    return IoStatus::Error;
                }
                return IoStatus::Eof;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::WouldBlock;
            error_ = std::string("read failed: ") + std::strerror(errno);
            failed_ = true;
            return IoStatus::Error;
        }
    }

    // Feeds bytes that were read elsewhere (tests, and the blocking helpers below).
    void feed(const char* data, std::size_t n) {
        while (n > 0 && !failed_) {
            if (in_payload_ && payload_big_) {
                std::size_t take = std::min(n, current_.size - payload_got_);
                std::memcpy(&current_.owned[payload_got_], data, take);
                payload_got_ += take;
                data += take;
                n -= take;
            } else {
                staged_.resize(std::max(staged_.size(), staged_end_ + n));
                std::memcpy(staged_.data() + staged_end_, data, n);
                staged_end_ += n;
                n = 0;
            }
            parse();
        }
    }

    std::optional<Frame> pop() {
        if (ready_.empty()) return std::nullopt;
        Frame f = std::move(ready_.front());
        ready_.pop_front();
        return f;
    }

    bool has_ready() const { return !ready_.empty(); }
    bool failed() const { return failed_; }
    const std::string& error() const { return error_; }
    bool mid_frame() const { return in_payload_ || staged_end_ > staged_begin_; }

private:
    static constexpr std::size_t kChunk = 64 * 1024;

    void parse() {
        for (;;) {
            if (in_payload_) {
                if (payload_big_) {
                    if (payload_got_ < current_.size) return;
                } else {
                    std::size_t avail = staged_end_ - staged_begin_;
                    if (avail < current_.size) return;
                    current_.owned.assign(staged_.data() + staged_begin_, current_.size);
                    staged_begin_ += current_.size;
                }
                current_.data = current_.owned.data();
                ready_.push_back(std::move(current_));
                current_ = Frame();
                in_payload_ = payload_big_ = false;
                continue;
            }
            if (staged_end_ - staged_begin_ < sizeof(FrameHeader)) break;
            FrameHeader h;
            std::memcpy(&h, staged_.data() + staged_begin_, sizeof h);
            if (h.magic != kFrameMagic || !valid_kind(h.kind) || h.length > kMaxFramePayload) {
                error_ = "malformed frame header";
                failed_ = true;
                return;
            }
            staged_begin_ += sizeof h;
            current_ = Frame();
            current_.kind = static_cast<FrameKind>(h.kind);
            current_.tag = h.tag;
            current_.size = h.length;
            in_payload_ = true;
            std::size_t avail = staged_end_ - staged_begin_;
            if (h.length > avail && h.length > kChunk) {
                // A large payload: move what is staged, then read straight into the frame.
                payload_big_ = true;
                current_.owned.resize(h.length);
                std::memcpy(&current_.owned[0], staged_.data() + staged_begin_, avail);
                payload_got_ = avail;
                staged_begin_ = staged_end_;
            }
        }
        // Compact the staging buffer once it is consumed (or mostly).
        if (staged_begin_ == staged_end_) {
            staged_begin_ = staged_end_ = 0;
        } else if (staged_begin_ > kChunk) {
            std::memmove(staged_.data(), staged_.data() + staged_begin_, staged_end_ - staged_begin_);
            staged_end_ -= staged_begin_;
            staged_begin_ = 0;
        }
    }

    std::vector<char> staged_;
    std::size_t staged_begin_ = 0, staged_end_ = 0;
    Frame current_;
    bool in_payload_ = false, payload_big_ = false;
    std::size_t payload_got_ = 0;
    std::deque<Frame> ready_;
    bool failed_ = false;
    std::string error_;
};

class FrameWriter {
public:
    void push(Frame f) { queue_.push_back(Pending{std::move(f), 0}); }
    bool empty() const { return queue_.empty(); }

    // Writes as much as the descriptor takes. Frames fully written are moved to `done` (so that
    // their borrowed payloads can be released where that is allowed).
    IoStatus flush(int fd, std::vector<Frame>* done = nullptr) {
        while (!queue_.empty()) {
            Pending& p = queue_.front();
            FrameHeader h{static_cast<std::uint32_t>(p.frame.size), kFrameMagic,
                          static_cast<std::uint16_t>(p.frame.kind), p.frame.tag};
            const std::size_t total = sizeof h + p.frame.size;
            iovec iov[2];
            int n_iov = 0;
            if (p.sent < sizeof h) {
                iov[n_iov++] = {reinterpret_cast<char*>(&h) + p.sent, sizeof h - p.sent};
                iov[n_iov++] = {const_cast<char*>(p.frame.data), p.frame.size};
            } else {
                std::size_t off = p.sent - sizeof h;
                iov[n_iov++] = {const_cast<char*>(p.frame.data) + off, p.frame.size - off};
            }
            ssize_t n = ::writev(fd, iov, n_iov);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::WouldBlock;
                return errno == EPIPE ? IoStatus::Eof : IoStatus::Error;
            }
            p.sent += static_cast<std::size_t>(n);
            if (p.sent == total) {
                if (done) done->push_back(std::move(p.frame));
                queue_.pop_front();
            }
        }
        return IoStatus::Ok;
    }

    // Frames not (fully) written, for the caller to release.
    std::vector<Frame> take_all() {
        std::vector<Frame> out;
        for (auto& p : queue_) out.push_back(std::move(p.frame));
        queue_.clear();
        return out;
    }

private:
    struct Pending {
        Frame frame;
        std::size_t sent;
    };
    std::deque<Pending> queue_;
};

// Blocking helpers for a worker process, which has nothing else to do while it waits. Both
// descriptors may be non-blocking or blocking. `watch_fd` (a pidfd of the parent, or -1) ends a
// wait early when it becomes readable: the parent died.
enum class RecvStatus { Frame, Eof, ParentGone, Error };

inline RecvStatus recv_frame(int fd, int watch_fd, FrameReader& reader, Frame& out,
                             std::string* error) {
    for (;;) {
        if (auto f = reader.pop()) {
            out = std::move(*f);
            return RecvStatus::Frame;
        }
        pollfd fds[2] = {{fd, POLLIN, 0}, {watch_fd, POLLIN, 0}};
        int rc = ::poll(fds, watch_fd >= 0 ? 2 : 1, -1);
        if (rc < 0) {
            if (errno == EINTR) continue;
            if (error) *error = std::strerror(errno);
            return RecvStatus::Error;
        }
        if (fds[0].revents) {
            IoStatus s = reader.fill(fd);
            if (s == IoStatus::Error) {
                if (error) *error = reader.error();
                return RecvStatus::Error;
            }
            if (s == IoStatus::Eof && !reader.has_ready()) return RecvStatus::Eof;
            continue;
        }
        if (watch_fd >= 0 && fds[1].revents) return RecvStatus::ParentGone;
    }
}

inline bool send_frame(int fd, Frame f) {
    FrameWriter w;
    w.push(std::move(f));
    for (;;) {
        IoStatus s = w.flush(fd);
        if (s == IoStatus::Ok) return true;
        if (s != IoStatus::WouldBlock) return false;
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR) return false;
    }
}

}  // namespace cfutures::core
