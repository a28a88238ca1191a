// Modelled latency targets: an EdgeTPU-like systolic MAC array and a DSP-like wide-vector processor,
// each from a parameter file (search/targets/NAME.target.json) whose every value names its public
// source. A row's time is built from its convolutions (ib_block_convs), each mapped onto the hardware:
// how many cycles the mapping takes (the utilisation follows from it) against how many bytes it moves,
// roofline max(compute, memory) plus a fixed cost per op. docs/LATENCY.md gives the equations; nothing
// here knows which block "should" win.
#include "search/search.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IB_TARGET_FORMAT "ibnas-target"
#define IB_TARGET_VERSION 1

typedef enum { KIND_SYSTOLIC, KIND_VECTOR } target_kind;

struct ib_target {
    char name[64];
    char file[1024];
    target_kind kind;
    // systolic
    double rows, cols, fill_cycles, sram_bytes, onchip_gbps, offchip_gbps;
    // vector
    double vector_bits, units, dot_depth, acc_bits, dw_acc_bits, dw_taps, cache_bytes, cache_gbps, dram_gbps;
    // both
    double clock_hz, bytes_per_value, op_overhead_s;
};

typedef struct { const char *key; double *dst; double lo, hi, scale; } param;

static ib_status read_params(const char *file, json_t *params, json_t *sources, const param *p, int n) {
    for (int i = 0; i < n; i++) {
        json_t *v = json_object_get(params, p[i].key);
        if (!json_is_number(v))
            return ib_fail(IB_ERR_FORMAT, "%s: params.%s: missing or not a number", file, p[i].key);
        double x = json_number_value(v);
        if (!(x >= p[i].lo && x <= p[i].hi))
            return ib_fail(IB_ERR_FORMAT, "%s: params.%s: %g is outside [%g, %g]", file, p[i].key, x, p[i].lo, p[i].hi);
        json_t *src = json_object_get(sources, p[i].key);
        if (!json_is_string(src) || !json_string_value(src)[0])
            return ib_fail(IB_ERR_FORMAT, "%s: sources.%s: every parameter needs its source (a string)", file, p[i].key);
        *p[i].dst = x * p[i].scale;
    }
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v) {
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = !strcmp(key, p[i].key);
        if (!known) return ib_fail(IB_ERR_FORMAT, "%s: params.%s: unknown parameter for this kind", file, key);
    }
    return IB_OK;
}

static ib_status parse_target(ib_target *t, const char *file) {
    json_error_t err;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        FILE *f = fopen(file, "r");
        if (!f) return ib_fail(IB_ERR_IO, "%s: cannot open target parameters: %s", file, strerror(errno));
        fclose(f);
        return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", file, err.line, err.column, err.text);
    }
    ib_status s = IB_OK;
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
    json_t *name = json_object_get(root, "name"), *kind = json_object_get(root, "kind");
    json_t *params = json_object_get(root, "params"), *sources = json_object_get(root, "sources");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), IB_TARGET_FORMAT))
        s = ib_fail(IB_ERR_FORMAT, "%s: format must be \"%s\" (is this a target parameter file?)", file, IB_TARGET_FORMAT);
    else if (!json_is_integer(ver) || json_integer_value(ver) != IB_TARGET_VERSION)
        s = ib_fail(IB_ERR_FORMAT, "%s: version must be %d", file, IB_TARGET_VERSION);
    else if (!json_is_string(name) || !json_string_value(name)[0] || strlen(json_string_value(name)) >= sizeof t->name)
        s = ib_fail(IB_ERR_FORMAT, "%s: name must be a non-empty string", file);
    else if (!json_is_string(kind) ||
             (strcmp(json_string_value(kind), "systolic") && strcmp(json_string_value(kind), "vector")))
        s = ib_fail(IB_ERR_FORMAT, "%s: kind must be \"systolic\" or \"vector\"", file);
    else if (!json_is_object(params) || !json_is_object(sources))
        s = ib_fail(IB_ERR_FORMAT, "%s: \"params\" and \"sources\" must be objects", file);
    if (!s) {
        snprintf(t->name, sizeof t->name, "%s", json_string_value(name));
        t->kind = strcmp(json_string_value(kind), "systolic") ? KIND_VECTOR : KIND_SYSTOLIC;
        if (t->kind == KIND_SYSTOLIC) {
            const param p[] = {
                {"array_rows", &t->rows, 1, 4096, 1},          {"array_cols", &t->cols, 1, 4096, 1},
                {"tile_fill_cycles", &t->fill_cycles, 0, 1e6, 1}, {"clock_mhz", &t->clock_hz, 1, 1e5, 1e6},
                {"bytes_per_value", &t->bytes_per_value, 0.125, 8, 1}, {"sram_bytes", &t->sram_bytes, 0, 1e12, 1},
                {"onchip_gbps", &t->onchip_gbps, 1e-3, 1e5, 1e9}, {"offchip_gbps", &t->offchip_gbps, 1e-3, 1e5, 1e9},
                {"op_overhead_us", &t->op_overhead_s, 0, 1e6, 1e-6},
            };
            s = read_params(file, params, sources, p, (int)(sizeof p / sizeof *p));
        } else {
            const param p[] = {
                {"vector_bits", &t->vector_bits, 8, 65536, 1}, {"units", &t->units, 1, 64, 1},
                {"clock_mhz", &t->clock_hz, 1, 1e5, 1e6},       {"dot_depth", &t->dot_depth, 1, 64, 1},
                {"acc_bits", &t->acc_bits, 8, 64, 1},           {"dw_acc_bits", &t->dw_acc_bits, 8, 64, 1},
                {"dw_taps_per_instr", &t->dw_taps, 1, 64, 1},   {"bytes_per_value", &t->bytes_per_value, 0.125, 8, 1},
                {"cache_bytes", &t->cache_bytes, 0, 1e12, 1},   {"cache_gbps", &t->cache_gbps, 1e-3, 1e5, 1e9},
                {"dram_gbps", &t->dram_gbps, 1e-3, 1e5, 1e9},   {"op_overhead_us", &t->op_overhead_s, 0, 1e6, 1e-6},
            };
            s = read_params(file, params, sources, p, (int)(sizeof p / sizeof *p));
        }
    }
    json_decref(root);
    return s;
}

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

ib_status ib_target_load(ib_target **out, const char *name_or_path) {
    if (!out || !name_or_path || !name_or_path[0]) return ib_fail(IB_ERR_ARG, "ib_target_load: a target is needed");
    *out = NULL;
    ib_target *t = calloc(1, sizeof *t);
    if (!t) return ib_fail(IB_ERR_NOMEM, "out of memory");
    char cand[1024] = "";
    int is_name = !strchr(name_or_path, '/') && !strstr(name_or_path, ".json");
    if (!is_name) {
        snprintf(cand, sizeof cand, "%s", name_or_path);
    } else {
        char exe[1024] = "", dirs[4][1100];
        int nd = 0;
        const char *env = getenv("IBNAS_TARGETS");
        if (env && env[0]) snprintf(dirs[nd++], sizeof dirs[0], "%.1000s", env);
        snprintf(dirs[nd++], sizeof dirs[0], "search/targets");
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len > 0) {
            exe[len] = 0;
            char *slash = strrchr(exe, '/');
            if (slash) *slash = 0;
            snprintf(dirs[nd++], sizeof dirs[0], "%.1000s/../search/targets", exe);
            snprintf(dirs[nd++], sizeof dirs[0], "%.1000s/../../search/targets", exe);
        }
        for (int i = 0; i < nd && !cand[0]; i++) {
            char p[1400];
            int plen = snprintf(p, sizeof p, "%.1100s/%.200s.target.json", dirs[i], name_or_path);
            if (plen > 0 && (size_t)plen < sizeof cand && file_exists(p)) memcpy(cand, p, (size_t)plen + 1);
        }
        if (!cand[0]) {
            free(t);
            return ib_fail(IB_ERR_NOTFOUND, "target '%s': no %s.target.json in $IBNAS_TARGETS, ./search/targets or "
                           "beside the binary (give the file's path instead)", name_or_path, name_or_path);
        }
    }
    snprintf(t->file, sizeof t->file, "%s", cand);
    ib_status s = parse_target(t, cand);
    if (s) {
        free(t);
        return s;
    }
    *out = t;
    return IB_OK;
}

void ib_target_free(ib_target *t) { free(t); }
const char *ib_target_name(const ib_target *t) { return t->name; }
const char *ib_target_file(const ib_target *t) { return t->file; }

// ---------------------------------------------------------------------------------------------
// The models

static double ceil_div(double a, double b) { return ceil(a / b); }
static int down(int h, int stride) { return (h + stride - 1) / stride; }

// Bytes a conv moves: its input, output and weights.
static void conv_bytes(const ib_target *t, const ib_conv_shape *c, int h, int w, double *act, double *wts) {
    int ho = down(h, c->stride), wo = down(w, c->stride);
    *act = t->bytes_per_value * ((double)c->cin * h * w + (double)c->cout * ho * wo);
    *wts = t->bytes_per_value * (double)c->cout * (c->cin / c->groups) * c->k * c->k;
}

// Systolic array, weight stationary: a tile holds up to rows reduction terms (input channel x kernel tap
// of a group) by cols output channels; every output pixel streams through it in one cycle, and each tile
// costs fill_cycles to load and drain. Groups whose weights are small are packed block-diagonally, as many
// to a tile as fit both ways (a depthwise conv: k*k terms and one output per group, so 64/9 = 7 channels
// share a 64 x 64 tile). Activations stay on chip when input and output fit in the SRAM left beside the
// weights; weights are read from on-chip memory (the compiler caches parameters).
static double systolic_conv_s(const ib_target *t, const ib_conv_shape *c, int h, int w, double *util) {
    int ho = down(h, c->stride), wo = down(w, c->stride);
    double red = (double)(c->cin / c->groups) * c->k * c->k, outg = (double)(c->cout / c->groups);
    double pack = 1;
    if (c->groups > 1) pack = fmax(1, fmin((double)c->groups, fmin(floor(t->rows / red), floor(t->cols / outg))));
    double sets = ceil_div(c->groups, pack), tiles = sets * ceil_div(pack * red, t->rows) * ceil_div(pack * outg, t->cols);
    double cycles = tiles * ((double)ho * wo + t->fill_cycles);
    double macs = (double)ho * wo * c->cout * red;
    if (util) *util = macs / (cycles * t->rows * t->cols);
    double act, wts;
    conv_bytes(t, c, h, w, &act, &wts);
    double on = wts, off = 0;
    if (act + wts <= t->sram_bytes) on += act;
    else off += act;
    double mem = on / t->onchip_gbps + off / t->offchip_gbps;
    return fmax(cycles / t->clock_hz, mem);
}

// Wide vectors. A dense or grouped conv puts output channels on the lanes (vector_bits / acc_bits of
// them), each lane accumulating dot_depth products per instruction (a broadcast of dot_depth input values,
// as Hexagon's vrmpy): instructions = pixels x ceil(cout_g / lanes) x ceil(cin_g k k / dot_depth) x groups.
// A depthwise conv has one input channel per output, so it puts output pixels along the width on the
// lanes (vector_bits / dw_acc_bits of them) with dw_taps_per_instr kernel taps per instruction:
// instructions = C x ho x ceil(wo / lanes) x ceil(k k / taps). `units` vector instructions run per cycle
// (one per hardware vector context). Memory: cache bandwidth when input, output and weights fit, else DRAM.
static double vector_conv_s(const ib_target *t, const ib_conv_shape *c, int h, int w, double *util) {
    int ho = down(h, c->stride), wo = down(w, c->stride);
    int depthwise = c->groups > 1 && c->groups == c->cin && c->cin == c->cout;
    double red = (double)(c->cin / c->groups) * c->k * c->k, macs = (double)ho * wo * c->cout * red, instr, peak;
    if (depthwise) {
        double lanes = t->vector_bits / t->dw_acc_bits;
        instr = (double)c->cout * ho * ceil_div(wo, lanes) * ceil_div((double)c->k * c->k, t->dw_taps);
        peak = lanes * t->dw_taps;
    } else {
        double lanes = t->vector_bits / t->acc_bits;
        instr = (double)ho * wo * ceil_div(c->cout / c->groups, lanes) * ceil_div(red, t->dot_depth) * c->groups;
        peak = lanes * t->dot_depth;
    }
    if (util) *util = macs / (instr * peak);
    double act, wts;
    conv_bytes(t, c, h, w, &act, &wts);
    double bytes = act + wts;
    double mem = bytes / (bytes <= t->cache_bytes ? t->cache_gbps : t->dram_gbps);
    return fmax(instr / (t->units * t->clock_hz), mem);
}

static double conv_s(const ib_target *t, const ib_conv_shape *c, int h, int w, double *util) {
    double s = t->kind == KIND_SYSTOLIC ? systolic_conv_s(t, c, h, w, util) : vector_conv_s(t, c, h, w, util);
    return s + t->op_overhead_s;
}

double ib_target_conv_ms(const ib_target *t, const ib_conv_shape *c, int h, int w, double *utilisation) {
    return 1e3 * conv_s(t, c, h, w, utilisation);
}

// An elementwise pass (residual add, pool) over n values read `reads` times and written once.
static double elementwise_s(const ib_target *t, double n, int reads) {
    double bytes = t->bytes_per_value * n * (reads + 1);
    double bw = t->kind == KIND_SYSTOLIC ? (bytes <= t->sram_bytes ? t->onchip_gbps : t->offchip_gbps)
                                         : (bytes <= t->cache_bytes ? t->cache_gbps : t->dram_gbps);
    return bytes / bw + t->op_overhead_s;
}

// A depthwise-separable 3x3 (depthwise, then 1x1 to cout) at h x w.
static double sep_s(const ib_target *t, int cin, int cout, int h, int w) {
    ib_conv_shape dw = {cin, cin, 3, 1, cin}, pw = {cin, cout, 1, 1, 1};
    return conv_s(t, &dw, h, w, NULL) + conv_s(t, &pw, h, w, NULL);
}

static double conv1_s(const ib_target *t, int cin, int cout, int h, int w) {
    ib_conv_shape c = {cin, cout, 1, 1, 1};
    return conv_s(t, &c, h, w, NULL);
}

// A segmentation head's row (columns in search/search.h), its convs as tasks/segment.c and seg_bifpn.c run
// them; resizes, concatenations, weighted sums and the pool are memory passes. BiFPN's middle taps enter as
// their mean width (the row keeps their sum).
static double seg_row_s(const ib_target *t, const ib_lut_key *k) {
    int H = k->h, hi = down(H, k->stride), lo = down(H, k->kernel), classes = k->cout, ch = k->cin, cl = k->expand;
    double s = 0;
    if (k->op == IB_LUT_DEEPLAB) {
        int A = k->groups, dec = (int)k->r_in, low = (int)k->r_out;
        s += conv1_s(t, ch, A, hi, hi) + 2 * sep_s(t, ch, A, hi, hi);          // ASPP: 1x1, two separable branches
        s += elementwise_s(t, (double)ch * hi * hi, 0) + conv1_s(t, ch, A, 1, 1);   // image pooling and its 1x1
        s += elementwise_s(t, (double)4 * A * hi * hi, 1) + conv1_s(t, 4 * A, A, hi, hi);   // concat, projection
        s += elementwise_s(t, (double)A * lo * lo, 1) + conv1_s(t, cl, low, lo, lo);         // upsample, reduce
        s += elementwise_s(t, (double)(A + low) * lo * lo, 1) + sep_s(t, A + low, dec, lo, lo);   // concat, decoder
        s += conv1_s(t, dec, classes, lo, lo);
    } else {
        int W = k->groups, repeats = (int)k->r_in, L = 1;
        while ((k->kernel << (L - 1)) < k->stride && L < 8) L++;
        int mid = L > 2 ? (int)k->r_out / (L - 2) : 0;
        for (int l = 0; l < L; l++) {   // laterals to W
            int h = down(H, k->kernel << l), c = l == 0 ? cl : l == L - 1 ? ch : mid;
            s += conv1_s(t, c > 0 ? c : W, W, h, h);
        }
        for (int r = 0; r < repeats; r++)   // L - 1 top-down and L - 1 bottom-up nodes: fuse, resize, separable
            for (int l = 0; l < L - 1; l++)
                for (int pass = 0; pass < 2; pass++) {
                    int h = down(H, k->kernel << (pass ? l + 1 : l));
                    s += elementwise_s(t, (double)W * h * h, 3) + sep_s(t, W, W, h, h);
                }
        s += elementwise_s(t, (double)W * lo * lo * L, 1) + conv1_s(t, W, classes, lo, lo);   // merge, classifier
    }
    return s + elementwise_s(t, (double)classes * H * H, 1);   // the logits upsampled to the input
}

// A detector's SSDLite head row (columns in search/search.h), as tasks/detect.c runs it: the expansion run
// again at stride 16, the extra levels (1x1, 3x3 depthwise stride 2, 1x1; the levels after the first at
// their mean width) and two depthwise-separable predictors per level (boxes, classes + background).
static double ssdlite_s(const ib_target *t, const ib_lut_key *k) {
    int n_extra = k->stride, A = k->kernel, K = k->cout + 1, size = down(k->h, 16);
    int rest = n_extra > 1 ? (int)k->r_out / (n_extra - 1) : 0;
    double s = k->expand > 0 ? conv1_s(t, k->expand, k->cin, size, size) : 0;
    int ch = k->cin;
    for (int l = 0; l < 2 + n_extra; l++) {
        if (l == 1) ch = k->groups, size = down(size, 2);
        if (l >= 2) {   // an extra level from the one before
            int out = l == 2 ? (int)k->r_in : rest, mid = out / 2 > 0 ? out / 2 : 1;
            ib_conv_shape dw = {mid, mid, 3, 2, mid};
            s += conv1_s(t, ch, mid, size, size) + conv_s(t, &dw, size, size, NULL);
            size = down(size, 2);
            s += conv1_s(t, mid, out, size, size);
            ch = out;
        }
        ib_conv_shape dw = {ch, ch, 3, 1, ch};
        s += 2 * conv_s(t, &dw, size, size, NULL) + conv1_s(t, ch, A * 4, size, size) + conv1_s(t, ch, A * K, size, size);
    }
    return s;
}

double ib_target_row_ms(const ib_target *t, const ib_lut_key *k) {
    double s = 0;
    switch (k->op) {
    case IB_LUT_DEEPLAB:
    case IB_LUT_BIFPN: s = seg_row_s(t, k); break;
    case IB_LUT_STEM: {
        ib_conv_shape c = {k->cin, k->cout, k->kernel, k->stride, 1};
        s = conv_s(t, &c, k->h, k->w, NULL);
        break;
    }
    case IB_LUT_HEAD: {
        int c = k->cin;
        if (k->expand > 0) {
            ib_conv_shape hc = {c, k->expand, 1, 1, 1};
            s += conv_s(t, &hc, k->h, k->w, NULL);
            c = k->expand;
        }
        if (k->cout == 0) break;                             // a detector's head conv alone
        s += elementwise_s(t, (double)c * k->h * k->w, 0);   // the global pool reads the map once
        ib_conv_shape fc = {c, k->cout, 1, 1, 1};            // the classifier: a 1x1 conv on one pixel
        s += conv_s(t, &fc, 1, 1, NULL);
        break;
    }
    case IB_LUT_SSDLITE: s = ssdlite_s(t, k); break;
    default: {
        ib_block_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.op = (ib_block_op)k->op;
        cfg.out = k->cout, cfg.stride = k->stride, cfg.kernel = k->kernel, cfg.expand = k->expand;
        cfg.groups = k->groups, cfg.r_in = k->r_in, cfg.r_out = k->r_out;
        ib_conv_shape cs[IB_BLOCK_MAX_STAGES + 1];
        int n = ib_block_convs(&cfg, k->cin, cs), h = k->h, w = k->w;
        for (int i = 0; i < n; i++) {
            s += conv_s(t, &cs[i], h, w, NULL);
            h = down(h, cs[i].stride), w = down(w, cs[i].stride);
        }
        if (k->stride == 1 && k->cin == k->cout) s += elementwise_s(t, (double)k->cout * h * w, 2);   // residual add
    }
    }
    return 1e3 * s;
}

ib_status ib_lut_model_space(const ib_target *t, const ib_space *sp, int res, int classes, const ib_lut_key *extra,
                             int n_extra, const char *out, int *rows) {
    ib_lut *lut = NULL;
    ib_status s;
    FILE *probe = fopen(out, "r");
    if (probe) {
        fclose(probe);
        if ((s = ib_lut_load(&lut, out))) return s;
        if (strcmp(ib_lut_target(lut), t->name)) {
            s = ib_fail(IB_ERR_ARG, "%s: a table of target '%s', not %s (write another file)", out,
                        ib_lut_target(lut), t->name);
            ib_lut_free(lut);
            return s;
        }
    } else if (!(lut = ib_lut_new(t->name))) {
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    char buf[1100];
    ib_lut_set_meta(lut, "device", t->kind == KIND_SYSTOLIC ? "modelled systolic MAC array" : "modelled vector DSP");
    const char *base = strrchr(t->file, '/');
    snprintf(buf, sizeof buf, "analytic (%s)", base ? base + 1 : t->file);
    ib_lut_set_meta(lut, "model", buf);
    ib_lut_set_meta(lut, "batch", "1");
    time_t now = time(NULL);
    struct tm tmv;
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tmv));
    ib_lut_set_meta(lut, "date", buf);
    ib_lut_set_meta(lut, "ibnas", IB_VERSION_STRING);
    ib_lut_key *keys;
    int n = ib_lut_space_keys(sp, res, classes, &keys);
    if (n < 0) {
        ib_lut_free(lut);
        return ib_fail(IB_ERR_NOMEM, "out of memory listing the rows of %s", sp->name);
    }
    s = IB_OK;
    for (int i = 0; i < n && !s; i++) s = ib_lut_set(lut, &keys[i], ib_target_row_ms(t, &keys[i]));
    for (int i = 0; i < n_extra && !s; i++) s = ib_lut_set(lut, &extra[i], ib_target_row_ms(t, &extra[i]));
    free(keys);
    if (!s) s = ib_lut_save(lut, out);
    if (rows) *rows = n + n_extra;
    ib_lut_free(lut);
    return s;
}
