// Export a checkpoint as ONNX and check the file's logits by hand: the public API alone (include/ibnas.h).
// Build it against an installed ibnas with
//     cc export_onnx.c $(pkg-config --cflags --libs ibnas) -o export_onnx
// Usage: export_onnx CKPT.h5 OUT.onnx [RES]
//   Writes OUT.onnx (batch dynamic, BN folded, opset 13) and prints ibnas' logits of one test image, to
//   compare with what ONNX Runtime gives for the same input (docs/EXPORT.md, tests/ort/ort_logits.js).
#include <ibnas.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: export_onnx CKPT.h5 OUT.onnx [RES]\n");
        return 2;
    }
    ib_model *m;
    ib_status s = ib_model_load(&m, argv[1]);
    if (s) {
        fprintf(stderr, "export_onnx: %s: %s\n", ib_strerror(s), ib_errmsg());
        return 1;
    }
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.res = argc > 3 ? atoi(argv[3]) : ib_model_input_size(m);
    o.batch = 0;   // dynamic: any number of images per run
    ib_export_report r;
    if ((s = ib_model_export(m, argv[2], &o, &r))) {
        fprintf(stderr, "export_onnx: %s: %s\n", ib_strerror(s), ib_errmsg());
        ib_model_free(m);
        return 1;
    }
    printf("%s: %d nodes, %d initializers, %lld bytes\n", argv[2], r.nodes, r.initializers, (long long)r.bytes);
    // One deterministic test image (a ramp, already normalised), through ibnas.
    int res = o.res, k = ib_model_classes(m);
    float *x = malloc(sizeof(float) * 3 * res * res), *z = malloc(sizeof(float) * k);
    for (int i = 0; i < 3 * res * res; i++) x[i] = (float)(i % 97) / 48.0f - 1.0f;
    if (x && z && ib_model_forward(m, x, 1, res, res, z) == IB_OK) {
        printf("ibnas logits:");
        for (int c = 0; c < k && c < 10; c++) printf(" %.6f", z[c]);
        printf("%s\n", k > 10 ? " ..." : "");
    }
    free(x), free(z);
    ib_model_free(m);
    return 0;
}
