"""The exceptions cfutures adds beyond the stdlib's (opt-in features of the process pools).

A module of their own, so that a portable build (cfutures/_portable.py) and cfutures.dask have
them without the native core, and a thread pool's users never import the process pool's
modules for them.
"""

from concurrent.futures import process as _std_process


class TaskTimeout(Exception):
    """The task ran longer than its task_timeout: its worker process was killed and replaced.

    Deliberately not a TimeoutError: code that retries result(timeout=...) on TimeoutError must
    not wait forever for a task that was stopped."""


class WorkerDied(_std_process.BrokenProcessPool):
    """The worker process running the task died (a signal, os._exit, the OOM killer); with
    on_worker_death="replace" only that task fails and the pool goes on.

    exitcode follows multiprocessing's convention: the exit status, or -N for signal N."""

    def __init__(self, message, exitcode=None):
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self):
        return type(self), (self.args[0] if self.args else "", self.exitcode)
