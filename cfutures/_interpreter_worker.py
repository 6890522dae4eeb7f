"""The part of an InterpreterPoolExecutor worker that runs inside its subinterpreter.

_cfutures.Subinterpreter loads this file from its source text, under this module's own name
(``cfutures._interpreter_worker``, without importing the cfutures package there), when it creates
the subinterpreter, and calls ``run`` for each call. So it uses the standard library only, and
what the main interpreter pickles as a reference to one of its functions (``function_from_code``)
resolves to the same function here.

``run(payload)`` takes ``pickle.dumps((call, main))``, where ``call`` is the pickled
``(fn, args, kwargs)`` and ``main`` says how to load the main interpreter's ``__main__`` here
(``("path", file)``, ``("module", name)`` or None), and returns a pickled answer:
  * ``(RETURNED, result)``;
  * ``(RAISED, pickled exception, excinfo)``: the call raised; the exception is pickled on its
    own (the main interpreter may fail to unpickle it, and still has excinfo), and None when it
    cannot be pickled (its traceback is then printed here, as the stdlib's pool does);
  * ``(UNPICKLABLE_CALL, excinfo)``: the call cannot be unpickled here;
  * ``(UNSHAREABLE_RESULT, excinfo)``: the call's result cannot be pickled.
``excinfo`` is ``(module, qualname, message, traceback text)`` of an exception.
"""

import pickle

RETURNED, RAISED, UNPICKLABLE_CALL, UNSHAREABLE_RESULT = range(4)


def function_from_code(code, module):
    """A function sent by its code (a stateless one: no closure, no globals but builtins)."""
    import marshal
    import types
    return types.FunctionType(marshal.loads(code), {"__name__": module})


def _excinfo(exc):
    import traceback
    kind = type(exc)
    return (kind.__module__, kind.__qualname__, str(exc), "".join(traceback.format_exception(exc)))


def _raised(exc):
    try:
        pickled = pickle.dumps(exc)
    except Exception:
        import sys
        import traceback
        print('exception is not shareable:', file=sys.stderr)
        traceback.print_exception(exc)
        pickled = None
    return pickle.dumps((RAISED, pickled, _excinfo(exc)))


_main_loaded = False


def _load_main(main):
    """Runs the main interpreter's ``__main__`` here as ``__mp_main__`` and makes it this
    interpreter's ``__main__``, as multiprocessing's spawned workers do: its functions and
    classes unpickle, and its ``if __name__ == "__main__":`` block does not run."""
    global _main_loaded
    _main_loaded = True
    import os
    import runpy
    import sys
    import types
    how, where = main
    module = types.ModuleType("__mp_main__")
    if how == "path":
        sys.path.insert(0, os.path.dirname(os.path.abspath(where)))
        content = runpy.run_path(where, run_name="__mp_main__")
    else:
        content = runpy.run_module(where, run_name="__mp_main__", alter_sys=False)
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _unpickle_call(call, main):
    try:
        return pickle.loads(call)
    except Exception:
        if main is None or _main_loaded or b"__main__" not in call:
            raise
    _load_main(main)
    return pickle.loads(call)


def run(payload):
    call, main = pickle.loads(payload)
    del payload
    try:
        fn, args, kwargs = _unpickle_call(call, main)
    except Exception as exc:
        module, qualname, message, text = _excinfo(exc)
        return pickle.dumps((UNPICKLABLE_CALL, (module, qualname,
                                                f"{message} (the call could not be unpickled)",
                                                text)))
    del call
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        return _raised(exc)
    try:
        return pickle.dumps((RETURNED, result))
    except Exception as exc:
        return pickle.dumps((UNSHAREABLE_RESULT, _excinfo(exc)))
