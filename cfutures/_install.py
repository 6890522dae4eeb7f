"""cfutures.install() / cfutures.uninstall(): make ``concurrent.futures`` resolve to cfutures.

An opt-in monkeypatch for code that cannot be edited. It swaps the ``sys.modules`` entries of
``concurrent.futures`` and its submodules and the ``futures`` attribute of the ``concurrent``
package, so both later imports and modules that imported concurrent.futures earlier (and look
names up through it) get cfutures. Objects already bound by name elsewhere
(``from concurrent.futures import Future`` done before) keep what they had.
"""

import sys

_NAMES = ("concurrent.futures", "concurrent.futures._base", "concurrent.futures.thread",
          "concurrent.futures.process")
_saved = None


def _replacements():
    import cfutures
    from cfutures import _base, process, thread
    return {"concurrent.futures": cfutures, "concurrent.futures._base": _base,
            "concurrent.futures.thread": thread, "concurrent.futures.process": process}


def install():
    """Make ``import concurrent.futures`` (and its submodules) resolve to cfutures."""
    global _saved
    if _saved is not None:
        return
    import concurrent
    import concurrent.futures.process  # noqa: F401  (load the originals before replacing them)
    import concurrent.futures.thread  # noqa: F401
    replacements = _replacements()
    _saved = ({name: sys.modules.get(name) for name in _NAMES}, concurrent.futures)
    sys.modules.update(replacements)
    concurrent.futures = replacements["concurrent.futures"]


def uninstall():
    """Undo install(): concurrent.futures is the stdlib's again."""
    global _saved
    if _saved is None:
        return
    import concurrent
    modules, attribute = _saved
    for name, module in modules.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    concurrent.futures = attribute
    _saved = None


def installed():
    """Whether install() is in effect."""
    return _saved is not None
