// Error reporting: a per-thread last message for failures from outside, and the always-on assert
// for programming errors.
#include "core.h"

#include <stdarg.h>
#include <stdlib.h>

static _Thread_local char last_msg[1024];

ib_status ib_fail(ib_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *ib_errmsg(void) { return last_msg; }

const char *ib_status_name(ib_status code) {
    switch (code) {
    case IB_OK: return "ok";
    case IB_ERR_IO: return "i/o error";
    case IB_ERR_FORMAT: return "format error";
    case IB_ERR_ARG: return "bad argument";
    case IB_ERR_NOMEM: return "out of memory";
    case IB_ERR_NOTFOUND: return "not found";
    case IB_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

void ib_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "%s:%d: assertion failed: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}
