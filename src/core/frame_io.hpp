// Reading and writing frames (protocol.hpp) over a channel's pipes, their attachments over its
// socket: FrameReader enforces the protocol's BOUNDS on untrusted bytes, FrameWriter sends what
// is queued as far as the pipe takes it.
//
//     FrameReader r(Direction::FromWorker, sock);  FrameWriter w(sock);
//     r.fill(pipe);  // after EPOLLIN                 w.push(std::move(outgoing));
//     while (auto f = r.pop()) use(*f);               w.flush(pipe, &sent);  // after EPOLLOUT
// Readers and writers are not thread-safe: each belongs to the thread that drives its descriptor.
#pragma once

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol.hpp"

namespace cfutures::core {

enum class IoStatus { Ok, WouldBlock, Eof, Error };

class FrameReader {
public:
    // `attachment_socket` (or -1: frames with attachments are refused) is where a header's
    // attachments wait; it stays the caller's.
    explicit FrameReader(Direction direction, int attachment_socket = -1)
        : direction_(direction), attachment_socket_(attachment_socket) {}
    FrameReader(const FrameReader&) = delete;
    FrameReader& operator=(const FrameReader&) = delete;
    ~FrameReader() { close_pending_fds(); }

    // Reads what the pipe has (until EAGAIN, EOF or an error). EOF in the middle of a frame is
    // an Error; between frames, Eof.
    IoStatus fill(int fd) {
        for (;;) {
            if (failed_) return IoStatus::Error;
            std::size_t want = 0;
            char* dst = nullptr;
            if (!prepare_read(dst, want)) return IoStatus::Error;
            ssize_t n = ::read(fd, dst, want);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::WouldBlock;
                return fail(std::string("read failed: ") + std::strerror(errno));
            }
            if (n == 0) {
                if (mid_frame()) return fail("the peer closed the channel in the middle of a frame");
                return IoStatus::Eof;
            }
            if (!consume(static_cast<std::size_t>(n))) return IoStatus::Error;
        }
    }

    // Feeds bytes (and descriptors, which become the reader's) that were read elsewhere: tests
    // and the fuzz target.
    bool feed(const char* data, std::size_t n, const std::vector<int>& fds = {}) {
        for (int fd : fds) {
            if (failed_ || pending_fds_.size() >= kMaxAttachments) {
                ::close(fd);
                if (!failed_) fail("too many descriptors waiting for a frame");
                continue;
            }
            pending_fds_.push_back(fd);
        }
        while (n > 0 && !failed_) {
            char* dst;
            std::size_t want;
            if (!prepare_read(dst, want)) return false;
            std::size_t take = std::min(n, want);
            std::memcpy(dst, data, take);
            data += take;
            n -= take;
            if (!consume(take)) return false;
        }
        return !failed_;
    }

    std::optional<IncomingFrame> pop() {
        if (ready_.empty()) return std::nullopt;
        IncomingFrame f = std::move(ready_.front());
        ready_.pop_front();
        return f;
    }

    bool has_ready() const { return !ready_.empty(); }
    bool failed() const { return failed_; }
    const std::string& error() const { return error_; }
    bool mid_frame() const { return in_payload_ || staged_end_ > staged_begin_; }
    // The frame whose header has arrived but not its whole payload, if any: its receiver may
    // judge it by its header (a tag it does not expect) before the payload comes, if ever.
    const IncomingFrame* frame_in_progress() const { return in_payload_ ? &current_ : nullptr; }
    // Memory held for frames not yet complete (the fuzz target checks it against what was fed).
    std::size_t held_bytes() const { return staged_.capacity() + current_.payload.capacity(); }

private:
    static constexpr std::size_t kChunk = 64 * 1024;

    IoStatus fail(std::string why) {
        if (!failed_) {
            failed_ = true;
            error_ = std::move(why);
        }
        return IoStatus::Error;
    }

    bool reject(std::string why) {
        fail(std::move(why));
        return false;
    }

    // Where the next bytes go: straight into a large payload's buffer, or the staging buffer
    // (headers and small payloads). Grows buffers only as far as bytes have arrived.
    bool prepare_read(char*& dst, std::size_t& want) {
        try {
            if (in_payload_ && payload_direct_) {
                Payload& p = current_.payload;
                if (p.size() == p.capacity()) {
                    std::size_t grown = std::max<std::size_t>(kChunk, 2 * p.size());
                    if (!p.reserve_large(static_cast<std::size_t>(
                            std::min<std::uint64_t>(payload_length_, grown))))
                        return reject("out of memory while reading a frame");
                }
                dst = p.end();
                want = static_cast<std::size_t>(
                    std::min<std::uint64_t>(p.capacity(), payload_length_) - p.size());
                return true;
            }
            if (staged_.size() - staged_end_ < kChunk) staged_.resize(staged_end_ + kChunk);
            dst = staged_.data() + staged_end_;
            want = staged_.size() - staged_end_;
            return true;
        } catch (const std::bad_alloc&) {
            fail("out of memory while reading a frame");
            return false;
        }
    }

    // Takes the one message of descriptors sent for a frame with `count` attachments.
    bool receive_attachments(std::size_t count) {
        if (attachment_socket_ < 0) return reject("a frame with attachments where none may come");
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxAttachments)];
        char byte;
        iovec iov{&byte, 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n;
        do {
            n = ::recvmsg(attachment_socket_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) return reject("a frame whose attachments did not arrive before it");
        bool whole = !(msg.msg_flags & MSG_CTRUNC);
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            std::size_t got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < got; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                pending_fds_.push_back(fd);
            }
        }
        if (!whole || pending_fds_.size() != count) {
            close_pending_fds();
            return reject("a frame whose attachments did not arrive before it (" +
                          std::to_string(count) + " announced)");
        }
        return true;
    }

    // Accounts for `n` bytes just written at the place prepare_read() gave, and parses.
    bool consume(std::size_t n) {
        if (in_payload_ && payload_direct_) current_.payload.extend(n);
        else staged_end_ += n;
        try {
            parse();
        } catch (const std::bad_alloc&) {
            fail("out of memory while reading a frame");
        }
        return !failed_;
    }

    void parse() {
        for (;;) {
            if (in_payload_) {
                if (payload_direct_) {
                    if (current_.payload.size() < payload_length_) return;
                } else {
                    std::size_t avail = staged_end_ - staged_begin_;
                    if (avail < payload_length_) break;
                    current_.payload.assign(staged_.data() + staged_begin_, payload_length_);
                    staged_begin_ += payload_length_;
                }
                if (inline_attachments_ && !take_inline_attachments(current_)) return;
                ready_.push_back(std::move(current_));
                current_ = IncomingFrame();
                in_payload_ = payload_direct_ = inline_attachments_ = false;
                continue;
            }
            if (staged_end_ - staged_begin_ < sizeof(FrameHeader)) break;
            FrameHeader h;
            std::memcpy(&h, staged_.data() + staged_begin_, sizeof h);
            if (!start_frame(h)) return;
            staged_begin_ += sizeof h;
            std::size_t avail = staged_end_ - staged_begin_;
            if (h.length > kChunk && h.length > avail) {
                // A large payload: move what is staged, then read straight into the frame.
                payload_direct_ = true;
                current_.payload.assign(staged_.data() + staged_begin_, avail);
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

    // Checks a header and claims its attachments; false (failed) if either is wrong.
    bool start_frame(const FrameHeader& h) {
        if (h.magic != kFrameMagic) return reject("a frame header with a wrong magic number");
        const std::uint16_t kind = h.kind & ~kInlineAttachments;
        inline_attachments_ = (h.kind & kInlineAttachments) != 0;
        if (!accepts(direction_, kind))
            return reject("a frame of kind " + std::to_string(h.kind) + " from the wrong end");
        if (inline_attachments_ && h.attachments > 0)
            return reject("a frame with both inline attachments and descriptors");
        if (h.length > kMaxPayload)
            return reject("a frame announcing " + std::to_string(h.length) + " bytes");
        if (h.attachments > kMaxAttachments)
            return reject("a frame announcing " + std::to_string(h.attachments) + " attachments");
        if (h.attachments > 0 && pending_fds_.empty() && !receive_attachments(h.attachments)) return false;
        if (pending_fds_.size() < h.attachments)
            return reject("a frame whose attachments did not arrive before it");
        current_ = IncomingFrame();
        current_.kind = static_cast<FrameKind>(kind);
        current_.tag = h.tag;
        current_.attachments.reserve(h.attachments);
        for (std::uint16_t i = 0; i < h.attachments; ++i) {
            int fd = pending_fds_.front();
            pending_fds_.pop_front();
            MappedRegion region;
            std::string why;
            bool no_room = false;
            bool mapped = map_attachment(fd, region, why, &no_room);
            ::close(fd);
            if (!mapped && !no_room) return reject(why);
            if (!mapped && current_.unmapped.empty()) {
                current_.unmapped = why;
                current_.attachments.clear();  // the frame goes on without any
            }
            if (current_.unmapped.empty()) current_.attachments.push_back(std::move(region));
        }
        payload_length_ = h.length;
        in_payload_ = true;
        return true;
    }

    void close_pending_fds() {
        for (int fd : pending_fds_) ::close(fd);
        pending_fds_.clear();
    }

    // Moves the buffers at the end of a complete payload (INLINE ATTACHMENTS) into the frame's
    // attachments, checking the trailer against the payload's size first.
    bool take_inline_attachments(IncomingFrame& f) {
        const char* data = f.payload.data();
        const std::size_t size = f.payload.size();
        auto u64_at = [&](std::size_t offset) {
            std::uint64_t v;
            std::memcpy(&v, data + offset, sizeof v);
            return v;
        };
        if (size < sizeof(std::uint64_t)) return reject("inline attachments without their count");
        const std::uint64_t count = u64_at(size - sizeof(std::uint64_t));
        if (count > kMaxAttachments)
            return reject("a frame announcing " + std::to_string(count) + " inline attachments");
        const std::size_t trailer = (count + 1) * sizeof(std::uint64_t);
        if (size < trailer) return reject("inline attachments whose sizes do not fit the frame");
        std::size_t left = size - trailer;  // the pickle and the buffers
        std::vector<std::uint64_t> sizes(count);
        for (std::size_t i = 0; i < count; ++i) {
            sizes[i] = u64_at(size - trailer + i * sizeof(std::uint64_t));
            if (sizes[i] > left) return reject("inline attachments whose sizes do not fit the frame");
            left -= sizes[i];
        }
        std::size_t offset = left;  // the pickle's end: where the first buffer starts
        f.attachments.reserve(count);
        for (std::uint64_t n : sizes) {
            MappedRegion region;
            if (n > 0) {
                if (!region.allocate(n)) {  // no room here: this frame fails, not the stream
                    f.attachments.clear();
                    f.unmapped = "no memory for an attachment of " + std::to_string(n) + " bytes";
                    break;
                }
                std::memcpy(region.data(), data + offset, n);
            }
            offset += n;
            f.attachments.push_back(std::move(region));
        }
        f.payload.truncate(left);
        return true;
    }

    const Direction direction_;
    const int attachment_socket_;
    std::vector<char> staged_;
    std::size_t staged_begin_ = 0, staged_end_ = 0;
    IncomingFrame current_;
    bool in_payload_ = false, payload_direct_ = false, inline_attachments_ = false;
    std::uint64_t payload_length_ = 0;
    std::deque<int> pending_fds_;  // received (or fed), not yet claimed by a header
    std::deque<IncomingFrame> ready_;
    bool failed_ = false;
    std::string error_;
};

class FrameWriter {
public:
    // `attachment_socket` (or -1: frames with attachments are unsendable) carries the
    // descriptors; it stays the caller's.
    explicit FrameWriter(int attachment_socket = -1) : attachment_socket_(attachment_socket) {}

    void push(OutgoingFrame f) { queue_.push_back(Pending{std::move(f), 0, false}); }
    bool empty() const { return queue_.empty(); }
    // Frames whose attachments went inside the payload (INLINE ATTACHMENTS), since the start.
    std::uint64_t inlined() const { return inlined_; }
    // Why the last of them could not send its attachments as memfds.
    const std::string& inline_reason() const { return inline_reason_; }

    // A frame that could not be sent (its attachments could not be made or sent), and why.
    struct Unsendable {
        OutgoingFrame frame;
        std::string error;
    };

    // Writes as much as the pipe takes. Frames fully written are moved to `done`, so that the
    // owner releases their payloads where it may; frames whose attachments cannot be made or
    // sent are moved to `unsendable` (and the next frame goes on).
    IoStatus flush(int fd, std::vector<OutgoingFrame>* done = nullptr,
                   std::vector<Unsendable>* unsendable = nullptr) {
        while (!queue_.empty()) {
            Pending& first = queue_.front();
            if (!first.attachments_sent && !first.frame.attachments.empty()) {
                std::string error;
                if (!send_attachments(first.frame, error) && !inline_attachments(first, error)) {
                    if (unsendable) unsendable->push_back({std::move(first.frame), std::move(error)});
                    queue_.pop_front();
                    continue;
                }
                first.attachments_sent = true;
            }
            // Up to kGather frames in one writev (one syscall per frame was most of the manager
            // thread's system time in a submit loop). Only the first may be partly written; the
            // batch ends before a frame whose attachments are still to be sent (they must reach
            // the socket before its header reaches the pipe).
            FrameHeader headers[kGather];
            iovec iov[2 * kGather];
            int n_iov = 0;
            std::size_t frames = 0;
            for (auto it = queue_.begin(); it != queue_.end() && frames < kGather; ++it) {
                Pending& p = *it;
                if (frames > 0 && !p.attachments_sent && !p.frame.attachments.empty()) break;
                std::uint16_t kind = static_cast<std::uint16_t>(p.frame.kind);
                if (p.frame.attachments_inline) kind |= kInlineAttachments;
                FrameHeader& h = headers[frames++];
                h = FrameHeader{kFrameMagic, kind, static_cast<std::uint16_t>(p.frame.attachments.size()),
                                p.frame.tag, p.frame.size};
                if (p.sent < sizeof h) {
                    iov[n_iov++] = {reinterpret_cast<char*>(&h) + p.sent, sizeof h - p.sent};
                    iov[n_iov++] = {const_cast<char*>(p.frame.data), p.frame.size};
                } else {
                    std::size_t off = p.sent - sizeof h;
                    iov[n_iov++] = {const_cast<char*>(p.frame.data) + off, p.frame.size - off};
                }
            }
            ssize_t n = ::writev(fd, iov, n_iov);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return IoStatus::WouldBlock;
                return errno == EPIPE ? IoStatus::Eof : IoStatus::Error;
            }
            for (std::size_t left = static_cast<std::size_t>(n); left > 0;) {
                Pending& p = queue_.front();
                const std::size_t total = sizeof(FrameHeader) + p.frame.size;
                const std::size_t take = std::min(left, total - p.sent);
                p.sent += take;
                left -= take;
                if (p.sent == total) {
                    if (done) done->push_back(std::move(p.frame));
                    queue_.pop_front();
                }
            }
        }
        return IoStatus::Ok;
    }

    // Frames not (fully) written, for the caller to release.
    std::vector<OutgoingFrame> take_all() {
        std::vector<OutgoingFrame> out;
        for (auto& p : queue_) out.push_back(std::move(p.frame));
        queue_.clear();
        return out;
    }

private:
    static constexpr std::size_t kGather = 32;  // frames per writev (64 iovecs, IOV_MAX is 1024)

    struct Pending {
        OutgoingFrame frame;
        std::size_t sent;
        bool attachments_sent;
    };

    // The frame's attachments could not be sent as memfds (`why`): its payload becomes the pickle
    // followed by the buffers and their sizes (INLINE ATTACHMENTS). False, with `why` saying so,
    // when there is no memory for that either.
    bool inline_attachments(Pending& p, std::string& why) {
        OutgoingFrame& f = p.frame;
        // What the frame held stays alive in the new payload: the owner releases `keep` where it
        // may (the bindings, with the GIL), never the writer.
        struct Inlined {
            std::string bytes;
            std::shared_ptr<void> keep;
            std::vector<std::shared_ptr<SealedCopy>> sources;
        };
        try {
            std::size_t total = f.size + (f.attachments.size() + 1) * sizeof(std::uint64_t);
            for (const auto& a : f.attachments) total += a->size();
            auto payload = std::make_shared<Inlined>();
            std::string& bytes = payload->bytes;
            bytes.reserve(total);
            bytes.append(f.data, f.size);
            for (const auto& a : f.attachments) bytes.append(a->data(), a->size());
            auto append_u64 = [&](std::uint64_t v) {
                bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
            };
            for (const auto& a : f.attachments) append_u64(a->size());
            append_u64(f.attachments.size());
            f.data = bytes.data();
            f.size = bytes.size();
            payload->keep = std::move(f.keep);
            payload->sources = std::move(f.attachments);
            f.keep = std::move(payload);
            f.attachments.clear();
            f.attachments_inline = true;  // for good: a frame sent again goes the same way
        } catch (const std::bad_alloc&) {
            why += "; and no memory to send the buffers in the pipe instead";
            return false;
        }
        ++inlined_;
        inline_reason_ = why;
        return true;
    }

    // Sends the frame's attachment descriptors (made now if need be) in one message, before the
    // frame. The socket never fills in practice (one small message per frame in flight); if it
    // does, the frame is not sent rather than waited for.
    bool send_attachments(OutgoingFrame& f, std::string& error) {
        if (attachment_socket_ < 0) {
            error = "no channel for attachments";
            return false;
        }
        if (f.attachments.size() > kMaxAttachments) {
            error = "too many attachments";
            return false;
        }
        std::size_t n = f.attachments.size();
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxAttachments)];
        char byte = 0;
        iovec iov{&byte, 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        for (std::size_t i = 0; i < n; ++i) {
            int fd = f.attachments[i]->fd(error);
            if (fd < 0) return false;
            std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof fd);
        }
        ssize_t sent;
        do {
            sent = ::sendmsg(attachment_socket_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
        if (sent == 1) return true;
        error = std::string("cannot send attachments: ") + std::strerror(sent < 0 ? errno : EIO);
        return false;
    }

    const int attachment_socket_;
    std::deque<Pending> queue_;
    std::uint64_t inlined_ = 0;
    std::string inline_reason_;
};

}  // namespace cfutures::core
