// PNG and JPEG decoding (data/decode.c) from memory, as images are read from files and packs.
#include "data/data.h"
#include "tests/fuzz/fuzz.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *rgb = NULL;
    int h, w;
    if (ib_decode_memory(data, size, "fuzz", &rgb, &h, &w) == IB_OK) {
        volatile uint8_t sink = rgb[(size_t)h * w * 3 - 1];   // the whole image was written
        (void)sink;
    }
    free(rgb);
    return 0;
}
