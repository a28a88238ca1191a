// The helpers of tests/fuzz/fuzz.h, compiled into every target.
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *fuzz_string(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

const char *fuzz_dir(void) {
    static char dir[512];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/ibnas_fuzz_XXXXXX", base && base[0] ? base : "/tmp");
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    return path;
}

const char *fuzz_mkdirs(const char *rel) {
    static char path[1024];
    int n = snprintf(path, sizeof path, "%s/%s", fuzz_dir(), rel);
    if (n < 0 || (size_t)n >= sizeof path) abort();
    for (char *p = path + strlen(fuzz_dir()) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    mkdir(path, 0755);
    return path;
}
