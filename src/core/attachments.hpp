// Attachments' memory (protocol.hpp, ATTACHMENTS): a received attachment mapped copy-on-write
// (MappedRegion, map_attachment, which checks the seals that keep the sender from shrinking it
// under the receiver), and a buffer to send copied once into a sealed memfd (SealedCopy). The
// only code of the protocol that calls mmap, memfd_create and the seals' fcntl.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace cfutures::core {

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
// `error` set when it is not a memfd sealed against shrinking, or cannot be mapped; in the second
// case `*no_room` (if given) is set: the process lacks memory or mappings (RLIMIT_AS, say), which
// is no fault of the sender's.
inline bool map_attachment(int fd, MappedRegion& out, std::string& error, bool* no_room = nullptr) {
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
        error = std::string("cannot map an attachment of ") + std::to_string(size) + " bytes: " +
                std::strerror(errno);
        if (no_room) *no_room = true;
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

}  // namespace cfutures::core
