// _cfutures.WorkerChannel: a worker process's end of its channel (core/worker_channel.hpp),
// driven by cfutures/_process_worker.py: receive a task frame, send its answer.
//
// Both calls block with the GIL released (rule 1). A receive interrupted by a signal runs the
// Python signal handlers and goes on waiting, unless a handler raised.
#include "../core/worker_channel.hpp"
#include "channel.hpp"

namespace cfutures::bindings {

namespace {

class WorkerChannel {
public:
    WorkerChannel(int task_fd, int result_fd, int attachment_fd, int pool_pid)
        : end_(task_fd, result_fd, attachment_fd, pool_pid, /*end_if_orphaned_while_busy=*/true) {}

    // (kind, tag, payload, attachments), or None when the pool is gone or closed the channel.
    // `attachments` is a list of buffers, or a str: why this process had no room to map them.
    py::object recv() {
        core::IncomingFrame frame;
        std::string error;
        for (;;) {
            auto status = without_gil([&] { return end_.recv(frame, error); });
            switch (status) {
                case core::WorkerEnd::Recv::Frame: {
                    if (!frame.unmapped.empty())
                        return py::make_tuple(static_cast<int>(frame.kind), frame.tag, py::bytes(),
                                              py::str(frame.unmapped));
                    py::list attachments = attachment_objects(frame);
                    // A small payload is cheaper to copy than to wrap.
                    py::object payload = frame.payload.size() <= kCopyBelow
                                             ? py::bytes(frame.payload.data(), frame.payload.size())
                                             : buffer_object(std::move(frame.payload));
                    return py::make_tuple(static_cast<int>(frame.kind), frame.tag, payload, attachments);
                }
                case core::WorkerEnd::Recv::Closed:
                case core::WorkerEnd::Recv::PoolGone: return py::none();
                case core::WorkerEnd::Recv::Interrupted:
                    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                    continue;
                case core::WorkerEnd::Recv::Error: throw std::runtime_error("channel error: " + error);
            }
        }
    }

    // Tells the pool that the worker is set up (see WorkerEnd::announce_ready); false if the
    // pool cannot hear it (it is gone: the worker has nothing to do).
    bool ready() {
        std::string error;
        return without_gil([&] { return end_.announce_ready(error); });
    }

    // Sends an answer: `payload` and each of `attachments` are contiguous buffers.
    void send(int kind, std::uint64_t tag, py::handle payload, py::handle attachments) {
        core::OutgoingFrame frame;
        frame.kind = static_cast<core::FrameKind>(kind);
        frame.tag = tag;
        BufferView view(payload);  // released here, after the send, with the GIL
        frame.data = view.data();
        frame.size = view.size();
        frame.attachments = outgoing_attachments(attachments, nullptr);
        std::string error;
        bool ok = without_gil([&] { return end_.send(frame, error); });
        if (!ok) throw std::runtime_error("cannot answer the pool: " + error);
    }

private:
    static constexpr std::size_t kCopyBelow = 64 * 1024;
    core::WorkerEnd end_;
};

}  // namespace

void register_process_worker(py::module_& m) {
    py::class_<WorkerChannel>(m, "WorkerChannel")
        .def(py::init<int, int, int, int>(), py::arg("task_fd"), py::arg("result_fd"),
             py::arg("attachment_fd"), py::arg("pool_pid"))
        .def("recv", &WorkerChannel::recv)
        .def("ready", &WorkerChannel::ready)
        .def("send", &WorkerChannel::send, py::arg("kind"), py::arg("tag"), py::arg("payload"),
             py::arg("attachments"));
    m.attr("FRAME_TASK") = static_cast<int>(core::FrameKind::Task);
    m.attr("FRAME_STOP") = static_cast<int>(core::FrameKind::Stop);
    m.attr("FRAME_RESULT") = static_cast<int>(core::FrameKind::Result);
    m.attr("FRAME_EXCEPTION") = static_cast<int>(core::FrameKind::Exception);
    m.attr("FRAME_EXITING") = static_cast<int>(core::FrameKind::Exiting);
    m.attr("FRAME_READY") = static_cast<int>(core::FrameKind::Ready);
    m.attr("MAX_ATTACHMENTS") = static_cast<int>(core::kMaxAttachments);
}

}  // namespace cfutures::bindings
