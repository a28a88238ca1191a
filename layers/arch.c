// Arch files (*.arch.json): one concrete network. Parsed with jansson: syntax errors name the line and
// column, wrong or unknown fields their path, so a user can fix a hand-written file from the message.
#include "layers/json_fields.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ARCH_FORMAT "ibnas-arch"
#define ARCH_VERSION 1

void ib_arch_free(ib_arch *a) {
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

ib_status ib_arch_copy(ib_arch *dst, const ib_arch *src) {
    *dst = *src;
    dst->blocks = malloc(sizeof(ib_block_cfg) * (size_t)(src->n_blocks ? src->n_blocks : 1));
    if (!dst->blocks) return ib_fail(IB_ERR_NOMEM, "out of memory copying an arch");
    memcpy(dst->blocks, src->blocks, sizeof(ib_block_cfg) * (size_t)src->n_blocks);
    return IB_OK;
}

static void arch_defaults(ib_arch *a) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "custom");
    snprintf(a->task, sizeof a->task, "classify");
    a->classes = 1000;
    a->input = 224;
    a->stem_out = 32, a->stem_kernel = 3, a->stem_stride = 2;
    a->head_out = 1280;
    a->dropout = 0.2f;
    a->act = IB_ACT_RELU6;
}

void ib_arch_mobilenetv2(ib_arch *a, float width, int classes) {
    // torchvision's inverted_residual_setting: expansion t, channels c, repeats n, first stride s.
    static const int setting[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                      {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    arch_defaults(a);
    snprintf(a->name, sizeof a->name, "mobilenetv2");
    a->classes = classes;
    a->stem_out = ib_make_divisible(32 * width, 8);
    a->head_out = ib_make_divisible(1280 * fmaxf(1.0f, width), 8);
    a->blocks = calloc(17, sizeof(ib_block_cfg));
    IB_ASSERT(a->blocks, "out of memory");
    for (int s = 0; s < 7; s++)
        for (int r = 0; r < setting[s][2]; r++) {
            ib_block_cfg *b = &a->blocks[a->n_blocks++];
            b->op = IB_BLOCK_IBN;
            b->kernel = 3;
            b->expand = setting[s][0];
            b->out = ib_make_divisible((float)setting[s][1] * width, 8);
            b->stride = r == 0 ? setting[s][3] : 1;
        }
}

ib_status ib_arch_resolve(ib_arch *a, const char *spec, int classes) {
    if (!strncmp(spec, "mobilenetv2", 11) && (spec[11] == 0 || spec[11] == ':')) {
        float width = 1.0f;
        if (spec[11] == ':') {
            char *end;
            width = strtof(spec + 12, &end);
            if (*end || !(width > 0 && width <= 4))
                return ib_fail(IB_ERR_ARG, "arch %s: width must be a number in (0, 4]", spec);
        }
        ib_arch_mobilenetv2(a, width, classes > 0 ? classes : 1000);
        return IB_OK;
    }
    // JSON text itself (a program's inline arch) or a file.
    ib_status s = spec[0] == '{' ? ib_arch_parse(a, spec, "arch") : ib_arch_load(a, spec);
    if (s == IB_OK && classes > 0) a->classes = classes;
    return s;
}

// ---------------------------------------------------------------------------------------------
// Parsing

#define TRY IB_JSON_TRY

static ib_status parse_block(ib_json_where *w, json_t *jb, ib_block_cfg *b, int cin) {
    static const char *const keys[] = {"op", "kernel", "expand", "out", "stride", "groups", "r_in", "r_out", "se", "act", NULL};
    if (!json_is_object(jb)) return ib_json_bad(w, "", "must be an object");
    TRY(ib_json_only_keys(w, jb, keys));
    json_t *op = json_object_get(jb, "op");
    if (!op) return ib_json_bad(w, "op", "missing");
    const char *ops = json_is_string(op) ? json_string_value(op) : "";
    int found = 0;
    for (int i = 0; i <= IB_BLOCK_SKIP; i++)
        if (!strcmp(ops, ib_block_op_name((ib_block_op)i))) b->op = (ib_block_op)i, found = 1;
    if (!found) return ib_json_bad(w, "op", "must be one of \"ibn\", \"fused\", \"tucker\", \"gcibn\", \"skip\"");
    b->kernel = 3, b->expand = 1, b->stride = 1, b->groups = 1, b->r_in = 0.25f, b->r_out = 0.75f;
    b->out = cin;
    TRY(ib_json_get_int(w, jb, "out", &b->out, b->op != IB_BLOCK_SKIP, 1, 1 << 16));
    TRY(ib_json_get_int(w, jb, "stride", &b->stride, 0, 1, 2));
    TRY(ib_json_get_int(w, jb, "kernel", &b->kernel, 0, 1, 9));
    TRY(ib_json_get_int(w, jb, "expand", &b->expand, 0, 1, 8));
    TRY(ib_json_get_int(w, jb, "groups", &b->groups, b->op == IB_BLOCK_GCIBN, 1, 64));
    TRY(ib_json_get_float(w, jb, "r_in", &b->r_in, 0, 1));
    TRY(ib_json_get_float(w, jb, "r_out", &b->r_out, 0, 1));
    TRY(ib_json_get_float(w, jb, "se", &b->se, 0, 1));
    TRY(ib_json_get_act(w, jb, "act", &b->act));
    if (ib_block_check(b, cin, w->path) == IB_OK) return IB_OK;
    char msg[512];   // ib_block_check's message already names the block; add the file
    snprintf(msg, sizeof msg, "%s", ib_errmsg());
    return ib_fail(IB_ERR_FORMAT, "%s: %s", w->source, msg);
}

static ib_status parse_root(ib_arch *a, json_t *root, const char *source) {
    static const char *const keys[] = {"format", "version", "name", "task", "classes", "input", "act", "stem", "blocks", "head", "seg_head", NULL};
    ib_json_where w = {source, ""};
    if (!json_is_object(root)) return ib_json_bad(&w, "", "the top level must be an object");
    TRY(ib_json_only_keys(&w, root, keys));
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), ARCH_FORMAT))
        return ib_json_bad(&w, "format", "must be \"" ARCH_FORMAT "\" (is this an arch file?)");
    int version = 0;
    TRY(ib_json_get_int(&w, root, "version", &version, 1, 1, 1000));
    if (version != ARCH_VERSION) return ib_json_bad(&w, "version", "unsupported (this build reads version 1)");
    json_t *v;
    if ((v = json_object_get(root, "name"))) {
        if (!json_is_string(v)) return ib_json_bad(&w, "name", "must be a string");
        snprintf(a->name, sizeof a->name, "%s", json_string_value(v));
    }
    if ((v = json_object_get(root, "task"))) {
        if (!json_is_string(v) || (strcmp(json_string_value(v), "classify") && strcmp(json_string_value(v), "segment") &&
                                   strcmp(json_string_value(v), "detect")))
            return ib_json_bad(&w, "task", "must be \"classify\", \"detect\" or \"segment\"");
        snprintf(a->task, sizeof a->task, "%s", json_string_value(v));
    }
    TRY(ib_json_get_int(&w, root, "classes", &a->classes, 1, 1, 1 << 20));
    TRY(ib_json_get_int(&w, root, "input", &a->input, 0, 8, 4096));
    TRY(ib_json_get_act(&w, root, "act", &a->act));
    TRY(ib_json_get_stem(&w, root, &a->stem_out, &a->stem_kernel, &a->stem_stride));
    json_t *blocks = json_object_get(root, "blocks");
    w.path[0] = 0;
    if (!json_is_array(blocks)) return ib_json_bad(&w, "blocks", blocks ? "must be an array" : "missing");
    size_t n = json_array_size(blocks);
    a->blocks = calloc(n ? n : 1, sizeof(ib_block_cfg));
    if (!a->blocks) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", source);
    int cin = a->stem_out;
    for (size_t i = 0; i < n; i++) {
        snprintf(w.path, sizeof w.path, "blocks[%zu]", i);
        TRY(parse_block(&w, json_array_get(blocks, i), &a->blocks[i], cin));
        a->n_blocks++;
        cin = a->blocks[i].out;
    }
    TRY(ib_json_get_head(&w, root, &a->head_out, &a->dropout));
    json_t *sh = json_object_get(root, "seg_head");
    if (sh) {
        static const char *const sk[] = {"repeats", "width", "low_stride", NULL};
        if (!json_is_object(sh)) return ib_json_bad(&w, "seg_head", "must be an object");
        snprintf(w.path, sizeof w.path, "seg_head");
        TRY(ib_json_only_keys(&w, sh, sk));
        TRY(ib_json_get_int(&w, sh, "repeats", &a->seg_repeats, 1, 1, 64));
        TRY(ib_json_get_int(&w, sh, "width", &a->seg_width, 1, 1, 1 << 16));
        TRY(ib_json_get_int(&w, sh, "low_stride", &a->seg_low_stride, 0, 1, 64));
    }
    return IB_OK;
}

ib_status ib_arch_parse(ib_arch *a, const char *text, const char *source) {
    arch_defaults(a);
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", source, err.line, err.column, err.text);
    ib_status s = parse_root(a, root, source);
    json_decref(root);
    if (s) ib_arch_free(a);
    return s;
}

ib_status ib_arch_load(ib_arch *a, const char *path) {
    arch_defaults(a);
    json_error_t err;
    FILE *f = fopen(path, "rb");
    if (!f) return ib_fail(IB_ERR_IO, "%s: cannot open (no such file or not readable)", path);
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    ib_status s = parse_root(a, root, path);
    json_decref(root);
    if (s) ib_arch_free(a);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Writing: blocks one per line, so arch files diff well.

char *ib_arch_to_json(const ib_arch *a) {
    size_t cap = 1024 + (size_t)a->n_blocks * 160, k = 0;
    char *s = malloc(cap);
    IB_ASSERT(s, "out of memory");
#define OUT(...) (k += (size_t)snprintf(s + k, cap - k, __VA_ARGS__))
    OUT("{\n  \"format\": \"%s\", \"version\": %d,\n", ARCH_FORMAT, ARCH_VERSION);
    OUT("  \"name\": \"%s\", \"task\": \"%s\", \"classes\": %d, \"input\": %d, \"act\": \"%s\",\n", a->name, a->task,
        a->classes, a->input, ib_act_name(a->act));
    OUT("  \"stem\": {\"out\": %d, \"kernel\": %d, \"stride\": %d},\n", a->stem_out, a->stem_kernel, a->stem_stride);
    OUT("  \"blocks\": [\n");
    for (int i = 0; i < a->n_blocks; i++) {
        const ib_block_cfg *b = &a->blocks[i];
        OUT("    {\"op\": \"%s\"", ib_block_op_name(b->op));
        if (b->op != IB_BLOCK_SKIP) {
            OUT(", \"kernel\": %d", b->kernel);
            if (b->op == IB_BLOCK_TUCKER) OUT(", \"r_in\": %g, \"r_out\": %g", b->r_in, b->r_out);
            else OUT(", \"expand\": %d", b->expand);
            if (b->op == IB_BLOCK_GCIBN) OUT(", \"groups\": %d", b->groups);
            OUT(", \"out\": %d, \"stride\": %d", b->out, b->stride);
            if (b->se > 0) OUT(", \"se\": %g", b->se);
            if (b->act != IB_ACT_NONE) OUT(", \"act\": \"%s\"", ib_act_name(b->act));
        }
        OUT("}%s\n", i + 1 < a->n_blocks ? "," : "");
    }
    OUT("  ],\n  \"head\": {\"out\": %d, \"dropout\": %g}", a->head_out, a->dropout);
    if (a->seg_repeats > 0) {
        OUT(",\n  \"seg_head\": {\"repeats\": %d, \"width\": %d", a->seg_repeats, a->seg_width);
        if (a->seg_low_stride > 0) OUT(", \"low_stride\": %d", a->seg_low_stride);
        OUT("}");
    }
    OUT("\n}\n");
#undef OUT
    IB_ASSERT(k < cap, "arch JSON buffer too small");
    return s;
}

ib_status ib_arch_save(const ib_arch *a, const char *path) {
    char *json = ib_arch_to_json(a);
    ib_status s = ib_write_file(path, json, strlen(json));
    free(json);
    return s;
}
