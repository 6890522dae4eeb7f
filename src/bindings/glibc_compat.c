/* Keeps the extension loadable on glibc 2.34 (RHEL 9, Ubuntu 22.04's 2.35) when it is built on a
 * newer one (Debian bookworm's 2.36), so that one manylinux_2_34 wheel serves them.
 *
 * The static libstdc++ (CMakeLists.txt) brings std::random_device along with its string code,
 * and GCC 12's random_device calls arc4random and getentropy, which bind to glibc 2.36 and 2.25
 * at link time. cfutures never makes a random_device; these hidden definitions satisfy those
 * references inside this module, so the wheel needs nothing newer than GLIBC_2.34 (pthread_create
 * and its kin moved into libc there; `auditwheel show` lists what remains). Both read the
 * kernel's getrandom (Linux 3.17), as glibc's do.
 *
 * A release built in a manylinux image (pyproject.toml's [tool.cibuildwheel]) has an older glibc
 * that lacks both, and this file changes nothing there.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CFUTURES_HIDDEN __attribute__((visibility("hidden")))

static int fill_random(void* buffer, size_t length) {
    unsigned char* at = buffer;
    while (length > 0) {
        long got = syscall(SYS_getrandom, at, length, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        at += got;
        length -= (size_t)got;
    }
    return 0;
}

CFUTURES_HIDDEN int getentropy(void* buffer, size_t length) {
    if (length > 256) {
        errno = EIO;
        return -1;
    }
    return fill_random(buffer, length);
}

CFUTURES_HIDDEN uint32_t arc4random(void) {
    uint32_t value = 0;
    if (fill_random(&value, sizeof value) != 0) abort();  /* as glibc's own does */
    return value;
}
