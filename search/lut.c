// Latency lookup tables: one CSV per target (docs/FORMATS.md, "Latency table"), read into a hash table
// keyed by a row's first eleven columns, so a subnet's prediction is one look-up per part. Tables are
// written to PATH.tmp and renamed, so a profile run killed mid-write leaves the previous table whole.
#include "search/search.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct meta_line {
    char *key;     // NULL for a comment that is not "key: value"
    char *value;   // the text after "key: " (or the whole comment)
} meta_line;

struct ib_lut {
    char path[512];
    ib_lut_key *keys;
    double *ms;
    int n, cap;
    int *slots;        // open addressing: row index + 1, 0 empty
    int n_slots;       // a power of two, at least twice n
    meta_line *meta;
    int n_meta, cap_meta;
};

// ---------------------------------------------------------------------------------------------
// Keys

static const char *const op_names[] = {"ibn", "fused", "tucker", "gcibn", "skip", "stem", "head", "deeplab", "bifpn", "ssdlite"};

const char *ib_lut_op_name(int op) { return op >= 0 && op < IB_LUT_N_OPS ? op_names[op] : "?"; }

static int ratio_units(float r) { return (int)lround((double)r * 1e4); }

static int key_equal(const ib_lut_key *a, const ib_lut_key *b) {
    return a->op == b->op && a->cin == b->cin && a->cout == b->cout && a->h == b->h && a->w == b->w &&
           a->stride == b->stride && a->kernel == b->kernel && a->expand == b->expand && a->groups == b->groups &&
           ratio_units(a->r_in) == ratio_units(b->r_in) && ratio_units(a->r_out) == ratio_units(b->r_out);
}

static uint64_t key_hash(const ib_lut_key *k) {
    int v[11] = {k->op, k->cin, k->cout, k->h, k->w, k->stride, k->kernel, k->expand, k->groups,
                 ratio_units(k->r_in), ratio_units(k->r_out)};
    uint64_t h = 1469598103934665603ull;   // FNV-1a over the fields, then a final mix
    for (int i = 0; i < 11; i++) {
        h ^= (uint32_t)v[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

ib_lut_key ib_lut_key_block(const ib_block_cfg *cfg, int cin, int h, int w) {
    ib_lut_key k;
    memset(&k, 0, sizeof k);
    k.op = (int)cfg->op;
    k.cin = cin, k.h = h, k.w = w;
    if (cfg->op == IB_BLOCK_SKIP) return k;
    k.cout = cfg->out, k.stride = cfg->stride, k.kernel = cfg->kernel;
    switch (cfg->op) {
    case IB_BLOCK_IBN:
    case IB_BLOCK_FUSED: k.expand = cfg->expand; break;
    case IB_BLOCK_GCIBN: k.expand = cfg->expand, k.groups = cfg->groups; break;
    case IB_BLOCK_TUCKER: k.r_in = cfg->r_in, k.r_out = cfg->r_out; break;
    case IB_BLOCK_SKIP: break;
    }
    return k;
}

ib_lut_key ib_lut_key_stem(const ib_arch *a, int res) {
    ib_lut_key k;
    memset(&k, 0, sizeof k);
    k.op = IB_LUT_STEM;
    k.cin = 3, k.cout = a->stem_out, k.h = res, k.w = res, k.stride = a->stem_stride, k.kernel = a->stem_kernel;
    return k;
}

ib_lut_key ib_lut_key_head(const ib_arch *a, int cin, int h, int w) {
    ib_lut_key k;
    memset(&k, 0, sizeof k);
    k.op = IB_LUT_HEAD;
    k.cin = cin, k.cout = a->classes, k.h = h, k.w = w, k.expand = a->head_out > 0 ? a->head_out : 0;
    return k;
}

const char *ib_lut_key_str(const ib_lut_key *k, char *buf, size_t n) {
    snprintf(buf, n, "%s,%d,%d,%d,%d,%d,%d,%d,%d,%g,%g", ib_lut_op_name(k->op), k->cin, k->cout, k->h, k->w,
             k->stride, k->kernel, k->expand, k->groups, (double)k->r_in, (double)k->r_out);
    return buf;
}

// "Same" padding with odd kernels: ceil(h / stride), as ib_arch_macs.
static int down(int h, int stride) { return (h + stride - 1) / stride; }

int ib_lut_arch_keys(const ib_arch *a, int res, ib_lut_key *keys, int *block) {
    return ib_lut_arch_keys_task(a, res, NULL, keys, block);
}

int ib_lut_arch_keys_task(const ib_arch *a, int res, const ib_lut_task *task, ib_lut_key *keys, int *block) {
    int n = 0, h = down(res, a->stem_stride), c = a->stem_out;
    int cut = task && task->cut < a->n_blocks ? task->cut : a->n_blocks;
    if (block) block[n] = -1;
    keys[n++] = ib_lut_key_stem(a, res);
    for (int i = 0; i < cut; i++) {
        const ib_block_cfg *b = &a->blocks[i];
        if (b->op != IB_BLOCK_SKIP) {
            if (block) block[n] = i;
            keys[n++] = ib_lut_key_block(b, c, h, h);
        }
        h = down(h, b->stride);
        c = b->out;
    }
    if (task && task->has_conv) {
        if (block) block[n] = a->n_blocks;
        keys[n++] = task->conv;
    }
    if (block) block[n] = a->n_blocks;
    keys[n++] = task ? task->head : ib_lut_key_head(a, c, h, h);
    return n;
}

// ---------------------------------------------------------------------------------------------
// The table

ib_lut *ib_lut_new(const char *target) {
    ib_lut *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (target && ib_lut_set_meta(t, "target", target)) {
        ib_lut_free(t);
        return NULL;
    }
    return t;
}

void ib_lut_free(ib_lut *t) {
    if (!t) return;
    for (int i = 0; i < t->n_meta; i++) free(t->meta[i].key), free(t->meta[i].value);
    free(t->meta), free(t->keys), free(t->ms), free(t->slots);
    free(t);
}

const char *ib_lut_path(const ib_lut *t) { return t->path; }
int ib_lut_rows(const ib_lut *t) { return t->n; }

ib_lut_key ib_lut_row(const ib_lut *t, int i, double *ms) {
    IB_ASSERT(i >= 0 && i < t->n, "row %d of %d", i, t->n);
    if (ms) *ms = t->ms[i];
    return t->keys[i];
}

// The slot holding k, or the empty slot where it would go.
static int slot_of(const ib_lut *t, const ib_lut_key *k) {
    int mask = t->n_slots - 1, s = (int)(key_hash(k) & (uint64_t)mask);
    while (t->slots[s] && !key_equal(&t->keys[t->slots[s] - 1], k)) s = (s + 1) & mask;
    return s;
}

static ib_status rehash(ib_lut *t, int n_slots) {
    int *slots = calloc((size_t)n_slots, sizeof(int));
    if (!slots) return ib_fail(IB_ERR_NOMEM, "out of memory for a latency table of %d rows", t->n);
    free(t->slots);
    t->slots = slots, t->n_slots = n_slots;
    for (int i = 0; i < t->n; i++) t->slots[slot_of(t, &t->keys[i])] = i + 1;
    return IB_OK;
}

int ib_lut_find(const ib_lut *t, const ib_lut_key *k, double *ms) {
    if (!t->n) return 0;
    int s = slot_of(t, k);
    if (!t->slots[s]) return 0;
    if (ms) *ms = t->ms[t->slots[s] - 1];
    return 1;
}

ib_status ib_lut_set(ib_lut *t, const ib_lut_key *k, double ms) {
    ib_status st;
    if (t->n_slots < 2 * (t->n + 1) && (st = rehash(t, t->n_slots ? 2 * t->n_slots : 64))) return st;
    int s = slot_of(t, k);
    if (t->slots[s]) {
        t->ms[t->slots[s] - 1] = ms;
        return IB_OK;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        ib_lut_key *keys = realloc(t->keys, sizeof *keys * (size_t)cap);
        if (keys) t->keys = keys;
        double *v = keys ? realloc(t->ms, sizeof *v * (size_t)cap) : NULL;
        if (v) t->ms = v;
        if (!keys || !v) return ib_fail(IB_ERR_NOMEM, "out of memory for a latency table of %d rows", t->n);
        t->cap = cap;
    }
    t->keys[t->n] = *k;
    t->ms[t->n] = ms;
    t->slots[s] = ++t->n;
    return IB_OK;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

const char *ib_lut_meta(const ib_lut *t, const char *key) {
    for (int i = 0; i < t->n_meta; i++)
        if (t->meta[i].key && !strcmp(t->meta[i].key, key)) return t->meta[i].value;
    return NULL;
}

static ib_status add_meta(ib_lut *t, const char *key, const char *value) {
    if (t->n_meta == t->cap_meta) {
        int cap = t->cap_meta ? 2 * t->cap_meta : 16;
        meta_line *m = realloc(t->meta, sizeof *m * (size_t)cap);
        if (!m) return ib_fail(IB_ERR_NOMEM, "out of memory for a latency table's comments");
        t->meta = m, t->cap_meta = cap;
    }
    meta_line *m = &t->meta[t->n_meta];
    m->key = key ? dup_str(key) : NULL;
    m->value = dup_str(value);
    if ((key && !m->key) || !m->value) {
        free(m->key), free(m->value);
        return ib_fail(IB_ERR_NOMEM, "out of memory for a latency table's comments");
    }
    t->n_meta++;
    return IB_OK;
}

ib_status ib_lut_set_meta(ib_lut *t, const char *key, const char *value) {
    if (strchr(value, '\n') || strchr(key, '\n') || strchr(key, ':'))
        return ib_fail(IB_ERR_ARG, "latency table comment '%s': a key without ':' and one-line values are needed", key);
    for (int i = 0; i < t->n_meta; i++)
        if (t->meta[i].key && !strcmp(t->meta[i].key, key)) {
            char *v = dup_str(value);
            if (!v) return ib_fail(IB_ERR_NOMEM, "out of memory for a latency table's comments");
            free(t->meta[i].value);
            t->meta[i].value = v;
            return IB_OK;
        }
    return add_meta(t, key, value);
}

const char *ib_lut_target(const ib_lut *t) {
    const char *v = ib_lut_meta(t, "target");
    return v ? v : "";
}

// ---------------------------------------------------------------------------------------------
// Reading

// "res=R a=A b=B c=C ..." -> 1 and its fields.
// "res=R a=A b=B c=C", then per-op terms "OP.a=X" / "OP.b=Y" (OP an op name or "skip") up to the first word
// that is not one (the note). Tables written before the per-op terms have none: all 0.
static int parse_correction(const char *v, int *res, ib_lut_correction *c) {
    ib_lut_correction x;
    memset(&x, 0, sizeof x);
    int used = 0;
    if (sscanf(v, " res=%d a=%lf b=%lf c=%lf%n", res, &x.a, &x.b, &x.c, &used) != 4) return 0;
    if (*res < 1 || !isfinite(x.a) || !isfinite(x.b) || !isfinite(x.c)) return 0;
    for (const char *p = v + used;;) {
        while (isspace((unsigned char)*p)) p++;
        const char *dot = p;
        while (isalpha((unsigned char)*dot)) dot++;
        int op = -1;
        for (int o = 0; o < IB_LUT_N_OPS; o++)
            if ((size_t)(dot - p) == strlen(op_names[o]) && !strncmp(p, op_names[o], (size_t)(dot - p))) op = o;
        if (op < 0 || dot[0] != '.' || (dot[1] != 'a' && dot[1] != 'b') || dot[2] != '=') break;
        char *end;
        double val = strtod(dot + 3, &end);
        if (end == dot + 3 || !isfinite(val) || (*end && !isspace((unsigned char)*end))) return 0;
        (dot[1] == 'a' ? x.da : x.db)[op] = val;
        p = end;
    }
    if (c) *c = x;
    return 1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int parse_int_field(const char *s, int *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < 0 || x > 1000000) return 0;
    *v = (int)x;
    return 1;
}

static int parse_double_field(const char *s, double *v) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(x) || x < 0) return 0;
    *v = x;
    return 1;
}

static const char *const columns[12] = {"op", "cin", "cout", "h", "w", "stride", "kernel", "expand", "groups",
                                        "r_in", "r_out", "ms"};

// One data row; line is modified. Errors name the file, the line and the column.
static ib_status parse_row(const char *path, int line_no, char *line, ib_lut_key *k, double *ms) {
    char *f[12];
    int n = 0;
    for (char *p = line; n < 12;) {
        f[n++] = p;
        if (n == 12) break;   // the last field keeps any further commas
        char *c = strchr(p, ',');
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    // A 13th field (an extra comma) shows up as a comma left in the last one.
    if (n != 12 || strchr(f[11], ','))
        return ib_fail(IB_ERR_FORMAT, "%s:%d: %s fields; a row has 12 (%s)", path, line_no,
                       n != 12 ? "too few" : "too many", IB_LUT_HEADER);
    for (int i = 0; i < 12; i++) f[i] = trim(f[i]);
    memset(k, 0, sizeof *k);
    k->op = -1;
    for (int o = 0; o < IB_LUT_N_OPS; o++)
        if (o != IB_BLOCK_SKIP && !strcmp(f[0], op_names[o])) k->op = o;
    if (k->op < 0)
        return ib_fail(IB_ERR_FORMAT, "%s:%d: op '%s' is not ibn, fused, tucker, gcibn, stem, head, deeplab, bifpn or "
                       "ssdlite", path, line_no, f[0]);
    int seg = k->op >= IB_LUT_DEEPLAB;   // a task head's row: r_in, r_out hold widths, not ratios
    int *ints[8] = {&k->cin, &k->cout, &k->h, &k->w, &k->stride, &k->kernel, &k->expand, &k->groups};
    for (int i = 0; i < 8; i++)
        if (!parse_int_field(f[i + 1], ints[i]))
            return ib_fail(IB_ERR_FORMAT, "%s:%d: %s '%s' is not a non-negative integer", path, line_no, columns[i + 1],
                           f[i + 1]);
    double r[2];
    for (int i = 0; i < 2; i++)
        if (!parse_double_field(f[9 + i], &r[i]) || (seg ? r[i] != floor(r[i]) || r[i] > 1e5 : r[i] > 1))
            return ib_fail(IB_ERR_FORMAT, "%s:%d: %s '%s' is not %s", path, line_no, columns[9 + i], f[9 + i],
                           seg ? "a width (a non-negative integer) of a task head's row" : "a ratio in [0, 1]");
    k->r_in = (float)r[0], k->r_out = (float)r[1];
    if (!parse_double_field(f[11], ms))
        return ib_fail(IB_ERR_FORMAT, "%s:%d: ms '%s' is not a finite non-negative number", path, line_no, f[11]);
    if (k->op != IB_LUT_HEAD && (k->cin < 1 || k->cout < 1 || k->h < 1 || k->w < 1))
        return ib_fail(IB_ERR_FORMAT, "%s:%d: cin, cout, h and w must be positive", path, line_no);
    return IB_OK;
}

// A comment: "# key: value" (key a single word) or free text.
static ib_status parse_comment(ib_lut *t, char *text) {
    text = trim(text);
    char *colon = strchr(text, ':');
    if (colon && colon > text) {
        char *k = text;
        int word = 1;
        for (char *p = k; p < colon; p++)
            if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-')) word = 0;
        if (word) {
            *colon = 0;
            return add_meta(t, k, trim(colon + 1));
        }
    }
    return add_meta(t, NULL, text);
}

ib_status ib_lut_load(ib_lut **out, const char *path) {
    if (!out || !path) return ib_fail(IB_ERR_ARG, "ib_lut_load: a handle and a path are needed");
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return ib_fail(IB_ERR_IO, "%s: cannot open latency table: %s", path, strerror(errno));
    ib_lut *t = ib_lut_new(NULL);
    if (!t) {
        fclose(f);
        return ib_fail(IB_ERR_NOMEM, "out of memory for %s", path);
    }
    snprintf(t->path, sizeof t->path, "%s", path);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int line_no = 0, header = 0;
    ib_status s = IB_OK;
    while (!s && (len = getline(&buf, &cap, f)) >= 0) {
        line_no++;
        if ((size_t)len != strlen(buf)) {
            s = ib_fail(IB_ERR_FORMAT, "%s:%d: a NUL byte: not a text file", path, line_no);
            break;
        }
        char *line = trim(buf);
        if (!*line) continue;
        if (*line == '#') {
            if (!header) s = parse_comment(t, line + 1);   // comments after the header are ignored
            continue;
        }
        if (!header) {
            char h[128];
            size_t k = 0;   // the header without spaces
            for (const char *p = line; *p && k + 1 < sizeof h; p++)
                if (!isspace((unsigned char)*p)) h[k++] = *p;
            h[k] = 0;
            if (strcmp(h, IB_LUT_HEADER))
                s = ib_fail(IB_ERR_FORMAT, "%s:%d: expected the header line '%s' (after '#' comments)", path, line_no,
                            IB_LUT_HEADER);
            header = 1;
            continue;
        }
        ib_lut_key key;
        double ms;
        if ((s = parse_row(path, line_no, line, &key, &ms))) break;
        if (ib_lut_find(t, &key, NULL)) {
            char ks[160];
            s = ib_fail(IB_ERR_FORMAT, "%s:%d: row %s appears twice", path, line_no, ib_lut_key_str(&key, ks, sizeof ks));
            break;
        }
        s = ib_lut_set(t, &key, ms);
    }
    if (!s && ferror(f)) s = ib_fail(IB_ERR_IO, "%s: read error", path);
    if (!s && !header) s = ib_fail(IB_ERR_FORMAT, "%s:%d: no header line '%s'", path, line_no, IB_LUT_HEADER);
    const char *fmt = ib_lut_meta(t, "format");
    if (!s && fmt && strncmp(fmt, IB_LUT_FORMAT, strlen(IB_LUT_FORMAT)))
        s = ib_fail(IB_ERR_FORMAT, "%s: format '%s' is not %s %d", path, fmt, IB_LUT_FORMAT, IB_LUT_VERSION);
    if (!s && fmt) {
        int v = atoi(fmt + strlen(IB_LUT_FORMAT));
        if (v > IB_LUT_VERSION)
            s = ib_fail(IB_ERR_FORMAT, "%s: %s version %d is newer than this ibnas reads (%d): update ibnas", path,
                        IB_LUT_FORMAT, v, IB_LUT_VERSION);
    }
    for (int i = 0; !s && i < t->n_meta; i++) {
        int r;
        if (t->meta[i].key && !strcmp(t->meta[i].key, "correction") && !parse_correction(t->meta[i].value, &r, NULL))
            s = ib_fail(IB_ERR_FORMAT, "%s: the comment 'correction: %s' is not 'res=R a=A b=B c=C'", path,
                        t->meta[i].value);
    }
    free(buf);
    fclose(f);
    if (s) {
        ib_lut_free(t);
        return s;
    }
    *out = t;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Writing

ib_status ib_lut_save(const ib_lut *t, const char *path) {
    char tmp[1100];
    ib_status s;
    FILE *f = ib_wfile_open(path, tmp, sizeof tmp, &s);
    if (!f) return s;
    if (!ib_lut_meta(t, "format")) fprintf(f, "# format: %s %d\n", IB_LUT_FORMAT, IB_LUT_VERSION);
    for (int i = 0; i < t->n_meta; i++) {
        if (t->meta[i].key) fprintf(f, "# %s: %s\n", t->meta[i].key, t->meta[i].value);
        else fprintf(f, "# %s\n", t->meta[i].value);
    }
    fprintf(f, "%s\n", IB_LUT_HEADER);
    char ks[160];
    for (int i = 0; i < t->n; i++) fprintf(f, "%s,%.6g\n", ib_lut_key_str(&t->keys[i], ks, sizeof ks), t->ms[i]);
    return ib_wfile_commit(f, tmp, path);
}

// ---------------------------------------------------------------------------------------------
// Prediction

ib_status ib_lut_predict_sum(const ib_lut *t, const ib_arch *a, int res, double *sum, int *n_rows) {
    return ib_lut_predict_sum_task(t, a, res, NULL, sum, n_rows);
}

ib_status ib_lut_predict_parts(const ib_lut *t, const ib_arch *a, int res, const ib_lut_task *task, ib_lut_parts *p) {
    if (res < 1) return ib_fail(IB_ERR_ARG, "latency prediction at res %d: must be positive", res);
    for (int i = 0; i < a->n_blocks; i++)
        if (a->blocks[i].se > 0)
            return ib_fail(IB_ERR_ARG, "%s: blocks[%d] has squeeze-excite, which latency tables have no column for",
                           a->name, i);
    // A search predicts millions of archs: small ones (all of them, in practice) stay off the heap.
    ib_lut_key keys_small[64];
    int block_small[64], big = IB_LUT_MAX_ROWS(a->n_blocks) > 64;
    ib_lut_key *keys = big ? malloc(sizeof *keys * (size_t)IB_LUT_MAX_ROWS(a->n_blocks)) : keys_small;
    int *block = big ? malloc(sizeof *block * (size_t)IB_LUT_MAX_ROWS(a->n_blocks)) : block_small;
    if (!keys || !block) {
        if (big) free(keys), free(block);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    int n = ib_lut_arch_keys_task(a, res, task, keys, block);
    memset(p, 0, sizeof *p);
    int cut = task && task->cut < a->n_blocks ? task->cut : a->n_blocks;   // the blocks ib_lut_arch_keys_task keys
    for (int i = 0; i < cut; i++) p->count[IB_BLOCK_SKIP] += a->blocks[i].op == IB_BLOCK_SKIP;
    ib_status s = IB_OK;
    for (int i = 0; i < n && !s; i++) {
        double ms;
        if (!ib_lut_find(t, &keys[i], &ms)) {
            char ks[160], part[32];
            if (block[i] < 0) snprintf(part, sizeof part, "the stem");
            else if (block[i] >= a->n_blocks) snprintf(part, sizeof part, "the %s head", task ? "task's" : "classifier");
            else snprintf(part, sizeof part, "blocks[%d]", block[i]);
            s = ib_fail(IB_ERR_NOTFOUND, "%s: no row %s (%s of %s at res %d); profile or model the space at this "
                        "resolution (ibnas latency profile|model%s)",
                        t->path[0] ? t->path : "latency table", ib_lut_key_str(&keys[i], ks, sizeof ks), part, a->name,
                        res, task ? " with the task's head: --task segment|detect and its flags" : "");
        } else {
            p->sum += ms;   // in network order, as the plain sum always was
            p->ms[keys[i].op] += ms;
            p->count[keys[i].op]++;
        }
    }
    p->n_rows = n;
    if (big) free(keys), free(block);
    return s;
}

ib_status ib_lut_predict_sum_task(const ib_lut *t, const ib_arch *a, int res, const ib_lut_task *task, double *sum,
                                  int *n_rows) {
    ib_lut_parts p;
    ib_status s = ib_lut_predict_parts(t, a, res, task, &p);
    if (s) return s;
    if (sum) *sum = p.sum;
    if (n_rows) *n_rows = p.n_rows;
    return IB_OK;
}

int ib_lut_get_correction(const ib_lut *t, int res, ib_lut_correction *c) {
    for (int i = 0; i < t->n_meta; i++) {
        int r;
        if (t->meta[i].key && !strcmp(t->meta[i].key, "correction") && parse_correction(t->meta[i].value, &r, c) &&
            r == res)
            return 1;
    }
    return 0;
}

ib_status ib_lut_set_correction(ib_lut *t, int res, const ib_lut_correction *c, const char *note) {
    char v[1024];
    int k = snprintf(v, sizeof v, "res=%d a=%.6g b=%.6g c=%.6g", res, c->a, c->b, c->c);
    for (int o = 0; o < IB_LUT_N_OPS; o++) {
        if (c->da[o] != 0) k += snprintf(v + k, sizeof v - (size_t)k, " %s.a=%.6g", op_names[o], c->da[o]);
        if (c->db[o] != 0) k += snprintf(v + k, sizeof v - (size_t)k, " %s.b=%.6g", op_names[o], c->db[o]);
    }
    snprintf(v + k, sizeof v - (size_t)k, "%s%s", note && note[0] ? " " : "", note ? note : "");
    for (int i = 0; i < t->n_meta; i++) {
        int r;
        if (t->meta[i].key && !strcmp(t->meta[i].key, "correction") && parse_correction(t->meta[i].value, &r, NULL) &&
            r == res) {
            char *d = dup_str(v);
            if (!d) return ib_fail(IB_ERR_NOMEM, "out of memory for a latency table's comments");
            free(t->meta[i].value);
            t->meta[i].value = d;
            return IB_OK;
        }
    }
    return add_meta(t, "correction", v);
}

double ib_lut_correct(const ib_lut_correction *c, const ib_lut_parts *p) {
    double ms = c->a * p->sum + c->b * p->n_rows + c->c;   // a correction without per-op terms: only this
    for (int o = 0; o < IB_LUT_N_OPS; o++) {
        if (c->da[o] != 0) ms += c->da[o] * p->ms[o];
        if (c->db[o] != 0) ms += c->db[o] * p->count[o];
    }
    return ms;
}

ib_status ib_lut_predict(const ib_lut *t, const ib_arch *a, int res, double *ms) {
    return ib_lut_predict_task(t, a, res, NULL, ms);
}

ib_status ib_lut_predict_task(const ib_lut *t, const ib_arch *a, int res, const ib_lut_task *task, double *ms) {
    if (!t || !a || !ms) return ib_fail(IB_ERR_ARG, "ib_lut_predict: a table, an arch and an output are needed");
    ib_lut_parts p;
    ib_status s = ib_lut_predict_parts(t, a, res, task, &p);
    if (s) return s;
    ib_lut_correction c;
    *ms = ib_lut_get_correction(t, res, &c) ? ib_lut_correct(&c, &p) : p.sum;
    return IB_OK;
}

// Which per-op terms the fit adds to the global pair (bench/lut_correction_cv.py, docs/LATENCY.md): a scale
// per block op (da) and a cost per row of each block op and per skip layer (db). The stem and the head are
// in every subnet once, at one shape: their terms would be the global pair's.
static const int fit_ops[] = {IB_BLOCK_IBN, IB_BLOCK_FUSED, IB_BLOCK_TUCKER, IB_BLOCK_GCIBN};
// The cross-validation also tried a cost per row of each op and per skip layer (db), alone and beside the
// scales: no better held out, and with both the columns are collinear (the stem and head rows are the same
// in every subnet, so sum - the ops' ms and rows - the ops' counts are both constant). Scales only.
enum { FIT_DA = 1, FIT_DB = 0, FIT_MAX = 2 + 2 * 4 + 1 };

// Solves the n x n symmetric positive definite system m x = r (m row-major, overwritten) by Cholesky.
// 0 when m is not positive definite (to rounding).
static int solve_spd(double *m, double *r, int n) {
    for (int j = 0; j < n; j++) {
        double d = m[j * n + j];
        for (int k = 0; k < j; k++) d -= m[j * n + k] * m[j * n + k];
        if (!(d > 1e-12 * fabs(m[j * n + j]))) return 0;
        m[j * n + j] = sqrt(d);
        for (int i = j + 1; i < n; i++) {
            double v = m[i * n + j];
            for (int k = 0; k < j; k++) v -= m[i * n + k] * m[j * n + k];
            m[i * n + j] = v / m[j * n + j];
        }
    }
    for (int i = 0; i < n; i++) {   // L y = r, then L^T x = y
        for (int k = 0; k < i; k++) r[i] -= m[i * n + k] * r[k];
        r[i] /= m[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        for (int k = i + 1; k < n; k++) r[i] -= m[k * n + i] * r[k];
        r[i] /= m[i * n + i];
    }
    return 1;
}

// Least squares in relative terms (each network weighted by 1 / measured^2), since the error that matters
// is |predicted / measured - 1|: a large network must not pull the fit away from the small ones.
ib_lut_correction ib_lut_fit_correction(const ib_lut_parts *p, const double *measured, int n, double ridge) {
    ib_lut_correction c;
    memset(&c, 0, sizeof c);
    c.a = 1;
    double sxy = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        double w = 1 / (measured[i] * measured[i]);
        sxy += w * p[i].sum * measured[i], sxx += w * p[i].sum * p[i].sum;
    }
    if (sxx > 0) c.a = sxy / sxx;   // the pure scale, the fallback
    if (n < 4) return c;
    // On (sum, n_rows) through the origin: a scales the isolated parts, b is what each part costs more inside
    // a network (its weights come from a colder cache, ...), or less (negative: a part timed alone pays a few
    // microseconds of its own set-up, which a 32 px block of 10 to 60 us notices). No intercept: subnets of
    // one space differ little in row count, and b with an intercept beside it is ill-determined. When the row
    // counts do not differ at all, b * n_rows is that intercept, which is what such a space's subnets need
    // (a 6-layer space with one skip choice: 7 or 8 rows; a pure scale there was 6% off held out, a and b 4.9%,
    // docs/LATENCY.md). It needs only the sums to differ: the fit is refused below when (sum, n_rows) are
    // nearly proportional (their weighted correlation above 0.9995), as they are for identical subnets.
    double s11 = 0, s12 = 0, s22 = 0, y1 = 0, y2 = 0;
    for (int i = 0; i < n; i++) {
        double w = 1 / (measured[i] * measured[i]), r = p[i].n_rows;
        s11 += w * p[i].sum * p[i].sum, s12 += w * p[i].sum * r, s22 += w * r * r;
        y1 += w * p[i].sum * measured[i], y2 += w * r * measured[i];
    }
    double det = s11 * s22 - s12 * s12;
    if (!(det > 1e-3 * s11 * s22)) return c;
    double a = (y1 * s22 - y2 * s12) / det, b = (s11 * y2 - s12 * y1) / det;
    if (!(isfinite(a) && isfinite(b) && a > 0)) return c;
    c.a = a, c.b = b;
    if (ridge < 0 || n < IB_LUT_FIT_PER_OP) return c;
    // Per-op terms beside a and b, fitted jointly, each penalised toward 0: the columns are sum, n_rows, then
    // the ms (and, with FIT_DB, the row counts) of the ops these subnets have.
    int op_of[FIT_MAX], kind[FIT_MAX], m = 2;   // kind: 0 the op's ms (da), 1 its count (db)
    for (int k = 0; k < (int)(sizeof fit_ops / sizeof fit_ops[0]) + FIT_DB; k++) {
        int op = k < (int)(sizeof fit_ops / sizeof fit_ops[0]) ? fit_ops[k] : IB_BLOCK_SKIP, any = 0;
        for (int i = 0; i < n; i++) any |= p[i].count[op] > 0;
        if (!any) continue;
        if (FIT_DA && op != IB_BLOCK_SKIP) op_of[m] = op, kind[m++] = 0;
        if (FIT_DB) op_of[m] = op, kind[m++] = 1;
    }
    if (m == 2) return c;
    double mat[FIT_MAX * FIT_MAX] = {0}, rhs[FIT_MAX] = {0}, x[FIT_MAX];
    for (int i = 0; i < n; i++) {
        double w = 1 / (measured[i] * measured[i]);
        x[0] = p[i].sum, x[1] = p[i].n_rows;
        for (int j = 2; j < m; j++) x[j] = kind[j] ? p[i].count[op_of[j]] : p[i].ms[op_of[j]];
        for (int j = 0; j < m; j++) {
            rhs[j] += w * x[j] * measured[i];
            for (int k = 0; k < m; k++) mat[j * m + k] += w * x[j] * x[k];
        }
    }
    for (int j = 2; j < m; j++) mat[j * m + j] *= 1 + ridge / n;   // + lam * the mean weighted square
    if (!solve_spd(mat, rhs, m)) return c;
    ib_lut_correction f;
    memset(&f, 0, sizeof f);
    f.a = rhs[0], f.b = rhs[1];
    for (int j = 2; j < m; j++) (kind[j] ? f.db : f.da)[op_of[j]] = rhs[j];
    int ok = isfinite(f.a) && isfinite(f.b) && f.a > 0;
    for (int j = 2; j < m; j++) ok &= isfinite(rhs[j]) && (kind[j] || f.a + rhs[j] > 0);
    return ok ? f : c;
}

// ---------------------------------------------------------------------------------------------
// --lut NAME=FILE

ib_status ib_lut_parse_spec(const char *spec, char *name, size_t n, const char **path) {
    if (!spec || !name || n < 1 || !path) return ib_fail(IB_ERR_ARG, "ib_lut_parse_spec: missing argument");
    name[0] = 0;
    const char *eq = strchr(spec, '=');
    if (!eq) {
        *path = spec;
    } else {
        size_t len = (size_t)(eq - spec);
        if (len == 0) return ib_fail(IB_ERR_ARG, "--lut %s: the name before '=' is empty (NAME=FILE.csv)", spec);
        if (len >= n) return ib_fail(IB_ERR_ARG, "--lut %s: the name is longer than %zu characters", spec, n - 1);
        for (size_t i = 0; i < len; i++)
            if (!(isalnum((unsigned char)spec[i]) || spec[i] == '_' || spec[i] == '-' || spec[i] == '.'))
                return ib_fail(IB_ERR_ARG, "--lut %s: the name may hold letters, digits, '_', '-' and '.' only", spec);
        memcpy(name, spec, len);
        name[len] = 0;
        *path = eq + 1;
    }
    if (!**path) return ib_fail(IB_ERR_ARG, "--lut '%s': no file given (NAME=FILE.csv or FILE.csv)", spec);
    return IB_OK;
}

ib_status ib_lut_load_spec(ib_lut **t, const char *spec, char *name, size_t n) {
    const char *path;
    ib_status s = ib_lut_parse_spec(spec, name, n, &path);
    if (s) return s;
    if ((s = ib_lut_load(t, path))) return s;
    if (!name[0]) {
        const char *target = ib_lut_target(*t);
        if (target[0]) {
            snprintf(name, n, "%s", target);
        } else {
            const char *b = strrchr(path, '/');
            snprintf(name, n, "%s", b ? b + 1 : path);
            size_t l = strlen(name);
            if (l > 4 && !strcmp(name + l - 4, ".csv")) name[l - 4] = 0;
        }
    }
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Spearman's rho: Pearson's correlation of the ranks.

typedef struct { double v; int i; } ranked;
static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return (x->v > y->v) - (x->v < y->v);
    return x->i - y->i;
}

static int ranks(const double *x, int n, double *r) {
    ranked *s = malloc(sizeof *s * (size_t)n);
    if (!s) return 0;
    for (int i = 0; i < n; i++) s[i] = (ranked){x[i], i};
    qsort(s, (size_t)n, sizeof *s, cmp_ranked);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && s[j + 1].v == s[i].v) j++;
        for (int k = i; k <= j; k++) r[s[k].i] = 0.5 * (i + j) + 1;   // ties share their mean rank
        i = j + 1;
    }
    free(s);
    return 1;
}

double ib_spearman(const double *x, const double *y, int n) {
    if (n < 2) return 0;
    double *rx = malloc(sizeof(double) * (size_t)n), *ry = malloc(sizeof(double) * (size_t)n);
    double rho = 0;
    if (rx && ry && ranks(x, n, rx) && ranks(y, n, ry)) {
        double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++) mx += rx[i], my += ry[i];
        mx /= n, my /= n;
        for (int i = 0; i < n; i++) {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }
        rho = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
    }
    free(rx), free(ry);
    return rho;
}
