"""pytest plugin loaded into the external suites' runs (``-p cfx_outcomes``): one JSON line per
event, appended to the file named by CFX_OUTCOMES as it happens, so that a run killed by a hang
or a crash still leaves the outcomes of the tests it finished and the id of the one it was in.

Events: ``session`` (which module ``concurrent.futures`` is), ``start`` (a test begins),
``report`` (one phase of a test: setup, call, teardown), ``collect`` (a collection error),
``finish`` (the exit status). Written with os.write on an O_APPEND descriptor, one line per call,
and only by the process that opened it (a forked pool worker inherits the descriptor but writes
nothing).
"""

import json
import os
import sys

_fd = None
_owner = None
_TEXT = 6000  # characters of a failure's text kept


def _emit(**event):
    if _fd is not None and os.getpid() == _owner:
        os.write(_fd, (json.dumps(event) + "\n").encode())


def pytest_configure(config):
    global _fd, _owner
    path = os.environ.get("CFX_OUTCOMES")
    if path and _fd is None:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _owner = os.getpid()


def pytest_sessionstart(session):
    cf = sys.modules.get("concurrent.futures")
    if cf is None:
        import concurrent.futures as cf
    cfutures = sys.modules.get("cfutures")
    _emit(event="session", concurrent_futures=getattr(cf, "__file__", None),
          cfutures=getattr(cfutures, "__file__", None),
          install=os.environ.get("CFUTURES_INSTALL"), python=sys.version.split()[0])


def pytest_runtest_logstart(nodeid, location):
    _emit(event="start", id=nodeid)


def _text(report):
    if report.longrepr is None:
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2]  # (path, line, reason)
    text = str(report.longrepr)
    return text if len(text) <= _TEXT else text[:_TEXT // 3] + "\n[...]\n" + text[-_TEXT * 2 // 3:]


def pytest_runtest_logreport(report):
    _emit(event="report", id=report.nodeid, when=report.when, outcome=report.outcome,
          xfail=hasattr(report, "wasxfail"), duration=round(report.duration, 3),
          text=_text(report) if (report.failed or report.skipped) else None)


def pytest_collectreport(report):
    if report.failed:
        _emit(event="collect", id=report.nodeid, text=_text(report))


def pytest_sessionfinish(session, exitstatus):
    _emit(event="finish", exitstatus=int(exitstatus))
