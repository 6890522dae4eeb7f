// The frame protocol between a process pool and its worker processes: its specification, then
// the code that reads and writes it.
//
// CHANNEL. Each worker has a pipe for frames to it, a pipe for frames from it, and a Unix stream
// socket (a socketpair) that carries only attachment descriptors. Frames travel in pipes because
// a pipe wakes its reader about 10 us sooner than a socket on the machines we measure (a small
// task's whole round trip is about 80 us). Both ends are one build on one machine, so integers
// are in host byte order.
//
// FRAME = a 24-byte header, then `length` payload bytes, with `attachments` descriptors.
//     u32 magic        kFrameMagic
//     u16 kind         see below
//     u16 attachments  descriptors that travel with the frame, at most kMaxAttachments
//     u64 tag          the job id (Task, Result, Exception, Revoke, Revoked); 0 for Stop, Exiting, Ready
//     u64 length       payload bytes, at most kMaxPayload
// The payload is a pickle (cfutures/_pickling.py); this layer never looks inside it.
//
// KINDS.
//     Task       parent -> worker  run the pickled call; answer with Result or Exception, same tag
//     Stop       parent -> worker  exit once the tasks already sent are answered; no payload
//     Result     worker -> parent  the pickled return value of task `tag`
//     Exception  worker -> parent  the pickled exception (with its traceback text) of task `tag`
//     Exiting    worker -> parent  leaving on its own after its last answer (max_tasks_per_child)
//     Revoke     parent -> worker  give task `tag` back if it has not started; no payload
//     Revoked    worker -> parent  task `tag` was given back and will not run; no payload
//     Ready      worker -> parent  once, when it is set up (its initializer ran) and about to
//                                  take its first task: tasks sent before wait until now; no payload
// Which frames are legal at a given moment (a tag the worker was given, Exiting only once its
// allowance is spent, Revoked only for a task the parent asked back, Ready once) is the pool's business
// (process_pool.hpp): here each frame stands alone.
//
// ATTACHMENTS carry buffers too large to copy through a pipe (pickle protocol 5 out-of-band
// buffers). Each is a memfd holding the bytes, sealed against shrinking and growing; its size is
// the memfd's size. A frame's attachments go first, in one sendmsg on the socket (one byte, the
// descriptors as SCM_RIGHTS ancillary data), then the frame goes in its pipe: when the receiver
// reads a header announcing attachments, they are already waiting in the socket, and it takes
// exactly one such message for the frame. It maps each copy-on-write (MAP_PRIVATE: writable, and
// its writes never reach the sender) and closes the descriptor. Such memory has no name: it dies with the last process that
// maps it, whichever process is killed and however. The sender copies a buffer into its memfd
// when the frame is written (not when the job is queued), and an attachment marked shareable
// (an immutable source) is copied once for all the frames that carry it.
//
// BOUNDS, and what happens past them. Bytes from the other end are untrusted: a task can write
// into its worker's pipes and socket. Each of these makes the reader fail: it stops for good,
// keeps the reason (error()), and never tries to resynchronise; the pool then breaks, naming it.
//   - a header with a wrong magic, a kind the reader's direction does not accept, more than
//     kMaxAttachments attachments, or a length above kMaxPayload;
//   - a frame announcing attachments when no message of descriptors waits in the socket, or a
//     message with another number of them (or cut short: MSG_CTRUNC);
//   - an attachment that is not a memfd sealed against shrinking (mapping a file that can shrink
//     would let the sender crash the receiver with SIGBUS), or one that cannot be mapped;
//   - the end of the stream in the middle of a frame.
// The reader never allocates ahead of the bytes that arrived: a payload's buffer grows with
// what was read (at most doubling, starting from kChunk), so a header announcing 1 TiB followed
// by ten bytes costs kChunk, not 1 TiB. A reader that failed, even on an exception such as
// bad_alloc, stays failed: every later call reports the error and touches no buffer.
//
//     FrameReader r(Direction::FromWorker, sock);  FrameWriter w(sock);
//     r.fill(pipe);  // after EPOLLIN                 w.push(std::move(outgoing));
//     while (auto f = r.pop()) use(*f);               w.flush(pipe, &sent);  // after EPOLLOUT
// Readers and writers are not thread-safe: each belongs to the thread that drives its descriptor.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cfutures::core {

enum class FrameKind : std::uint16_t {
    Task = 1, Stop = 2, Result = 3, Exception = 4, Exiting = 5, Revoke = 6, Revoked = 7, Ready = 8
};

// Which end a reader serves: what it may receive.
enum class Direction { FromParent, FromWorker };

inline bool accepts(Direction d, std::uint16_t kind) {
    if (d == Direction::FromParent) return kind == 1 || kind == 2 || kind == 6;
    return (kind >= 3 && kind <= 5) || kind == 7 || kind == 8;
}

struct FrameHeader {
    std::uint32_t magic;
    std::uint16_t kind;
    std::uint16_t attachments;
    std::uint64_t tag;
    std::uint64_t length;
};
static_assert(sizeof(FrameHeader) == 24, "the header is part of the protocol");

constexpr std::uint32_t kFrameMagic = 0xCF5AF002u;
// Far above any real pickle, far below what would overflow a size computation.
constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 40;
// Buffers beyond this many in one call or result travel inside the payload.
constexpr std::uint16_t kMaxAttachments = 64;

// ---------------------------------------------------------------------------------------------
// Attachments

// A received attachment: the memfd's bytes, mapped copy-on-write; unmapped with the object.
class MappedRegion {
public:
    MappedRegion() = default;
    MappedRegion(void* addr, std::size_t size) : addr_(addr), size_(size) {}
    MappedRegion(MappedRegion&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    MappedRegion& operator=(MappedRegion&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~MappedRegion() { reset(); }

    char* data() const { return static_cast<char*>(addr_); }
    std::size_t size() const { return size_; }

    // Anonymous memory of `size` bytes (zero pages until written); false if there is none.
    bool allocate(std::size_t size) {
        reset();
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return false;
        addr_ = p;
        size_ = size;
        return true;
    }
    // Grows anonymous memory from allocate() without copying it (the kernel moves the pages).
    bool grow(std::size_t size) {
        void* p = ::mremap(addr_, size_, size, MREMAP_MAYMOVE);
        if (p == MAP_FAILED) return false;
        addr_ = p;
        size_ = size;
        return true;
    }

private:
    void reset() {
        if (addr_) ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }
    void* addr_ = nullptr;
    std::size_t size_ = 0;
};

// Maps a received attachment descriptor (which stays the caller's to close). Returns false with
// `error` set when it is not a memfd sealed against shrinking, or cannot be mapped.
inline bool map_attachment(int fd, MappedRegion& out, std::string& error) {
    int seals = ::fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        error = "an attachment is not a sealed memfd";
        return false;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || st.st_size < 0) {
        error = std::string("cannot stat an attachment: ") + std::strerror(errno);
        return false;
    }
    auto size = static_cast<std::size_t>(st.st_size);
    if (size == 0) {
        out = MappedRegion();
        return true;
    }
    void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
        error = std::string("cannot map an attachment: ") + std::strerror(errno);
        return false;
    }
    out = MappedRegion(addr, size);
    return true;
}

// A buffer to send as an attachment, and its memfd once made. The source stays alive through
// `keep` (released where the owner says: the bindings drop it with the GIL held). Shared between
// frames when the source cannot change (one copy for many jobs); thread-safe.
class SealedCopy {
public:
    SealedCopy(const char* data, std::size_t size, std::shared_ptr<void> keep)
        : data_(data), size_(size), keep_(std::move(keep)) {}
    SealedCopy(const SealedCopy&) = delete;
    SealedCopy& operator=(const SealedCopy&) = delete;
    ~SealedCopy() {
        if (fd_ >= 0) ::close(fd_);
    }

    // The memfd holding the bytes, made on first call; -1 with `error` set if it cannot be.
    int fd(std::string& error) {
        std::lock_guard<std::mutex> g(mu_);
        if (fd_ < 0 && error_.empty()) make_locked();
        if (fd_ < 0) error = error_;
        return fd_;
    }
    const char* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    void make_locked() {
        int fd = ::memfd_create("cfutures", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0) {
            error_ = std::string("memfd_create failed: ") + std::strerror(errno);
            return;
        }
        // The kernel copies into the memfd: cheaper than faulting in a fresh mapping.
        std::size_t done = 0;
        while (done < size_) {
            ssize_t n = ::pwrite(fd, data_ + done, std::min<std::size_t>(size_ - done, 1 << 30),
                                 static_cast<off_t>(done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                error_ = std::string("cannot fill a memfd: ") + std::strerror(n < 0 ? errno : ENOSPC);
                ::close(fd);
                return;
            }
            done += static_cast<std::size_t>(n);
        }
        if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
            error_ = std::string("cannot seal a memfd: ") + std::strerror(errno);
            ::close(fd);
            return;
        }
        fd_ = fd;
    }

    std::mutex mu_;
    const char* data_;
    std::size_t size_;
    std::shared_ptr<void> keep_;
    int fd_ = -1;
    std::string error_;
};

// ---------------------------------------------------------------------------------------------
// Frames

// A frame to send. The payload is borrowed from whatever `keep` keeps alive (or owned, through
// make()); the same release rule as SealedCopy applies to `keep`.
struct OutgoingFrame {
    FrameKind kind{};
    std::uint64_t tag = 0;
    const char* data = nullptr;
    std::size_t size = 0;
    std::shared_ptr<void> keep;
    std::vector<std::shared_ptr<SealedCopy>> attachments;

    static OutgoingFrame make(FrameKind kind, std::uint64_t tag, std::string payload) {
        auto owned = std::make_shared<std::string>(std::move(payload));
        OutgoingFrame f;
        f.kind = kind;
        f.tag = tag;
        f.data = owned->data();
        f.size = owned->size();
        f.keep = std::move(owned);
        return f;
    }
    std::string_view payload() const { return {data, size}; }
};

// The payload of a received frame: small ones in ordinary memory, large ones (read straight from
// the pipe) in anonymous memory that grows without copying as bytes arrive.
class Payload {
public:
    const char* data() const { return large_.data() ? large_.data() : small_.data(); }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    std::string_view view() const { return {data(), size_}; }

    void assign(const char* data, std::size_t n) {
        small_.assign(data, n);
        size_ = n;
    }
    // Room for at least `n` bytes in large memory, keeping the first size() bytes.
    bool reserve_large(std::size_t n) {
        if (!large_.data()) {
            if (!large_.allocate(n)) return false;
            std::memcpy(large_.data(), small_.data(), size_);
            small_ = std::string();
            return true;
        }
        return n <= large_.size() || large_.grow(n);
    }
    std::size_t capacity() const { return large_.data() ? large_.size() : small_.size(); }
    char* end() { return large_.data() + size_; }
    void extend(std::size_t n) { size_ += n; }

private:
    std::string small_;
    MappedRegion large_;
    std::size_t size_ = 0;
};

// A frame received: the payload and the attachments are its own.
struct IncomingFrame {
    FrameKind kind{};
    std::uint64_t tag = 0;
    Payload payload;
    std::vector<MappedRegion> attachments;
};

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
                ready_.push_back(std::move(current_));
                current_ = IncomingFrame();
                in_payload_ = payload_direct_ = false;
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
        if (!accepts(direction_, h.kind))
            return reject("a frame of kind " + std::to_string(h.kind) + " from the wrong end");
        if (h.length > kMaxPayload)
            return reject("a frame announcing " + std::to_string(h.length) + " bytes");
        if (h.attachments > kMaxAttachments)
            return reject("a frame announcing " + std::to_string(h.attachments) + " attachments");
        if (h.attachments > 0 && pending_fds_.empty() && !receive_attachments(h.attachments)) return false;
        if (pending_fds_.size() < h.attachments)
            return reject("a frame whose attachments did not arrive before it");
        current_ = IncomingFrame();
        current_.kind = static_cast<FrameKind>(h.kind);
        current_.tag = h.tag;
        current_.attachments.reserve(h.attachments);
        for (std::uint16_t i = 0; i < h.attachments; ++i) {
            int fd = pending_fds_.front();
            pending_fds_.pop_front();
            MappedRegion region;
            std::string why;
            bool mapped = map_attachment(fd, region, why);
            ::close(fd);
            if (!mapped) return reject(why);
            current_.attachments.push_back(std::move(region));
        }
        payload_length_ = h.length;
        in_payload_ = true;
        return true;
    }

    void close_pending_fds() {
        for (int fd : pending_fds_) ::close(fd);
        pending_fds_.clear();
    }

    const Direction direction_;
    const int attachment_socket_;
    std::vector<char> staged_;
    std::size_t staged_begin_ = 0, staged_end_ = 0;
    IncomingFrame current_;
    bool in_payload_ = false, payload_direct_ = false;
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
            Pending& p = queue_.front();
            if (!p.attachments_sent && !p.frame.attachments.empty()) {
                std::string error;
                if (!send_attachments(p.frame, error)) {
                    if (unsendable) unsendable->push_back({std::move(p.frame), std::move(error)});
                    queue_.pop_front();
                    continue;
                }
                p.attachments_sent = true;
            }
            FrameHeader h{kFrameMagic, static_cast<std::uint16_t>(p.frame.kind),
                          static_cast<std::uint16_t>(p.frame.attachments.size()), p.frame.tag,
                          p.frame.size};
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
    std::vector<OutgoingFrame> take_all() {
        std::vector<OutgoingFrame> out;
        for (auto& p : queue_) out.push_back(std::move(p.frame));
        queue_.clear();
        return out;
    }

private:
    struct Pending {
        OutgoingFrame frame;
        std::size_t sent;
        bool attachments_sent;
    };

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
};

}  // namespace cfutures::core
