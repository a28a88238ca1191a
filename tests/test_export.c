// ONNX export (api/export.c): the written file parses back with protobuf-c and holds the graph the arch
// asks for (node counts, initializer names and shapes, folded weights, metadata); bad options fail with
// messages; and ONNX Runtime (onnxruntime-node, through node) gives the logits ibnas gives, to 1e-4, for
// mobilenetv2, an arch of every block type with squeeze-excite and h-swish, and a subnet extracted from a
// supernet by the command. The ONNX Runtime cases skip, saying why, where node or the package is absent;
// with npm and the registry reachable the package is installed once into a cache folder
// ($IBNAS_ORT_DIR, default ~/.cache/ibnas-bench/ort, the one ../shared/bench/ort_mobilenetv2_infer.sh uses).
#include "tests/test.h"

#include "api/api.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ORT_VERSION "1.30.0"
#define PARITY_TOL 1e-4

// Every block type, squeeze-excite, h-swish (per block and as the network's activation), a skip and
// residuals; stride 2 on odd and even sides.
static const char *all_blocks_arch =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"all_blocks\", \"classes\": 7, \"input\": 40, "
    "\"act\": \"relu6\", \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2}, \"blocks\": ["
    "{\"op\": \"ibn\", \"kernel\": 3, \"expand\": 1, \"out\": 16, \"stride\": 1},"
    "{\"op\": \"fused\", \"kernel\": 3, \"expand\": 2, \"out\": 24, \"stride\": 2},"
    "{\"op\": \"skip\"},"
    "{\"op\": \"ibn\", \"kernel\": 5, \"expand\": 4, \"out\": 24, \"stride\": 1, \"se\": 0.25, \"act\": \"hswish\"},"
    "{\"op\": \"gcibn\", \"kernel\": 3, \"expand\": 4, \"groups\": 2, \"out\": 32, \"stride\": 2},"
    "{\"op\": \"gcibn\", \"kernel\": 5, \"expand\": 2, \"groups\": 4, \"out\": 32, \"stride\": 1, \"se\": 0.25},"
    "{\"op\": \"tucker\", \"kernel\": 3, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 48, \"stride\": 2},"
    "{\"op\": \"tucker\", \"kernel\": 5, \"r_in\": 0.75, \"r_out\": 0.25, \"out\": 48, \"stride\": 1, \"act\": \"hswish\"},"
    "{\"op\": \"fused\", \"kernel\": 5, \"expand\": 3, \"out\": 64, \"stride\": 1, \"act\": \"relu\"}"
    "], \"head\": {\"out\": 96, \"dropout\": 0.2}}";

// Trained-looking statistics: BN's running mean and variance, scale and shift away from their initial
// values (so folding changes every weight), biases non-zero, and a classifier large enough that the logits
// are of order one (torchvision's N(0, 0.01) leaves them near 1e-8, too small for a 1e-4 check to mean much).
static void randomise(ib_model *m, uint64_t seed) {
    ib_rng r;
    ib_rng_seed(&r, seed, 77);
    ib_params *ps = &m->net.ps;
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *t = ps->t[i];
        const char *leaf = strrchr(t->name, '.') + 1;
        int64_t n = ib_numel(t);
        for (int64_t j = 0; j < n; j++) {
            float u = ib_rng_uniform(&r);
            if (!strcmp(leaf, "running_var")) t->data[j] = 0.3f + 1.5f * u;
            else if (!strcmp(leaf, "running_mean")) t->data[j] = 0.4f * (u - 0.5f);
            else if (!strcmp(leaf, "bias")) t->data[j] = 0.2f * (u - 0.5f);
            else if (t->ndim == 1) t->data[j] = 0.6f + 0.8f * u;   // BN weight
            else if (t->ndim == 2) t->data[j] *= 40.0f;            // classifier
        }
    }
}

static void fill_input(float *x, int64_t n, uint64_t seed) {
    ib_rng r;
    ib_rng_seed(&r, seed, 3);
    for (int64_t i = 0; i < n; i++) x[i] = 4.0f * ib_rng_uniform(&r) - 2.0f;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) free(buf), buf = NULL;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static Onnx__ModelProto *parse(const char *path) {
    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    if (!buf) return NULL;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    free(buf);
    return mp;
}

static const Onnx__TensorProto *find_init(const Onnx__ModelProto *mp, const char *name) {
    for (size_t i = 0; i < mp->graph->n_initializer; i++)
        if (!strcmp(mp->graph->initializer[i]->name, name)) return mp->graph->initializer[i];
    return NULL;
}

static int count_op(const Onnx__ModelProto *mp, const char *op) {
    int k = 0;
    for (size_t i = 0; i < mp->graph->n_node; i++) k += !strcmp(mp->graph->node[i]->op_type, op);
    return k;
}

static const char *meta(const Onnx__ModelProto *mp, const char *key) {
    for (size_t i = 0; i < mp->n_metadata_props; i++)
        if (!strcmp(mp->metadata_props[i]->key, key)) return mp->metadata_props[i]->value;
    return NULL;
}

// The nodes the exporter must write, counted from the built network independently of its code: per
// conv-BN-act stage a Conv (+ BatchNormalization when kept) + the activation (h-swish below opset 14 is
// HardSigmoid and Mul), per SE six, per projection a Conv (+ BN), per residual an Add; then pool, flatten, gemm.
static int expected_nodes(const ib_net *net, int keep_bn, int opset) {
    int bn = keep_bn ? 1 : 0;
#define ACT_NODES(a) ((a) == IB_ACT_NONE ? 0 : (a) == IB_ACT_HSWISH && opset < 14 ? 2 : 1)
    int n = 1 + bn + ACT_NODES(net->stem.act);
    for (int i = 0; i < net->arch.n_blocks; i++) {
        const ib_block *b = &net->blocks[i];
        if (b->cfg.op == IB_BLOCK_SKIP) continue;
        for (int s = 0; s < b->n_stages; s++) n += 1 + bn + ACT_NODES(b->stages[s].act);
        n += 6 * b->has_se + 1 + bn + b->residual;
    }
    if (net->has_head) n += 1 + bn + ACT_NODES(net->head.act);
#undef ACT_NODES
    return n + 3;
}

static int dims_are(const Onnx__ValueInfoProto *vi, int ndim, const int64_t *d, const char *dyn) {
    const Onnx__TensorShapeProto *s = vi->type->tensor_type->shape;
    if ((int)s->n_dim != ndim) return 0;
    for (int i = 0; i < ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *x = s->dim[i];
        if (d[i] < 0 ? x->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM || strcmp(x->dim_param, dyn)
                     : x->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || x->dim_value != d[i])
            return 0;
    }
    return 1;
}

TEST(export_parses_back_folded) {
    ib_model *m;
    CHECK(ib_model_create(&m, "mobilenetv2:0.35", 10, 5) == IB_OK, "%s", ib_errmsg());
    randomise(m, 1);
    char path[600];
    snprintf(path, sizeof path, "%s/mnv2.onnx", test_tmpdir());
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.res = 64;
    ib_export_report r;
    ib_status s = ib_model_export(m, path, &o, &r);
    if (s) ib_model_free(m);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    Onnx__ModelProto *mp = parse(path);
    const ib_net *net = &m->net;
    int ok = 0;
    char why[2048] = "";
    if (!mp) snprintf(why, sizeof why, "%s does not parse as an ONNX ModelProto", path);
    else if (mp->ir_version != 7 || mp->n_opset_import != 1 || mp->opset_import[0]->version != 13)
        snprintf(why, sizeof why, "ir_version %lld, opset %lld", (long long)mp->ir_version,
                 mp->n_opset_import ? (long long)mp->opset_import[0]->version : -1LL);
    else if ((int)mp->graph->n_node != expected_nodes(net, 0, 13) || r.nodes != (int)mp->graph->n_node)
        snprintf(why, sizeof why, "%zu nodes (report %d), expected %d", mp->graph->n_node, r.nodes,
                 expected_nodes(net, 0, 13));
    else if (count_op(mp, "BatchNormalization") != 0 || count_op(mp, "Clip") != 35 || count_op(mp, "Add") != 10)
        snprintf(why, sizeof why, "BN %d, Clip %d, Add %d nodes (expected 0, 35, 10)", count_op(mp, "BatchNormalization"),
                 count_op(mp, "Clip"), count_op(mp, "Add"));
    else if (mp->graph->n_input != 1 || strcmp(mp->graph->input[0]->name, "input") ||
             !dims_are(mp->graph->input[0], 4, (int64_t[]){1, 3, 64, 64}, "N") || mp->graph->n_output != 1 ||
             strcmp(mp->graph->output[0]->name, "logits") || !dims_are(mp->graph->output[0], 2, (int64_t[]){1, 10}, "N"))
        snprintf(why, sizeof why, "graph input/output names or shapes");
    else if (!meta(mp, "ibnas.input_normalisation") || !strstr(meta(mp, "ibnas.input_normalisation"), "123.675") ||
             !meta(mp, "ibnas.arch") || !strstr(meta(mp, "ibnas.arch"), "\"ibnas-arch\"") ||
             strcmp(meta(mp, "ibnas.batchnorm") ? meta(mp, "ibnas.batchnorm") : "", "folded"))
        snprintf(why, sizeof why, "metadata_props lack the normalisation, the arch or the BN note");
    else ok = 1;
    // Initializers: every conv's weight and a bias for it, under the checkpoint's names and shapes; no BN
    // tensors; one folded value checked against the formula.
    for (int i = 0; ok && i < net->ps.n; i++) {
        const ib_tensor *t = net->ps.t[i];
        int is_bn = strstr(t->name, "running_") || (t->ndim == 1 && !find_init(mp, t->name) &&
                                                    !strstr(t->name, "classifier") && !strstr(t->name, ".fc"));
        const Onnx__TensorProto *it = find_init(mp, t->name);
        if (strstr(t->name, "running_")) {
            if (it) ok = 0, snprintf(why, sizeof why, "BN tensor %s kept though BN is folded", t->name);
            continue;
        }
        if (is_bn) continue;
        if (!it) {
            ok = 0, snprintf(why, sizeof why, "initializer %s missing", t->name);
            break;
        }
        int same = (int)it->n_dims == t->ndim && it->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
                   it->raw_data.len == sizeof(float) * (size_t)ib_numel(t);
        for (int d = 0; same && d < t->ndim; d++) same = it->dims[d] == t->shape[d];
        if (!same) ok = 0, snprintf(why, sizeof why, "initializer %s: shape or size differs", t->name);
    }
    if (ok) {   // features.5.conv.1.0.weight (a depthwise 3x3) folded with features.5.conv.1.1.*
        const Onnx__TensorProto *w = find_init(mp, "features.5.conv.1.0.weight"),
                                *b = find_init(mp, "features.5.conv.1.0.bias");
        const ib_block *blk = &net->blocks[4];
        const ib_cba *st = &blk->stages[1];
        int c = 3 % st->conv.cout;
        int64_t per = ib_numel(st->conv.w) / st->conv.cout;
        double sc = st->bn.w->data[c] / sqrt((double)st->bn.var->data[c] + st->bn.eps);
        float fw, fb;
        memcpy(&fw, w->raw_data.data + 4 * (c * per + 4), 4);
        memcpy(&fb, b->raw_data.data + 4 * c, 4);
        double ew = st->conv.w->data[c * per + 4] * sc, eb = st->bn.b->data[c] - st->bn.mean->data[c] * sc;
        if (fabs(fw - ew) > 1e-6 * fabs(ew) + 1e-9 || fabs(fb - eb) > 1e-6 * fabs(eb) + 1e-7)
            ok = 0, snprintf(why, sizeof why, "folded weight %g (expected %g), bias %g (expected %g)", fw, ew, fb, eb);
    }
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    ib_model_free(m);
    CHECK(ok, "%s", why);
    struct stat st;
    char tmp[620];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(stat(tmp, &st) != 0, "%s left behind", tmp);
}

TEST(export_parses_back_keep_bn_dynamic) {
    ib_model *m;
    CHECK(ib_model_create(&m, all_blocks_arch, 0, 2) == IB_OK, "%s", ib_errmsg());
    char path[600];
    snprintf(path, sizeof path, "%s/all_keep.onnx", test_tmpdir());
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.keep_bn = 1, o.batch = 0, o.opset = 11;
    ib_status s = ib_model_export(m, path, &o, NULL);
    if (s) ib_model_free(m);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    Onnx__ModelProto *mp = parse(path);
    int bns = 1 + 1;   // stem and head
    for (int i = 0; i < m->net.arch.n_blocks; i++)
        if (m->net.blocks[i].cfg.op != IB_BLOCK_SKIP) bns += m->net.blocks[i].n_stages + 1;
    int ok = mp && (int)mp->graph->n_node == expected_nodes(&m->net, 1, 11) && count_op(mp, "BatchNormalization") == bns &&
             count_op(mp, "HardSwish") == 0 && count_op(mp, "HardSigmoid") == 2 + 2 + 2 &&   // 2 SE, 2 hswish stages x2 blocks
             mp->ir_version == 6 && find_init(mp, "features.4.conv.2.fc1.weight") &&
             find_init(mp, "features.4.conv.2.fc2.bias") && find_init(mp, "features.5.conv.0.1.running_var") &&
             dims_are(mp->graph->input[0], 4, (int64_t[]){-1, 3, 40, 40}, "N") &&
             dims_are(mp->graph->output[0], 2, (int64_t[]){-1, 7}, "N");
    int nodes = mp ? (int)mp->graph->n_node : -1, bn_nodes = mp ? count_op(mp, "BatchNormalization") : -1,
        hsig = mp ? count_op(mp, "HardSigmoid") : -1;
    int expect = expected_nodes(&m->net, 1, 11);
    // grouped conv: group attribute = 2 on features.5.conv.0.0
    int group_ok = 0;
    for (size_t i = 0; mp && i < mp->graph->n_node; i++) {
        const Onnx__NodeProto *n = mp->graph->node[i];
        if (strcmp(n->op_type, "Conv") || strcmp(n->input[1], "features.5.conv.0.0.weight")) continue;
        for (size_t a = 0; a < n->n_attribute; a++)
            if (!strcmp(n->attribute[a]->name, "group")) group_ok = n->attribute[a]->i == 2;
    }
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    ib_model_free(m);
    CHECK(ok, "nodes %d (expected %d), BN nodes %d (expected %d), HardSigmoid %d (expected 6), or names/shapes", nodes,
          expect, bn_nodes, bns, hsig);
    CHECK(group_ok, "the gcibn conv features.5.conv.0.0 has no group = 2");
}

TEST(export_errors_name_the_problem) {
    ib_model *m;
    CHECK(ib_model_create(&m, "mobilenetv2:0.35", 4, 1) == IB_OK, "%s", ib_errmsg());
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/x.onnx", test_tmpdir());
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.format = "tflite";
    ib_status s1 = ib_model_export(m, "x.onnx", &o, NULL);
    int m1 = strstr(ib_errmsg(), "tflite") != NULL;
    ib_export_opts_default(&o);
    o.opset = 9;
    ib_status s2 = ib_model_export(m, "x.onnx", &o, NULL);
    int m2 = strstr(ib_errmsg(), "opset 9") != NULL;
    ib_export_opts_default(&o);
    o.res = 4;
    ib_status s3 = ib_model_export(m, "x.onnx", &o, NULL);
    ib_status s4 = ib_model_export(m, path, NULL, NULL);
    int m4 = strstr(ib_errmsg(), path) != NULL;
    ib_model_free(m);
    CHECK(s1 == IB_ERR_ARG && m1, "format tflite: %d, %s", s1, ib_errmsg());
    CHECK(s2 == IB_ERR_ARG && m2, "opset 9: %d", s2);
    CHECK(s3 == IB_ERR_ARG, "res 4: %d", s3);
    CHECK(s4 == IB_ERR_IO && m4, "missing folder: %d, message does not name %s", s4, path);
    CHECK(access("x.onnx", F_OK) != 0, "x.onnx written despite the errors");
}

// ---------------------------------------------------------------------------------------------
// ONNX Runtime

static char ort_dir[512], ort_why[2048];

// 1 when node can load onnxruntime-node from ort_dir (installing it there once if npm can); else 0 and why.
static int ort_ready(void) {
    static int state = -1;
    if (state >= 0) return state;
    state = 0;
    const char *env = getenv("IBNAS_ORT_DIR"), *home = getenv("HOME");
    if (env && env[0]) snprintf(ort_dir, sizeof ort_dir, "%s", env);
    else snprintf(ort_dir, sizeof ort_dir, "%s/.cache/ibnas-bench/ort", home ? home : "/tmp");
    if (test_run("command -v node >/dev/null 2>&1", NULL, NULL) != 0) {
        snprintf(ort_why, sizeof ort_why, "node is not installed (apt-get install nodejs npm)");
        return 0;
    }
    char cmd[2048], pkg[600];
    snprintf(pkg, sizeof pkg, "%s/node_modules/onnxruntime-node/package.json", ort_dir);
    if (access(pkg, R_OK) != 0) {
        if (test_run("command -v npm >/dev/null 2>&1", NULL, NULL) != 0) {
            snprintf(ort_why, sizeof ort_why, "onnxruntime-node is not in %s and npm is missing", ort_dir);
            return 0;
        }
        fprintf(stderr, "test_export: installing onnxruntime-node@%s into %s\n", ORT_VERSION, ort_dir);
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s' && cd '%s' && { [ -f package.json ] || npm init -y >/dev/null; } && "
                 "timeout 180 npm install --ignore-scripts --no-audit --no-fund onnxruntime-node@%s >/dev/null 2>&1",
                 ort_dir, ort_dir, ORT_VERSION);
        if (test_run(cmd, NULL, NULL) != 0 || access(pkg, R_OK) != 0) {
            snprintf(ort_why, sizeof ort_why, "onnxruntime-node could not be installed into %s (npm registry unreachable?)",
                     ort_dir);
            return 0;
        }
    }
    snprintf(cmd, sizeof cmd, "NODE_PATH='%s/node_modules' node -e \"require('onnxruntime-node')\" 2>&1", ort_dir);
    char *out = NULL;
    if (test_run(cmd, &out, NULL) != 0) {
        snprintf(ort_why, sizeof ort_why, "node cannot load onnxruntime-node from %s: %.200s", ort_dir, out ? out : "");
        free(out);
        return 0;
    }
    free(out);
    return state = 1;
}

// Runs model on x (n, 3, h, w) in ONNX Runtime; y receives n * classes floats. 0 on success, else a message.
static int ort_run(const char *model, const float *x, int n, int h, int w, float *y, int classes, char *why, size_t whyn) {
    char in[600], out[600], cmd[3000];
    snprintf(in, sizeof in, "%s/ort_in.f32", test_tmpdir());
    snprintf(out, sizeof out, "%s/ort_out.f32", test_tmpdir());
    FILE *f = fopen(in, "wb");
    if (!f || fwrite(x, sizeof(float), (size_t)n * 3 * h * w, f) != (size_t)n * 3 * h * w) {
        if (f) fclose(f);
        snprintf(why, whyn, "cannot write %s", in);
        return 1;
    }
    fclose(f);
    unlink(out);
    snprintf(cmd, sizeof cmd, "NODE_PATH='%s/node_modules' node '%s' '%s' '%s' %d %d %d '%s'", ort_dir,
             project_path("tests/ort/ort_logits.js"), model, in, n, h, w, out);
    char *so = NULL, *se = NULL;
    int rc = test_run(cmd, &so, &se);
    if (rc != 0) {
        snprintf(why, whyn, "ONNX Runtime failed on %s (%d): %.300s", model, rc, se ? se : "");
        free(so), free(se);
        return 1;
    }
    free(so), free(se);
    size_t len = 0;
    uint8_t *buf = read_all(out, &len);
    if (!buf || len != sizeof(float) * (size_t)n * classes) {
        snprintf(why, whyn, "ONNX Runtime wrote %zu bytes, expected %zu", len, sizeof(float) * (size_t)n * classes);
        free(buf);
        return 1;
    }
    memcpy(y, buf, len);
    free(buf);
    return 0;
}

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

// ibnas' own output for n images x (n, 3, h, w): ib_model_forward's logits, or a segmentation model's
// (ib_seg_forward in eval mode, upsampled to h x w) into y (n * ib_model_classes(m) * h * w). 0 on success.
static int ibnas_logits(ib_model *m, const float *x, int n, int h, int w, float *y) {
    if (!m->seg) return ib_model_forward(m, x, n, h, w, y) != IB_OK;
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 0;
    ib_tensor *t = ib_tensor_new(ctx, 4, (int[]){n, 3, h, w});
    memcpy(t->data, x, sizeof(float) * (size_t)ib_numel(t));
    ib_tensor *z = ib_seg_forward(ctx, &m->net, m->seg, t, 1);
    memcpy(y, z->data, sizeof(float) * (size_t)ib_numel(z));
    ib_ctx_free(ctx);
    return 0;
}

// Exports m with o, runs it in ONNX Runtime on n images of the size written and compares with ibnas' own
// logits (a segmentation model's: every pixel's).
static void parity(ib_model *m, const ib_export_opts *o, int n, const char *tag, double *diff, char *why, size_t whyn) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s.onnx", test_tmpdir(), tag);
    *diff = INFINITY;
    why[0] = 0;
    ib_export_report r;
    if (ib_model_export(m, path, o, &r)) {
        snprintf(why, whyn, "%s: export: %s", tag, ib_errmsg());
        return;
    }
    int h = r.height, w = r.width;
    int64_t k = (int64_t)ib_model_classes(m) * (m->seg ? (int64_t)h * w : 1), all = n * k;
    float *x = malloc(sizeof(float) * (size_t)n * 3 * h * w), *y = malloc(sizeof(float) * (size_t)all),
          *z = malloc(sizeof(float) * (size_t)all);
    fill_input(x, (int64_t)n * 3 * h * w, 11);
    if (ibnas_logits(m, x, n, h, w, y)) snprintf(why, whyn, "%s: forward: %s", tag, ib_errmsg());
    else if (!ort_run(path, x, n, h, w, z, (int)k, why, whyn)) {
        *diff = max_abs_diff(z, y, all);
        printf("%s: %dx%d, max |logit| %.4g, max abs diff ONNX Runtime vs ibnas %.3g over %lld logits\n", tag, h, w,
               max_abs(y, all), *diff, (long long)all);
        if (max_abs(y, all) < 0.1)
            snprintf(why, whyn, "%s: logits too small (max %g) for the comparison to mean anything", tag,
                     max_abs(y, all)), *diff = INFINITY;
    }
    free(x), free(y), free(z);
}

TEST(ort_mobilenetv2_parity) {
    if (!ort_ready()) SKIP("%s", ort_why);
    ib_model *m;
    CHECK(ib_model_create(&m, "mobilenetv2:0.35", 10, 3) == IB_OK, "%s", ib_errmsg());
    randomise(m, 4);
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.res = 64, o.batch = 2;
    double d1, d2;
    char w1[2048], w2[2048];
    parity(m, &o, 2, "mnv2_folded", &d1, w1, sizeof w1);
    o.keep_bn = 1, o.batch = 0, o.opset = 17, o.res = 48;   // another size, dynamic batch, BN kept
    parity(m, &o, 3, "mnv2_keep_bn_dynamic", &d2, w2, sizeof w2);
    ib_model_free(m);
    CHECK(d1 <= PARITY_TOL, "folded: max abs diff %g > %g %s", d1, PARITY_TOL, w1);
    CHECK(d2 <= PARITY_TOL, "BN kept: max abs diff %g > %g %s", d2, PARITY_TOL, w2);
}

TEST(ort_all_blocks_parity) {
    if (!ort_ready()) SKIP("%s", ort_why);
    ib_model *m;
    CHECK(ib_model_create(&m, all_blocks_arch, 0, 6) == IB_OK, "%s", ib_errmsg());
    randomise(m, 8);
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.batch = 2;
    double d1, d2, d3;
    char w1[2048], w2[2048], w3[2048];
    parity(m, &o, 2, "all_blocks_opset13", &d1, w1, sizeof w1);   // h-swish as x * HardSigmoid(x)
    o.opset = 14;
    parity(m, &o, 2, "all_blocks_opset14", &d2, w2, sizeof w2);   // HardSwish
    o.opset = 21, o.keep_bn = 1, o.res = 37;                      // odd side: stride-2 padding
    parity(m, &o, 2, "all_blocks_opset21_keep_bn_37", &d3, w3, sizeof w3);
    ib_model_free(m);
    CHECK(d1 <= PARITY_TOL, "opset 13: max abs diff %g > %g %s", d1, PARITY_TOL, w1);
    CHECK(d2 <= PARITY_TOL, "opset 14: max abs diff %g > %g %s", d2, PARITY_TOL, w2);
    CHECK(d3 <= PARITY_TOL, "opset 21, BN kept, 37 px: max abs diff %g > %g %s", d3, PARITY_TOL, w3);
}

// The whole way by the command: a supernet over the tiny space trained a few steps, an arch of every block
// type extracted from it (BN recalibrated), `ibnas export`, then `ibnas infer` and ONNX Runtime on one batch.
TEST(ort_extracted_subnet_by_the_command) {
    if (!ort_ready()) SKIP("%s", ort_why);
    const char *bin = test_ibnas_bin(), *d = test_tmpdir();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    char cmd[8192], arch[600], sub[600], onnx[600], xin[600], yout[600];
    snprintf(arch, sizeof arch, "%s/sub.arch.json", d);
    snprintf(sub, sizeof sub, "%s/sub.h5", d);
    snprintf(onnx, sizeof onnx, "%s/sub.onnx", d);
    snprintf(xin, sizeof xin, "%s/sub_x.h5", d);
    snprintf(yout, sizeof yout, "%s/sub_y.h5", d);
    FILE *f = fopen(arch, "w");
    CHECK(f, "cannot write %s", arch);
    fputs("{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"tiny_sub\", \"classes\": 6, \"input\": 32, "
          "\"act\": \"relu6\", \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2}, \"blocks\": ["
          "{\"op\": \"ibn\", \"kernel\": 3, \"expand\": 2, \"out\": 16, \"stride\": 1}, {\"op\": \"skip\"},"
          "{\"op\": \"fused\", \"kernel\": 5, \"expand\": 4, \"out\": 24, \"stride\": 2},"
          "{\"op\": \"tucker\", \"kernel\": 3, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 24, \"stride\": 1},"
          "{\"op\": \"gcibn\", \"kernel\": 3, \"expand\": 2, \"groups\": 2, \"out\": 32, \"stride\": 2},"
          "{\"op\": \"ibn\", \"kernel\": 5, \"expand\": 4, \"out\": 32, \"stride\": 1}"
          "], \"head\": {\"out\": 128, \"dropout\": 0.1}}\n",
          f);
    fclose(f);
    char *out = NULL, *err = NULL, cwd[1024], space[1024];
    CHECK(getcwd(cwd, sizeof cwd) && realpath(project_path("search/spaces/tiny.space.json"), space), "paths");
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; B='%s'; case $B in /*) ;; *) B='%s/'$B;; esac; "
             "$B synth --out sn_data.h5 --n 96 --size 32 --seed 2 --threads 2 --quiet >/dev/null; "
             "$B supernet train --space '%s' --data sn_data.h5 --out sn.h5 --epochs 1 --batch 16 --res 32 --max-steps 3 --warmup 0 "
             "--threads 2 --workers 1 --holdout 0.25 --quiet; "
             "$B extract --supernet sn.h5 --arch '%s' --calib-batches 2 --calib-batch 16 --workers 1 --threads 2 --out '%s'; "
             "$B export --model '%s' --out '%s' --batch dynamic --json",
             d, bin, cwd, space, arch, sub, sub, onnx);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, "\"nodes\""), "supernet train / extract / export failed (%d): %s %s", rc, out, err);
    free(out), free(err);
    int n = 4, res = 32, k = 6;
    float *x = malloc(sizeof(float) * n * 3 * res * res), *z = malloc(sizeof(float) * n * k), *y = NULL;
    fill_input(x, (int64_t)n * 3 * res * res, 17);
    ib_status s = ib_array_save(xin, "x", x, 4, (int64_t[]){n, 3, res, res});
    snprintf(cmd, sizeof cmd, "%s infer --model '%s' --input '%s' --output '%s' --threads 2", bin, sub, xin, yout);
    rc = s ? -1 : test_run(cmd, NULL, &err);
    int ndim = 0;
    int64_t shape[IB_ARRAY_MAX_DIMS];
    if (rc == 0) s = ib_array_load(yout, "y", &y, &ndim, shape);
    char why[2048] = "";
    int ort_failed = rc == 0 && !s ? ort_run(onnx, x, n, res, res, z, k, why, sizeof why) : 1;
    double diff = y && !ort_failed ? max_abs_diff(z, y, (int64_t)n * k) : INFINITY, big = y ? max_abs(y, (int64_t)n * k) : 0;
    printf("extracted subnet: max |logit| %.4g, max abs diff ONNX Runtime vs ibnas infer %.3g\n", big, diff);
    free(x), free(z), free(y);
    CHECK(rc == 0 && !s, "ibnas infer failed (%d): %s %s", rc, err ? err : "", ib_errmsg());
    free(err);
    CHECK(!ort_failed, "%s", why);
    CHECK(big > 0.01, "logits too small (max %g)", big);
    CHECK(diff <= PARITY_TOL, "max abs diff %g > %g", diff, PARITY_TOL);
}

// The verb's own errors: usage (exit 2) and a bad checkpoint (exit 1, the file named).
TEST(export_command_errors) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    char cmd[1200], *err = NULL;
    snprintf(cmd, sizeof cmd, "%s export --model x.h5", bin);
    CHECK(test_run(cmd, NULL, NULL) == 2, "no --out: not exit 2");
    snprintf(cmd, sizeof cmd, "%s export --model x.h5 --out y.onnx --batch some", bin);
    CHECK(test_run(cmd, NULL, NULL) == 2, "--batch some: not exit 2");
    snprintf(cmd, sizeof cmd, "%s export --model %s/missing.h5 --out %s/y.onnx", bin, test_tmpdir(), test_tmpdir());
    int rc = test_run(cmd, NULL, &err);
    int named = err && strstr(err, "missing.h5");
    free(err);
    CHECK(rc == 1 && named, "a missing checkpoint gave exit %d without naming it", rc);
}

// ---------------------------------------------------------------------------------------------
// Segmentation networks: the backbone to the head's high stride, then the DeepLab or BiFPN head

// A segmenter on the every-block arch (strides 4, 8, 16 after blocks 3, 5, 8; 40 px gives sizes 10, 5 and 3
// there, so the resizes are not all 2x) with a small head of either kind, 5 classes, weights randomised as
// above; BiFPN's fusion weights drawn away from equal shares and one of them negative (relu drops it).
static ib_model *seg_model(const char *kind, int in_h, int in_w, uint64_t seed) {
    ib_arch a;
    IB_ASSERT(ib_arch_parse(&a, all_blocks_arch, "all_blocks") == IB_OK, "%s", ib_errmsg());
    ib_seg_head_cfg c;
    ib_seg_head_cfg_default(&c);
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    c.aspp = 16, c.low = 8, c.decoder = 16, c.rates[0] = 2, c.rates[1] = 3;
    c.width = 12, c.repeats = 2;
    c.in_h = in_h, c.in_w = in_w;
    ib_model *m = calloc(1, sizeof *m);
    IB_ASSERT(m, "out of memory");
    m->seg = calloc(1, sizeof *m->seg);
    IB_ASSERT(m->seg, "out of memory");
    IB_ASSERT(ib_seg_build(&m->net, m->seg, &a, 5, &c) == IB_OK, "%s", ib_errmsg());
    ib_arch_free(&a);
    ib_net_init_weights(&m->net, seed);
    randomise(m, seed);
    ib_rng r;
    ib_rng_seed(&r, seed, 5);
    for (int i = 0; i < m->net.ps.n; i++) {
        ib_tensor *t = m->net.ps.t[i];
        if (strstr(t->name, "fuse.weight") || strstr(t->name, "merge.weight"))
            for (int64_t j = 0; j < ib_numel(t); j++) t->data[j] = 0.1f + 2.0f * ib_rng_uniform(&r);
        if (!strcmp(t->name, "seg.classifier.weight"))
            for (int64_t j = 0; j < ib_numel(t); j++) t->data[j] *= 3.0f;   // logits of order 1-10
    }
    if (m->seg->levels) m->seg->bifpn[0].td[0].fuse->data[1] = -0.5f;
    return m;
}

// The nodes a segmenter's graph must hold, counted from the built network and head independently of the
// exporter: the backbone as above without the classifier, a conv (+ BN) + ReLU per head stage (a lateral
// has no activation), and the head's own ops: DeepLab's pooling, two concatenations, three resizes (the
// pooled vector broadcast, the ASPP up to the low stride, the logits up to the input) and the classifier;
// BiFPN's k Mul and a Sum per fusion of k inputs, a nearest resize before each top-down node, a MaxPool
// before each bottom-up node, the coarser levels' resizes to the finest, the classifier and its resize.
// (At 40 px every level differs from the next in size and the max-pooled sizes match the levels'.)
static int expected_seg_nodes(const ib_model *m, int keep_bn, int opset) {
    const ib_seg_head *h = m->seg;
    int bn = keep_bn ? 1 : 0, n = expected_nodes(&m->net, keep_bn, opset) - 3;
#define STAGE(c) (1 + bn + ((c)->act == IB_ACT_NONE ? 0 : 1))
    if (!h->levels) {
        const ib_cba *st[] = {&h->aspp_1x1, &h->aspp_dw[0], &h->aspp_pw[0], &h->aspp_dw[1], &h->aspp_pw[1],
                              &h->aspp_pool, &h->aspp_proj, &h->low_reduce, &h->dec_dw, &h->dec_pw};
        for (size_t i = 0; i < sizeof st / sizeof *st; i++) n += STAGE(st[i]);
        return n + 1 + 2 + 3 + 1;
    }
    const int L = h->levels;
    for (int l = 0; l < L; l++) n += STAGE(&h->lateral[l]);
    for (int r = 0; r < h->cfg.repeats; r++) {
        for (int l = 0; l < L - 1; l++) n += 1 + 2 + 1 + STAGE(&h->bifpn[r].td[l].dw) + STAGE(&h->bifpn[r].td[l].pw);
        for (int l = 1; l < L; l++)
            n += 1 + (l < L - 1 ? 3 : 2) + 1 + STAGE(&h->bifpn[r].up[l].dw) + STAGE(&h->bifpn[r].up[l].pw);
    }
#undef STAGE
    return n + (L - 1) + L + 1 + 1 + 1;
}

static const char *attr_str(const Onnx__NodeProto *n, const char *name, char *buf, size_t len) {
    for (size_t a = 0; a < n->n_attribute; a++)
        if (!strcmp(n->attribute[a]->name, name)) {
            snprintf(buf, len, "%.*s", (int)n->attribute[a]->s.len, (const char *)n->attribute[a]->s.data);
            return buf;
        }
    return "";
}

static float init_scalar(const Onnx__ModelProto *mp, const char *name) {
    const Onnx__TensorProto *t = find_init(mp, name);
    float v = NAN;
    if (t && t->raw_data.len == 4) memcpy(&v, t->raw_data.data, 4);
    return v;
}

// Resize nodes: linear ones must be torch's align_corners=False (half_pixel), nearest ones floor of
// dst * in / out (asymmetric, floor); *nearest counts the latter. Before opset 13 each has the empty roi.
static int resizes_ok(const Onnx__ModelProto *mp, int opset, int *nearest, char *why, size_t whyn) {
    char a[64], b[64], c[64];
    *nearest = 0;
    for (size_t i = 0; i < mp->graph->n_node; i++) {
        const Onnx__NodeProto *n = mp->graph->node[i];
        if (strcmp(n->op_type, "Resize")) continue;
        const char *mode = attr_str(n, "mode", a, sizeof a), *ctm = attr_str(n, "coordinate_transformation_mode", b, sizeof b);
        int lin = !strcmp(mode, "linear") && !strcmp(ctm, "half_pixel");
        int nea = !strcmp(mode, "nearest") && !strcmp(ctm, "asymmetric") &&
                  !strcmp(attr_str(n, "nearest_mode", c, sizeof c), "floor");
        int roi = opset < 13 ? n->n_input == 3 && !strcmp(n->input[1], "const.empty") : n->n_input == 3 && !n->input[1][0];
        if ((!lin && !nea) || !roi) {
            snprintf(why, whyn, "Resize %s: mode %s, coordinate_transformation_mode %s, roi '%s'", n->name, mode, ctm,
                     n->n_input > 1 ? n->input[1] : "(none)");
            return 0;
        }
        *nearest += nea;
    }
    return 1;
}

TEST(export_segmenter_parses_back) {
    // DeepLab at its training size 40x37 (non-square, odd), BN folded, opset 13, batch 1
    ib_model *m = seg_model("deeplab", 40, 37, 3);
    char path[600], why[2048] = "";
    snprintf(path, sizeof path, "%s/seg_deeplab.onnx", test_tmpdir());
    ib_export_report r;
    ib_status s = ib_model_export(m, path, NULL, &r);
    if (s) ib_model_free(m);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    Onnx__ModelProto *mp = parse(path);
    int ok = 0, nearest = -1, expect = expected_seg_nodes(m, 0, 13), dil = 0, ses = 0;   // SE blocks pool too
    for (int i = 0; i < m->net.arch.n_blocks; i++) ses += m->net.blocks[i].has_se;
    for (size_t i = 0; mp && i < mp->graph->n_node; i++) {   // the rate-3 branch's depthwise conv
        const Onnx__NodeProto *n = mp->graph->node[i];
        if (strcmp(n->op_type, "Conv") || strcmp(n->input[1], "seg.aspp.2.dw.0.weight")) continue;
        for (size_t a = 0; a < n->n_attribute; a++)
            if (!strcmp(n->attribute[a]->name, "dilations")) dil = (int)n->attribute[a]->ints[0];
    }
    if (!mp) snprintf(why, sizeof why, "%s does not parse", path);
    else if ((int)mp->graph->n_node != expect || r.nodes != expect || r.height != 40 || r.width != 37)
        snprintf(why, sizeof why, "%zu nodes (report %d), expected %d; size %dx%d", mp->graph->n_node, r.nodes, expect,
                 r.height, r.width);
    else if (count_op(mp, "Resize") != 3 || count_op(mp, "Concat") != 2 || count_op(mp, "GlobalAveragePool") != 1 + ses ||
             count_op(mp, "BatchNormalization") != 0)
        snprintf(why, sizeof why, "Resize %d, Concat %d, GlobalAveragePool %d, BN %d (expected 3, 2, %d, 0)",
                 count_op(mp, "Resize"), count_op(mp, "Concat"), count_op(mp, "GlobalAveragePool"),
                 count_op(mp, "BatchNormalization"), 1 + ses);
    else if (!resizes_ok(mp, 13, &nearest, why, sizeof why)) {
    } else if (nearest != 0) snprintf(why, sizeof why, "%d nearest resizes in DeepLab", nearest);
    else if (dil != 3) snprintf(why, sizeof why, "seg.aspp.2.dw dilation %d, expected 3", dil);
    else if (!dims_are(mp->graph->input[0], 4, (int64_t[]){1, 3, 40, 37}, "N") ||
             !dims_are(mp->graph->output[0], 4, (int64_t[]){1, 5, 40, 37}, "N") ||
             strcmp(mp->graph->output[0]->name, "logits"))
        snprintf(why, sizeof why, "graph input/output shapes");
    else if (strcmp(meta(mp, "ibnas.task") ? meta(mp, "ibnas.task") : "", "segment") ||
             strcmp(meta(mp, "ibnas.input_size") ? meta(mp, "ibnas.input_size") : "", "40x37") ||
             !meta(mp, "ibnas.seg_head") || !strstr(meta(mp, "ibnas.seg_head"), "deeplab"))
        snprintf(why, sizeof why, "metadata: task, input size or head");
    else if (!find_init(mp, "seg.classifier.weight") || !find_init(mp, "seg.classifier.bias") ||
             !find_init(mp, "seg.aspp.project.0.bias") || !find_init(mp, "seg.decoder.fuse.pw.0.weight"))
        snprintf(why, sizeof why, "head initializers missing under the checkpoint's names");
    else ok = 1;
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    ib_model_free(m);
    CHECK(ok, "deeplab: %s", why);

    // BiFPN, BN kept, dynamic batch, opset 11 (Resize's roi input filled)
    m = seg_model("bifpn", 0, 0, 4);
    snprintf(path, sizeof path, "%s/seg_bifpn.onnx", test_tmpdir());
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.keep_bn = 1, o.batch = 0, o.opset = 11;
    s = ib_model_export(m, path, &o, &r);
    if (s) ib_model_free(m);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    mp = parse(path);
    const ib_seg_head *h = m->seg;
    const int L = h->levels, R = h->cfg.repeats;
    int fusions = R * (2 * L - 2) + 1, inputs = 0;   // Sum nodes: one per fusion; Mul nodes: one per input
    for (int l = 0; l < L - 1; l++) inputs += 2;
    for (int l = 1; l < L; l++) inputs += l < L - 1 ? 3 : 2;
    inputs = inputs * R + L;
    for (int i = 0; i < m->net.arch.n_blocks; i++) {   // the backbone's: SE's gate, h-swish as x * HardSigmoid(x)
        const ib_block *b = &m->net.blocks[i];
        inputs += b->has_se;
        for (int k = 0; k < b->n_stages; k++) inputs += b->stages[k].act == IB_ACT_HSWISH;
    }
    inputs += m->net.stem.act == IB_ACT_HSWISH;
    expect = expected_seg_nodes(m, 1, 11);
    double a[3];
    ib_weighted_sum_coeffs(h->bifpn[0].td[0].fuse->data, 2, IB_SEG_FUSE_EPS, a);
    ok = 0;
    if (!mp) snprintf(why, sizeof why, "%s does not parse", path);
    else if ((int)mp->graph->n_node != expect || r.nodes != expect)
        snprintf(why, sizeof why, "%zu nodes (report %d), expected %d", mp->graph->n_node, r.nodes, expect);
    else if (L != 3 || count_op(mp, "Sum") != fusions || count_op(mp, "Mul") != inputs ||
             count_op(mp, "MaxPool") != R * (L - 1) || count_op(mp, "Resize") != R * (L - 1) + (L - 1) + 1)
        snprintf(why, sizeof why, "levels %d, Sum %d (expected %d), Mul %d (expected %d), MaxPool %d, Resize %d", L,
                 count_op(mp, "Sum"), fusions, count_op(mp, "Mul"), inputs, count_op(mp, "MaxPool"), count_op(mp, "Resize"));
    else if (!resizes_ok(mp, 11, &nearest, why, sizeof why)) {
    } else if (nearest != R * (L - 1)) snprintf(why, sizeof why, "%d nearest resizes, expected %d", nearest, R * (L - 1));
    else if (init_scalar(mp, "seg.bifpn.0.td.0.fuse.a1") != 0.0f ||
             init_scalar(mp, "seg.bifpn.0.td.0.fuse.a0") != (float)a[0] || !(a[0] > 0.99 && a[0] < 1.0))
        snprintf(why, sizeof why, "fusion coefficients %g, %g (expected %g, 0: the negative weight drops out)",
                 init_scalar(mp, "seg.bifpn.0.td.0.fuse.a0"), init_scalar(mp, "seg.bifpn.0.td.0.fuse.a1"), a[0]);
    else if (count_op(mp, "BatchNormalization") < 1 + 4 * R * (L - 1) + L ||
             !find_init(mp, "seg.bifpn.1.up.2.pw.1.running_var") || !find_init(mp, "const.empty"))
        snprintf(why, sizeof why, "BN nodes %d or initializers", count_op(mp, "BatchNormalization"));
    else if (!dims_are(mp->graph->input[0], 4, (int64_t[]){-1, 3, 40, 40}, "N") ||
             !dims_are(mp->graph->output[0], 4, (int64_t[]){-1, 5, 40, 40}, "N"))
        snprintf(why, sizeof why, "graph input/output shapes");
    else ok = 1;
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    ib_model_free(m);
    CHECK(ok, "bifpn: %s", why);
}

TEST(ort_segmenter_parity) {
    if (!ort_ready()) SKIP("%s", ort_why);
    double d[4];
    char w[4][2048];
    ib_export_opts o;
    ib_model *m = seg_model("deeplab", 40, 37, 6);
    ib_export_opts_default(&o);
    o.batch = 2;
    parity(m, &o, 2, "seg_deeplab_40x37", &d[0], w[0], sizeof w[0]);   // the training size, BN folded
    o.res = 48, o.keep_bn = 1, o.batch = 0, o.opset = 11;              // --res, BN kept, dynamic, the roi input
    parity(m, &o, 3, "seg_deeplab_48_keep_bn_dynamic_op11", &d[1], w[1], sizeof w[1]);
    ib_model_free(m);
    m = seg_model("bifpn", 0, 0, 7);
    ib_export_opts_default(&o);
    o.batch = 2;
    parity(m, &o, 2, "seg_bifpn_40", &d[2], w[2], sizeof w[2]);
    o.res = 37, o.keep_bn = 1, o.batch = 0, o.opset = 17;   // odd levels: 10, 5, 3
    parity(m, &o, 3, "seg_bifpn_37_keep_bn_dynamic_op17", &d[3], w[3], sizeof w[3]);
    ib_model_free(m);
    for (int i = 0; i < 4; i++) CHECK(d[i] <= PARITY_TOL, "case %d: max abs diff %g > %g %s", i, d[i], PARITY_TOL, w[i]);
}

// A segmenter of each head trained two steps by the command on synthetic scenes, written by `ibnas export`,
// against ib_seg_forward on the checkpoint it loaded.
TEST(ort_segmenter_by_the_command) {
    if (!ort_ready()) SKIP("%s", ort_why);
    const char *bin = test_ibnas_bin(), *d = test_tmpdir();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    const char *heads[2] = {"deeplab", "bifpn"};
    char cmd[4096], data[600], ckpt[600], onnx[600], why[2048];
    snprintf(data, sizeof data, "%s/seg_scenes.h5", d);
    snprintf(cmd, sizeof cmd, "%s synth --out '%s' --n 16 --size 48 --seed 3 --threads 1 --quiet >/dev/null", bin, data);
    CHECK(test_run(cmd, NULL, NULL) == 0, "synth failed");
    for (int k = 0; k < 2; k++) {
        snprintf(ckpt, sizeof ckpt, "%s/seg_cmd_%s.h5", d, heads[k]);
        snprintf(onnx, sizeof onnx, "%s/seg_cmd_%s.onnx", d, heads[k]);
        snprintf(cmd, sizeof cmd,
                 "%s train --task segment --head %s --arch '%s' --data '%s' --out '%s' --epochs 1 --batch 8 --res 48 "
                 "--max-steps 2 --warmup 0 --threads 1 --workers 1 --quiet && %s export --model '%s' --out '%s' --json",
                 bin, heads[k], project_path("examples/archs/synth_small.arch.json"), data, ckpt, bin, ckpt, onnx);
        char *out = NULL, *err = NULL;
        int rc = test_run(cmd, &out, &err);
        int said = out && strstr(out, "\"nodes\"") && strstr(out, "\"res\": 48") && err && strstr(err, "->") &&
                   strstr(err, "48x48") && strstr(err, "(batch, 7, 48, 48)");
        if (rc || !said) fprintf(stderr, "%s\n%s\n", out ? out : "", err ? err : "");
        free(out), free(err);
        CHECK(rc == 0 && said, "%s: train / export failed (%d) or did not say what it wrote", heads[k], rc);
        ib_model *m;
        CHECK(ib_model_load(&m, ckpt) == IB_OK, "%s", ib_errmsg());
        int n = 2, res = 48, c = ib_model_classes(m);
        int64_t all = (int64_t)n * c * res * res;
        float *x = malloc(sizeof(float) * n * 3 * res * res), *y = malloc(sizeof(float) * all),
              *z = malloc(sizeof(float) * all);
        fill_input(x, (int64_t)n * 3 * res * res, 19);
        int failed = ibnas_logits(m, x, n, res, res, y);
        for (int i = 0; !failed && i < n; i++)   // batch 1 in the file: one image at a time
            failed = ort_run(onnx, x + (int64_t)i * 3 * res * res, 1, res, res, z + i * (all / n), (int)(all / n), why,
                             sizeof why);
        double diff = failed ? INFINITY : max_abs_diff(z, y, all), big = max_abs(y, all);
        printf("%s by the command: %d classes, max |logit| %.4g, max abs diff ONNX Runtime vs ibnas %.3g\n", heads[k],
               c, big, diff);
        free(x), free(y), free(z);
        ib_model_free(m);
        CHECK(!failed, "%s: %s", heads[k], why);
        CHECK(big > 0.01, "%s: logits too small (max %g)", heads[k], big);
        CHECK(diff <= PARITY_TOL, "%s: max abs diff %g > %g", heads[k], diff, PARITY_TOL);
    }
}
