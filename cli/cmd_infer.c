// ibnas infer: run a checkpoint's network in eval mode on a float32 batch stored in HDF5.
#include "cli/cli.h"
#include "layers/layers.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ibnas infer --model CKPT.h5 --input X.h5 --output Y.h5 [--batch B] [--threads T]\n\n"
            "Runs the checkpoint's network in eval mode (BN running statistics, no dropout).\n"
            "  --model    an ibnas checkpoint (tools/torch2ibnas.py converts PyTorch weights)\n"
            "  --input    HDF5 file with dataset /x: float32 [N, 3, H, W], already normalised\n"
            "  --output   HDF5 file to write, dataset /y: float32 [N, classes] logits\n"
            "  --batch    images per forward pass (default 32)\n"
            "  --threads  threads for our loops and OpenBLAS (default: all cores)\n");
}

int cmd_infer(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int batch = 32, threads = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (cli_flag_str(argc, argv, &i, "--model", &model, &bad) || cli_flag_str(argc, argv, &i, "--input", &input, &bad) ||
            cli_flag_str(argc, argv, &i, "--output", &output, &bad) || cli_flag_int(argc, argv, &i, "--batch", &batch, &bad) ||
            cli_flag_int(argc, argv, &i, "--threads", &threads, &bad))
            continue;
        fprintf(stderr, "ibnas infer: unknown flag '%s'\n", argv[i]);
        bad = 1;
    }
    if (!bad && (!model || !input || !output)) {
        fprintf(stderr, "ibnas infer: --model, --input and --output are required\n");
        bad = 1;
    }
    if (!bad && batch < 1) {
        fprintf(stderr, "ibnas infer: --batch must be at least 1\n");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        return 2;
    }
    ib_set_threads(threads);

    ib_net net;
    ib_status s = ib_ckpt_load(&net, model);
    if (s) return cli_report("infer", s);
    ib_h5 *in = NULL, *out = NULL;
    ib_ctx *ctx = NULL;
    float *y = NULL;
    int rc = 1;
    int ndim;
    int64_t shape[8];
    if ((s = ib_h5_open(&in, input)) || (s = ib_h5_shape(in, "x", &ndim, shape))) goto fail;
    if (ndim != 4) {
        s = ib_fail(IB_ERR_FORMAT, "%s: /x has rank %d, expected 4 (N, 3, H, W)", input, ndim);
        goto fail;
    }
    if (shape[1] != 3) {
        s = ib_fail(IB_ERR_FORMAT, "%s: /x has %lld channels, the network takes 3 (N, 3, H, W)", input, (long long)shape[1]);
        goto fail;
    }
    int64_t n = shape[0], h = shape[2], w = shape[3];
    if (h < 8 || w < 8) {
        s = ib_fail(IB_ERR_FORMAT, "%s: /x images are %lldx%lld, at least 8x8 needed", input, (long long)h, (long long)w);
        goto fail;
    }
    int classes = net.arch.classes;
    float *x = malloc(sizeof(float) * (size_t)(n * 3 * h * w));
    y = malloc(sizeof(float) * (size_t)(n * classes));
    if (!x || !y) {
        free(x);
        s = ib_fail(IB_ERR_NOMEM, "%s: out of memory for %lld images", input, (long long)n);
        goto fail;
    }
    s = ib_h5_read_f32(in, "x", x, n * 3 * h * w);
    if (s) {
        free(x);
        goto fail;
    }
    ctx = ib_ctx_new();
    ctx->recording = 0;
    ctx->training = 0;
    for (int64_t i = 0; i < n; i += batch) {
        int b = (int)(n - i < batch ? n - i : batch);
        ib_ctx_reset(ctx);
        ib_tensor xb;
        ib_tensor_init(&xb, x + i * 3 * h * w, 4, (int[]){b, 3, (int)h, (int)w});
        ib_tensor *logits = ib_net_forward(ctx, &net, &xb);
        memcpy(y + i * classes, logits->data, sizeof(float) * (size_t)(b * classes));
    }
    free(x);
    if ((s = ib_h5_create(&out, output))) goto fail;
    if ((s = ib_h5_write_f32(out, "y", y, 2, (int[]){(int)n, classes}))) {
        ib_h5_abort(out);
        out = NULL;
        goto fail;
    }
    s = ib_h5_close(out);
    out = NULL;
    if (s) goto fail;
    fprintf(stderr, "ibnas infer: %lld images -> %s (%d classes)\n", (long long)n, output, classes);
    rc = 0;
fail:
    if (rc) cli_report("infer", s);
    if (in) ib_h5_close(in);
    free(y);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    return rc;
}
