// Latency tables (search/lut.c), CSV read from a file.
#include "search/search.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ib_lut *t = NULL;
    if (ib_lut_load(&t, fuzz_file("table.csv", data, size)) == IB_OK) ib_lut_free(t);
    return 0;
}
