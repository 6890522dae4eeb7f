"""Other projects' test suites with the stdlib and with cfutures, compared test by test.

One test per suite (pinned in tests/external/suites.py, which says how it works): the suite's
pinned sdist is downloaded from PyPI into ~/.cache/cfutures/external (reused afterwards), its
test dependencies installed into a private directory there, and its tests run twice with this
interpreter (the one cfutures is installed in): plain pytest, and ``pytest --cfutures``. The test
fails with the list of tests whose outcomes differ, unless the difference is flaky (differing
tests are rerun twice with each implementation) or recorded in suites.DEVIATIONS. Needs PyPI on
first use; runs on Python 3.11 only (the version the table is pinned and measured on), skipped
elsewhere.

Selection, by the environment variable CFUTURES_EXTERNAL:

    CFUTURES_EXTERNAL=ci  (the default)  the bounded subset: pebble's thread, fork and general
                                         modules, and the other suites whole
    CFUTURES_EXTERNAL=all                every suite whole (pebble's spawn and forkserver too)
    CFUTURES_EXTERNAL=off                nothing (each test skipped)
    CFUTURES_EXTERNAL=pebble,dask        these suites, whole

Commands (pyproject's addopts leave the ``external`` marker out of a plain pytest; ``-m external``
selects these tests; nox's ``external-3.11`` session runs exactly that):

    pytest -m external tests/test_external_suites.py                        # the CI subset
    CFUTURES_EXTERNAL=all pytest -m external tests/test_external_suites.py  # everything
    CFUTURES_EXTERNAL=pebble pytest -m external tests/test_external_suites.py -s  # one, verbose
    python tests/external/suites.py [--all | NAME...] [--json FILE]   # the same comparison as a
                                      # table of outcomes and the differing tests, no pytest around

Durations measured on the 2-core machine, Python 3.11.7, cfutures built from 0f34efd; a "run" is
one implementation's whole pass over the suite, as reported by the runner:

    suite                   tests  stdlib run  cfutures run  reruns of differing tests
    pebble 5.2.3, whole      421    136-142 s     165-168 s  ~125 s (21 tests, 2 x 2 runs)
    pebble, CI subset        203         50 s          63 s   ~40 s (7 tests)
    dask 2026.8.0 (3 files)   68        7-9 s        9-10 s   -
    tqdm 4.70.1 (1 file)      16         <1 s          <1 s   -
    asgiref 3.13.0           123        14 s          14 s   -
    futurist 3.5.0, whole    197       112 s         114 s   -   (cfutures at 2de2718)
    futurist, CI subset      ~130      ~50 s         ~50 s   -   (executors and waiters)

    CFUTURES_EXTERNAL=ci:   about 5 minutes with futurist's subset; before it, 3 min 17 s with a warm cache, 3 min 51 s with an empty one (downloads
                            and private installs: about 35 s, numpy's wheel the largest); about
                            40 s less once pebble's differences are gone (no reruns)
    CFUTURES_EXTERNAL=all:  7 min 56 s with a warm cache, about 6 minutes without reruns
"""

import os

import pytest

from external import suites

CHOICE = os.environ.get("CFUTURES_EXTERNAL", "ci")
SELECTED = dict((suite.name, paths) for suite, paths in suites.selection(CHOICE))


def _budget(suite):
    # A backstop only: the runner bounds every run itself (suite.run_timeout, the rerun budget),
    # and pip gets its own limits; this covers both runs, the reruns and the installs.
    return 2 * suite.run_timeout + suite.rerun_budget + 1200


@pytest.mark.external
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.timeout(_budget(suite)))
                                  for name, suite in suites.SUITES.items()])
def test_external_suite(name):
    suite = suites.SUITES[name]
    if name not in SELECTED:
        pytest.skip(f"not selected by CFUTURES_EXTERNAL={CHOICE} (ci, all, off or names)")
    why = suites.supported(suite)
    if why:
        pytest.skip(why)
    paths = SELECTED[name]
    c = suites.compare(suite, paths=paths, echo=print)
    print(suites.table([c]))
    report = suites.describe(c)
    if report:
        print(report)  # flaky and recorded differences too, shown with -s or on failure
    if c.failed():
        pytest.fail(f"{suite.key} ({' '.join(paths or suite.paths)}): {len(c.unexpected())} "
                    f"tests differ between the stdlib and cfutures\n{suites.table([c])}\n{report}",
                    pytrace=False)
