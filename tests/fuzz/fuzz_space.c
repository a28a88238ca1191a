// Search-space JSON (search/space.c).
#include "search/search.h"
#include "tests/fuzz/fuzz.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fuzz_string(data, size);
    ib_space sp;
    if (ib_space_parse(&sp, s, "fuzz") == IB_OK) ib_space_free(&sp);
    free(s);
    return 0;
}
