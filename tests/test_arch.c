// Arch files, network construction, checkpoints through `ibnas infer`, and the command's errors.
#include "layers/layers.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(mobilenetv2_matches_torchvision_counts) {
    ib_arch a;
    ib_arch_mobilenetv2(&a, 1.0f, 1000);
    CHECK(a.n_blocks == 17 && a.stem_out == 32 && a.head_out == 1280, "shape of the arch");
    ib_net net;
    CHECK(ib_net_build(&net, &a) == IB_OK, "build: %s", ib_errmsg());
    // torchvision.models.mobilenet_v2(): sum(p.numel() for p in m.parameters()) == 3504872,
    // 52 BN layers with running_mean and running_var: 2 * 17056 buffer floats.
    CHECK(ib_net_param_count(&net) == 3504872, "parameters: %lld", (long long)ib_net_param_count(&net));
    CHECK(net.ps.numel_buffers == 34112, "buffers: %lld", (long long)net.ps.numel_buffers);
    CHECK(ib_params_find(&net.ps, "features.3.conv.1.0.weight") && ib_params_find(&net.ps, "features.1.conv.1.weight") &&
              ib_params_find(&net.ps, "features.18.1.running_var") && ib_params_find(&net.ps, "classifier.1.bias"),
          "torchvision names");
    ib_net_free(&net);
    ib_arch_free(&a);
    // Width 0.5: torchvision gives 1968680 parameters for 1000 classes.
    ib_arch_mobilenetv2(&a, 0.5f, 1000);
    CHECK(ib_net_build(&net, &a) == IB_OK, "build");
    CHECK(ib_net_param_count(&net) == 1968680, "width 0.5 parameters: %lld", (long long)ib_net_param_count(&net));
    ib_net_free(&net);
    ib_arch_free(&a);
}

TEST(arch_json_round_trip) {
    const char *text =
        "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"mix\", \"classes\": 7, \"input\": 64,"
        " \"act\": \"relu6\", \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2},"
        " \"blocks\": ["
        "  {\"op\": \"fused\", \"kernel\": 3, \"expand\": 4, \"out\": 24, \"stride\": 2},"
        "  {\"op\": \"tucker\", \"kernel\": 5, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 24, \"stride\": 1},"
        "  {\"op\": \"gcibn\", \"kernel\": 3, \"expand\": 4, \"groups\": 2, \"out\": 32, \"stride\": 2},"
        "  {\"op\": \"ibn\", \"kernel\": 7, \"expand\": 6, \"out\": 32, \"stride\": 1, \"se\": 0.25, \"act\": \"hswish\"},"
        "  {\"op\": \"skip\"}],"
        " \"head\": {\"out\": 64, \"dropout\": 0.1}}";
    ib_arch a, b;
    CHECK(ib_arch_parse(&a, text, "mix.arch.json") == IB_OK, "parse: %s", ib_errmsg());
    CHECK(a.n_blocks == 5 && a.blocks[1].op == IB_BLOCK_TUCKER && a.blocks[2].groups == 2 && a.blocks[3].se == 0.25f &&
              a.blocks[3].act == IB_ACT_HSWISH && a.blocks[4].op == IB_BLOCK_SKIP && a.blocks[4].out == 32,
          "fields");
    char *json = ib_arch_to_json(&a);
    CHECK(ib_arch_parse(&b, json, "written") == IB_OK, "reparse: %s", ib_errmsg());
    char *json2 = ib_arch_to_json(&b);
    CHECK(!strcmp(json, json2), "round trip differs:\n%s\n%s", json, json2);
    CHECK(memcmp(a.blocks, b.blocks, sizeof(ib_block_cfg) * 5) == 0, "block configs differ");
    free(json);
    free(json2);
    ib_arch_free(&b);
    // The network builds; each op has the stages DESIGN.md gives it.
    ib_net net;
    CHECK(ib_net_build(&net, &a) == IB_OK, "build: %s", ib_errmsg());
    CHECK(net.blocks[0].n_stages == 1 && net.blocks[0].stages[0].conv.k == 3 && net.blocks[0].stages[0].conv.cout == 64,
          "fused: KxK expand to 4*16");
    CHECK(net.blocks[1].n_stages == 2 && net.blocks[1].stages[0].conv.cout == 8 && net.blocks[1].stages[1].conv.k == 5 &&
              net.blocks[1].stages[1].conv.cout == 24 && net.blocks[1].residual,
          "tucker: 1x1 to 0.25*24 -> 8, 5x5 to 0.75*24 -> 24 (multiples of 8), residual");
    CHECK(net.blocks[2].stages[0].conv.groups == 2 && net.blocks[2].stages[0].conv.cout == 96, "gcibn groups");
    CHECK(net.blocks[3].n_stages == 2 && net.blocks[3].has_se && net.blocks[3].stages[1].conv.groups == 192, "ibn + se");
    ib_net_init_weights(&net, 3);
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 0;
    ctx->recording = 0;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 32, 32});
    fill_normal(x, 5, 1);
    ib_tensor *y = ib_net_forward(ctx, &net, x);
    CHECK(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 7, "logits shape");
    ib_tensor *f = ib_net_features(ctx, &net, x);
    CHECK(f->shape[1] == 64 && f->shape[2] == 4 && f->shape[3] == 4, "features: stride 8 gives 4x4");
    // Taps for multi-level heads: the last block at stride 4 is blocks[1], at stride 8 the skip (blocks[4]).
    CHECK(ib_arch_last_block_at_stride(&a, 2) == -1 && ib_arch_last_block_at_stride(&a, 4) == 1 &&
              ib_arch_last_block_at_stride(&a, 8) == 4 && ib_arch_last_block_at_stride(&a, 16) == -2,
          "last block per stride");
    ib_tensor *taps[3];
    ib_tensor *g = ib_net_features_taps(ctx, &net, x, 3, (int[]){-1, 1, 3}, taps);
    CHECK(taps[0]->shape[1] == 16 && taps[0]->shape[2] == 16 && taps[1]->shape[1] == 24 && taps[1]->shape[2] == 8 &&
              taps[2]->shape[1] == 32 && taps[2]->shape[2] == 4,
          "tap shapes");
    CHECK(g->shape[1] == 64 && !memcmp(g->data, f->data, sizeof(float) * (size_t)ib_numel(f)), "taps change nothing");
    ib_ctx_free(ctx);
    ib_net_free(&net);
    ib_arch_free(&a);
}

static void expect_error(const char *text, const char *want1, const char *want2) {
    ib_arch a;
    ib_status s = ib_arch_parse(&a, text, "bad.arch.json");
    CHECK(s == IB_ERR_FORMAT, "accepted: %s", text);
    CHECK(strstr(ib_errmsg(), "bad.arch.json") && strstr(ib_errmsg(), want1) && (!want2 || strstr(ib_errmsg(), want2)),
          "message '%s' lacks '%s' / '%s'", ib_errmsg(), want1, want2 ? want2 : "");
}

#define HDR "{\"format\": \"ibnas-arch\", \"version\": 1, \"classes\": 10, "

TEST(arch_errors_name_the_field) {
    expect_error("{\"format\": \"ibnas-arch\",\n  \"version\": 1,,}", ":2:", NULL);     // syntax: line 2
    expect_error(HDR "\"blocks\": [{\"op\": \"ibn\", \"kernel\": 4, \"expand\": 6, \"out\": 24}]}", "blocks[0]", "kernel");
    expect_error(HDR "\"blocks\": [{\"op\": \"ibn\", \"out\": 24, \"strde\": 2}]}", "blocks[0].strde", "unknown field");
    expect_error(HDR "\"blocks\": [{\"op\": \"conv\", \"out\": 24}]}", "blocks[0].op", NULL);
    expect_error(HDR "\"blocks\": [{\"op\": \"ibn\", \"out\": 24}, {\"op\": \"skip\", \"stride\": 2}]}", "blocks[1]", "skip");
    expect_error(HDR "\"blocks\": [{\"op\": \"gcibn\", \"groups\": 3, \"out\": 24}]}", "blocks[0]", "groups");
    expect_error(HDR "\"blocks\": [{\"op\": \"ibn\", \"out\": \"24\"}]}", "blocks[0].out", "integer");
    expect_error("{\"format\": \"ibnas-pack\", \"version\": 1, \"blocks\": []}", "format", "ibnas-arch");
    expect_error(HDR "\"stem\": {\"out\": 16}}", "blocks", "missing");
}

// Writes a small random network as a checkpoint and a batch; `ibnas infer` must reproduce the
// in-process logits, and reject bad input with a message and a non-zero exit.
TEST(infer_command) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    ib_arch a;
    ib_arch_mobilenetv2(&a, 0.35f, 5);
    ib_net net;
    CHECK(ib_net_build(&net, &a) == IB_OK, "build");
    ib_net_init_weights(&net, 9);
    for (int i = 0; i < net.ps.n; i++)   // non-trivial running statistics
        if (net.ps.is_buffer[i])
            for (int64_t j = 0; j < ib_numel(net.ps.t[i]); j++) net.ps.t[i]->data[j] += 0.1f * (float)(j % 7);
    char ckpt[512], xin[512], yout[512], bad4[512], unused[512], errf[512];
    const char *dir = test_tmpdir();
    snprintf(ckpt, sizeof ckpt, "%s/infer.ckpt.h5", dir), snprintf(xin, sizeof xin, "%s/infer_x.h5", dir);
    snprintf(yout, sizeof yout, "%s/infer_y.h5", dir), snprintf(bad4, sizeof bad4, "%s/infer_bad.h5", dir);
    snprintf(unused, sizeof unused, "%s/unused.h5", dir), snprintf(errf, sizeof errf, "%s/infer_err.txt", dir);
    CHECK(ib_ckpt_save(&net, ckpt, NULL, NULL) == IB_OK, "save: %s", ib_errmsg());
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 0;
    ctx->recording = 0;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){3, 3, 40, 40});
    fill_normal(x, 21, 1);
    ib_tensor *y = ib_net_forward(ctx, &net, x);
    ib_h5 *f;
    CHECK(ib_h5_create(&f, xin) == IB_OK && ib_h5_write(f, "x", x) == IB_OK && ib_h5_close(f) == IB_OK, "write x");
    CHECK(ib_h5_create(&f, bad4) == IB_OK && ib_h5_write_f32(f, "x", x->data, 4, (int[]){3, 1, 120, 40}) == IB_OK &&
              ib_h5_close(f) == IB_OK,
          "write bad x");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s infer --model %s --input %s --output %s --batch 2 2>/dev/null", bin, ckpt, xin, yout);
    CHECK(system(cmd) == 0, "infer failed: %s", cmd);
    CHECK(ib_h5_open(&f, yout) == IB_OK, "open y: %s", ib_errmsg());
    char msg[256];
    int ok = ref_compare(f, "y", y, 1e-6, msg, sizeof msg);
    ib_h5_close(f);
    CHECK(ok, "logits differ: %s", msg);
    // Bad input: a non-zero exit and a message naming the file.
    char missing_arg[600], bad_arg[600], swapped_arg[1200];
    snprintf(missing_arg, sizeof missing_arg, "--input %s/nonexistent_x.h5", dir);
    snprintf(bad_arg, sizeof bad_arg, "--input %s", bad4);
    snprintf(swapped_arg, sizeof swapped_arg, "--model %s --input %s", xin, xin);
    const char *cases[][2] = {{missing_arg, "nonexistent_x.h5"},
                              {bad_arg, "channels"},
                              {swapped_arg, "not an ibnas checkpoint"},
                              {"--batch 0", "--batch"}};
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s infer --model %s --input %s --output %s %s 2>%s", bin, ckpt, xin, unused,
                 cases[i][0], errf);
        int rc = system(cmd);
        CHECK(rc != 0, "accepted: %s", cases[i][0]);
        FILE *e = fopen(errf, "r");
        char err[1024] = {0};
        if (e) {
            size_t n = fread(err, 1, sizeof err - 1, e);
            err[n] = 0;
            fclose(e);
        }
        CHECK(strstr(err, cases[i][1]), "message for '%s' lacks '%s': %s", cases[i][0], cases[i][1], err);
    }
    CHECK(access(unused, F_OK) != 0, "a failed run left an output file");
    unlink(ckpt), unlink(xin), unlink(yout), unlink(bad4);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    ib_arch_free(&a);
}

// The skip block removes its layer: a network with a skip gives the logits and input gradient of the same
// network without that layer, its other weights the same, bit for bit (the block-level parity case
// against PyTorch compares an identity with an identity, which a residual added by mistake would pass
// only there).
TEST(skip_block_removes_the_layer) {
    const char *head = "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"s\", \"task\": \"classify\", \"classes\": 5,"
                       " \"input\": 16, \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2}, \"head\": {\"out\": 32, \"dropout\": 0},"
                       " \"blocks\": [{\"op\": \"ibn\", \"expand\": 3, \"out\": 16, \"stride\": 2}, ";
    const char *tail = "{\"op\": \"fused\", \"expand\": 2, \"out\": 16, \"stride\": 1}]}";
    char with[1024], without[1024];
    snprintf(with, sizeof with, "%s{\"op\": \"skip\"}, %s", head, tail);
    snprintf(without, sizeof without, "%s%s", head, tail);
    ib_arch a, b;
    CHECK(ib_arch_parse(&a, with, "with skip") == IB_OK, "%s", ib_errmsg());
    CHECK(ib_arch_parse(&b, without, "without skip") == IB_OK, "%s", ib_errmsg());
    ib_net na, nb;
    CHECK(ib_net_build(&na, &a) == IB_OK && ib_net_build(&nb, &b) == IB_OK, "build: %s", ib_errmsg());
    ib_net_init_weights(&na, 3);
    int same_params = na.ps.n == nb.ps.n;
    for (int i = 0; i < na.ps.n && same_params; i++) {   // the same tensors in the same order
        same_params = ib_same_shape(na.ps.t[i], nb.ps.t[i]);
        if (same_params) memcpy(nb.ps.t[i]->data, na.ps.t[i]->data, sizeof(float) * (size_t)ib_numel(na.ps.t[i]));
    }
    float *logits[2] = {0}, *gx[2] = {0};
    int64_t ny = 0, nx = 0;
    for (int k = 0; k < 2 && same_params; k++) {
        ib_ctx *ctx = ib_ctx_new();
        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 16, 16});
        fill_normal(x, 5, 1);
        x->requires_grad = 1;
        ib_tensor *y = ib_net_forward(ctx, k ? &nb : &na, x);
        ny = ib_numel(y), nx = ib_numel(x);
        ib_backward(ctx, y, NULL);
        logits[k] = malloc(sizeof(float) * (size_t)ny), gx[k] = malloc(sizeof(float) * (size_t)nx);
        memcpy(logits[k], y->data, sizeof(float) * (size_t)ny), memcpy(gx[k], x->grad, sizeof(float) * (size_t)nx);
        ib_ctx_free(ctx);
    }
    int same_out = same_params && !memcmp(logits[0], logits[1], sizeof(float) * (size_t)ny) &&
                   !memcmp(gx[0], gx[1], sizeof(float) * (size_t)nx);
    for (int k = 0; k < 2; k++) free(logits[k]), free(gx[k]);
    ib_net_free(&na), ib_net_free(&nb), ib_arch_free(&a), ib_arch_free(&b);
    CHECK(same_params, "the skip layer changed the parameters (%d against %d tensors)", na.ps.n, nb.ps.n);
    CHECK(same_out, "logits or input gradient differ from the network without the skip layer");
}
