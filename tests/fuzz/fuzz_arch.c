// Arch JSON (layers/arch.c), and the network it describes built when it parses.
#include "layers/layers.h"
#include "tests/fuzz/fuzz.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fuzz_string(data, size);
    ib_arch a;
    if (ib_arch_parse(&a, s, "fuzz") == IB_OK) {
        char *back = ib_arch_to_json(&a);
        free(back);
        ib_arch_free(&a);
    }
    free(s);
    return 0;
}
