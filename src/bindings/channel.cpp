#include "channel.hpp"

#include <variant>

namespace cfutures::bindings {

namespace {

// What a _cfutures.Buffer owns: a payload or a mapped attachment.
struct OwnedBytes {
    std::variant<core::Payload, core::MappedRegion> bytes;
    char* data() {
        if (auto* p = std::get_if<core::Payload>(&bytes)) return const_cast<char*>(p->data());
        return std::get<core::MappedRegion>(bytes).data();
    }
    std::size_t size() const {
        if (auto* p = std::get_if<core::Payload>(&bytes)) return p->size();
        return std::get<core::MappedRegion>(bytes).size();
    }
};

}  // namespace

py::object buffer_object(core::Payload&& payload) {
    return py::cast(OwnedBytes{std::move(payload)});
}

py::object buffer_object(core::MappedRegion&& region) {
    return py::cast(OwnedBytes{std::move(region)});
}

py::list attachment_objects(core::IncomingFrame& frame) {
    py::list out;
    for (core::MappedRegion& r : frame.attachments) out.append(buffer_object(std::move(r)));
    frame.attachments.clear();
    return out;
}

BufferView::BufferView(py::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_SIMPLE) < 0) throw py::error_already_set();
    held = true;
}

BufferView::~BufferView() {
    // Frames are dropped with the GIL held (see the header); only a path that already failed
    // (an exception in the manager's loop) could get here without it: leak rather than touch
    // Python objects without the GIL.
    if (held && attached()) PyBuffer_Release(&view);
}

std::shared_ptr<void> keep_view(std::unique_ptr<BufferView> view) {
    return std::shared_ptr<void>(view.release(), [](void* p) { delete static_cast<BufferView*>(p); });
}

std::shared_ptr<core::SealedCopy> SharedCopies::find(const char* data, std::size_t size) {
    auto it = by_source_.find(data);
    if (it == by_source_.end()) return nullptr;
    auto copy = it->second.lock();
    if (!copy || copy->size() != size) return nullptr;
    return copy;
}

void SharedCopies::remember(const std::shared_ptr<core::SealedCopy>& copy) {
    by_source_[copy->data()] = copy;
    // Forget the sources no frame carries any more, now and then.
    if (++since_sweep_ >= 64) {
        since_sweep_ = 0;
        for (auto it = by_source_.begin(); it != by_source_.end();) {
            if (it->second.expired()) it = by_source_.erase(it);
            else ++it;
        }
    }
}

std::vector<std::shared_ptr<core::SealedCopy>> outgoing_attachments(py::handle buffers,
                                                                    SharedCopies* shared) {
    std::vector<std::shared_ptr<core::SealedCopy>> out;
    for (py::handle item : buffers) {
        auto view = std::make_unique<BufferView>(item);
        // A memoryview over a bytes object (what pickle's out-of-band buffers of bytes are):
        // the bytes cannot change, so every job carrying them can share one copy.
        PyObject* source = PyMemoryView_Check(item.ptr()) ? PyMemoryView_GET_BUFFER(item.ptr())->obj
                                                          : item.ptr();
        bool unchanging = shared && source && PyBytes_CheckExact(source);
        if (unchanging) {
            if (auto copy = shared->find(view->data(), view->size())) {
                out.push_back(std::move(copy));
                continue;
            }
        }
        const char* data = view->data();
        std::size_t size = view->size();
        auto copy = std::make_shared<core::SealedCopy>(data, size, keep_view(std::move(view)));
        if (unchanging) shared->remember(copy);
        out.push_back(std::move(copy));
    }
    return out;
}

void register_channel(py::module_& m) {
    py::class_<OwnedBytes>(m, "Buffer", py::buffer_protocol(),
                           "Bytes received from another process (a payload, or a mapped attachment).")
        .def_buffer([](OwnedBytes& b) {
            static char empty;  // a zero-length region has no address of its own
            char* data = b.size() ? b.data() : &empty;
            return py::buffer_info(data, 1, "B", static_cast<py::ssize_t>(b.size()));
        })
        .def("__len__", &OwnedBytes::size);
}

}  // namespace cfutures::bindings
