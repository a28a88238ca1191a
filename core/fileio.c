// Files written whole, the way checkpoints are: into PATH.tmp, then flushed, synced to disk, closed and
// renamed over PATH. Every step's result is checked, so a full disk or a lost folder is an error naming
// the file and the system's reason, the temporary file is removed, and PATH keeps what it held before.
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

FILE *ib_wfile_open(const char *path, char *tmp, size_t tmp_size, ib_status *s) {
    if ((size_t)snprintf(tmp, tmp_size, "%s.tmp", path) >= tmp_size) {
        *s = ib_fail(IB_ERR_ARG, "%s: path too long", path);
        return NULL;
    }
    FILE *f = fopen(tmp, "wb");
    *s = f ? IB_OK : ib_fail(IB_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    return f;
}

ib_status ib_wfile_commit(FILE *f, const char *tmp, const char *path) {
    // A write that failed on the way left the stream's error flag and, most likely still, its errno.
    int bad = ferror(f) != 0, err = bad ? errno : 0;
    errno = 0;
    if (fflush(f) != 0 && !bad) bad = 1, err = errno;
    if (!bad && fsync(fileno(f)) != 0) bad = 1, err = errno;
    if (fclose(f) != 0 && !bad) bad = 1, err = errno;
    if (!bad && rename(tmp, path) != 0) bad = 2, err = errno;
    if (!bad) return IB_OK;
    unlink(tmp);
    if (bad == 2) return ib_fail(IB_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(err));
    return ib_fail(IB_ERR_IO, "%s: cannot write %s: %s", path, tmp, err ? strerror(err) : "write error");
}

void ib_wfile_discard(FILE *f, const char *tmp) {
    if (f) fclose(f);
    unlink(tmp);
}

ib_status ib_write_file(const char *path, const void *data, size_t n) {
    size_t tn = strlen(path) + 5;
    char *tmp = malloc(tn);
    if (!tmp) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    ib_status s;
    FILE *f = ib_wfile_open(path, tmp, tn, &s);
    if (f) {
        if (n) fwrite(data, 1, n, f);   // a short write sets the stream's error flag, which the commit reports
        s = ib_wfile_commit(f, tmp, path);
    }
    free(tmp);
    return s;
}

int ib_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int r = fsync(fd), err = errno;
    close(fd);
    errno = err;
    return r;
}
