"""cfutures.install() / cfutures.uninstall(): make ``concurrent.futures`` resolve to cfutures.

An opt-in monkeypatch for code that cannot be edited. It swaps the ``sys.modules`` entries of
``concurrent.futures`` and its submodules and the ``futures`` attribute of the ``concurrent``
package, so later imports get cfutures; and it sets the public names of the stdlib's
``concurrent.futures`` module object to cfutures' (Future, the executors, wait, ...), so code that
kept a reference to that module (``import concurrent.futures as cf`` done earlier) looks them up
to cfutures too. uninstall() puts every entry and attribute back as it was. Names already bound
elsewhere (``from concurrent.futures import Future`` done before) keep what they had.

``concurrent.futures`` itself becomes a view of the cfutures package (_PackageView) rather than
the package: every name resolves to cfutures', except those cfutures adds beyond the stdlib
(cfutures._EXTENSIONS), which installed code does not see there.

In a program whose ``threading`` gevent or eventlet patched, install() does nothing, and the view
undoes it at its first lookup after such a patch (cfutures/_green.py says why).
"""

import sys
import types

from cfutures import _green

_NAMES = ("concurrent.futures", "concurrent.futures._base", "concurrent.futures.thread",
          "concurrent.futures.process", "concurrent.futures.interpreter")
_saved = None
_MISSING = object()


class _PackageView(types.ModuleType):
    """What ``concurrent.futures`` is while installed: the cfutures package's names (its
    submodules included), without cfutures' own additions."""

    def __init__(self, package):
        # Named as the package: `concurrent.futures.__name__` tells which one is in place.
        super().__init__(package.__name__, package.__doc__)
        self.__dict__.update(__all__=package.__all__, __path__=package.__path__,
                             __file__=package.__file__, _package=package)

    def __getattr__(self, name):
        package = self.__dict__["_package"]
        stdlib = self.__dict__.get("_stdlib")
        library = _green.patched_by() if stdlib is None and _saved is not None else None
        if library is not None:
            # Patched after install() (gevent and eventlet patch first thing, before the
            # program's imports): the stdlib's module from this lookup on, through this view
            # too (code that imported concurrent.futures before the patch holds it).
            stdlib = _saved[1]
            uninstall()
            self.__dict__["_stdlib"] = stdlib
            _green.stays_stdlib(library, "cfutures.install() was undone")
        if stdlib is not None:
            return getattr(stdlib, name)
        if name in package._EXTENSIONS:
            raise AttributeError(f"module 'concurrent.futures' has no attribute {name!r}")
        return getattr(package, name)

    def __dir__(self):
        package = self.__dict__["_package"]
        return sorted(set(dir(package)) - package._EXTENSIONS)


def _replacements():
    import cfutures
    from cfutures import _base, process, thread
    replacements = {"concurrent.futures": _PackageView(cfutures), "concurrent.futures._base": _base,
                    "concurrent.futures.thread": thread, "concurrent.futures.process": process}
    if "InterpreterPoolExecutor" in cfutures._LAZY:  # 3.12+
        from cfutures import interpreter
        replacements["concurrent.futures.interpreter"] = interpreter
    return replacements


def install():
    """Make ``import concurrent.futures`` (and its submodules) resolve to cfutures."""
    global _saved
    if _saved is not None:
        return
    import cfutures
    if not cfutures.NATIVE:
        # A portable build (cfutures/_portable.py): concurrent.futures is the stdlib already.
        _saved = ({}, None, {})
        return
    library = _green.patched_by()
    if library is not None:
        _green.stays_stdlib(library, "cfutures.install() left concurrent.futures alone")
        return
    import concurrent
    import concurrent.futures.process  # noqa: F401  (load the originals before replacing them)
    import concurrent.futures.thread  # noqa: F401
    replacements = _replacements()  # (cfutures.interpreter loads the stdlib's interpreter module)
    stdlib = concurrent.futures
    patched = {}  # public name -> the stdlib module's own entry (_MISSING: a lazy one, not loaded)
    for name in replacements["concurrent.futures"].__all__:  # the stdlib's, and 3.12's IPE
        ours = getattr(replacements["concurrent.futures"], name)
        if stdlib.__dict__.get(name, _MISSING) is not ours:
            patched[name] = stdlib.__dict__.get(name, _MISSING)
    _saved = ({name: sys.modules.get(name) for name in _NAMES}, stdlib, patched)
    for name in patched:
        setattr(stdlib, name, getattr(replacements["concurrent.futures"], name))
    sys.modules.update(replacements)
    concurrent.futures = replacements["concurrent.futures"]


def uninstall():
    """Undo install(): concurrent.futures is the stdlib's again."""
    global _saved
    if _saved is None:
        return
    import concurrent
    modules, stdlib, patched = _saved
    if stdlib is None:  # installed in a portable build: nothing was replaced
        _saved = None
        return
    for name, module in modules.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    for name, value in patched.items():
        if value is _MISSING:
            stdlib.__dict__.pop(name, None)  # lazily loaded again, from the stdlib's submodule
        else:
            setattr(stdlib, name, value)
    concurrent.futures = stdlib
    _saved = None


def installed():
    """Whether install() is in effect."""
    return _saved is not None
