"""help() and IDE hovers read docstrings and signatures: every public method of cfutures'
classes (native ones included) documents itself as the stdlib's does, with the stdlib's
parameters (cfutures' opt-in keywords may follow them)."""

import concurrent.futures
import inspect
import pydoc

import pytest

import cfutures

CLASSES = [("Future", "Future"), ("Executor", "Executor"), ("ThreadPoolExecutor", "ThreadPoolExecutor"),
           ("ProcessPoolExecutor", "ProcessPoolExecutor")]


def public_methods(cls):
    """Functions and methods only: a class attribute such as 3.14's ThreadPoolExecutor.BROKEN
    (an exception class) is no method."""
    return sorted(name for name, value in vars_with_bases(cls).items()
                  if callable(value) and not isinstance(value, type)
                  and (not name.startswith("_") or name == "__init__"))


def vars_with_bases(cls):
    merged = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        merged.update(vars(klass))
    return merged


def parameters(fn):
    """The names and kinds a caller sees, self left out."""
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY) else "positional")
            for p in params]


@pytest.mark.parametrize("ours, theirs", CLASSES, ids=[c for c, _ in CLASSES])
def test_every_public_method_has_the_stdlibs_parameters_and_a_docstring(ours, theirs):
    ours, theirs = getattr(cfutures, ours), getattr(concurrent.futures, theirs)
    for name in public_methods(theirs):
        if name == "__init__" and theirs is concurrent.futures.Future:
            continue  # Future() takes no arguments; a C type's __init__ has no signature to read
        mine, std = getattr(ours, name), getattr(theirs, name)
        if getattr(mine, "__func__", mine) is getattr(std, "__func__", std):
            continue  # inherited as is (3.14's prepare_context): help() shows the stdlib's own
        assert (mine.__doc__ or "").strip(), f"{ours.__name__}.{name} has no docstring"
        # 3.14's ThreadPoolExecutor(**ctxkwargs) only forwards to prepare_context(), which the
        # stdlib's thread pool gives no keywords (its subclass InterpreterPoolExecutor does, and
        # cfutures' has its own): not compared.
        expected = [p for p in parameters(std) if p[0] != "ctxkwargs"]
        got = parameters(mine)
        # cfutures' opt-in keywords (and 3.14's map(buffersize=) on older Pythons) come last.
        assert got[:len(expected)] == expected, f"{ours.__name__}.{name}{inspect.signature(mine)}"
        assert all(kind == inspect.Parameter.KEYWORD_ONLY for _, kind in got[len(expected):]), name


def test_help_documents_timeout_and_the_exceptions_of_result():
    text = pydoc.render_doc(cfutures.Future.result, renderer=pydoc.plaintext)
    assert "result(self, /, timeout=None)" in text
    for word in ("timeout", "CancelledError", "TimeoutError"):
        assert word in text


def test_help_says_what_the_opt_in_options_change():
    assert "cancel_running=True" in cfutures.Future.cancel.__doc__
    submit = pydoc.render_doc(cfutures.ThreadPoolExecutor.submit, renderer=pydoc.plaintext)
    assert "submit(self, fn, /, *args, **kwargs)" in submit
    init = cfutures.ProcessPoolExecutor.__init__.__doc__
    for option in ("task_timeout", "cancel_running", "on_worker_death", "pickler", "max_queue"):
        assert option in init
    for option in ("max_queue", "context"):
        assert option in cfutures.ThreadPoolExecutor.__init__.__doc__
    for option in ("priority", "block", "block_timeout"):
        assert option in cfutures.ThreadPoolExecutor.options.__doc__
        assert option in cfutures.ProcessPoolExecutor.options.__doc__


@pytest.mark.parametrize("ours, theirs", CLASSES)
def test_the_class_shows_the_stdlibs_parameters(ours, theirs):
    # inspect.signature(cls), what help()'s header and IDE tooltips show: the executors' __new__
    # (*args, **kwargs) and Future's native __init__ hid them.
    mine = parameters(getattr(cfutures, ours))
    stdlib = [p for p in parameters(getattr(concurrent.futures, theirs)) if p[0] != "ctxkwargs"]  # as above
    assert mine[:len(stdlib)] == stdlib
    assert ("args", inspect.Parameter.VAR_POSITIONAL) not in mine
