"""testscenarios under pytest, one test per scenario (``test_x[green]``), as stestr's load_tests
gives them. Without it every scenario runs the unparametrized instance (pytest binds the test
method to its own instance and sets it on it; the copies TestWithScenarios.run makes keep that
binding), and the tests fail on the missing scenario attributes, alike with both
implementations. Written against the pinned pytest's unittest support.

Loaded with -p cfx_testscenarios by suites that use testscenarios (tests/external/suites.py).
"""

import inspect
import sys
import unittest

import pytest
from _pytest.unittest import TestCaseFunction, UnitTestCase


class ScenarioFunction(TestCaseFunction):
    def __init__(self, *, method, scenario, **kw):
        self.method, self.scenario = method, scenario
        super().__init__(**kw)

    def _getinstance(self):
        from testscenarios.scenarios import apply_scenario
        test = apply_scenario(self.scenario, self.parent.obj(self.method))
        test.scenarios = None
        return test

    def _getobj(self):
        return getattr(self.instance, self.method)


class ScenarioCase(UnitTestCase):
    def collect(self):
        for item in super().collect():
            if type(item) is not TestCaseFunction:
                yield item
                continue
            for scenario in self.obj.scenarios:
                yield ScenarioFunction.from_parent(self, name=f"{item.name}[{scenario[0]}]",
                                                   method=item.name, scenario=scenario)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    ts = sys.modules.get("testscenarios")
    if (ts is not None and inspect.isclass(obj) and issubclass(obj, unittest.TestCase)
            and issubclass(obj, ts.WithScenarios) and getattr(obj, "scenarios", None)
            and not inspect.isabstract(obj)):
        return ScenarioCase.from_parent(collector, name=name, obj=obj)
    return None
