// COCO annotations (data/read_coco.c): the JSON under a root whose images/train holds a.png and b.jpg
// (empty files: the reader checks they exist, it does not decode them when opening).
#include "data/data.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char root[600];
    if (!root[0]) {
        fuzz_mkdirs("coco/annotations");
        fuzz_mkdirs("coco/images/train");
        snprintf(root, sizeof root, "%s/coco", fuzz_dir());
        fuzz_file("coco/images/train/a.png", data, 0);
        fuzz_file("coco/images/train/b.jpg", data, 0);
    }
    fuzz_file("coco/annotations/instances_train.json", data, size);
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = IB_DS_COCO;
    ib_dataset *ds = NULL;
    if (ib_dataset_open(&ds, root, &o) == IB_OK) ib_dataset_close(ds);
    return 0;
}
