"""Run a project's test suite with cfutures in place of concurrent.futures.

    pytest -p cfutures.pytest_plugin      # this plugin, explicitly
    pytest --cfutures                     # the same (the plugin is registered with pytest)

Either way, cfutures.install() runs before conftest.py files and test modules are imported, and
CFUTURES_INSTALL=1 is set so that Python processes the tests start (process-pool workers,
subprocesses) have it installed too. Without either, the plugin does nothing.
"""

import os

_EXPLICIT = "cfutures.pytest_plugin"


def pytest_addoption(parser):
    parser.getgroup("cfutures").addoption(
        "--cfutures", action="store_true", default=False,
        help="run the tests with cfutures installed in place of concurrent.futures")


def _wanted(config):
    # known_args_namespace: the early parse, the only one done when conftests are loaded.
    early = config.known_args_namespace
    return bool(getattr(early, "cfutures", False) or _EXPLICIT in (early.plugins or ()))


def pytest_load_initial_conftests(early_config, parser, args):
    if _wanted(early_config):
        os.environ["CFUTURES_INSTALL"] = "1"
        from cfutures._install import install
        install()


def pytest_report_header(config):
    if _wanted(config):
        import cfutures
        return f"cfutures {cfutures.__version__}: installed in place of concurrent.futures"
    return None
