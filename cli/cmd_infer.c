// ibnas infer: run a checkpoint's network in eval mode on a float32 batch stored in HDF5.
#include "cli/cli.h"

#include <stdlib.h>

static const char *usage_text =
    "usage: ibnas infer --model CKPT.h5 --input X.h5 --output Y.h5 [--batch B] [--threads T]\n\n"
    "Runs the checkpoint's network in eval mode (BN running statistics, no dropout) on a float32 batch\n"
    "and writes the logits.\n";

int cmd_infer(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int batch = 32, threads = 0;
    const cli_flag flags[] = {
        {"--model", F_STR, &model, "an ibnas checkpoint (tools/torch2ibnas.py converts PyTorch weights)"},
        {"--input", F_STR, &input, "HDF5 file with dataset /x: float32 [N, 3, H, W], already normalised"},
        {"--output", F_STR, &output, "HDF5 file to write, dataset /y: float32 [N, classes] logits"},
        {"--batch", F_INT, &batch, "images per forward pass (default 32)"},
        {"--threads", F_INT, &threads, "threads for our loops and OpenBLAS (default: all cores)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("infer", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!model || !input || !output) {
        fprintf(stderr, "ibnas infer: --model, --input and --output are required (ibnas infer --help)\n");
        return 2;
    }
    if (batch < 1) {
        fprintf(stderr, "ibnas infer: --batch must be at least 1 (got %d)\n", batch);
        return 2;
    }
    ib_set_threads(threads);

    // The public API only (include/ibnas.h): load, read /x, forward in batches, write /y.
    ib_model *m = NULL;
    float *x = NULL, *y = NULL;
    int ndim = 0, rc = 1;
    int64_t shape[IB_ARRAY_MAX_DIMS];
    ib_status s;
    if ((s = ib_model_load(&m, model)) || (s = ib_array_load(input, "x", &x, &ndim, shape))) goto done;
    if (ndim != 4 || shape[1] != 3 || shape[2] < 8 || shape[3] < 8) {
        fprintf(stderr, "ibnas infer: %s: %s: /x ", ib_strerror(IB_ERR_FORMAT), input);
        if (ndim != 4) fprintf(stderr, "has rank %d, expected 4 (N, 3, H, W)\n", ndim);
        else if (shape[1] != 3)
            fprintf(stderr, "has %lld channels, the network takes 3 (N, 3, H, W)\n", (long long)shape[1]);
        else fprintf(stderr, "images are %lldx%lld, at least 8x8 needed\n", (long long)shape[2], (long long)shape[3]);
        goto done;
    }
    int64_t n = shape[0], h = shape[2], w = shape[3];
    int classes = ib_model_classes(m);
    if (!(y = malloc(sizeof(float) * (size_t)(n * classes + 1)))) {
        fprintf(stderr, "ibnas infer: %s: out of memory for %lld images\n", input, (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n && !s; i += batch) {
        int b = (int)(n - i < batch ? n - i : batch);
        s = ib_model_forward(m, x + i * 3 * h * w, b, (int)h, (int)w, y + i * classes);
    }
    if (!s) s = ib_array_save(output, "y", y, 2, (int64_t[]){n, classes});
    if (!s) {
        fprintf(stderr, "ibnas infer: %lld images -> %s (%d classes)\n", (long long)n, output, classes);
        rc = 0;
    }
done:
    if (s) cli_report("infer", s);
    free(x);
    free(y);
    ib_model_free(m);
    return rc;
}
