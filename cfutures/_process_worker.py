"""The loop of a ProcessPoolExecutor worker process.

Receives pickled calls over its channel (native framing, GIL released while waiting), runs them
and sends back the pickled result, or the exception with the worker's traceback text (the
stdlib's _ExceptionWithTraceback, so the parent sees the same __cause__ as with the stdlib).
A call that cannot be unpickled ends the worker, as in the stdlib: the parent sees the exit and
breaks the pool. The worker also ends when the pool process dies (it watches a pidfd of it).
"""

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


def main(task_conn, result_conn, attachment_conn, initializer, initargs, max_tasks, pool_pid,
         pickler=None):
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
    done = 0
    while True:
        message = channel.recv()
        if message is None:
            return
        kind, tag, payload, attachments = message
        if kind != _cfutures.FRAME_TASK:
            return
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
        if max_tasks and done >= max_tasks:
            channel.send(_cfutures.FRAME_EXITING, 0, b"", ())
            return
