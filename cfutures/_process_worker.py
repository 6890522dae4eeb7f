"""The loop of a ProcessPoolExecutor worker process.

Receives pickled calls over its channel (native framing, GIL released while waiting), runs them
and sends back the pickled result, or the exception with the worker's traceback text (the
stdlib's _ExceptionWithTraceback, so the parent sees the same __cause__ as with the stdlib).
A call that cannot be unpickled ends the worker, as in the stdlib: the parent sees the exit and
breaks the pool. The worker also ends when the pool process dies (it watches a pidfd of it).

With max_worker_memory (a bound in bytes), after each answer the worker reads its resident set
size; above the bound it collects garbage and reads again, and if still above, it tells the pool
it is leaving (Exiting) and returns: the tasks sent ahead to it go to other workers, and the pool
starts a replacement. Without the bound, nothing is read.
"""

import os

from . import _cfutures, _pickling

# concurrent.futures.process (and the multiprocessing modules it pulls in) is imported only when
# a task fails: a spawned worker that never sees an exception starts without it, which is part of
# the pool's time to its first result.


def _send_exception(channel, pickling, tag, exc):
    from concurrent.futures.process import _ExceptionWithTraceback
    try:
        payload, attachments = pickling.dumps(_ExceptionWithTraceback(exc, exc.__traceback__))
    except BaseException as e:  # the exception itself cannot be pickled: say why
        payload, attachments = pickling.dumps(_ExceptionWithTraceback(e, e.__traceback__))
    channel.send(_cfutures.FRAME_EXCEPTION, tag, payload, attachments)


def _open_statm():
    """A descriptor on /proc/self/statm, whose second field is the resident set size in pages
    (opened once: each read is one pread), and the page size."""
    return os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC), os.sysconf("SC_PAGE_SIZE")


def _resident_pages(statm):
    return int(os.pread(statm, 64, 0).split()[1])


def _stays_above(statm, max_pages):
    """Whether the process is still above `max_pages` resident pages after a garbage collection
    (cycles freed may give memory back)."""
    import gc
    gc.collect()
    return _resident_pages(statm) > max_pages


def main(task_conn, result_conn, attachment_conn, initializer, initargs, max_tasks, pool_pid,
         pickler=None, max_memory=None):
    channel = _cfutures.WorkerChannel(task_conn.fileno(), result_conn.fileno(),
                                      attachment_conn.fileno(), pool_pid)
    # Answers go back the way calls came (pickler=): a call that needed cloudpickle may return
    # a lambda too.
    pickling = _pickling.Pickling(pickler) if pickler else _pickling._STANDARD
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            from concurrent.futures import _base
            _base.LOGGER.critical('Exception in initializer:', exc_info=True)
            # The parent sees this process exit and marks the pool broken.
            return
    if not channel.ready():  # the pool is gone
        return
    statm = max_pages = None
    if max_memory:
        statm, page = _open_statm()
        max_pages = max_memory // page  # above it in pages <=> above max_memory in bytes
    pread = os.pread
    done = 0
    while True:
        message = channel.recv()
        if message is None:
            return
        kind, tag, payload, attachments = message
        if kind != _cfutures.FRAME_TASK:
            return
        if isinstance(attachments, str):  # no room here for the call's large buffers
            _send_exception(channel, pickling, tag, MemoryError(
                f"the call's arguments could not be mapped into the worker ({attachments})"))
            continue
        fn, args, kwargs = _pickling.loads(payload, attachments)
        del payload, attachments, message
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _send_exception(channel, pickling, tag, exc)
            del exc
        else:
            try:
                answer = pickling.dumps(result)
            except BaseException as exc:
                _send_exception(channel, pickling, tag, exc)
                del exc
            else:
                channel.send(_cfutures.FRAME_RESULT, tag, *answer)
                del answer
            del result
        # Drop the call's objects now, not when the next task arrives.
        del fn, args, kwargs
        done += 1
        # (The read is spelled out, without a call: it runs after every task.)
        if (max_tasks and done >= max_tasks) or (
                statm is not None and int(pread(statm, 64, 0).split()[1]) > max_pages
                and _stays_above(statm, max_pages)):
            # Exiting is the last frame: tasks sent ahead and not run go to other workers.
            channel.send(_cfutures.FRAME_EXITING, 0, b"", ())
            return
