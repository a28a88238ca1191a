// Filling a `cpu` latency table by measurement: the rows a space can use, each part timed alone on the
// inference path (what ibnas infer and the search's subnets run), and whole networks timed the same way
// for validation and for the correction that maps the sum of isolated parts onto a network's time.
#include "search/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int down(int h, int stride) { return (h + stride - 1) / stride; }

int ib_lut_space_keys(const ib_space *s, int res, int classes, ib_lut_key **out) {
    *out = NULL;
    int cap = 64, n = 0;
    ib_lut_key *keys = malloc(sizeof *keys * (size_t)cap);
    ib_lut *seen = ib_lut_new(NULL);   // the hash table, for the repeats
    if (!keys || !seen) goto nomem;
    ib_arch a;   // only what the stem and head keys read
    memset(&a, 0, sizeof a);
    a.stem_out = s->stem_out, a.stem_kernel = s->stem_kernel, a.stem_stride = s->stem_stride;
    a.head_out = s->head_out, a.classes = classes > 0 ? classes : s->classes;
    int h = down(res, s->stem_stride), c = s->stem_out;
    keys[n++] = ib_lut_key_stem(&a, res);
    int max_choices = 0;
    for (int l = 0; l < s->n_layers; l++) {
        int nc = ib_space_choices(s, l, NULL, 0);
        if (nc > max_choices) max_choices = nc;
    }
    ib_block_cfg *ch = malloc(sizeof *ch * (size_t)(max_choices ? max_choices : 1));
    if (!ch) goto nomem;
    for (int l = 0; l < s->n_layers; l++) {
        ib_space_layer li = ib_space_layer_info(s, l);
        int nc = ib_space_choices(s, l, ch, max_choices);
        for (int i = 0; i < nc; i++) {
            if (ch[i].op == IB_BLOCK_SKIP) continue;
            ib_lut_key k = ib_lut_key_block(&ch[i], li.cin, h, h);
            if (ib_lut_find(seen, &k, NULL)) continue;
            if (ib_lut_set(seen, &k, 0)) {
                free(ch);
                goto nomem;
            }
            if (n + 1 >= cap) {
                ib_lut_key *m = realloc(keys, sizeof *keys * (size_t)(cap *= 2));
                if (!m) {
                    free(ch);
                    goto nomem;
                }
                keys = m;
            }
            keys[n++] = k;
        }
        h = down(h, li.stride);
        c = li.cout;
    }
    free(ch);
    keys[n++] = ib_lut_key_head(&a, c, h, h);
    ib_lut_free(seen);
    *out = keys;
    return n;
nomem:
    free(keys);
    ib_lut_free(seen);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Timing

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

const char *ib_lut_stat_name(ib_lut_stat s) { return s == IB_LUT_MIN ? "min" : "median"; }
const char *ib_lut_clock_name(ib_lut_clock c) { return c == IB_LUT_THREAD_CPU ? "cpu" : "wall"; }

int ib_lut_clock_parse(const char *name, ib_lut_clock *c) {
    if (!strcmp(name, "wall")) *c = IB_LUT_WALL;
    else if (!strcmp(name, "cpu")) *c = IB_LUT_THREAD_CPU;
    else return 0;
    return 1;
}

int ib_lut_stat_parse(const char *name, ib_lut_stat *s) {
    if (!strcmp(name, "median")) *s = IB_LUT_MEDIAN;
    else if (!strcmp(name, "min")) *s = IB_LUT_MIN;
    else return 0;
    return 1;
}

// The block configuration a row stands for (SE off, the network's activation).
static ib_block_cfg key_block_cfg(const ib_lut_key *k) {
    ib_block_cfg c;
    memset(&c, 0, sizeof c);
    c.op = (ib_block_op)k->op;
    c.out = k->cout, c.stride = k->stride, c.kernel = k->kernel;
    c.expand = k->expand, c.groups = k->groups, c.r_in = k->r_in, c.r_out = k->r_out;
    return c;
}

// A part to time: its modules live in `ps`.
typedef struct part {
    const ib_lut_key *k;
    ib_act act;
    ib_block block;
    ib_cba cba;
    ib_linear_mod fc;
} part;

static ib_tensor *part_forward(ib_ctx *ctx, const part *p, ib_tensor *x) {
    switch (p->k->op) {
    case IB_LUT_STEM: return ib_cba_forward(ctx, &p->cba, x);
    case IB_LUT_HEAD: {
        ib_tensor *h = p->k->expand > 0 ? ib_cba_forward(ctx, &p->cba, x) : x;
        if (p->k->cout == 0) return h;   // a detector's head conv alone
        h = ib_global_avg_pool(ctx, h);
        h = ib_reshape(ctx, h, 2, (int[]){h->shape[0], h->shape[1]});
        return ib_linear_forward(ctx, &p->fc, h);
    }
    default: return ib_block_forward(ctx, &p->block, x);
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#endif

int ib_cache_flush(const void *p, size_t bytes) {
    const char *b = p;
#if defined(__x86_64__) || defined(__i386__)
    for (size_t i = 0; i < bytes; i += 64) _mm_clflush(b + i);
    if (bytes) _mm_clflush(b + bytes - 1);
    _mm_mfence();
    return 1;
#elif defined(__aarch64__)
    uint64_t ctr;
    __asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
    size_t line = (size_t)4 << ((ctr >> 16) & 0xf);   // DminLine: the smallest data cache line, in words
    for (size_t i = 0; i < bytes; i += line) __asm__ volatile("dc civac, %0" : : "r"(b + i) : "memory");
    if (bytes) __asm__ volatile("dc civac, %0" : : "r"(b + bytes - 1) : "memory");
    __asm__ volatile("dsb ish" : : : "memory");
    return 1;
#else
    (void)b, (void)bytes;
    return 0;
#endif
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ib_status ib_lut_time_forward(ib_lut_forward_fn fwd, void *user, int c, int h, int w, const ib_lut_timing *tm,
                              const ib_params *const *weights, double *ms) {
    int warmup = tm->warmup, repeats = tm->repeats;
    if (repeats < 1 || warmup < 0)
        return ib_fail(IB_ERR_ARG, "timing: repeats %d must be positive, warmup %d not negative", repeats, warmup);
    // Other threads' work does not show in this thread's CPU time.
    if (tm->clock == IB_LUT_THREAD_CPU && ib_get_threads() != 1)
        return ib_fail(IB_ERR_ARG, "timing with the thread CPU clock needs 1 thread (%d set)", ib_get_threads());
    double (*now)(void) = tm->clock == IB_LUT_THREAD_CPU ? thread_cpu_s : ib_time_s;
    ib_ctx *ctx = ib_ctx_new();
    float *x = malloc(sizeof(float) * (size_t)c * (size_t)h * (size_t)w);
    // Short parts run more often: at least `repeats` timed runs and min_ms of timed time, at most 8x repeats.
    int max_runs = tm->min_ms > 0 ? 8 * repeats : repeats;
    double *t = malloc(sizeof(double) * (size_t)max_runs);
    if (!ctx || !x || !t) {
        ib_ctx_free(ctx), free(x), free(t);
        return ib_fail(IB_ERR_NOMEM, "out of memory for a %dx%dx%d input", c, h, w);
    }
    ib_rng r;
    ib_rng_seed(&r, 1, 0x1a7);
    ib_rng_fill_normal(&r, x, (int64_t)c * h * w, 0, 1);
    ib_tensor xt;
    ib_tensor_init(&xt, x, 4, (int[]){1, c, h, w});
    ctx->training = 0;
    ctx->recording = 0;
    unsigned char *evict = tm->evict_bytes ? malloc(tm->evict_bytes) : NULL;
    volatile float sink = 0;
    double timed = 0;
    int n = 0;
    for (int i = 0; n < max_runs && (n < repeats || 1e3 * timed < tm->min_ms); i++) {
        ib_ctx_reset(ctx);
        if (evict) {
            memset(evict, i & 0xff, tm->evict_bytes);
            float acc = 0;
            for (int64_t j = 0; j < (int64_t)c * h * w; j += 16) acc += x[j];
            sink += acc;
        }
        for (int k = 0; tm->cold && weights && weights[k]; k++) {   // after the input's re-read: it stays hot
            ib_cache_flush(weights[k]->data, sizeof(float) * (size_t)weights[k]->numel_params);
            ib_cache_flush(weights[k]->buf, sizeof(float) * (size_t)weights[k]->numel_buffers);
        }
        double t0 = now();
        fwd(user, ctx, &xt);
        double dt = now() - t0;
        if (i >= warmup) t[n++] = dt, timed += dt;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    if (tm->stat == IB_LUT_MIN) *ms = 1e3 * t[0];
    else *ms = 1e3 * (n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]));
    (void)sink;
    ib_ctx_free(ctx), free(x), free(t), free(evict);
    return IB_OK;
}

static ib_tensor *part_fwd(void *user, ib_ctx *ctx, ib_tensor *x) { return part_forward(ctx, user, x); }
static ib_tensor *net_fwd(void *user, ib_ctx *ctx, ib_tensor *x) { return ib_net_forward(ctx, user, x); }

ib_status ib_lut_time_row(const ib_lut_key *k, ib_act act, const ib_lut_timing *tm, double *ms) {
    char ks[160];
    ib_lut_key_str(k, ks, sizeof ks);
    if (k->cin < 1 || k->h < 1 || k->w < 1 || (k->cout < 1 && !(k->op == IB_LUT_HEAD && k->expand > 0)))
        return ib_fail(IB_ERR_ARG, "row %s: cin, cout, h and w must be positive to time it", ks);
    part p;
    memset(&p, 0, sizeof p);
    p.k = k, p.act = act;
    ib_params ps;
    ib_params_init(&ps);
    ib_status s = IB_OK;
    switch (k->op) {
    case IB_LUT_STEM:
        if (k->kernel < 1 || k->kernel % 2 == 0 || k->stride < 1)
            s = ib_fail(IB_ERR_ARG, "row %s: the stem needs an odd kernel and a stride", ks);
        else ib_cba_init(&p.cba, &ps, "stem", k->cin, k->cout, k->kernel, k->stride, 1, act);
        break;
    case IB_LUT_HEAD:
        if (k->expand > 0) ib_cba_init(&p.cba, &ps, "head", k->cin, k->expand, 1, 1, 1, act);
        if (k->cout > 0) ib_linear_init(&p.fc, &ps, "fc", k->expand > 0 ? k->expand : k->cin, k->cout);
        break;
    default: {
        ib_block_cfg c = key_block_cfg(k);
        if (k->op < 0 || k->op >= IB_BLOCK_SKIP) {
            s = ib_fail(IB_ERR_ARG, "row %s: not a timed op", ks);
            break;
        }
        char where[200];
        snprintf(where, sizeof where, "row %s", ks);
        if (!(s = ib_block_check(&c, k->cin, where))) ib_block_init(&p.block, &ps, "block", &c, k->cin, act);
    }
    }
    if (!s) s = ib_params_alloc(&ps);
    if (!s) {
        ib_params_init_default(&ps, 0);
        s = ib_lut_time_forward(part_fwd, &p, k->cin, k->h, k->w, tm, (const ib_params *[]){&ps, NULL}, ms);
    }
    ib_params_free(&ps);
    return s;
}

ib_status ib_lut_time_arch(const ib_arch *a, int res, const ib_lut_timing *tm, double *ms) {
    if (res < 8) return ib_fail(IB_ERR_ARG, "timing %s at res %d: at least 8 is needed", a->name, res);
    ib_net net;
    ib_status s = ib_net_build(&net, a);
    if (!s) {
        ib_net_init_weights(&net, 0);
        s = ib_lut_time_forward(net_fwd, &net, 3, res, res, tm, NULL, ms);
    }
    ib_net_free(&net);
    return s;
}

int ib_lut_net_rounds(const ib_lut_timing *tm) { return tm->rounds > 0 ? tm->rounds : IB_LUT_PASSES; }

int ib_lut_rounds(const ib_lut *t) {
    const char *rd = ib_lut_meta(t, "rounds");
    return rd && atoi(rd) > 1 ? atoi(rd) : 1;
}

// Pass `pass` of `passes` over the networks: each one's time, or its smaller with the passes before.
static ib_status time_archs_pass(const ib_arch *archs, int n, int res, const ib_lut_timing *tm, double *ms, int pass,
                                 int passes, void (*progress)(void *, int, int, const char *), void *user,
                                 const char *what) {
    for (int i = 0; i < n; i++) {
        double m;
        ib_status s = ib_lut_time_arch(&archs[i], res, tm, &m);
        if (s) return s;
        ms[i] = pass == 0 || m < ms[i] ? m : ms[i];
        if (progress) progress(user, pass * n + i + 1, passes * n, what);
    }
    return IB_OK;
}

ib_status ib_lut_time_archs(const ib_arch *archs, int n, int res, const ib_lut_timing *tm, double *ms,
                            void (*progress)(void *user, int done, int total, const char *what), void *user,
                            const char *what) {
    ib_status s = IB_OK;
    int rounds = ib_lut_net_rounds(tm);
    for (int pass = 0; pass < rounds && !s; pass++)
        s = time_archs_pass(archs, n, res, tm, ms, pass, rounds, progress, user, what);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Profiling a space

size_t ib_lut_default_evict_bytes(void) {
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return 4 * (size_t)(l2 > 0 ? l2 : 1 << 20);
}

void ib_lut_profile_cfg_default(ib_lut_profile_cfg *c) {
    memset(c, 0, sizeof *c);
    c->timing.warmup = 3;
    c->timing.repeats = 15;
    c->timing.stat = IB_LUT_MEDIAN;
    c->timing.evict_bytes = ib_lut_default_evict_bytes();
    c->timing.min_ms = 30;
    c->timing.cold = 1;
    c->save_every = 20;
    c->calibrate = 0;
    c->calibrate_seed = 1000;
    c->calibrate_ridge = -1;
    c->calibrate_repeats = 9;
    c->calibrate_min_ms = 100;
}

void ib_lut_device_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "Model", 5)) continue;
        char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        snprintf(buf, n, "%s", v);
        break;
    }
    fclose(f);
}

static void fill_meta(ib_lut *t, const ib_lut_profile_cfg *c) {
    char buf[256];
    time_t now = time(NULL);
    struct tm tmv;
    ib_lut_set_meta(t, "target", "cpu");
    ib_lut_device_name(buf, sizeof buf);
    ib_lut_set_meta(t, "device", buf);
    snprintf(buf, sizeof buf, "%d", ib_get_threads());
    ib_lut_set_meta(t, "threads", buf);
    ib_lut_set_meta(t, "batch", "1");
    snprintf(buf, sizeof buf, "%d or more (until %g ms are timed, at most %d; after %d warm-up runs; %zu KiB "
             "evicted before each)", c->timing.repeats, c->timing.min_ms, 8 * c->timing.repeats, c->timing.warmup,
             c->timing.evict_bytes >> 10);
    ib_lut_set_meta(t, "repeats", buf);
    ib_lut_set_meta(t, "stat", ib_lut_stat_name(c->timing.stat));
    ib_lut_set_meta(t, "weights", c->timing.cold ? "cold" : "cached");
    // Recorded when more than one, so that a validation times its networks the same way.
    if (c->timing.rounds > 1) {
        snprintf(buf, sizeof buf, "%d", c->timing.rounds);
        ib_lut_set_meta(t, "rounds", buf);
    }
    ib_lut_set_meta(t, "clock", ib_lut_clock_name(c->timing.clock));
    ib_lut_set_meta(t, "act", ib_act_name(c->space->act));
    ib_lut_set_meta(t, "simd", ib_simd_name());
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tmv));
    ib_lut_set_meta(t, "date", buf);
    ib_lut_set_meta(t, "ibnas", IB_VERSION_STRING);
}

ib_status ib_lut_calib_archs(const ib_space *s, int classes, int n, uint64_t seed, ib_arch *archs) {
    int *choice = malloc(sizeof(int) * (size_t)(ib_space_genes(s) + 1));
    if (!choice) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_rng r;
    ib_rng_seed(&r, seed, 0xca1);
    ib_status st = IB_OK;
    for (int i = 0; i < n && !st; i++) {
        ib_space_sample(s, IB_SAMPLE_RANDOM, &r, choice);
        st = ib_space_arch(s, choice, classes, &archs[i]);
    }
    free(choice);
    return st;
}

// Fits the correction of res on the subnets' measured ms and the table's rows as they are now.
static ib_status calib_fit(ib_lut *t, const ib_arch *archs, const double *meas, int n, int res, uint64_t seed,
                           double ridge) {
    ib_lut_parts *parts = calloc((size_t)(n > 0 ? n : 1), sizeof *parts);
    if (!parts) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_status st = IB_OK;
    for (int i = 0; i < n && !st; i++) st = ib_lut_predict_parts(t, &archs[i], res, NULL, &parts[i]);
    if (!st) {
        ib_lut_correction c = ib_lut_fit_correction(parts, meas, n, ridge);
        double before = 0, after = 0;
        for (int i = 0; i < n; i++)
            before += fabs(parts[i].sum / meas[i] - 1), after += fabs(ib_lut_correct(&c, &parts[i]) / meas[i] - 1);
        char note[200];
        snprintf(note, sizeof note, "(fit on %d subnets, seed %llu: mean abs error %.1f%% -> %.1f%%)", n,
                 (unsigned long long)seed, 100 * before / n, 100 * after / n);
        st = ib_lut_set_correction(t, res, &c, note);
    }
    free(parts);
    return st;
}

static void free_archs(ib_arch *archs, int n) {
    for (int i = 0; archs && i < n; i++) ib_arch_free(&archs[i]);
    free(archs);
}

ib_status ib_lut_calibrate(ib_lut *t, const ib_space *s, int res, int classes, int n, uint64_t seed, double ridge,
                           const ib_lut_timing *tm, void (*progress)(void *, int, int, const char *), void *user) {
    ib_arch *archs = calloc((size_t)(n > 0 ? n : 1), sizeof *archs);
    double *meas = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    ib_status st = archs && meas ? ib_lut_calib_archs(s, classes, n, seed, archs) : ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && !st; i++) {   // a missing row fails before minutes of timing
        ib_lut_parts p;
        st = ib_lut_predict_parts(t, &archs[i], res, NULL, &p);
    }
    if (!st) st = ib_lut_time_archs(archs, n, res, tm, meas, progress, user, "calibrating on subnets");
    if (!st) st = calib_fit(t, archs, meas, n, res, seed, ridge);
    free_archs(archs, n);
    free(meas);
    return st;
}

ib_status ib_lut_profile(const ib_lut_profile_cfg *c, int *added, int *total) {
    if (!c->space || !c->out) return ib_fail(IB_ERR_ARG, "latency profile: a space and an output file are needed");
    if (c->res < 8) return ib_fail(IB_ERR_ARG, "latency profile: res %d (at least 8)", c->res);
    if (c->n_extra < 0 || (c->n_extra > 0 && (!c->extra || !c->time_extra)))
        return ib_fail(IB_ERR_ARG, "latency profile: extra rows need their keys and a timing function");
    if (c->timing.repeats < 1 || c->timing.warmup < 0 || c->save_every < 1 || c->calibrate < 0 ||
        (c->calibrate && c->calibrate_repeats < 1))
        return ib_fail(IB_ERR_ARG, "latency profile: repeats and save_every must be positive, warmup and calibrate "
                                   "not negative");
    ib_lut *t = NULL;
    ib_status s = IB_OK;
    FILE *probe = fopen(c->out, "r");
    if (probe) {
        fclose(probe);
        if ((s = ib_lut_load(&t, c->out))) return s;
        // Rows of another target, thread count, statistic or clock would mix two tables' numbers.
        const char *tg = ib_lut_target(t), *th = ib_lut_meta(t, "threads"), *st = ib_lut_meta(t, "stat");
        const char *ck = ib_lut_meta(t, "clock"), *wt = ib_lut_meta(t, "weights");
        const char *want = ib_lut_stat_name(c->timing.stat), *want_ck = ib_lut_clock_name(c->timing.clock);
        const char *want_wt = c->timing.cold ? "cold" : "cached";
        int had_rounds = ib_lut_rounds(t), want_rounds = c->timing.rounds > 1 ? c->timing.rounds : 1;
        if (!wt) wt = "cached";   // tables before the flush
        if (strcmp(tg, "cpu") || !th || atoi(th) != ib_get_threads() || strcmp(st ? st : "median", want) ||
            strcmp(ck ? ck : "wall", want_ck) || had_rounds != want_rounds || strcmp(wt, want_wt)) {
            s = ib_fail(IB_ERR_ARG, "%s: a table of target '%s' with %s threads (%s, %s clock, %d round%s, %s weights); "
                        "this run measures cpu with %d threads (%s, %s clock, %d round%s, %s weights): write another file",
                        c->out, tg, th ? th : "unknown", st ? st : "median", ck ? ck : "wall", had_rounds,
                        had_rounds > 1 ? "s" : "", wt, ib_get_threads(), want, want_ck, want_rounds,
                        want_rounds > 1 ? "s" : "", want_wt);
            ib_lut_free(t);
            return s;
        }
    } else if (!(t = ib_lut_new("cpu"))) {
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    fill_meta(t, c);
    ib_lut_key *keys;
    int n = ib_lut_space_keys(c->space, c->res, c->classes, &keys);
    if (n < 0) {
        ib_lut_free(t);
        return ib_fail(IB_ERR_NOMEM, "out of memory listing the rows of %s", c->space->name);
    }
    if (c->n_extra > 0) {   // the task's rows after the space's
        ib_lut_key *m = realloc(keys, sizeof *keys * (size_t)(n + c->n_extra));
        if (!m) {
            free(keys);
            ib_lut_free(t);
            return ib_fail(IB_ERR_NOMEM, "out of memory listing the rows of %s", c->space->name);
        }
        keys = m;
        memcpy(keys + n, c->extra, sizeof *keys * (size_t)c->n_extra);
        n += c->n_extra;
    }
    // The rows this run times: the missing ones, each in every round (the first adds it, a later one keeps
    // the faster time). A run stopped in a later round resumes nothing: its rows are there, with the
    // rounds they had. With rounds, the calibration's subnets are timed in the same rounds, a pass over
    // them after each pass over the rows, so rows and networks keep their fastest of the same stretch of
    // time: a machine that is slower while the networks run than while the rows did would bias the fit.
    int rounds = c->timing.rounds > 0 ? c->timing.rounds : 1;
    unsigned char *mine = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!mine) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    int todo = 0, todo_space = 0, done = 0, since_save = 0, steps = 0;
    for (int i = 0; i < n && mine; i++) {
        todo += mine[i] = !ib_lut_find(t, &keys[i], NULL);
        todo_space += mine[i] && i < n - c->n_extra;
    }
    // (a task's head rows alone leave the correction as it is: it is fitted on the space's classifiers)
    int nc = !s && c->calibrate > 0 && (todo_space > 0 || !ib_lut_get_correction(t, c->res, NULL)) ? c->calibrate : 0;
    // Networks are timed as ib_latency_validate times them by default (repeats 9, min_ms 100), so that a
    // validation measures what the correction was fitted on.
    ib_lut_timing ntm = c->timing;
    ntm.repeats = c->calibrate_repeats;
    ntm.min_ms = c->calibrate_min_ms;
    ntm.evict_bytes = 0;
    ib_arch *archs = nc ? calloc((size_t)nc, sizeof *archs) : NULL;
    double *meas = nc ? malloc(sizeof(double) * (size_t)nc) : NULL;
    if (nc && !s) s = archs && meas ? ib_lut_calib_archs(c->space, c->classes, nc, c->calibrate_seed, archs)
                                    : ib_fail(IB_ERR_NOMEM, "out of memory");
    char what[200];
    for (int round = 0; round < rounds && !s; round++) {
        for (int i = 0; i < n && !s; i++) {
            if (!mine[i]) continue;
            double ms, had;
            int extra = i >= n - c->n_extra;
            if ((s = extra ? c->time_extra(c->extra_user, &keys[i], &c->timing, &ms)
                           : ib_lut_time_row(&keys[i], c->space->act, &c->timing, &ms)))
                break;
            if ((round == 0 || (ib_lut_find(t, &keys[i], &had) && ms < had)) && (s = ib_lut_set(t, &keys[i], ms)))
                break;
            if (round == 0) done++;
            if (++since_save >= c->save_every) {
                if ((s = ib_lut_save(t, c->out))) break;
                since_save = 0;
            }
            if (c->progress)
                c->progress(c->user, ++steps, todo * rounds, ib_lut_key_str(&keys[i], what, sizeof what));
        }
        if (rounds > 1 && nc && !s)
            s = time_archs_pass(archs, nc, c->res, &ntm, meas, round, rounds, c->progress, c->user,
                                "calibrating on subnets");
    }
    free(mine);
    if (nc && !s && rounds == 1)
        s = ib_lut_time_archs(archs, nc, c->res, &ntm, meas, c->progress, c->user, "calibrating on subnets");
    if (nc && !s) s = calib_fit(t, archs, meas, nc, c->res, c->calibrate_seed, c->calibrate_ridge);
    free_archs(archs, nc);
    free(meas);
    ib_status s2 = ib_lut_save(t, c->out);   // what was measured is kept even when a row failed
    if (!s) s = s2;
    if (added) *added = done;
    if (total) *total = n;
    free(keys);
    ib_lut_free(t);
    return s;
}
