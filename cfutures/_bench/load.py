"""--under-load: Load, one busy process per core for the duration of a run, always ended after
it."""

import os
import subprocess
import sys
import time

# A spinning interpreter that also ends itself within ~50 ms of its parent's death, so that a
# killed benchmark leaves nothing behind.
_SPIN = ("import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
         "    for _ in range(1000000):\n        pass\n")


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Load:
    """with Load(): one busy process per core for the duration of the block, always ended after
    it (exceptions and KeyboardInterrupt included)."""

    def __init__(self, processes=None):
        self.count = processes or _cores()
        self.processes = []

    def __enter__(self):
        try:
            for _ in range(self.count):
                # Their own session: a Ctrl-C reaches the benchmark, which ends them itself.
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _SPIN], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            time.sleep(0.2)  # let them reach their loop
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p in self.processes:
            if p.poll() is None:
                p.kill()
        for p in self.processes:
            p.wait()
        self.processes = []
        return False

