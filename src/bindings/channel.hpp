// Frames (core/protocol.hpp) to and from Python, for both ends of a worker's channel.
//
// Received payloads and attachments become _cfutures.Buffer objects: the buffer protocol over
// memory the frame owned (no copy), released when the last Python reference goes. Outgoing
// payloads and attachments borrow Python buffers (Py_buffer views): on the parent's side a view
// is released when its frame is dropped, which happens with the GIL held (the pool hands sent
// frames back in ProcessBatch::released); on the worker's side the caller releases its views
// after the send, with the GIL.
//
// An attachment whose source cannot change (a bytes object) may be shared by many jobs: a
// SharedCopies table (owned by the pool, guarded by the caller's lock) maps the source to the one
// SealedCopy all their frames carry, so one memfd copy serves them all.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "../core/frame_io.hpp"
#include "common.hpp"

namespace cfutures::bindings {

// A received payload or attachment as a Python object with the buffer protocol.
py::object buffer_object(core::Payload&& payload);
py::object buffer_object(core::MappedRegion&& region);
// The attachments of a received frame, as a list of buffer objects (taken out of the frame).
py::list attachment_objects(core::IncomingFrame& frame);

// A Python buffer viewed as contiguous bytes (PyBUF_SIMPLE). Must be released with the GIL.
struct BufferView {
    Py_buffer view{};
    bool held = false;
    explicit BufferView(py::handle obj);
    BufferView(const BufferView&) = delete;
    BufferView& operator=(const BufferView&) = delete;
    ~BufferView();  // GIL held (see the header)
    const char* data() const { return static_cast<const char*>(view.buf); }
    std::size_t size() const { return static_cast<std::size_t>(view.len); }
};

// One memfd copy per unchanging source, for as long as frames carry it.
class SharedCopies {
public:
    std::shared_ptr<core::SealedCopy> find(const char* data, std::size_t size);
    void remember(const std::shared_ptr<core::SealedCopy>& copy);

private:
    std::unordered_map<const char*, std::weak_ptr<core::SealedCopy>> by_source_;
    std::size_t since_sweep_ = 0;
};

// The attachments of an outgoing frame, from a sequence of contiguous buffers. Each keeps its
// source's view (released with the frame). With `shared` (and its lock held by the caller),
// bytes sources are looked up and remembered there.
std::vector<std::shared_ptr<core::SealedCopy>> outgoing_attachments(py::handle buffers,
                                                                    SharedCopies* shared);

// Keeps a Python buffer view alive for a frame that borrows it; released with the frame.
std::shared_ptr<void> keep_view(std::unique_ptr<BufferView> view);


}  // namespace cfutures::bindings
