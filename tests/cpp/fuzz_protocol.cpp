// A mutation fuzzer for the frame reader (core/frame_io.hpp), self-driven so that it builds with
// the same g++ and sanitizers as the core tests (no libFuzzer needed).
//
//     fuzz_protocol [--seconds N] [--seed S]
//
// Each round builds a stream of valid frames (sometimes with attachments: sealed memfds, or
// descriptors that are not), mutates it (bit flips, header fields set to boundary values,
// insertions, deletions, truncation, splices), and feeds it to a FrameReader in random pieces.
// What must hold, whatever the bytes:
//   - no crash, no undefined behaviour, no leak (run under ASan + UBSan in CI);
//   - the reader either fails, keeping its reason, or hands out frames; once failed it stays so;
//   - it never holds much more memory than the bytes it was fed (no allocation ahead of data);
//   - an unmutated stream, split anywhere, gives back exactly the frames that were written;
//   - every descriptor it was given is closed (the process's descriptor count comes back).
// Exits 0 after the time is up, or 1 at the first broken property (printing the seed).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/frame_io.hpp"

using namespace cfutures::core;

namespace {

struct Written {
    std::uint16_t kind;
    std::uint64_t tag;
    std::string payload;
    std::vector<std::string> attachments;
};

std::size_t open_fd_count() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d)) ++n;
        ::closedir(d);
    }
    return n;
}

int sealed_memfd(const std::string& bytes) {
    int fd = ::memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!bytes.empty() && ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) std::abort();
    ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    return fd;
}

[[noreturn]] void broken(const char* what, std::uint64_t seed, std::uint64_t round) {
    std::fprintf(stderr, "fuzz_protocol: %s (seed %llu, round %llu)\n", what,
                 static_cast<unsigned long long>(seed), static_cast<unsigned long long>(round));
    std::exit(1);
}

class Fuzzer {
public:
    explicit Fuzzer(std::uint64_t seed) : seed_(seed), rng_(seed) {}

    void round(std::uint64_t n) {
        round_ = n;
        Direction dir = coin(2) ? Direction::FromWorker : Direction::FromParent;
        std::vector<Written> frames = make_frames(dir);
        std::string stream;
        for (const Written& w : frames) stream += encode(w);
        bool mutate = coin(4) != 0;  // 3 in 4 rounds are mutated
        if (mutate) {
            int edits = 1 + static_cast<int>(rng_() % 8);
            for (int i = 0; i < edits; ++i) mutate_once(stream);
        }
        std::vector<std::vector<int>> fds_at;  // descriptors to hand over at each frame start
        FrameReader reader(dir);
        std::size_t fed = 0;
        std::size_t frame_index = 0, next_frame_at = 0;
        std::size_t pos = 0;
        while (pos < stream.size()) {
            std::size_t piece = 1 + rng_() % (coin(3) ? 64 : 70000);
            piece = std::min(piece, stream.size() - pos);
            std::vector<int> fds;
            // Descriptors travel with the first byte of a frame (as sendmsg sends them), or at
            // random when mutated.
            while (!mutate && frame_index < frames.size() && next_frame_at < pos + piece &&
                   next_frame_at >= pos) {
                for (const std::string& a : frames[frame_index].attachments) fds.push_back(sealed_memfd(a));
                next_frame_at += encode_size(frames[frame_index]);
                ++frame_index;
            }
            if (mutate && coin(16) == 0) fds.push_back(coin(2) ? sealed_memfd("x") : ::memfd_create("bad", MFD_CLOEXEC));
            bool was_failed = reader.failed();
            reader.feed(stream.data() + pos, piece, fds);
            if (was_failed && !reader.failed()) broken("a failed reader recovered", seed_, round_);
            if (reader.failed() && reader.error().empty()) broken("failed without a reason", seed_, round_);
            fed += piece;
            pos += piece;
            if (reader.held_bytes() > 4 * fed + (256u << 10)) broken("memory ahead of the data", seed_, round_);
            while (auto f = reader.pop()) got_.push_back(std::move(*f));
        }
        if (!mutate) {
            if (reader.failed()) broken(("a valid stream failed: " + reader.error()).c_str(), seed_, round_);
            if (got_.size() != frames.size()) broken("frames lost", seed_, round_);
            for (std::size_t i = 0; i < frames.size(); ++i) {
                const Written& w = frames[i];
                const IncomingFrame& f = got_[i];
                if (static_cast<std::uint16_t>(f.kind) != w.kind || f.tag != w.tag || f.payload.view() != w.payload ||
                    f.attachments.size() != w.attachments.size())
                    broken("a frame changed on the way", seed_, round_);
                for (std::size_t k = 0; k < w.attachments.size(); ++k)
                    if (std::string(f.attachments[k].data(), f.attachments[k].size()) != w.attachments[k])
                        broken("an attachment changed on the way", seed_, round_);
            }
        }
        got_.clear();
    }

private:
    unsigned coin(unsigned n) { return static_cast<unsigned>(rng_() % n); }

    std::vector<Written> make_frames(Direction dir) {
        std::vector<Written> out;
        std::size_t count = rng_() % 6;
        for (std::size_t i = 0; i < count; ++i) {
            Written w;
            w.kind = dir == Direction::FromParent ? static_cast<std::uint16_t>(1 + coin(2))
                                                  : static_cast<std::uint16_t>(3 + coin(3));
            w.tag = coin(2) ? rng_() : coin(10);
            std::size_t size = coin(10) == 0 ? 65536 + rng_() % 200000 : rng_() % 300;
            w.payload.resize(size);
            for (char& c : w.payload) c = static_cast<char>(rng_());
            if (coin(5) == 0) {
                std::size_t k = 1 + coin(3);
                for (std::size_t j = 0; j < k; ++j) w.attachments.push_back(std::string(coin(5000), 'a'));
            }
            out.push_back(std::move(w));
        }
        return out;
    }

    static std::size_t encode_size(const Written& w) { return sizeof(FrameHeader) + w.payload.size(); }

    static std::string encode(const Written& w) {
        FrameHeader h{kFrameMagic, w.kind, static_cast<std::uint16_t>(w.attachments.size()), w.tag,
                      w.payload.size()};
        return std::string(reinterpret_cast<const char*>(&h), sizeof h) + w.payload;
    }

    void mutate_once(std::string& s) {
        static const std::uint64_t lengths[] = {0, 1, 65535, 65536, 65537, 0xFFFFFFF0u, 0xFFFFFFFFu,
                                                std::uint64_t{1} << 32, kMaxPayload, kMaxPayload + 1,
                                                ~std::uint64_t{0}, std::uint64_t{1} << 63};
        switch (coin(7)) {
            case 0:  // flip a bit
                if (!s.empty()) s[rng_() % s.size()] ^= static_cast<char>(1u << coin(8));
                break;
            case 1: {  // a boundary length in what may be a header
                if (s.size() < sizeof(FrameHeader)) break;
                std::size_t at = rng_() % (s.size() - sizeof(FrameHeader) + 1);
                if (coin(2)) at -= at % 24;
                std::uint64_t v = lengths[rng_() % (sizeof lengths / sizeof lengths[0])];
                std::memcpy(&s[at + offsetof(FrameHeader, length)], &v, sizeof v);
                break;
            }
            case 2: {  // a boundary attachment count or kind
                if (s.size() < sizeof(FrameHeader)) break;
                std::size_t at = (rng_() % (s.size() / 24 + 1)) * 24;
                if (at + sizeof(FrameHeader) > s.size()) break;
                std::uint16_t v = static_cast<std::uint16_t>(coin(2) ? rng_() % 70 : rng_());
                std::memcpy(&s[at + (coin(2) ? offsetof(FrameHeader, attachments) : offsetof(FrameHeader, kind))],
                            &v, sizeof v);
                break;
            }
            case 3: {  // insert random bytes
                std::string junk(rng_() % 64, '\0');
                for (char& c : junk) c = static_cast<char>(rng_());
                s.insert(s.empty() ? 0 : rng_() % s.size(), junk);
                break;
            }
            case 4:  // delete a range
                if (!s.empty()) {
                    std::size_t at = rng_() % s.size();
                    s.erase(at, rng_() % 100);
                }
                break;
            case 5:  // truncate
                if (!s.empty()) s.resize(rng_() % s.size());
                break;
            case 6: {  // splice a copy of a part elsewhere
                if (s.size() < 2) break;
                std::size_t a = rng_() % s.size();
                std::string part = s.substr(a, rng_() % 200);
                s.insert(rng_() % s.size(), part);
                break;
            }
        }
    }

    std::uint64_t seed_;
    std::uint64_t round_ = 0;
    std::mt19937_64 rng_;
    std::vector<IncomingFrame> got_;
};

}  // namespace

int main(int argc, char** argv) {
    double seconds = 10;
    std::uint64_t seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
        else if (std::strcmp(argv[i], "--seed") == 0) seed = std::strtoull(argv[i + 1], nullptr, 10);
    }
    std::printf("fuzz_protocol: seed %llu, %.0f s\n", static_cast<unsigned long long>(seed), seconds);
    std::fflush(stdout);
    std::size_t fds_before = open_fd_count();
    Fuzzer fuzzer(seed);
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::uint64_t rounds = 0;
    while (std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 100; ++i) fuzzer.round(rounds++);
    }
    if (open_fd_count() != fds_before) {
        std::fprintf(stderr, "fuzz_protocol: descriptors leaked (%zu before, %zu after)\n", fds_before, open_fd_count());
        return 1;
    }
    std::printf("fuzz_protocol: %llu rounds, every property held\n", static_cast<unsigned long long>(rounds));
    return 0;
}
