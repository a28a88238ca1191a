// YOLO labels (data/read_coco.c): the bytes as the label file of the one image of a YOLO root whose
// names.txt lists three classes (the image is an empty file: opening parses every label, it decodes none).
#include "data/data.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char root[600];
    if (!root[0]) {
        fuzz_mkdirs("yolo/images/train");
        fuzz_mkdirs("yolo/labels/train");
        snprintf(root, sizeof root, "%s/yolo", fuzz_dir());
        const char *names = "person\ncar\ndog\n";
        fuzz_file("yolo/names.txt", (const uint8_t *)names, strlen(names));
        fuzz_file("yolo/images/train/a.jpg", data, 0);
    }
    fuzz_file("yolo/labels/train/a.txt", data, size);
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = IB_DS_YOLO;
    ib_dataset *ds = NULL;
    if (ib_dataset_open(&ds, root, &o) == IB_OK) ib_dataset_close(ds);
    return 0;
}
