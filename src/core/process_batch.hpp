// What the process pool's manager thread hands to its owner: one ProcessBatch per round, through
// ProcessPoolHooks::deliver (one GIL acquisition in the bindings), and the causes it names.
// The data flow these travel in is drawn once, in process_pool.hpp.
//
// Invariant: a job id appears in at most one of answers, cancelled, unsendable, lost and
// stopped, once in the pool's life (exactly one outcome per job); `released` holds frames, not
// outcomes, and may name a job again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "frame_io.hpp"

namespace cfutures::core {

// Why the pool broke (process_pool_breaking.hpp).
enum class BreakCause { None, WorkerDied, Protocol, Owner, Internal };

// Why a job ended without an answer while the pool goes on (process_pool_stopping.hpp).
enum class StopCause { TimedOut, Cancelled, WorkerDied };
struct StoppedJob {
    std::uint64_t tag;
    StopCause cause;
    int pid;             // of its worker
    bool exitcode_known; // the worker is this process's child (not under forkserver)
    int exitcode;        // if known: multiprocessing's convention, -N for signal N
    double limit = 0;    // TimedOut: the job's task_timeout in seconds
};

struct ProcessBatch {
    std::vector<IncomingFrame> answers;        // Result / Exception frames, tag = job id
    std::vector<OutgoingFrame> released;       // outgoing frames done with (sent or dropped)
    std::vector<std::uint64_t> cancelled;      // jobs dropped at dispatch: their future was cancelled
    std::vector<FrameWriter::Unsendable> unsendable;  // jobs whose attachments could not be made
    std::vector<int> exited;                   // pids of workers that exited (to reap)
    std::vector<std::uint64_t> lost;           // jobs that will never complete: the pool broke
    std::vector<StoppedJob> stopped;           // jobs whose worker was stopped or died; pool goes on
    BreakCause broken = BreakCause::None;      // set in the batch where the pool broke
    std::string broken_reason;                 // ... and why, in words
    std::size_t start_workers = 0;             // workers to start (replacing ones that left)
    bool empty() const {
        return answers.empty() && released.empty() && cancelled.empty() && unsendable.empty() &&
               exited.empty() && lost.empty() && stopped.empty() && broken == BreakCause::None &&
               start_workers == 0;
    }
};

class ProcessPoolHooks {
public:
    virtual ~ProcessPoolHooks() = default;
    // Runs on the manager thread. May unwind the thread (the bindings' GIL acquisition during
    // interpreter finalization); any other exception breaks the pool (BreakCause::Internal).
    virtual void deliver(ProcessBatch& batch) = 0;
};

}  // namespace cfutures::core
