// Label-mask PNGs (raw indices), read from a file as segmentation masks are.
#include "data/data.h"
#include "tests/fuzz/fuzz.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *idx = NULL;
    int h, w;
    ib_decode_png_indices(fuzz_file("mask.png", data, size), &idx, &h, &w);
    free(idx);
    return 0;
}
