// What the libFuzzer targets share: the input as a NUL-terminated string or as a file. Each target feeds
// one reader arbitrary bytes; the reader may refuse them (any status) but must not crash, leak or hang.
#ifndef IB_FUZZ_H
#define IB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// The bytes with a NUL after them (malloc'd; the caller frees).
char *fuzz_string(const uint8_t *data, size_t size);
// Writes the bytes to `name` in the target's scratch folder (made once, under $TMPDIR) and returns its path.
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);
// The scratch folder itself.
const char *fuzz_dir(void);
// Makes `rel` and its missing parents inside the scratch folder; returns its path (static storage).
const char *fuzz_mkdirs(const char *rel);

#endif
