"""The zygote: forks the workers that replace others, for a process pool under 'fork'.

A pool given an option that replaces workers (cfutures, opt-in: on_worker_death="replace",
task_timeout=, cancel_running=True, max_worker_memory=) starts workers after its manager thread
runs. Forking a process that has threads can deadlock the child (a lock another thread held at
the fork stays held in it), which is why the stdlib refuses max_tasks_per_child under 'fork'.
Switching such pools to forkserver, as cfutures did, changed what the user gets: the script's
main module is run again in the workers (a script without a main guard fails, one read from
stdin cannot be found).

So the pool forks a zygote with its first workers, before its manager thread starts. The
zygote is that moment's program, with one thread; every later worker is forked from it, and is
the same kind of copy as the first ones. The zygote is a child of the pool's process, the
workers it forks are its children: it joins them and reports their exit codes.

Protocol: pickled messages over a socketpair (multiprocessing's duplex Pipe), one request and
its answer at a time (Zygote.lock):
  ("start",) then the worker's three channel ends (SCM_RIGHTS)  -> ("started", pid) | ("error", exc)
  ("exitcode", pid, wait)  -> the worker's exit code, None while it runs (wait: join it first)
End of file: the zygote joins the workers left and exits. Workers notice a pool that is gone
by themselves (their task pipe closes), so a zygote that dies leaves none behind.
"""

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing import connection, reduction


def _serve(conn, pool_end, worker_target, worker_args, handlers):
    # The pool's end of the socketpair came along with the fork: only the pool may hold it, or
    # the zygote would never see the end of file that tells it to leave.
    pool_end.close()
    # Ctrl-C reaches the whole process group: the pool's process decides what it means, the
    # zygote must not die of it with a traceback. SIGTERM from multiprocessing's exit (the zygote
    # is daemonic) must end it even where the program installed its own handler.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # multiprocessing refuses children of a daemonic process; the workers are the pool's, which
    # only this process may fork.
    multiprocessing.current_process().daemon = False
    workers = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        if request[0] == "start":
            with _socket_of(conn) as sock:
                ends = [connection.Connection(fd) for fd in reduction.recvfds(sock, 3)]
            try:
                p = multiprocessing.get_context("fork").Process(
                    target=_run_worker, args=(conn, handlers, worker_target, *ends, *worker_args))
                p.start()
                workers[p.pid] = p
                answer = ("started", p.pid)
            except Exception as exc:
                answer = ("error", exc)
            finally:
                for end in ends:
                    end.close()
            try:
                conn.send(answer)
            except Exception:  # an error that does not pickle: its text does
                conn.send(("error", OSError(f"the zygote could not fork a worker: {answer[1]!r}")))
        elif request[0] == "exitcode":
            _, pid, wait = request
            p = workers.get(pid)
            if p is None:
                conn.send(None)
                continue
            if wait:
                p.join()
            if p.exitcode is not None:
                del workers[pid]
            conn.send(p.exitcode)
    for p in workers.values():
        p.join()


@contextlib.contextmanager
def _socket_of(conn):
    """The connection's socket, borrowed: the connection keeps its descriptor."""
    sock = socket.socket(fileno=conn.fileno())
    try:
        yield sock
    finally:
        sock.detach()


def _run_worker(zygote_end, handlers, target, *args):
    zygote_end.close()  # the zygote's requests are not the worker's
    # A worker gets the program's signal handlers back, as a worker forked by the pool would.
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    target(*args)


class Zygote:
    """The pool's side of its zygote (one per pool, made by _PoolHost under 'fork')."""

    def __init__(self, mp_context, worker_target, worker_args):
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        self.conn, theirs = mp_context.Pipe(duplex=True)
        self.lock = threading.Lock()
        try:
            self.process = mp_context.Process(target=_serve, name="cfutures-zygote", daemon=True,
                                              args=(theirs, self.conn, worker_target, worker_args,
                                                    handlers))
            self.process.start()
        except BaseException:
            self.conn.close()
            raise
        finally:
            theirs.close()

    def start_worker(self, task_reader, result_writer, worker_attachments):
        """Forks a worker with these channel ends (the caller keeps and closes its own); returns
        a Process-like ZygoteWorker. Raises what kept the zygote from forking it, or
        BrokenPipeError/EOFError when the zygote is gone."""
        with self.lock:
            try:
                self.conn.send(("start",))
                with _socket_of(self.conn) as sock:
                    reduction.sendfds(sock, [task_reader.fileno(), result_writer.fileno(),
                                             worker_attachments.fileno()])
                kind, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                self.process.join(1)
                raise BrokenPipeError(
                    f"the pool's zygote (pid {self.process.pid}, exit code "
                    f"{self.process.exitcode}), which forks its workers under the 'fork' start "
                    f"method, is gone") from exc
        if kind == "error":
            raise value
        return ZygoteWorker(self, value)

    def exitcode(self, pid, wait):
        """The worker's exit code (None while it runs, or when the zygote is gone)."""
        with self.lock:
            try:
                self.conn.send(("exitcode", pid, wait))
                return self.conn.recv()
            except (EOFError, OSError):
                return None

    def close(self):
        """Ends the zygote once its workers have exited (it joins them first)."""
        with self.lock:
            self.conn.close()

    def alive(self):
        return self.process.is_alive()


class ZygoteWorker:
    """What the pool keeps in its _processes for a worker its zygote forked: the parts of
    multiprocessing.Process that code reaching into a pool uses (pid, exitcode, is_alive, join,
    terminate, kill)."""

    def __init__(self, zygote, pid):
        self._zygote = zygote
        self.pid = pid
        self.name = f"cfutures-worker-{pid}"
        self._exitcode = None

    @property
    def exitcode(self):
        if self._exitcode is None:
            self._exitcode = self._zygote.exitcode(self.pid, False)
        return self._exitcode

    def is_alive(self):
        return self.exitcode is None and self._zygote.alive()

    def join(self, timeout=None):
        if self._exitcode is not None:
            return
        if timeout is None:
            self._exitcode = self._zygote.exitcode(self.pid, True)
            return
        # A pidfd tells when it ends without asking the zygote in a loop.
        try:
            fd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            return
        try:
            import select
            if select.select([fd], [], [], timeout)[0]:
                self._exitcode = self._zygote.exitcode(self.pid, True)
        finally:
            os.close(fd)

    def _signal(self, signum):
        if self._exitcode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self):
        self._signal(signal.SIGTERM)

    def kill(self):
        self._signal(signal.SIGKILL)

    def close(self):
        pass

    def __repr__(self):
        state = "started" if self._exitcode is None else f"stopped exitcode={self._exitcode}"
        return f"<ZygoteWorker name={self.name!r} pid={self.pid} {state}>"
