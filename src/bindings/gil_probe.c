/* Where the main interpreter's GIL says whether it is held: see gil_probe.h for why we read it.
 *
 * This is C, not C++, because it reads CPython's internal headers (Py_BUILD_CORE_MODULE), which
 * are written for a C compiler. It only computes one address, once, at import, and checks it
 * before anyone uses it:
 *   - 3.9-3.11: the GIL is _PyRuntime.ceval.gil (one per process);
 *   - 3.12: the main interpreter's `ceval.gil` pointer, which must point at its own `_gil`;
 *   - 3.13+: the offsets CPython publishes for out-of-process debuggers (_PyRuntime's
 *     debug_offsets, filled in by the running interpreter itself, so they hold whatever patch
 *     release runs), with the cookie and the version checked first.
 * Then, with the GIL held by the importing thread, the GIL must read "locked" and name this
 * thread as its last holder. Any mismatch (a layout this file does not know) leaves the probe
 * off, which is the behaviour without it.
 *
 * Free-threaded builds (3.13t+) have the GIL too, switched off unless PYTHON_GIL=1 or a module
 * that needs it turns it on, possibly later: there the probe also reads the GIL's `enabled`
 * field, and the GIL counts as held only while enabled and locked. While it is off at import,
 * the `locked` field cannot be checked against this thread; the offsets are the runtime's own
 * debug offsets, checked as above.
 */
#define Py_BUILD_CORE_MODULE 1
#include <Python.h>

#include <string.h>

#include "gil_probe.h"

#if PY_VERSION_HEX >= 0x030D0000 || (!defined(Py_GIL_DISABLED) && !defined(EXPERIMENTAL_ISOLATED_SUBINTERPRETERS))
#  if PY_VERSION_HEX >= 0x030D0000
#    include "internal/pycore_runtime.h"
#  elif PY_VERSION_HEX >= 0x030C0000
#    include "internal/pycore_interp.h"
#  else
#    include "internal/pycore_runtime.h"
#  endif
#  define CFUTURES_GIL_PROBE_BUILT 1
#endif

static const int* g_locked = NULL;
static const int* g_enabled = NULL;

const int* cfutures_gil_locked_flag(void) { return g_locked; }
const int* cfutures_gil_enabled_flag(void) { return g_enabled; }

#ifdef CFUTURES_GIL_PROBE_BUILT
/* The `locked`, `last_holder` (and on free-threaded builds `enabled`) fields of one GIL, or 0
 * when the layout is not the expected one. */
static int find_gil(const int** locked, const void** holder, const int** enabled) {
    PyInterpreterState* interp = PyInterpreterState_Main();
    if (!interp) return 0;
#  if PY_VERSION_HEX >= 0x030D0000
    const _Py_DebugOffsets* d = &_PyRuntime.debug_offsets;
    if (memcmp(d->cookie, _Py_Debug_Cookie, sizeof d->cookie) != 0) return 0;
    if ((d->version >> 16) != ((unsigned long long)PY_VERSION_HEX >> 16)) return 0;
    const char* base = (const char*)interp;
    const char* gil = *(const char* const*)(base + d->interpreter_state.ceval_gil);
    if (gil != base + d->interpreter_state.gil_runtime_state) return 0;  /* its own GIL */
    if (d->free_threaded)  /* unlike the others, an offset inside the GIL's own struct */
        *enabled = (const int*)(gil + d->interpreter_state.gil_runtime_state_enabled);
    *locked = (const int*)(base + d->interpreter_state.gil_runtime_state_locked);
    *holder = *(const void* const*)(base + d->interpreter_state.gil_runtime_state_holder);
#  elif PY_VERSION_HEX >= 0x030C0000
    if (interp->ceval.gil != &interp->_gil) return 0;
    *locked = (const int*)&interp->_gil.locked;
    *holder = (const void*)_Py_atomic_load_relaxed(&interp->_gil.last_holder);
#  else
    *locked = (const int*)&_PyRuntime.ceval.gil.locked;
    *holder = (const void*)_Py_atomic_load_relaxed(&_PyRuntime.ceval.gil.last_holder);
#  endif
    return 1;
}
#endif

int cfutures_gil_probe_init(void) {
    g_locked = g_enabled = NULL;
#ifdef CFUTURES_GIL_PROBE_BUILT
    const int* locked = NULL;
    const int* enabled = NULL;
    const void* holder = NULL;
    if (!find_gil(&locked, &holder, &enabled)) return 0;
    if (!enabled || __atomic_load_n(enabled, __ATOMIC_RELAXED)) {
        /* Called with the GIL held: it must say so, and name us. */
        if (__atomic_load_n(locked, __ATOMIC_RELAXED) != 1) return 0;
        if (holder != (const void*)PyThreadState_Get()) return 0;
    }
    g_locked = locked;
    g_enabled = enabled;
    return 1;
#else
    return 0;
#endif
}
