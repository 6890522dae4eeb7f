// The frame protocol between a process pool and its worker processes: its specification, and
// the frames as values. The code that reads and writes them is frame_io.hpp; attachments'
// memory (memfd copies, mappings) is attachments.hpp.
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
//     Exiting    worker -> parent  leaving on its own after its last answer (max_tasks_per_child,
//                                  or max_worker_memory: then tasks sent ahead and not run go
//                                  again); its last frame
//     Revoke     parent -> worker  give task `tag` back if it has not started; no payload
//     Revoked    worker -> parent  task `tag` was given back and will not run; no payload
//     Ready      worker -> parent  once, when it is set up (its initializer ran) and about to
//                                  take its first task: tasks sent before wait until now; no payload
// Which frames are legal at a given moment (a tag the worker was given, Exiting only once its
// allowance is spent or in a pool whose workers may leave early, nothing after Exiting, Revoked
// only for a task the parent asked back, Ready once) is the pool's business (pool_worker.hpp):
// here each frame stands alone.
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
// INLINE ATTACHMENTS. When the sender cannot make or send a frame's memfds (memfd_create refused
// by a seccomp profile, no descriptor left, no memory for the copy, a full socket), the buffers
// travel in the pipe instead, as the stdlib's bytes do: the header's kind has kInlineAttachments
// set and announces 0 attachments, and the payload is the pickle, then each buffer's bytes, then
// each buffer's size (u64), then their number (u64, at most kMaxAttachments). The receiver copies
// each buffer into anonymous memory and hands the frame on as if its attachments had come in
// the socket. It costs a copy on each side and the pipe's bandwidth; the writer counts such
// frames (FrameWriter::inlined).
//
// BOUNDS, and what happens past them. Bytes from the other end are untrusted: a task can write
// into its worker's pipes and socket. Each of these makes the reader fail: it stops for good,
// keeps the reason (error()), and never tries to resynchronise; the pool then breaks, naming it.
//   - a header with a wrong magic, a kind the reader's direction does not accept, more than
//     kMaxAttachments attachments, or a length above kMaxPayload;
//   - a frame announcing attachments when no message of descriptors waits in the socket, or a
//     message with another number of them (or cut short: MSG_CTRUNC);
//   - an attachment that is not a memfd sealed against shrinking (mapping a file that can shrink
//     would let the sender crash the receiver with SIGBUS). One that this process has no room to
//     map (mmap fails) is not the sender's fault: the frame arrives without its attachments,
//     saying why (IncomingFrame::unmapped), and the stream goes on;
//   - inline attachments with descriptors too, or whose trailer does not fit the payload (a
//     count above kMaxAttachments, sizes that add up past it);
//   - the end of the stream in the middle of a frame.
// The reader never allocates ahead of the bytes that arrived: a payload's buffer grows with
// what was read (at most doubling, starting from kChunk), so a header announcing 1 TiB followed
// by ten bytes costs kChunk, not 1 TiB. A reader that failed, even on an exception such as
// bad_alloc, stays failed: every later call reports the error and touches no buffer.
//
// frame_io.hpp enforces these bounds (FrameReader), and writes frames (FrameWriter).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "attachments.hpp"

namespace cfutures::core {

enum class FrameKind : std::uint16_t {
    Task = 1, Stop = 2, Result = 3, Exception = 4, Exiting = 5, Revoke = 6, Revoked = 7, Ready = 8
};

// Which end a reader serves: what it may receive.
enum class Direction { FromParent, FromWorker };

// Set in a header's kind: the frame's attachments are inside its payload (INLINE ATTACHMENTS).
constexpr std::uint16_t kInlineAttachments = 0x8000;

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
    bool attachments_inline = false;  // the payload ends with them (INLINE ATTACHMENTS)

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
    // Keeps the first `n` bytes (n <= size()): what is left once inline attachments are out.
    void truncate(std::size_t n) { size_ = std::min(size_, n); }

private:
    std::string small_;
    MappedRegion large_;
    std::size_t size_ = 0;
};

// A frame received: the payload and the attachments are its own. `unmapped` says why its
// attachments are missing when this process had no room to map them (RLIMIT_AS, no memory): the
// frame is whole otherwise, and its receiver fails that one call or answer with MemoryError.
struct IncomingFrame {
    FrameKind kind{};
    std::uint64_t tag = 0;
    Payload payload;
    std::vector<MappedRegion> attachments;
    std::string unmapped;
};

}  // namespace cfutures::core
