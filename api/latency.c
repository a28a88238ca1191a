// api: the "Latency" section of include/ibnas.h over search/'s tables (lut.c), measurement (latency.c)
// and target models (target.c): profile, model, predict, measure and validate, with the progress bar,
// the validation's CSV and its SVG scatter plot.
#include "api/api.h"
#include "search/search.h"
#include "tasks/detect.h"
#include "tasks/segment.h"
#include "tasks/tasks.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// res 0: the stem rows' size when the table has exactly one, else `fallback`.
static int table_res(const ib_lut *t, int fallback) {
    int res = 0;
    for (int i = 0; i < ib_lut_rows(t); i++) {
        ib_lut_key k = ib_lut_row(t, i, NULL);
        if (k.op != IB_LUT_STEM) continue;
        if (res && res != k.h) return fallback;
        res = k.h;
    }
    return res ? res : fallback;
}

static ib_status resolve_arch(ib_arch *a, const char *spec) {
    memset(a, 0, sizeof *a);
    if (!spec || !spec[0]) return ib_fail(IB_ERR_ARG, "no arch given");
    ib_status s = ib_arch_resolve(a, spec, 0);
    if (s) ib_arch_free(a);
    return s;
}

// The network a latency head names: a classifier (kind 0), a segmenter (1) or a detector (2), with its head.
typedef struct task_head {
    int kind;
    ib_seg_head_cfg seg;
    ib_ssd_cfg ssd;           // classes set per arch (task_rows)
    int classes;              // the head's class count; 0: the space's or the arch's
} task_head;

static ib_status task_head_parse(const ib_latency_head *h, task_head *t) {
    memset(t, 0, sizeof *t);
    if (!h || !h->task || !strcmp(h->task, "classify")) return IB_OK;
    if (strcmp(h->task, "segment") && strcmp(h->task, "detect"))
        return ib_fail(IB_ERR_ARG, "latency: task '%s' is not classify, segment or detect", h->task);
    if (h->classes < 0) return ib_fail(IB_ERR_ARG, "latency: classes %d must not be negative", h->classes);
    t->classes = h->classes;
    if (!strcmp(h->task, "detect")) {
        t->kind = 2;
        ib_ssd_cfg_default(&t->ssd, 1);
        t->ssd.tap_expansion = !h->det_tap_block;
        return IB_OK;
    }
    t->kind = 1;
    return ib_api_seg_head_fields(h->seg_head, h->seg_high_stride, h->seg_low_stride, h->seg_head_width,
                                  h->seg_repeats, &t->seg);
}

// The rows of arch a's network (kind > 0): fallback_classes when the head names none.
static ib_status task_rows(task_head *t, const ib_arch *a, int fallback_classes, int res, ib_lut_task *out) {
    int classes = t->classes > 0 ? t->classes : fallback_classes;
    if (t->kind == 1) return ib_seg_lut_task(a, classes, &t->seg, res, out);
    t->ssd.classes = classes;
    return ib_det_lut_task(a, &t->ssd, res, out);
}

// The task's rows a space needs at res beside its own (ib_lut_profile_cfg's and ib_lut_model_space's extra):
// the distinct head rows (and a detector's head conv row) over every choice of the layer after the stride-16
// tap, the one layer whose choice changes a head's inputs (a detector's expansion tap), and every choice of
// a space's searched segmentation head (and, arch_rows, every row of the networks a budget names); arch[i] is
// a network giving keys[i].
#define TASK_ROWS_MAX 256
typedef struct space_task_rows {
    task_head th;
    int classes, res;
    ib_act act;
    int n;
    ib_lut_key keys[TASK_ROWS_MAX];
    ib_arch arch[TASK_ROWS_MAX];
} space_task_rows;

// 1 when r lists key k already.
static int has_row(const space_task_rows *r, const ib_lut_key *k) {
    for (int i = 0; i < r->n; i++)
        if (!memcmp(&r->keys[i], k, sizeof *k)) return 1;
    return 0;
}

static void space_task_rows_free(space_task_rows *r) {
    for (int i = 0; i < r->n; i++) ib_arch_free(&r->arch[i]);
    r->n = 0;
}

static ib_status space_rows(const ib_space *sp, const ib_latency_head *head, int classes, int res, space_task_rows *r) {
    memset(r, 0, sizeof *r);
    ib_status s = task_head_parse(head, &r->th);
    if (s || !r->th.kind) return s;
    r->classes = r->th.classes > 0 ? r->th.classes : classes > 0 ? classes : sp->classes, r->res = res, r->act = sp->act;
    int L = sp->n_layers, *choice = calloc((size_t)ib_space_genes(sp) + 1, sizeof *choice), vary = -1;
    if (!choice) return ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int l = 0, stride = sp->stem_stride; l < L; l++) {   // the first layer past stride 16
        stride *= ib_space_layer_info(sp, l).stride;
        if (stride > 16 && vary < 0) vary = l;
    }
    // and every choice of a searched segmentation head (the head gene: its row's width and layers)
    int nc = vary >= 0 ? ib_space_choices(sp, vary, NULL, 0) : 1, nh = ib_space_head_choices(sp);
    for (int c = 0; c < nc * (nh ? nh : 1) && !s; c++) {
        if (vary >= 0) choice[vary] = c % nc;
        if (nh) choice[L] = c / nc;
        ib_arch a;
        ib_lut_task task;
        if ((s = ib_space_arch(sp, choice, 0, &a))) break;
        if ((s = task_rows(&r->th, &a, r->classes, res, &task))) {
            ib_arch_free(&a);
            break;
        }
        const ib_lut_key *k[2] = {task.has_conv ? &task.conv : NULL, &task.head};
        for (int j = 0; j < 2 && !s; j++) {
            if (!k[j] || has_row(r, k[j]) || r->n >= TASK_ROWS_MAX) continue;
            r->keys[r->n] = *k[j];
            if (!(s = ib_arch_copy(&r->arch[r->n], &a))) r->n++;
        }
        ib_arch_free(&a);
    }
    free(choice);
    if (s) space_task_rows_free(r);
    return s;
}

// The rows of each network of `spec` ("mobilenetv2:1.0,a.arch.json") beside the space's (a budget given as a
// network), the task's head rows too, each listed once.
static ib_status arch_rows(const char *spec, const ib_space *sp, int classes, int res, space_task_rows *r) {
    char buf[2048];
    if (strlen(spec) >= sizeof buf) return ib_fail(IB_ERR_ARG, "latency profile --arch: list too long");
    snprintf(buf, sizeof buf, "%s", spec);
    r->res = res, r->act = sp->act;
    if (!r->classes) r->classes = classes > 0 ? classes : sp->classes;
    ib_status s = IB_OK;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && !s; tok = strtok_r(NULL, ",", &save)) {
        ib_arch a;
        if ((s = ib_arch_resolve(&a, tok, r->classes))) break;
        ib_lut_task task, *tk = r->th.kind ? &task : NULL;
        ib_lut_key *keys = malloc(sizeof *keys * (size_t)IB_LUT_MAX_ROWS(a.n_blocks));
        if (!keys) s = ib_fail(IB_ERR_NOMEM, "out of memory");
        if (!s && tk) s = task_rows(&r->th, &a, r->classes, res, &task);
        int n = s ? 0 : ib_lut_arch_keys_task(&a, res, tk, keys, NULL);
        for (int i = 0; i < n && !s; i++) {
            if (has_row(r, &keys[i])) continue;
            if (r->n >= TASK_ROWS_MAX)
                s = ib_fail(IB_ERR_ARG, "latency profile --arch: more than %d rows beside the space's", TASK_ROWS_MAX);
            else if (!(s = ib_arch_copy(&r->arch[r->n], &a))) r->keys[r->n++] = keys[i];
        }
        free(keys);
        ib_arch_free(&a);
    }
    return s;
}

// Times one of the rows beside the space's (ib_lut_profile_cfg.time_extra): a task's head alone on the arch
// that listed it, any other row (a head conv, a network's blocks) as the space's rows are timed.
static ib_status space_row_time(void *user, const ib_lut_key *k, const ib_lut_timing *tm, double *ms) {
    space_task_rows *r = user;
    if (k->op != IB_LUT_DEEPLAB && k->op != IB_LUT_BIFPN && k->op != IB_LUT_SSDLITE) return ib_lut_time_row(k, r->act, tm, ms);
    for (int i = 0; i < r->n; i++)
        if (!memcmp(&r->keys[i], k, sizeof *k)) {
            if (r->th.kind == 1) return ib_seg_time_head(&r->arch[i], r->classes, &r->th.seg, r->res, tm, ms);
            r->th.ssd.classes = r->classes;
            return ib_det_time_head(&r->arch[i], &r->th.ssd, r->res, tm, ms);
        }
    return ib_fail(IB_ERR_ARG, "latency profile: a task row it did not list");
}

ib_status ib_lut_predict_arch(const ib_lut *t, const char *arch, int res, double *ms) {
    if (!t || !ms) return ib_fail(IB_ERR_ARG, "ib_lut_predict_arch: a table and an output are needed");
    ib_arch a;
    ib_status s = resolve_arch(&a, arch);
    if (s) return s;
    s = ib_lut_predict(t, &a, res > 0 ? res : table_res(t, a.input), ms);
    ib_arch_free(&a);
    return s;
}

ib_status ib_lut_predict_detail(const ib_lut *t, const char *arch, int res, ib_latency_prediction *p) {
    return ib_lut_predict_detail_head(t, arch, NULL, res, p);
}

ib_status ib_lut_predict_detail_head(const ib_lut *t, const char *arch, const ib_latency_head *head, int res,
                                     ib_latency_prediction *p) {
    if (!t || !p) return ib_fail(IB_ERR_ARG, "ib_lut_predict_detail: a table and an output are needed");
    memset(p, 0, sizeof *p);
    ib_arch a;
    task_head th;
    ib_status s = task_head_parse(head, &th);
    if (s || (s = resolve_arch(&a, arch))) return s;
    p->res = res > 0 ? res : table_res(t, a.input);
    ib_lut_task task, *tk = th.kind ? &task : NULL;
    if ((th.kind && (s = task_rows(&th, &a, a.classes, p->res, &task))) ||
        (s = ib_lut_predict_task(t, &a, p->res, tk, &p->ms)) ||
        (s = ib_lut_predict_sum_task(t, &a, p->res, tk, &p->sum, &p->n_rows))) {
        ib_arch_free(&a);
        return s;
    }
    ib_lut_correction c;
    ib_lut_parts parts;
    if ((p->corrected = ib_lut_get_correction(t, p->res, &c)) && !(s = ib_lut_predict_parts(t, &a, p->res, tk, &parts))) {
        p->a = c.a, p->b = c.b, p->c = c.c;
        for (int o = 0; o < IB_LUT_N_OPS; o++)
            for (int d = 0; d < 2; d++) {
                double coef = d ? c.db[o] : c.da[o];
                if (coef == 0 || p->n_terms >= (int)(sizeof p->terms / sizeof p->terms[0])) continue;
                ib_latency_term *e = &p->terms[p->n_terms++];
                snprintf(e->op, sizeof e->op, "%s", ib_lut_op_name(o));
                e->kind = d ? 'b' : 'a';
                e->coef = coef, e->x = d ? parts.count[o] : parts.ms[o];
            }
    }
    if (s) {
        ib_arch_free(&a);
        return s;
    }
    ib_lut_key *keys = malloc(sizeof *keys * (size_t)IB_LUT_MAX_ROWS(a.n_blocks));
    int *block = malloc(sizeof *block * (size_t)IB_LUT_MAX_ROWS(a.n_blocks));
    p->rows = calloc((size_t)IB_LUT_MAX_ROWS(a.n_blocks), sizeof *p->rows);
    if (!keys || !block || !p->rows) {
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
    } else {
        p->n_rows = ib_lut_arch_keys_task(&a, p->res, tk, keys, block);
        for (int i = 0; i < p->n_rows; i++) {
            p->rows[i].block = block[i];
            ib_lut_key_str(&keys[i], p->rows[i].key, sizeof p->rows[i].key);
            ib_lut_find(t, &keys[i], &p->rows[i].ms);
        }
    }
    free(keys), free(block);
    ib_arch_free(&a);
    if (s) ib_latency_prediction_free(p);
    return s;
}

void ib_latency_prediction_free(ib_latency_prediction *p) {
    if (!p) return;
    free(p->rows);
    p->rows = NULL;
    p->n_rows = 0;
}

// ---------------------------------------------------------------------------------------------
// Profile and model

void ib_latency_profile_opts_default(ib_latency_profile_opts *o) {
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->warmup = 3;
    o->repeats = 15;
    o->min_ms = 30;
    o->stat = "median";
    o->clock = "wall";
    o->rounds = 1;
    o->save_every = 20;
    o->calibrate = 10;
    o->calibrate_seed = 1000;
}

typedef struct { const char *phase; double t0, last; } progress_state;

// Rows are named by their CSV key, the calibration by itself: the bar shows the phase.
static void progress_bar(void *user, int done, int total, const char *what) {
    progress_state *p = user;
    const char *phase = strchr(what, ',') ? "timing rows" : what;
    if (!p->phase || strcmp(p->phase, phase)) {
        if (p->phase) fprintf(stderr, "\n");
        p->phase = phase;
        p->t0 = ib_time_s();
        p->last = 0;
    }
    double now = ib_time_s();
    if (done < total && now - p->last < 0.2) return;   // a few lines a second, not one per row
    p->last = now;
    ib_progress_line(phase, done, 0, total, p->t0, "");
}

static ib_status load_space(ib_space *s, const char *path) {
    if (!path || !path[0]) return ib_fail(IB_ERR_ARG, "no space given");
    return ib_space_load(s, path);
}

ib_status ib_latency_profile(const ib_latency_profile_opts *o, ib_latency_profile_report *r) {
    if (r) memset(r, 0, sizeof *r);
    if (!o || !o->out || !o->out[0]) return ib_fail(IB_ERR_ARG, "ib_latency_profile: an output table is needed");
    if (o->threads < 1) return ib_fail(IB_ERR_ARG, "latency profile: threads %d (at least 1)", o->threads);
    ib_space sp;
    ib_status s = load_space(&sp, o->space);
    if (s) return s;
    ib_set_threads(o->threads);
    ib_lut_profile_cfg c;
    ib_lut_profile_cfg_default(&c);
    c.space = &sp;
    c.res = o->res > 0 ? o->res : sp.input;
    c.classes = o->classes;
    if (o->rounds < 1) {
        ib_space_free(&sp);
        return ib_fail(IB_ERR_ARG, "latency profile: rounds %d (at least 1)", o->rounds);
    }
    c.timing.warmup = o->warmup, c.timing.repeats = o->repeats, c.timing.min_ms = o->min_ms;
    c.timing.rounds = o->rounds > 1 ? o->rounds : 0;
    c.timing.cold = !o->warm_weights;
    c.save_every = o->save_every;
    if (o->stat && !ib_lut_stat_parse(o->stat, &c.timing.stat)) {
        ib_space_free(&sp);
        return ib_fail(IB_ERR_ARG, "latency profile: stat '%s' is not median or min", o->stat);
    }
    if (o->clock && !ib_lut_clock_parse(o->clock, &c.timing.clock)) {
        ib_space_free(&sp);
        return ib_fail(IB_ERR_ARG, "latency profile: clock '%s' is not wall or cpu", o->clock);
    }
    c.calibrate = o->calibrate, c.calibrate_seed = o->calibrate_seed;
    c.calibrate_ridge = o->calibrate_per_op ? IB_LUT_RIDGE : -1;
    c.out = o->out;
    // A segmenter's or a detector's head rows over the space's taps.
    space_task_rows *tr = malloc(sizeof *tr);
    if (!tr) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s) s = space_rows(&sp, &o->head, o->classes, c.res, tr);
    if (!s && o->archs && o->archs[0]) s = arch_rows(o->archs, &sp, o->classes, c.res, tr);   // networks' rows too
    if (!s && tr->n) c.n_extra = tr->n, c.extra = tr->keys, c.time_extra = space_row_time, c.extra_user = tr;
    if (s) {
        free(tr);
        ib_space_free(&sp);
        return s;
    }
    progress_state ps = {NULL, 0, 0};
    if (o->progress) c.progress = progress_bar, c.user = &ps;
    double t0 = ib_time_s();
    int added = 0, rows = 0;
    s = ib_lut_profile(&c, &added, &rows);
    if (o->progress && ps.phase) fprintf(stderr, "\n");
    if (r) r->rows = rows, r->added = added, r->wall_s = ib_time_s() - t0;
    space_task_rows_free(tr);
    free(tr);
    ib_space_free(&sp);
    return s;
}

ib_status ib_latency_model(const char *space, const char *target, int res, int classes, const char *out, int *rows) {
    return ib_latency_model_head(space, target, res, classes, NULL, out, rows);
}

ib_status ib_latency_model_head(const char *space, const char *target, int res, int classes,
                                const ib_latency_head *head, const char *out, int *rows) {
    return ib_latency_model_archs(space, target, res, classes, head, NULL, out, rows);
}

ib_status ib_latency_model_archs(const char *space, const char *target, int res, int classes,
                                 const ib_latency_head *head, const char *archs, const char *out, int *rows) {
    if (!out || !out[0] || !target) return ib_fail(IB_ERR_ARG, "ib_latency_model: a target and an output are needed");
    ib_space sp;
    ib_status s = load_space(&sp, space);
    if (s) return s;
    res = res > 0 ? res : sp.input;
    space_task_rows *tr = malloc(sizeof *tr);
    ib_target *t;
    if (!tr) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s) s = space_rows(&sp, head, classes, res, tr);
    if (!s && archs && archs[0]) s = arch_rows(archs, &sp, classes, res, tr);
    if (!s && !(s = ib_target_load(&t, target))) {
        s = ib_lut_model_space(t, &sp, res, classes, tr->keys, tr->n, out, rows);
        ib_target_free(t);
    }
    if (tr) space_task_rows_free(tr);
    free(tr);
    ib_space_free(&sp);
    return s;
}

ib_status ib_latency_measure(const char *arch, int res, int threads, int repeats, double *ms) {
    return ib_latency_measure_head(arch, NULL, res, threads, repeats, ms);
}

ib_status ib_latency_measure_head(const char *arch, const ib_latency_head *head, int res, int threads, int repeats,
                                  double *ms) {
    if (!ms) return ib_fail(IB_ERR_ARG, "ib_latency_measure: no output given");
    if (threads < 1) return ib_fail(IB_ERR_ARG, "latency measure: threads %d (at least 1)", threads);
    task_head th;
    ib_arch a;
    ib_status s = task_head_parse(head, &th);
    if (s || (s = resolve_arch(&a, arch))) return s;
    ib_set_threads(threads);
    // Timed as a table's calibration and validate time networks (at least 100 ms of timed passes, in
    // IB_LUT_PASSES rounds, the fastest round's median kept), so that a measurement and a prediction are
    // of the same thing: 15 passes of a 0.15 ms network, one burst of 2 ms, read 2-10% slower.
    ib_lut_timing tm = {.warmup = 3, .repeats = repeats > 0 ? repeats : 15, .stat = IB_LUT_MEDIAN, .clock = IB_LUT_WALL,
                        .min_ms = 100};
    res = res > 0 ? res : a.input;
    int classes = th.classes > 0 ? th.classes : a.classes;
    th.ssd.classes = classes;
    for (int round = 0; round < IB_LUT_PASSES && !s; round++) {
        double m = 0;
        s = th.kind == 1   ? ib_seg_time_whole(&a, classes, &th.seg, res, &tm, &m)
            : th.kind == 2 ? ib_det_time_whole(&a, &th.ssd, res, &tm, &m)
                           : ib_lut_time_arch(&a, res, &tm, &m);
        if (!s && (round == 0 || m < *ms)) *ms = m;
    }
    ib_arch_free(&a);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Validation

void ib_latency_validate_opts_default(ib_latency_validate_opts *o) {
    memset(o, 0, sizeof *o);
    o->samples = 50;
    o->threads = 1;
    o->seed = 1;
    o->warmup = 3;
    o->repeats = 9;
    o->min_ms = 100;
}

void ib_latency_validate_report_free(ib_latency_validate_report *r) {
    if (!r) return;
    free(r->predicted), free(r->measured), free(r->recal_predicted);
    r->predicted = r->measured = r->recal_predicted = NULL;
}

// "ibn:k3e6 fused:k5e4 tucker:k3i0.25o0.75 gcibn:k3e4g2 skip" for the CSV.
static void arch_blocks_str(const ib_arch *a, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < a->n_blocks && k + 1 < n; i++) {
        const ib_block_cfg *b = &a->blocks[i];
        const char *sep = i ? " " : "";
        switch (b->op) {
        case IB_BLOCK_IBN:
        case IB_BLOCK_FUSED:
            k += (size_t)snprintf(buf + k, n - k, "%s%s:k%de%d", sep, ib_block_op_name(b->op), b->kernel, b->expand);
            break;
        case IB_BLOCK_GCIBN:
            k += (size_t)snprintf(buf + k, n - k, "%sgcibn:k%de%dg%d", sep, b->kernel, b->expand, b->groups);
            break;
        case IB_BLOCK_TUCKER:
            k += (size_t)snprintf(buf + k, n - k, "%stucker:k%di%go%g", sep, b->kernel, (double)b->r_in,
                                  (double)b->r_out);
            break;
        case IB_BLOCK_SKIP: k += (size_t)snprintf(buf + k, n - k, "%sskip", sep); break;
        }
    }
}

// A round step for axis ticks: 1, 2 or 5 times a power of ten, about n ticks over span.
static double tick_step(double span, int n) {
    double raw = span / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static ib_status write_svg(const char *path, const double *pred, const double *meas, int n, const char *title) {
    char tmp[1300];
    ib_status s;
    FILE *f = ib_wfile_open(path, tmp, sizeof tmp, &s);
    if (!f) return s;
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < n; i++) {
        lo = fmin(lo, fmin(pred[i], meas[i]));
        hi = fmax(hi, fmax(pred[i], meas[i]));
    }
    if (!(hi > lo)) lo = 0, hi = hi > 0 ? 2 * hi : 1;
    double pad = 0.05 * (hi - lo);
    lo = fmax(0, lo - pad), hi += pad;
    const double W = 520, H = 520, L = 70, R = 20, T = 40, B = 60, pw = W - L - R, ph = H - T - B;
#define X(v) (L + ((v) - lo) / (hi - lo) * pw)
#define Y(v) (T + ph - ((v) - lo) / (hi - lo) * ph)
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n", L + pw / 2, title);
    double step = tick_step(hi - lo, 6);
    for (double v = ceil(lo / step) * step; v <= hi + 1e-12; v += step) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", X(v), T, X(v), T + ph);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, Y(v), L + pw, Y(v));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", X(v), T + ph + 16, v);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6, Y(v) + 4, v);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", L, T,
            pw, ph);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n",
            X(lo), Y(lo), X(hi), Y(hi));
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#888\" text-anchor=\"end\">y = x</text>\n", X(hi) - 4, Y(hi) + 14);
    for (int i = 0; i < n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#1f77b4\" fill-opacity=\"0.75\"/>\n", X(pred[i]),
                Y(meas[i]));
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">predicted latency (ms, table)</text>\n", L + pw / 2,
            H - 18);
    fprintf(f, "<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">measured latency (ms, end to "
               "end)</text>\n</svg>\n",
            T + ph / 2);
#undef X
#undef Y
    return ib_wfile_commit(f, tmp, path);
}

// Mean and max of 100 |predicted / measured - 1|, and Spearman's rho.
static void pct_errors(const double *pred, const double *meas, int n, double *mean, double *max, double *rho) {
    double sum = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        double e = 100 * fabs(pred[i] / meas[i] - 1);
        sum += e;
        mx = fmax(mx, e);
    }
    *mean = sum / n, *max = mx;
    *rho = ib_spearman(pred, meas, n);
}

ib_status ib_latency_validate(const ib_latency_validate_opts *o, ib_latency_validate_report *r) {
    if (!o || !r) return ib_fail(IB_ERR_ARG, "ib_latency_validate: options and a report are needed");
    memset(r, 0, sizeof *r);
    if (o->samples < 2) return ib_fail(IB_ERR_ARG, "latency validate: %d samples (at least 2)", o->samples);
    if (o->threads < 1) return ib_fail(IB_ERR_ARG, "latency validate: threads %d (at least 1)", o->threads);
    if (!o->lut) return ib_fail(IB_ERR_ARG, "latency validate: no table given");
    ib_lut *t;
    ib_status s = ib_lut_load(&t, o->lut);
    if (s) return s;
    ib_space sp;
    if ((s = load_space(&sp, o->space))) {
        ib_lut_free(t);
        return s;
    }
    double t0 = ib_time_s();
    int n = o->samples, res = o->res > 0 ? o->res : table_res(t, sp.input);
    r->res = res;
    r->predicted = calloc((size_t)n, sizeof(double));
    r->measured = calloc((size_t)n, sizeof(double));
    int *choice = calloc((size_t)ib_space_genes(&sp) + 1, sizeof(int));
    // The validation's subnets, then the calibration's when recalibrating: timed together, in the same rounds.
    int nc = o->recalibrate > 0 ? o->recalibrate : 0;
    ib_arch *archs = calloc((size_t)(n + nc), sizeof *archs);
    double *meas = calloc((size_t)(n + nc), sizeof *meas);
    if (nc) r->recal_predicted = calloc((size_t)n, sizeof(double));
    if (!r->predicted || !r->measured || !choice || !archs || !meas || (nc && !r->recal_predicted))
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s && o->recalibrate < 0) s = ib_fail(IB_ERR_ARG, "latency validate: recalibrate %d (0: no)", o->recalibrate);
    ib_set_threads(o->threads);
    ib_rng rng;
    ib_rng_seed(&rng, o->seed, 0xca1);   // as ib_lut_calibrate draws: another seed, other subnets
    for (int i = 0; i < n && !s; i++) {
        ib_space_sample(&sp, IB_SAMPLE_RANDOM, &rng, choice);
        if ((s = ib_space_arch(&sp, choice, o->classes, &archs[i]))) break;
        // Every prediction first, so a missing row fails before minutes of measuring.
        s = ib_lut_predict(t, &archs[i], res, &r->predicted[i]);
    }
    if (!s && nc) s = ib_lut_calib_archs(&sp, o->classes, nc, 1000, archs + n);
    ib_lut_timing tm = {.warmup = o->warmup, .repeats = o->repeats, .stat = IB_LUT_MEDIAN, .clock = IB_LUT_WALL,
                         .min_ms = o->min_ms};
    const char *stat = ib_lut_meta(t, "stat"), *clk = ib_lut_meta(t, "clock");
    if (!s && stat && !ib_lut_stat_parse(stat, &tm.stat))
        s = ib_fail(IB_ERR_FORMAT, "%s: stat '%s' is not median or min", o->lut, stat);
    if (!s && clk && !ib_lut_clock_parse(clk, &tm.clock))
        s = ib_fail(IB_ERR_FORMAT, "%s: clock '%s' is not wall or cpu", o->lut, clk);
    // The networks are timed in the rounds the table's rows and correction were (2 for a one-round table).
    tm.rounds = o->rounds > 0 ? o->rounds : ib_lut_rounds(t) > 1 ? ib_lut_rounds(t) : 0;
    if (!s && o->rounds < 0) s = ib_fail(IB_ERR_ARG, "latency validate: rounds %d (at least 1, or 0)", o->rounds);
    progress_state ps = {NULL, 0, 0};
    if (!s) s = ib_lut_time_archs(archs, n + nc, res, &tm, meas, o->progress ? progress_bar : NULL, &ps,
                                  "measuring subnets");
    if (o->progress) fprintf(stderr, "\n");
    if (!s) memcpy(r->measured, meas, sizeof(double) * (size_t)n);
    if (!s && nc) {   // a and b refitted on the calibration subnets as timed now
        ib_lut_parts *parts = calloc((size_t)(n + nc), sizeof *parts);
        if (!parts) s = ib_fail(IB_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n + nc && !s; i++) s = ib_lut_predict_parts(t, &archs[i], res, NULL, &parts[i]);
        if (!s) {
            ib_lut_correction c = ib_lut_fit_correction(parts + n, meas + n, nc, -1);
            r->recal_a = c.a, r->recal_b = c.b;
            for (int i = 0; i < n; i++) r->recal_predicted[i] = ib_lut_correct(&c, &parts[i]);
        }
        free(parts);
    }
    if (!s) {
        r->samples = n;
        pct_errors(r->predicted, r->measured, n, &r->mean_abs_pct_err, &r->max_abs_pct_err, &r->spearman);
        if (nc) pct_errors(r->recal_predicted, r->measured, n, &r->recal_mean_abs_pct_err, &r->recal_max_abs_pct_err,
                           &r->recal_spearman);
    }
    if (!s && o->out_dir) {
        if (mkdir(o->out_dir, 0777) && errno != EEXIST)
            s = ib_fail(IB_ERR_IO, "%s: cannot create the folder: %s", o->out_dir, strerror(errno));
        char path[1200], tmp[1300];
        snprintf(path, sizeof path, "%s/validate.csv", o->out_dir);
        FILE *f = s ? NULL : ib_wfile_open(path, tmp, sizeof tmp, &s);
        if (f) {
            char blocks[4096];
            fprintf(f, "# table: %s (target %s), space: %s, res %d, threads %d, seed %llu, repeats %d (%s, %s clock), "
                    "%d rounds\n", o->lut, ib_lut_target(t), o->space, res, o->threads, (unsigned long long)o->seed,
                    o->repeats, ib_lut_stat_name(tm.stat), ib_lut_clock_name(tm.clock), ib_lut_net_rounds(&tm));
            // The rows summed per op, so a correction can be fitted on them offline (docs/LATENCY.md).
            static const int ops[] = {IB_LUT_STEM, IB_BLOCK_IBN, IB_BLOCK_FUSED, IB_BLOCK_TUCKER, IB_BLOCK_GCIBN,
                                      IB_LUT_HEAD};
            fprintf(f, "sample,predicted_ms,measured_ms,abs_pct_err,macs,sum_ms,n_rows");
            for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
                fprintf(f, ",%s_ms,%s_n", ib_lut_op_name(ops[k]), ib_lut_op_name(ops[k]));
            fprintf(f, ",skip_n,%sblocks\n", nc ? "recalibrated_ms," : "");
            for (int i = 0; i < n && !s; i++) {
                ib_lut_parts pt;
                if ((s = ib_lut_predict_parts(t, &archs[i], res, NULL, &pt))) break;
                arch_blocks_str(&archs[i], blocks, sizeof blocks);
                fprintf(f, "%d,%.4f,%.4f,%.2f,%lld,%.4f,%d", i, r->predicted[i], r->measured[i],
                        100 * fabs(r->predicted[i] / r->measured[i] - 1), (long long)ib_arch_macs(&archs[i], res),
                        pt.sum, pt.n_rows);
                for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
                    fprintf(f, ",%.4f,%d", pt.ms[ops[k]], pt.count[ops[k]]);
                fprintf(f, ",%d,", pt.count[IB_BLOCK_SKIP]);
                if (nc) fprintf(f, "%.4f,", r->recal_predicted[i]);
                fprintf(f, "%s\n", blocks);
            }
            if (s) ib_wfile_discard(f, tmp);
            else s = ib_wfile_commit(f, tmp, path);
        }
        if (!s) {
            char title[300];
            snprintf(path, sizeof path, "%s/validate.svg", o->out_dir);
            snprintf(title, sizeof title, "%s, res %d, %d thread%s: mean |err| %.1f%%, Spearman %.3f", sp.name, res,
                     o->threads, o->threads > 1 ? "s" : "", r->mean_abs_pct_err, r->spearman);
            s = write_svg(path, r->predicted, r->measured, n, title);
        }
    }
    r->wall_s = ib_time_s() - t0;
    for (int i = 0; archs && i < n + nc; i++) ib_arch_free(&archs[i]);
    free(archs), free(choice), free(meas);
    ib_space_free(&sp);
    ib_lut_free(t);
    if (s) ib_latency_validate_report_free(r);
    return s;
}
