/*
 * A fix for libfaketime 0.9.10 (Debian 12), loaded before it by `make test-clock-ahead`.
 *
 * The suite runs with the wall clock moved ahead and the monotonic clock left alone
 * (FAKETIME_DONT_FAKE_MONOTONIC=1): with a faked monotonic clock, Python's timed waits (a lock,
 * an event, a thread join) compute their deadline two years ahead and never return. But in that
 * mode libfaketime still shifts the deadline of clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME),
 * which is how Python's time.sleep() sleeps, by the wall clock's offset: the deadline lands two
 * years in the past and every time.sleep() fails with EINVAL. Here a monotonic sleep goes to the
 * kernel untouched, and every other clock to libfaketime as before.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *request,
                    struct timespec *remain)
{
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (clock_id == CLOCK_MONOTONIC) {
        /* clock_nanosleep returns the error number itself, not -1 and errno. */
        return syscall(SYS_clock_nanosleep, clock_id, flags, request, remain) == 0 ? 0 : errno;
    }
    if (next == NULL) {
        next = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))
            dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock_id, flags, request, remain);
}
