// Search strategies over a space's choice vectors: regularised evolution, random search and TuNAS's
// REINFORCE, under latency budgets on several targets at once, scoring through a function handed in.
// The run's whole state sits in OUT/state.json after every generation (written tmp+rename), so a killed
// run resumes to the numbers an uninterrupted one gets. The reports (Pareto CSV and SVG per target, the
// chosen archs, their figure, the summary and the curves) are written from the history of scored archs.
#include "search/search.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------------------------
// Names

const char *ib_search_strategy_name(ib_search_strategy s) {
    static const char *const names[] = {"evolution", "random", "tunas"};
    return (unsigned)s < 3 ? names[s] : "?";
}

int ib_search_strategy_parse(const char *name, ib_search_strategy *s) {
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, ib_search_strategy_name((ib_search_strategy)i))) {
            *s = (ib_search_strategy)i;
            return 1;
        }
    return 0;
}

void ib_search_cfg_default(ib_search_cfg *c) {
    memset(c, 0, sizeof *c);
    c->strategy = IB_SEARCH_EVOLUTION;
    c->population = 32;
    c->sample = 8;
    c->generations = 20;
    c->batch = 16;
    c->max_tries = 200;
    c->tunas_beta = -0.5;
    c->tunas_lr = 0.05;
    c->tunas_baseline = 0.9;
    c->score_label = "score";
    c->verify_slack = 0.05;
    c->verify_rounds = 3;
}

// The shortest of %g and %.9g that reads back as the same float (ratios: 0.25, not 0.25000000).
static const char *ratio_str(char *buf, size_t n, float v) {
    snprintf(buf, n, "%g", v);
    if (strtof(buf, NULL) != v) snprintf(buf, n, "%.9g", v);
    return buf;
}

void ib_search_block_str(const ib_block_cfg *b, char *buf, size_t n) {
    char ri[32], ro[32];
    switch (b->op) {
    case IB_BLOCK_IBN:
    case IB_BLOCK_FUSED: snprintf(buf, n, "%s:k%de%d", ib_block_op_name(b->op), b->kernel, b->expand); break;
    case IB_BLOCK_GCIBN: snprintf(buf, n, "gcibn:k%de%dg%d", b->kernel, b->expand, b->groups); break;
    case IB_BLOCK_TUCKER:
        snprintf(buf, n, "tucker:k%di%so%s", b->kernel, ratio_str(ri, sizeof ri, b->r_in), ratio_str(ro, sizeof ro, b->r_out));
        break;
    default: snprintf(buf, n, "skip"); break;
    }
}

// ---------------------------------------------------------------------------------------------
// A growing string, and files written whole to PATH.tmp then renamed.

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, room, fmt, ap);
        va_end(ap);
        IB_ASSERT(k >= 0, "format error");
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        IB_ASSERT(s, "out of memory for a report");
        b->s = s, b->cap = cap;
    }
}

// snprintf that may cut the text short (names and paths in reports), without the compiler's warning.
__attribute__((format(printf, 3, 4))) static void str_printf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

// Text kept in SVG: &, < and > escaped.
static void sb_xml(sbuf *b, const char *text) {
    for (const char *p = text; *p; p++) {
        if (*p == '&') sb_printf(b, "&amp;");
        else if (*p == '<') sb_printf(b, "&lt;");
        else if (*p == '>') sb_printf(b, "&gt;");
        else sb_printf(b, "%c", *p);
    }
}

static ib_status write_sbuf(const char *path, sbuf *b) {
    ib_status s = ib_write_file(path, b->s ? b->s : "", b->n);
    free(b->s);
    memset(b, 0, sizeof *b);
    return s;
}

static ib_status make_dir(const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(p, 0777) && errno != EEXIST) return ib_fail(IB_ERR_IO, "%s: cannot create (%s)", p, strerror(errno));
            *q = '/';
        }
    if (mkdir(p, 0777) && errno != EEXIST) return ib_fail(IB_ERR_IO, "%s: cannot create (%s)", p, strerror(errno));
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// The run

typedef struct track {
    int target;
    double budget;
    int k;                            // the budget's index in its target's list
} track;

// What the strategy carries from one generation to the next, besides the history: state.json holds it.
typedef struct strat {
    ib_rng rng;
    int *pop, *pop_n;                 // evolution: [tracks * P] history indices, oldest first; [tracks]
    double *logits, *adam_m, *adam_v; // tunas: [tracks * L * maxc]
    double *baseline;                 // tunas: [tracks]
    int *has_baseline, *adam_t;       // tunas: [tracks]
} strat;

typedef struct run {
    const ib_search_cfg *cfg;
    const ib_space *sp;
    int L, maxc, *nc;                 // layers, the largest choice count, each layer's count
    char *ok;                         // [L * maxc]: 1 where cfg->ops allows the choice (all of them when 0)
    int *n_ok;                        // [L]: the allowed choices of each layer
    int res, classes, T, P;
    double t0, last_note;             // the run's start; the last progress line (ib_time_s)
    int has_task;                     // predictions of the task's network (cfg->lut_task)
    ib_lut_task task;
    int n_tracks;
    track tracks[IB_SEARCH_MAX_TARGETS * IB_SEARCH_MAX_BUDGETS];
    // The history: every scored arch, in scoring order. Entries n_scored .. n-1 wait for their scores
    // (staged, NAN until flush_scores).
    int n, cap, n_scored;
    int *h_choice;                    // [cap * L]
    double *h_score, *h_ms;           // [cap], [cap * T]
    int64_t *h_macs;
    int *slots, n_slots;              // open addressing on the choice vector: history index + 1, 0 empty
    strat cur, snap;                  // now, and at the start of the generation under way
    int gen;                          // the next generation to run (0: the first population)
    int *min_choice;                  // [T * L]: the fastest arch on each target (greedy per layer)
    double *min_ms;                   // [T]
    int *scratch;                     // [L + P]
    double *base_ms;                  // [n_baselines * T], NAN when the table lacks a row
    int64_t *base_macs;
    char *base_note;                  // [n_baselines * T * 160]: why a latency is missing
    int *base_choice;                 // [n_baselines * L]: a baseline's choices when it is an arch of the space
    int *base_in;                     // [n_baselines]: 1 when it is (then it is scored like any subnet)
} run;

#define BASE_NOTE 160

static volatile sig_atomic_t search_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    search_interrupted = 1;
}

static ib_status strat_alloc(run *r, strat *s) {
    size_t tr = (size_t)r->n_tracks, pl = tr * (size_t)r->L * (size_t)r->maxc;
    s->pop = calloc(tr * (size_t)(r->P + 1), sizeof(int));
    s->pop_n = calloc(tr, sizeof(int));
    s->logits = calloc(pl, sizeof(double));
    s->adam_m = calloc(pl, sizeof(double));
    s->adam_v = calloc(pl, sizeof(double));
    s->baseline = calloc(tr, sizeof(double));
    s->has_baseline = calloc(tr, sizeof(int));
    s->adam_t = calloc(tr, sizeof(int));
    if (!s->pop || !s->pop_n || !s->logits || !s->adam_m || !s->adam_v || !s->baseline || !s->has_baseline ||
        !s->adam_t)
        return ib_fail(IB_ERR_NOMEM, "out of memory for the search state");
    return IB_OK;
}

static void strat_free(strat *s) {
    free(s->pop), free(s->pop_n), free(s->logits), free(s->adam_m), free(s->adam_v);
    free(s->baseline), free(s->has_baseline), free(s->adam_t);
    memset(s, 0, sizeof *s);
}

static void strat_copy(const run *r, strat *dst, const strat *src) {
    size_t tr = (size_t)r->n_tracks, pl = tr * (size_t)r->L * (size_t)r->maxc;
    dst->rng = src->rng;
    memcpy(dst->pop, src->pop, sizeof(int) * tr * (size_t)(r->P + 1));
    memcpy(dst->pop_n, src->pop_n, sizeof(int) * tr);
    memcpy(dst->logits, src->logits, sizeof(double) * pl);
    memcpy(dst->adam_m, src->adam_m, sizeof(double) * pl);
    memcpy(dst->adam_v, src->adam_v, sizeof(double) * pl);
    memcpy(dst->baseline, src->baseline, sizeof(double) * tr);
    memcpy(dst->has_baseline, src->has_baseline, sizeof(int) * tr);
    memcpy(dst->adam_t, src->adam_t, sizeof(int) * tr);
}

static void run_free(run *r) {
    free(r->ok), free(r->n_ok);
    free(r->nc), free(r->h_choice), free(r->h_score), free(r->h_ms), free(r->h_macs), free(r->slots);
    strat_free(&r->cur), strat_free(&r->snap);
    free(r->min_choice), free(r->min_ms), free(r->scratch);
    free(r->base_ms), free(r->base_macs), free(r->base_note), free(r->base_choice), free(r->base_in);
}

static const char *track_name(const run *r, int t, char *buf, size_t n) {
    snprintf(buf, n, "%s@%gms", r->cfg->targets[r->tracks[t].target].name, r->tracks[t].budget);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// Archs: latency on every target and MACs.

static ib_status measure(const run *r, const int *choice, int only_target, double *ms, int64_t *macs) {
    ib_arch a;
    memset(&a, 0, sizeof a);
    ib_status s = ib_space_arch(r->sp, choice, r->classes, &a);
    ib_lut_task task = r->task;   // a searched head's row is the arch's own
    if (!s && r->has_task && ib_space_head_choices(r->sp)) s = r->cfg->lut_task(r->cfg->lut_task_user, &a, r->res, &task);
    for (int t = 0; !s && t < r->T; t++)
        if (only_target < 0 || t == only_target)
            s = ib_lut_predict_task(r->cfg->targets[t].lut, &a, r->res, r->has_task ? &task : NULL, &ms[t]);
    if (!s && macs) *macs = ib_arch_macs(&a, r->res);
    ib_arch_free(&a);
    return s;
}

static ib_status latency_on(const run *r, const int *choice, int target, double *ms) {
    double all[IB_SEARCH_MAX_TARGETS];
    ib_status s = measure(r, choice, target, all, NULL);
    *ms = all[target];
    return s;
}

// ---------------------------------------------------------------------------------------------
// The history and its look-up by choice vector.

static uint64_t choice_hash(const int *c, int L) {
    uint64_t h = 1469598103934665603ull;
    for (int l = 0; l < L; l++) h = (h ^ (uint32_t)c[l]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static int hist_find(const run *r, const int *c) {
    if (!r->n_slots) return -1;
    for (uint64_t i = choice_hash(c, r->L) & (uint64_t)(r->n_slots - 1);; i = (i + 1) & (uint64_t)(r->n_slots - 1)) {
        int k = r->slots[i];
        if (!k) return -1;
        if (!memcmp(r->h_choice + (size_t)(k - 1) * (size_t)r->L, c, sizeof(int) * (size_t)r->L)) return k - 1;
    }
}

static void slot_insert(run *r, int idx) {
    const int *c = r->h_choice + (size_t)idx * (size_t)r->L;
    uint64_t i = choice_hash(c, r->L) & (uint64_t)(r->n_slots - 1);
    while (r->slots[i]) i = (i + 1) & (uint64_t)(r->n_slots - 1);
    r->slots[i] = idx + 1;
}

static ib_status hist_append(run *r, const int *c, double score, const double *ms, int64_t macs) {
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 256;
        int *hc = realloc(r->h_choice, sizeof(int) * (size_t)cap * (size_t)r->L);
        if (hc) r->h_choice = hc;
        double *hs = realloc(r->h_score, sizeof(double) * (size_t)cap);
        if (hs) r->h_score = hs;
        double *hm = realloc(r->h_ms, sizeof(double) * (size_t)cap * (size_t)r->T);
        if (hm) r->h_ms = hm;
        int64_t *ha = realloc(r->h_macs, sizeof(int64_t) * (size_t)cap);
        if (ha) r->h_macs = ha;
        if (!hc || !hs || !hm || !ha) return ib_fail(IB_ERR_NOMEM, "out of memory for %d scored archs", cap);
        r->cap = cap;
    }
    if ((r->n + 1) * 2 > r->n_slots) {
        int ns = r->n_slots ? r->n_slots * 2 : 512;
        int *sl = calloc((size_t)ns, sizeof(int));
        if (!sl) return ib_fail(IB_ERR_NOMEM, "out of memory for the score cache");
        free(r->slots);
        r->slots = sl, r->n_slots = ns;
        for (int i = 0; i < r->n; i++) slot_insert(r, i);
    }
    int i = r->n++;
    memcpy(r->h_choice + (size_t)i * (size_t)r->L, c, sizeof(int) * (size_t)r->L);
    r->h_score[i] = score;
    memcpy(r->h_ms + (size_t)i * (size_t)r->T, ms, sizeof(double) * (size_t)r->T);
    r->h_macs[i] = macs;
    slot_insert(r, i);
    return IB_OK;
}

// Scoring. A strategy stages the archs it wants scored (stage_choice: a cache hit, or a new history entry
// whose score is pending) and flushes them when it needs their scores (flush_scores). Draws never depend on
// scores that are still pending, so staging changes nothing about which archs a search visits. A flush
// scores the pending archs across the ranks of an MPI job (docs/SCALE.md: a static split, the k-th pending
// arch to rank k mod size) and shares the scores, so every rank keeps the same history and makes the same
// decisions: the same archs, scores and Pareto sets as one process. One process scores them in order.
static ib_status stage_choice(run *r, const int *c, int *idx) {
    int k = hist_find(r, c);
    if (k >= 0) {
        *idx = k;
        return IB_OK;
    }
    double ms[IB_SEARCH_MAX_TARGETS];
    int64_t macs = 0;
    ib_status s = measure(r, c, -1, ms, &macs);
    if (!s) s = hist_append(r, c, NAN, ms, macs);
    *idx = r->n - 1;
    return s;
}

// Drops the history after its first n entries (a flush that did not finish).
static void hist_truncate(run *r, int n) {
    if (n == r->n) return;
    r->n = n;
    memset(r->slots, 0, sizeof(int) * (size_t)r->n_slots);
    for (int i = 0; i < n; i++) slot_insert(r, i);
}

// Scores every pending entry. A failure or a Ctrl-C (on any rank) keeps the scores of the entries before the
// first that was not scored and drops the rest, so the history holds scored archs only; Ctrl-C returns
// IB_ERR_INTERRUPTED after the scores under way, as one process stops after the subnet it is scoring.
static ib_status flush_scores(run *r) {
    int m = r->n - r->n_scored, rank = ib_dist_rank(), size = ib_dist_size();
    if (m <= 0) return IB_OK;
    // Per pending entry its score and 1 once scored; then "a rank failed" and "a rank saw Ctrl-C".
    double *v = calloc(2 * (size_t)m + 2, sizeof(double));
    if (!v) return ib_fail(IB_ERR_NOMEM, "out of memory for %d scores", m);
    ib_status s = IB_OK;
    for (int j = rank; j < m; j += size) {
        int i = r->n_scored + j;
        double t = ib_time_s(), score = 0;
        if (!(s = r->cfg->score(r->cfg->user, r->h_choice + (size_t)i * (size_t)r->L, &score)) && !isfinite(score))
            s = ib_fail(IB_ERR_ARG, "the score function gave %g for subnet %d", score, i);
        if (s) {
            v[2 * m] = 1;
            break;
        }
        v[2 * j] = score, v[2 * j + 1] = 1;
        double now = ib_time_s();
        if (r->cfg->progress && now - r->last_note >= 60) {   // a generation on real data takes minutes: a line a minute
            fprintf(stderr, "search: generation %d under way, %d subnets scored, %.1f s for the last, %.0f s\n", r->gen,
                    i + 1, now - t, now - r->t0);
            r->last_note = now;
        }
        if (search_interrupted) {
            v[2 * m + 1] = 1;
            break;
        }
    }
    ib_dist_allreduce_f64(v, 2 * (int64_t)m + 2);
    int done = 0;
    for (; done < m && v[2 * done + 1] > 0; done++) r->h_score[r->n_scored + done] = v[2 * done];
    int failed = v[2 * m] > 0, stop = v[2 * m + 1] > 0;
    free(v);
    if (done < m) hist_truncate(r, r->n_scored + done);
    r->n_scored = r->n;
    if (failed)
        return s ? s : ib_fail(IB_ERR_ARG, "another rank could not score a subnet (its message is on its stderr)");
    if (stop) return ib_fail(IB_ERR_INTERRUPTED, "interrupted after %d subnets scored", r->n);
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Sampling under a budget

// Layer l's k-th allowed choice (cfg->ops).
static int nth_ok(const run *r, int l, int k) {
    const char *ok = r->ok + (size_t)l * (size_t)r->maxc;
    for (int j = 0; j < r->nc[l]; j++)
        if (ok[j] && k-- == 0) return j;
    return 0;   // not reached: k < n_ok[l]
}

// The fastest arch on a target: per layer, in order, the choice that lowers the prediction most with the
// other layers held (a table's rows add up, so one pass finds the minimum).
static ib_status fastest_arch(run *r, int t) {
    int *c = r->min_choice + (size_t)t * (size_t)r->L;
    for (int l = 0; l < r->L; l++) c[l] = nth_ok(r, l, 0);
    double best;
    ib_status s = latency_on(r, c, t, &best);
    for (int l = 0; !s && l < r->L; l++) {
        int keep = c[l];
        for (int j = 0; !s && j < r->nc[l]; j++) {
            if (j == keep || !r->ok[(size_t)l * (size_t)r->maxc + (size_t)j]) continue;
            c[l] = j;
            double ms;
            if ((s = latency_on(r, c, t, &ms))) break;
            if (ms < best) best = ms, keep = j;
        }
        c[l] = keep;
    }
    r->min_ms[t] = best;
    return s;
}

// Uniform over the allowed choices of every layer (with every op allowed, the draws of before cfg->ops).
static void sample_uniform(run *r, int *c) {
    for (int l = 0; l < r->L; l++) c[l] = nth_ok(r, l, (int)ib_rng_below(&r->cur.rng, (uint32_t)r->n_ok[l]));
}

// A layer's choice changed to another allowed one, uniformly.
static void mutate_layer(run *r, int *c, int l) {
    if (r->n_ok[l] < 2) return;
    int k = 0;   // c[l]'s rank among the allowed choices
    for (int j = 0; j < c[l]; j++) k += r->ok[(size_t)l * (size_t)r->maxc + (size_t)j];
    int j = (int)ib_rng_below(&r->cur.rng, (uint32_t)(r->n_ok[l] - 1));
    c[l] = nth_ok(r, l, j >= k ? j + 1 : j);
}

// Uniform over the space with rejection of archs over the budget. When max_tries draws all fail (a tight
// budget), a random walk from the fastest arch that stays within the budget.
static ib_status sample_in_budget(run *r, int tk, int *c) {
    const track *k = &r->tracks[tk];
    double ms;
    ib_status s;
    for (int i = 0; i < r->cfg->max_tries; i++) {
        sample_uniform(r, c);
        if ((s = latency_on(r, c, k->target, &ms))) return s;
        if (ms <= k->budget) return IB_OK;
    }
    memcpy(c, r->min_choice + (size_t)k->target * (size_t)r->L, sizeof(int) * (size_t)r->L);
    int *trial = r->scratch;
    for (int step = 0; step < 4 * r->L; step++) {
        memcpy(trial, c, sizeof(int) * (size_t)r->L);
        mutate_layer(r, trial, (int)ib_rng_below(&r->cur.rng, (uint32_t)r->L));
        if ((s = latency_on(r, trial, k->target, &ms))) return s;
        if (ms <= k->budget) memcpy(c, trial, sizeof(int) * (size_t)r->L);
    }
    return IB_OK;
}

// One or two layers' choices changed, redrawn while the child is over the budget (at most max_tries
// times; then the child is the parent).
static ib_status mutate_in_budget(run *r, int tk, const int *parent, int *child) {
    const track *k = &r->tracks[tk];
    for (int i = 0; i < r->cfg->max_tries; i++) {
        memcpy(child, parent, sizeof(int) * (size_t)r->L);
        int m = r->L >= 2 ? 1 + (int)ib_rng_below(&r->cur.rng, 2) : 1;
        int l0 = (int)ib_rng_below(&r->cur.rng, (uint32_t)r->L);
        mutate_layer(r, child, l0);
        if (m == 2) {
            int l1 = (int)ib_rng_below(&r->cur.rng, (uint32_t)(r->L - 1));
            mutate_layer(r, child, l1 >= l0 ? l1 + 1 : l1);
        }
        double ms;
        ib_status s = latency_on(r, child, k->target, &ms);
        if (s) return s;
        if (ms <= k->budget) return IB_OK;
    }
    memcpy(child, parent, sizeof(int) * (size_t)r->L);
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// One generation of each strategy

static ib_status gen_random(run *r, int count) {
    int *c = malloc(sizeof(int) * (size_t)r->L);
    if (!c) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_status s = IB_OK;
    int idx;
    for (int tk = 0; !s && tk < r->n_tracks; tk++)
        for (int i = 0; !s && i < count; i++)
            if (!(s = sample_in_budget(r, tk, c))) s = stage_choice(r, c, &idx);
    free(c);
    return s ? s : flush_scores(r);
}

static void pop_push(run *r, int tk, int idx) {
    int *pop = r->cur.pop + (size_t)tk * (size_t)(r->P + 1), *n = &r->cur.pop_n[tk];
    pop[(*n)++] = idx;
    if (*n > r->P) {   // the oldest dies (regularised evolution: age, not fitness)
        memmove(pop, pop + 1, sizeof(int) * (size_t)(*n - 1));
        (*n)--;
    }
}

// The baselines that are archs of the space, scored like any subnet (so the report places them among the
// scored ones and a search cannot end below one by its own score). With push, each also joins the first
// population of every track whose budget it meets, as a parent for evolution; *pushed counts per track.
static ib_status score_baselines(run *r, int push, int *pushed) {
    ib_status s = IB_OK;
    for (int k = 0; !s && k < r->cfg->n_baselines; k++) {
        if (!r->base_in[k]) continue;
        const int *c = r->base_choice + (size_t)k * (size_t)r->L;
        int idx;
        if ((s = stage_choice(r, c, &idx)) || !push) continue;
        for (int tk = 0; tk < r->n_tracks; tk++) {
            const int *pop = r->cur.pop + (size_t)tk * (size_t)(r->P + 1);
            int dup = 0;
            for (int j = 0; j < r->cur.pop_n[tk]; j++) dup |= pop[j] == idx;
            if (dup || pushed[tk] >= r->P) continue;
            double ms = r->h_ms[(size_t)idx * (size_t)r->T + (size_t)r->tracks[tk].target];
            if (ms <= r->tracks[tk].budget) pop_push(r, tk, idx), pushed[tk]++;
        }
    }
    return s ? s : flush_scores(r);
}

// A baseline's score: the one given, else its score in this search when it is an arch of the space.
static double baseline_score(const run *r, int k) {
    double sc = r->cfg->baselines[k].score;
    if (!isnan(sc) || !r->base_in[k]) return sc;
    int i = hist_find(r, r->base_choice + (size_t)k * (size_t)r->L);
    return i >= 0 ? r->h_score[i] : NAN;
}

static ib_status gen_evolution(run *r) {
    int *c = malloc(sizeof(int) * (size_t)r->L), *order = r->scratch + r->L;
    int *pushed = calloc((size_t)r->n_tracks, sizeof(int));
    if (!c || !pushed) {
        free(c), free(pushed);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    ib_status s = r->gen == 0 ? score_baselines(r, 1, pushed) : IB_OK;
    for (int tk = 0; !s && tk < r->n_tracks; tk++) {
        for (int i = 0; !s && i < (r->gen == 0 ? r->P - pushed[tk] : r->cfg->batch); i++) {
            int idx;
            if (r->gen == 0) {
                if (!(s = sample_in_budget(r, tk, c)) && !(s = stage_choice(r, c, &idx))) pop_push(r, tk, idx);
                continue;
            }
            // Tournament: the best of S members drawn without replacement (the draws first: they do not
            // depend on scores; a drawn child of this generation still waiting for its score is scored then).
            const int *pop = r->cur.pop + (size_t)tk * (size_t)(r->P + 1);
            int n = r->cur.pop_n[tk], S = r->cfg->sample < n ? r->cfg->sample : n, parent = -1, pending = 0;
            for (int j = 0; j < n; j++) order[j] = j;
            for (int j = 0; j < S; j++) {
                int pick = j + (int)ib_rng_below(&r->cur.rng, (uint32_t)(n - j));
                int t = order[j];
                order[j] = order[pick], order[pick] = t;
                pending |= pop[order[j]] >= r->n_scored;
            }
            if (pending && (s = flush_scores(r))) break;
            for (int j = 0; j < S; j++)
                if (parent < 0 || r->h_score[pop[order[j]]] > r->h_score[parent]) parent = pop[order[j]];
            if (!(s = mutate_in_budget(r, tk, r->h_choice + (size_t)parent * (size_t)r->L, c)) &&
                !(s = stage_choice(r, c, &idx)))
                pop_push(r, tk, idx);
        }
    }
    free(c), free(pushed);
    return s ? s : flush_scores(r);
}

static double *track_logits(strat *st, const run *r, int tk) {
    return st->logits + (size_t)tk * (size_t)r->L * (size_t)r->maxc;
}

// The policy of a layer over its allowed choices (ok[j]); the others get 0.
static void softmax_row(const double *z, const char *ok, int n, double *p) {
    double mx = -HUGE_VAL, sum = 0;
    for (int j = 0; j < n; j++)
        if (ok[j]) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < n; j++) sum += (p[j] = ok[j] ? exp(z[j] - mx) : 0);
    for (int j = 0; j < n; j++) p[j] /= sum;
}

static int sample_row(ib_rng *rng, const double *p, int n) {
    double u = (double)ib_rng_uniform(rng), acc = 0;
    int last = 0;
    for (int j = 0; j < n; j++) {
        if (p[j] > 0) last = j;
        if (u < (acc += p[j])) return j;
    }
    return last;   // u beyond the rounded sum: the last choice with a chance
}

// One REINFORCE step per track: `batch` archs from the policy, the absolute reward, Adam ascent on the
// logits with the moving-average baseline as the control variate.
static ib_status gen_tunas(run *r) {
    const ib_search_cfg *cfg = r->cfg;
    size_t pl = (size_t)r->L * (size_t)r->maxc;
    int B = cfg->batch;
    int *cs = malloc(sizeof(int) * (size_t)B * (size_t)r->L), *idx = malloc(sizeof(int) * (size_t)B);
    double *reward = malloc(sizeof(double) * (size_t)B), *p = malloc(sizeof(double) * pl),
           *g = malloc(sizeof(double) * pl);
    ib_status s = cs && idx && reward && p && g ? IB_OK : ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int tk = 0; !s && tk < r->n_tracks; tk++) {
        const track *k = &r->tracks[tk];
        double *z = track_logits(&r->cur, r, tk);
        for (int l = 0; l < r->L; l++) softmax_row(z + (size_t)l * (size_t)r->maxc, r->ok + (size_t)l * (size_t)r->maxc, r->nc[l],
                                                p + (size_t)l * (size_t)r->maxc);
        double mean = 0;
        for (int b = 0; !s && b < B; b++) {   // the batch staged (its history entries in idx), then scored at once
            int *c = cs + (size_t)b * (size_t)r->L;
            for (int l = 0; l < r->L; l++) c[l] = sample_row(&r->cur.rng, p + (size_t)l * (size_t)r->maxc, r->nc[l]);
            s = stage_choice(r, c, &idx[b]);
        }
        if (s || (s = flush_scores(r))) break;
        for (int b = 0; b < B; b++) {
            double ms = r->h_ms[(size_t)idx[b] * (size_t)r->T + (size_t)k->target];
            reward[b] = r->h_score[idx[b]] + cfg->tunas_beta * fabs(ms / k->budget - 1);
            mean += reward[b];
        }
        mean /= B;
        if (!r->cur.has_baseline[tk]) r->cur.baseline[tk] = mean, r->cur.has_baseline[tk] = 1;
        double base = r->cur.baseline[tk];
        memset(g, 0, sizeof(double) * pl);
        for (int b = 0; b < B; b++) {
            double adv = (reward[b] - base) / B;
            const int *c = cs + (size_t)b * (size_t)r->L;
            for (int l = 0; l < r->L; l++) {
                double *gl = g + (size_t)l * (size_t)r->maxc, *pp = p + (size_t)l * (size_t)r->maxc;
                for (int j = 0; j < r->nc[l]; j++) gl[j] += adv * ((j == c[l]) - pp[j]);
            }
        }
        int t = ++r->cur.adam_t[tk];
        double *m = r->cur.adam_m + (size_t)tk * pl, *v = r->cur.adam_v + (size_t)tk * pl;
        const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
        double c1 = 1 - pow(b1, t), c2 = 1 - pow(b2, t);
        for (int l = 0; l < r->L; l++)
            for (int j = 0; j < r->nc[l]; j++) {
                size_t i = (size_t)l * (size_t)r->maxc + (size_t)j;
                m[i] = b1 * m[i] + (1 - b1) * g[i];
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                z[i] += cfg->tunas_lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps);   // ascent: the reward grows
            }
        r->cur.baseline[tk] = cfg->tunas_baseline * base + (1 - cfg->tunas_baseline) * mean;
    }
    free(cs), free(idx), free(reward), free(p), free(g);
    return s;
}

static void policy_argmax(const run *r, int tk, int *c) {
    const double *z = r->cur.logits + (size_t)tk * (size_t)r->L * (size_t)r->maxc;
    for (int l = 0; l < r->L; l++) {
        const double *zl = z + (size_t)l * (size_t)r->maxc;
        const char *ok = r->ok + (size_t)l * (size_t)r->maxc;
        c[l] = nth_ok(r, l, 0);
        for (int j = c[l] + 1; j < r->nc[l]; j++)
            if (ok[j] && zl[j] > zl[c[l]]) c[l] = j;
    }
}

// ---------------------------------------------------------------------------------------------
// State: OUT/state.json. Reals are written with 17 significant digits, which read back bit for bit.

#define STATE_FORMAT "ibnas-search-state"
#define STATE_VERSION 1

static json_t *json_ints(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *json_reals(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

static json_t *u64_str(uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    return json_string(b);
}

static json_t *config_json(const run *r) {
    const ib_search_cfg *cfg = r->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "strategy", json_string(ib_search_strategy_name(cfg->strategy)));
    json_object_set_new(o, "seed", u64_str(cfg->seed));
    json_object_set_new(o, "space", json_string(r->sp->name));
    json_object_set_new(o, "choices", json_ints(r->nc, r->L));
    json_object_set_new(o, "res", json_integer(r->res));
    json_object_set_new(o, "classes", json_integer(r->classes));
    json_object_set_new(o, "population", json_integer(cfg->population));
    json_object_set_new(o, "sample", json_integer(cfg->sample));
    json_object_set_new(o, "batch", json_integer(cfg->batch));
    json_object_set_new(o, "max_tries", json_integer(cfg->max_tries));
    if (cfg->ops) json_object_set_new(o, "ops", json_integer(cfg->ops));   // absent when every op is allowed
    // The baselines of the space are scored first and seed evolution: another set is another search.
    json_t *seeds = json_array();
    for (int k = 0; k < cfg->n_baselines; k++)
        if (r->base_in[k]) json_array_append_new(seeds, json_ints(r->base_choice + (size_t)k * (size_t)r->L, r->L));
    json_object_set_new(o, "seeds", seeds);
    if (cfg->score_label) json_object_set_new(o, "score", json_string(cfg->score_label));
    if (cfg->strategy == IB_SEARCH_TUNAS) {
        json_object_set_new(o, "tunas_beta", json_real(cfg->tunas_beta));
        json_object_set_new(o, "tunas_lr", json_real(cfg->tunas_lr));
        json_object_set_new(o, "tunas_baseline", json_real(cfg->tunas_baseline));
    }
    json_t *ts = json_array();
    for (int t = 0; t < r->T; t++) {
        json_t *jt = json_object();
        json_object_set_new(jt, "name", json_string(cfg->targets[t].name));
        json_object_set_new(jt, "budgets_ms", json_reals(cfg->targets[t].budget_ms, cfg->targets[t].n_budgets));
        json_array_append_new(ts, jt);
    }
    json_object_set_new(o, "targets", ts);
    return o;
}

static ib_status state_save(const run *r, const strat *st, int gen, const char *path) {
    if (ib_dist_rank() > 0) return IB_OK;   // rank 0 writes; every rank holds the same state
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string(STATE_FORMAT));
    json_object_set_new(root, "version", json_integer(STATE_VERSION));
    json_object_set_new(root, "config", config_json(r));
    json_object_set_new(root, "generation", json_integer(gen));
    json_t *rng = json_array();
    json_array_append_new(rng, u64_str(st->rng.state));
    json_array_append_new(rng, u64_str(st->rng.inc));
    json_object_set_new(root, "rng", rng);
    json_t *hist = json_array();
    for (int i = 0; i < r->n; i++) {
        json_t *e = json_array();
        json_array_append_new(e, json_real(r->h_score[i]));
        json_array_append_new(e, json_ints(r->h_choice + (size_t)i * (size_t)r->L, r->L));
        json_array_append_new(hist, e);
    }
    json_object_set_new(root, "history", hist);
    json_t *tracks = json_array();
    size_t pl = (size_t)r->L * (size_t)r->maxc;
    for (int tk = 0; tk < r->n_tracks; tk++) {
        json_t *o = json_object();
        json_object_set_new(o, "population", json_ints(st->pop + (size_t)tk * (size_t)(r->P + 1), st->pop_n[tk]));
        if (r->cfg->strategy == IB_SEARCH_TUNAS) {
            json_object_set_new(o, "logits", json_reals(st->logits + (size_t)tk * pl, (int)pl));
            json_object_set_new(o, "adam_m", json_reals(st->adam_m + (size_t)tk * pl, (int)pl));
            json_object_set_new(o, "adam_v", json_reals(st->adam_v + (size_t)tk * pl, (int)pl));
            json_object_set_new(o, "adam_t", json_integer(st->adam_t[tk]));
            json_object_set_new(o, "baseline", json_real(st->baseline[tk]));
            json_object_set_new(o, "has_baseline", json_integer(st->has_baseline[tk]));
        }
        json_array_append_new(tracks, o);
    }
    json_object_set_new(root, "tracks", tracks);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) return ib_fail(IB_ERR_NOMEM, "%s: out of memory (or a non-finite number) writing the state", path);
    ib_status s = ib_write_file(path, text, strlen(text));
    free(text);
    return s;
}

static int read_u64(json_t *j, uint64_t *v) {
    const char *s = json_string_value(j);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno) return 0;
    *v = x;
    return 1;
}

static int read_reals(json_t *a, double *v, int n) {
    if (!json_is_array(a) || (int)json_array_size(a) != n) return 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(a, (size_t)i);
        if (!json_is_number(e)) return 0;
        v[i] = json_number_value(e);
    }
    return 1;
}

static ib_status state_load(run *r, const char *path) {
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    ib_status s = IB_OK;
#define BAD(...) do { s = ib_fail(IB_ERR_FORMAT, __VA_ARGS__); goto done; } while (0)
    const char *fmt = json_string_value(json_object_get(root, "format"));
    if (!fmt || strcmp(fmt, STATE_FORMAT) || json_integer_value(json_object_get(root, "version")) != STATE_VERSION)
        BAD("%s: not an %s file of version %d", path, STATE_FORMAT, STATE_VERSION);
    json_t *want = config_json(r);
    int same = json_equal(want, json_object_get(root, "config"));
    json_decref(want);
    if (!same) {
        s = ib_fail(IB_ERR_ARG,
                    "%s: was written by a search with other settings (strategy, seed, space, resolution, population, "
                    "sample, batch, ops, targets or budgets); resume with the same ones, or use another --out",
                    path);
        goto done;
    }
    json_t *gen = json_object_get(root, "generation"), *rng = json_object_get(root, "rng");
    json_t *hist = json_object_get(root, "history"), *tracks = json_object_get(root, "tracks");
    if (!json_is_integer(gen) || json_integer_value(gen) < 0 || !json_is_array(rng) || json_array_size(rng) != 2 ||
        !read_u64(json_array_get(rng, 0), &r->cur.rng.state) || !read_u64(json_array_get(rng, 1), &r->cur.rng.inc) ||
        !json_is_array(hist) || !json_is_array(tracks) || (int)json_array_size(tracks) != r->n_tracks)
        BAD("%s: generation, rng, history or tracks missing or malformed", path);
    r->gen = (int)json_integer_value(gen);
    int *c = r->scratch;
    for (size_t i = 0; i < json_array_size(hist); i++) {
        json_t *e = json_array_get(hist, i), *jc = json_array_get(e, 1), *js = json_array_get(e, 0);
        if (!json_is_number(js) || !json_is_array(jc) || (int)json_array_size(jc) != r->L)
            BAD("%s: history[%zu] malformed", path, i);
        for (int l = 0; l < r->L; l++) {
            json_t *x = json_array_get(jc, (size_t)l);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= r->nc[l])
                BAD("%s: history[%zu] choice %d out of range", path, i, l);
            c[l] = (int)json_integer_value(x);
        }
        if (hist_find(r, c) >= 0) BAD("%s: history[%zu] repeats an arch", path, i);
        double ms[IB_SEARCH_MAX_TARGETS];
        int64_t macs;
        if ((s = measure(r, c, -1, ms, &macs)) || (s = hist_append(r, c, json_number_value(js), ms, macs))) goto done;
        r->n_scored = r->n;
    }
    size_t pl = (size_t)r->L * (size_t)r->maxc;
    for (int tk = 0; tk < r->n_tracks; tk++) {
        json_t *o = json_array_get(tracks, (size_t)tk), *pop = json_object_get(o, "population");
        if (!json_is_array(pop) || (int)json_array_size(pop) > r->P) BAD("%s: tracks[%d].population malformed", path, tk);
        r->cur.pop_n[tk] = (int)json_array_size(pop);
        for (int j = 0; j < r->cur.pop_n[tk]; j++) {
            json_int_t v = json_integer_value(json_array_get(pop, (size_t)j));
            if (v < 0 || v >= r->n) BAD("%s: tracks[%d].population[%d] is no scored arch", path, tk, j);
            r->cur.pop[(size_t)tk * (size_t)(r->P + 1) + (size_t)j] = (int)v;
        }
        if (r->cfg->strategy != IB_SEARCH_TUNAS) continue;
        json_t *bl = json_object_get(o, "baseline");
        if (!read_reals(json_object_get(o, "logits"), r->cur.logits + (size_t)tk * pl, (int)pl) ||
            !read_reals(json_object_get(o, "adam_m"), r->cur.adam_m + (size_t)tk * pl, (int)pl) ||
            !read_reals(json_object_get(o, "adam_v"), r->cur.adam_v + (size_t)tk * pl, (int)pl) ||
            !json_is_number(bl) || !json_is_integer(json_object_get(o, "adam_t")))
            BAD("%s: tracks[%d]'s policy malformed", path, tk);
        r->cur.baseline[tk] = json_number_value(bl);
        r->cur.adam_t[tk] = (int)json_integer_value(json_object_get(o, "adam_t"));
        r->cur.has_baseline[tk] = (int)json_integer_value(json_object_get(o, "has_baseline"));
    }
#undef BAD
done:
    json_decref(root);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Picks: per track, the best-scored arch of the run within the budget (ties: the faster, then the first).

static int best_within(const run *r, int target, double budget, int upto) {
    int best = -1;
    for (int i = 0; i < upto; i++) {
        double ms = r->h_ms[(size_t)i * (size_t)r->T + (size_t)target];
        if (ms > budget) continue;
        if (best < 0 || r->h_score[i] > r->h_score[best] ||
            (r->h_score[i] == r->h_score[best] && ms < r->h_ms[(size_t)best * (size_t)r->T + (size_t)target]))
            best = i;
    }
    return best;
}

static void arch_string(const run *r, const int *c, sbuf *b) {
    ib_block_cfg cfgs[64];
    for (int l = 0; l < r->sp->n_layers; l++) {
        int n = ib_space_choices(r->sp, l, NULL, 0);
        ib_block_cfg *all = n <= 64 ? cfgs : malloc(sizeof(ib_block_cfg) * (size_t)n);
        IB_ASSERT(all, "out of memory");
        ib_space_choices(r->sp, l, all, n);
        char s[64];
        ib_search_block_str(&all[c[l]], s, sizeof s);
        sb_printf(b, "%s%s", l ? "|" : "", s);
        if (all != cfgs) free(all);
    }
    if (r->L > r->sp->n_layers) {   // the head gene: BiFPN width and layers
        int rep, w, lo;
        ib_space_head_choice(r->sp, c[r->sp->n_layers], &rep, &w, &lo);
        sb_printf(b, "|bifpn:w%dr%d", w, rep);
        if (lo) sb_printf(b, "s%d", lo);
    }
}

// A scored arch's last two CSV columns: its choice vector ("3-0-16-...") and its compact string.
static void choice_cols(const run *r, const int *c, sbuf *b) {
    for (int l = 0; l < r->L; l++) sb_printf(b, "%s%d", l ? "-" : "", c[l]);
    sb_printf(b, ",");
    arch_string(r, c, b);
}

static ib_block_cfg layer_cfg(const run *r, int l, int choice) {
    int n = ib_space_choices(r->sp, l, NULL, 0);
    ib_block_cfg *all = malloc(sizeof(ib_block_cfg) * (size_t)n);
    IB_ASSERT(all, "out of memory");
    ib_space_choices(r->sp, l, all, n);
    ib_block_cfg c = all[choice];
    free(all);
    return c;
}

// ---------------------------------------------------------------------------------------------
// Pareto front: an arch is on it when no other is at least as fast and at least as good, and better in one.

static const run *sort_run;
static int sort_target;
static int by_ms_then_score(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b, T = sort_run->T;
    double mi = sort_run->h_ms[(size_t)i * (size_t)T + (size_t)sort_target];
    double mj = sort_run->h_ms[(size_t)j * (size_t)T + (size_t)sort_target];
    if (mi != mj) return mi < mj ? -1 : 1;
    double si = sort_run->h_score[i], sj = sort_run->h_score[j];
    if (si != sj) return si > sj ? -1 : 1;
    return i - j;
}

// order receives the indices sorted by latency; front[i] flags history entry i.
static void pareto(const run *r, int t, int *order, char *front) {
    for (int i = 0; i < r->n; i++) order[i] = i, front[i] = 0;
    sort_run = r, sort_target = t;
    qsort(order, (size_t)r->n, sizeof(int), by_ms_then_score);
    double best = -INFINITY;
    for (int a = 0; a < r->n;) {
        int b = a;
        double ms = r->h_ms[(size_t)order[a] * (size_t)r->T + (size_t)t];
        while (b < r->n && r->h_ms[(size_t)order[b] * (size_t)r->T + (size_t)t] == ms) b++;
        double top = r->h_score[order[a]];   // the group's best (sorted by score within a latency)
        if (top > best) {
            for (int k = a; k < b && r->h_score[order[k]] == top; k++) front[order[k]] = 1;
            best = top;
        }
        a = b;
    }
}

// ---------------------------------------------------------------------------------------------
// SVG helpers

typedef struct axis {
    double lo, hi, step;
} axis;

// A range padded by 5% with ticks of 1, 2 or 5 times a power of ten, about six of them.
static axis nice_axis(double lo, double hi) {
    if (!(hi > lo)) lo -= 0.5 * (fabs(lo) > 0 ? fabs(lo) * 0.1 : 1), hi = lo + (fabs(lo) > 0 ? fabs(lo) * 0.2 : 2);
    double pad = (hi - lo) * 0.05;
    lo -= pad, hi += pad;
    double raw = (hi - lo) / 6, p = pow(10, floor(log10(raw))), f = raw / p;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
    axis a = {floor(lo / step) * step, ceil(hi / step) * step, step};
    return a;
}

static const char *op_color(ib_block_op op) {
    static const char *const colors[] = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#d9d9d9"};
    return (unsigned)op < 5 ? colors[op] : "#ffffff";
}

#define PW 760
#define PH 500
#define ML 80
#define MR 30
#define MT 50
#define MB 70

static double px(const axis *a, double v) { return ML + (v - a->lo) / (a->hi - a->lo) * (PW - ML - MR); }
static double py(const axis *a, double v) { return PH - MB - (v - a->lo) / (a->hi - a->lo) * (PH - MT - MB); }

static void svg_ticks(sbuf *b, const axis *x, const axis *y) {
    sb_printf(b, "<g font-size=\"11\" fill=\"#333\">\n");
    for (double v = x->lo; v <= x->hi + x->step * 1e-6; v += x->step) {
        double X = px(x, v);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>", X, MT, X, PH - MB);
        sb_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", X, PH - MB + 16, fabs(v) < 1e-12 ? 0 : v);
    }
    for (double v = y->lo; v <= y->hi + y->step * 1e-6; v += y->step) {
        double Y = py(y, v);
        sb_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>", ML, Y, PW - MR, Y);
        sb_printf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ML - 6, Y + 4, fabs(v) < 1e-12 ? 0 : v);
    }
    sb_printf(b, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", ML, MT,
              PW - ML - MR, PH - MT - MB);
}

// ---------------------------------------------------------------------------------------------
// Outputs

typedef struct pick_info {
    int hist;                 // -1: none within the budget
    int argmax_hist;          // tunas: the policy's argmax arch (-1 otherwise)
    int verified;             // as ib_search_pick's: 1, 0, -1 not verified
    double measured_ms, budget_measured_ms;
    int timed;
} pick_info;

static ib_status write_pareto(const run *r, int t, const pick_info *picks, const char *dir) {
    const ib_search_cfg *cfg = r->cfg;
    int *order = malloc(sizeof(int) * (size_t)(r->n ? r->n : 1));
    char *front = malloc((size_t)(r->n ? r->n : 1));
    if (!order || !front) {
        free(order), free(front);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    pareto(r, t, order, front);
    char path[4200];
    ib_status s;

    // pareto.csv: every scored arch, in scoring order.
    sbuf b = {0};
    sb_printf(&b, "# target: %s; search: %s, seed %llu, space %s at %dx%d; %d subnets scored\n", cfg->targets[t].name,
              ib_search_strategy_name(cfg->strategy), (unsigned long long)cfg->seed, r->sp->name, r->res, r->res, r->n);
    sb_printf(&b, "index,score,ms,macs,on_front,choice,arch\n");
    for (int i = 0; i < r->n; i++) {
        const int *c = r->h_choice + (size_t)i * (size_t)r->L;
        sb_printf(&b, "%d,%.6f,%.4f,%lld,%d,", i, r->h_score[i], r->h_ms[(size_t)i * (size_t)r->T + (size_t)t],
                  (long long)r->h_macs[i], front[i]);
        choice_cols(r, c, &b);
        sb_printf(&b, "\n");
    }
    str_printf(path, sizeof path, "%s/pareto.csv", dir);
    if ((s = write_sbuf(path, &b))) goto out;

    // pareto.svg: score against latency.
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < r->n; i++) {
        double ms = r->h_ms[(size_t)i * (size_t)r->T + (size_t)t];
        xlo = fmin(xlo, ms), xhi = fmax(xhi, ms), ylo = fmin(ylo, r->h_score[i]), yhi = fmax(yhi, r->h_score[i]);
    }
    const ib_search_target *tg = &cfg->targets[t];
    for (int k = 0; k < tg->n_budgets; k++) xlo = fmin(xlo, tg->budget_ms[k]), xhi = fmax(xhi, tg->budget_ms[k]);
    for (int k = 0; k < cfg->n_baselines; k++) {
        double ms = r->base_ms[(size_t)k * (size_t)r->T + (size_t)t], sc = baseline_score(r, k);
        if (!isnan(ms)) xlo = fmin(xlo, ms), xhi = fmax(xhi, ms);
        if (!isnan(ms) && !isnan(sc)) ylo = fmin(ylo, sc), yhi = fmax(yhi, sc);
    }
    if (!isfinite(ylo)) ylo = 0, yhi = 1;
    axis ax = nice_axis(xlo, xhi), ay = nice_axis(ylo, yhi);
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                  "font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              PW, PH, PW, PH);
    sb_printf(&b, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">", ML);
    sb_xml(&b, tg->name);
    sb_printf(&b, ": score against predicted latency (%s search, %d subnets, %dx%d)</text>\n",
              ib_search_strategy_name(cfg->strategy), r->n, r->res, r->res);
    svg_ticks(&b, &ax, &ay);
    sb_printf(&b, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">predicted latency on ", (ML + PW - MR) / 2,
              PH - MB + 40);
    sb_xml(&b, tg->name);
    sb_printf(&b, " (ms)</text>\n<text transform=\"translate(18,%d) rotate(-90)\" font-size=\"13\" text-anchor=\"middle\">",
              (MT + PH - MB) / 2);
    sb_xml(&b, cfg->score_label ? cfg->score_label : "score");
    sb_printf(&b, "</text>\n");
    // Budgets.
    for (int k = 0; k < tg->n_budgets; k++) {
        double X = px(&ax, tg->budget_ms[k]);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#d62728\" stroke-dasharray=\"6,4\"/>"
                      "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#d62728\" text-anchor=\"middle\">%g ms</text>\n",
                  X, MT, X, PH - MB, X, MT - 6, tg->budget_ms[k]);
    }
    // Every scored arch, then the front as a staircase.
    sb_printf(&b, "<g fill=\"#9aa5b1\" fill-opacity=\"0.55\">\n");
    for (int i = 0; i < r->n; i++)
        if (!front[i])
            sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>\n", px(&ax, r->h_ms[(size_t)i * (size_t)r->T + (size_t)t]),
                      py(&ay, r->h_score[i]));
    sb_printf(&b, "</g>\n<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    double last_y = NAN;
    for (int k = 0; k < r->n; k++) {
        int i = order[k];
        if (!front[i]) continue;
        double X = px(&ax, r->h_ms[(size_t)i * (size_t)r->T + (size_t)t]), Y = py(&ay, r->h_score[i]);
        if (!isnan(last_y)) sb_printf(&b, "%.1f,%.1f ", X, last_y);
        sb_printf(&b, "%.1f,%.1f ", X, Y);
        last_y = Y;
    }
    sb_printf(&b, "\"/>\n<g fill=\"#1f77b4\">\n");
    for (int i = 0; i < r->n; i++)
        if (front[i])
            sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>\n", px(&ax, r->h_ms[(size_t)i * (size_t)r->T + (size_t)t]),
                      py(&ay, r->h_score[i]));
    sb_printf(&b, "</g>\n");
    // The chosen arch of each budget; budgets that chose the same arch share one label.
    int hk[IB_SEARCH_MAX_BUDGETS];
    for (int k = 0; k < tg->n_budgets; k++) {
        int tk = 0;
        while (tk < r->n_tracks && !(r->tracks[tk].target == t && r->tracks[tk].budget == tg->budget_ms[k])) tk++;
        hk[k] = tk < r->n_tracks ? picks[tk].hist : -1;
    }
    for (int k = 0; k < tg->n_budgets; k++) {
        int h = hk[k], first = 1;
        for (int u = 0; u < k; u++) first &= hk[u] != h;
        if (h < 0 || !first) continue;
        double X = px(&ax, r->h_ms[(size_t)h * (size_t)r->T + (size_t)t]), Y = py(&ay, r->h_score[h]);
        sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#d62728\" text-anchor=\"end\">best &#8804; %g",
                  X, Y, X - 9, Y - 9, tg->budget_ms[k]);
        for (int u = k + 1; u < tg->n_budgets; u++)
            if (hk[u] == h) sb_printf(&b, ", %g", tg->budget_ms[u]);
        sb_printf(&b, " ms: %.4f</text>\n", r->h_score[h]);
    }
    // Baselines: a diamond where a score is given, else a dotted line at their latency; missing rows noted.
    int note_y = PH - 14;
    for (int k = 0; k < cfg->n_baselines; k++) {
        const ib_search_baseline *bl = &cfg->baselines[k];
        double ms = r->base_ms[(size_t)k * (size_t)r->T + (size_t)t];
        if (isnan(ms)) {
            sb_printf(&b, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#555\">", ML, note_y);
            sb_xml(&b, bl->label);
            sb_printf(&b, ": no latency on ");
            sb_xml(&b, tg->name);
            sb_printf(&b, " (its rows are missing from the table; summary.json names one)</text>\n");
            note_y -= 14;
            continue;
        }
        double X = px(&ax, ms);
        double bsc = baseline_score(r, k);
        if (!isnan(bsc)) {
            double Y = py(&ay, bsc);
            sb_printf(&b, "<path d=\"M %.1f %.1f l 6 6 l -6 6 l -6 -6 z\" fill=\"#000\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">",
                      X, Y - 6, X + 8, Y + 4);
            sb_xml(&b, bl->label);
            sb_printf(&b, " (%.2f ms, %.4f)</text>\n", ms, bsc);
        } else {
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000\" stroke-dasharray=\"2,3\"/>"
                          "<text transform=\"translate(%.1f,%d) rotate(-90)\" font-size=\"11\">",
                      X, MT, X, PH - MB, X - 4, PH - MB - 6);
            sb_xml(&b, bl->label);
            sb_printf(&b, " %.2f ms (no score)</text>\n", ms);
        }
    }
    // Legend.
    sb_printf(&b, "<g font-size=\"11\"><circle cx=\"%d\" cy=\"%d\" r=\"2.5\" fill=\"#9aa5b1\"/><text x=\"%d\" y=\"%d\">scored "
                  "subnet</text><circle cx=\"%d\" cy=\"%d\" r=\"3.5\" fill=\"#1f77b4\"/><text x=\"%d\" y=\"%d\">Pareto "
                  "front</text><circle cx=\"%d\" cy=\"%d\" r=\"6\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/><text "
                  "x=\"%d\" y=\"%d\">chosen per budget</text></g>\n",
              PW - MR - 150, PH - MB - 50, PW - MR - 140, PH - MB - 46, PW - MR - 150, PH - MB - 34, PW - MR - 140,
              PH - MB - 30, PW - MR - 150, PH - MB - 18, PW - MR - 140, PH - MB - 14);
    sb_printf(&b, "</svg>\n");
    str_printf(path, sizeof path, "%s/pareto.svg", dir);
    s = write_sbuf(path, &b);
out:
    free(order), free(front);
    return s;
}

typedef struct arch_row {
    char label[200];
    int hist;                 // -1: an empty row ("none within the budget")
} arch_row;

// One row per chosen arch, one cell per layer coloured by op and labelled with its kernel and expansion
// (or tucker's ratios), stages apart: the MobileDets figure of per-target architectures.
static ib_status write_archs_svg(const run *r, const arch_row *rows, int n_rows, const char *title, const char *path) {
    const int CW = 50, CH = 42, GAP = 8, LW = 260, TOP = 70, RH = CH + 12;
    int width = LW + r->L * CW + (r->sp->n_stages - 1) * GAP + 30, height = TOP + n_rows * RH + 70;
    if (width < LW + 640) width = LW + 640;   // the legend's room
    sbuf b = {0};
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
                  "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\" "
                  "font-weight=\"bold\">",
              width, height, width, height);
    sb_xml(&b, title);
    sb_printf(&b, "</text>\n");
    // Stage headers: output width and stride over each stage's cells.
    int x = LW;
    for (int st = 0; st < r->sp->n_stages; st++) {
        const ib_space_stage *sg = &r->sp->stages[st];
        int w = sg->layers * CW;
        sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\">%d ch, s%d</text>"
                      "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>\n",
                  x + w / 2.0, TOP - 22, sg->out, sg->stride, x + 2, TOP - 16, x + w - 2, TOP - 16);
        x += w + GAP;
    }
    for (int i = 0; i < n_rows; i++) {
        int y = TOP + i * RH;
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">", LW - 10, y + CH / 2 + 4);
        sb_xml(&b, rows[i].label);
        sb_printf(&b, "</text>\n");
        if (rows[i].hist < 0) continue;
        const int *c = r->h_choice + (size_t)rows[i].hist * (size_t)r->L;
        x = LW;
        int l = 0;
        for (int st = 0; st < r->sp->n_stages; st++) {
            for (int j = 0; j < r->sp->stages[st].layers; j++, l++) {
                ib_block_cfg bc = layer_cfg(r, l, c[l]);
                const char *ink = bc.op == IB_BLOCK_SKIP ? "#555" : "#fff";
                char l1[32], l2[32], a[16], o[16];
                l1[0] = l2[0] = 0;
                switch (bc.op) {
                case IB_BLOCK_IBN:
                case IB_BLOCK_FUSED: snprintf(l1, sizeof l1, "k%d", bc.kernel), snprintf(l2, sizeof l2, "e%d", bc.expand); break;
                case IB_BLOCK_GCIBN: snprintf(l1, sizeof l1, "k%d e%d", bc.kernel, bc.expand), snprintf(l2, sizeof l2, "g%d", bc.groups); break;
                case IB_BLOCK_TUCKER:
                    snprintf(l1, sizeof l1, "k%d", bc.kernel);
                    // ".25/.75": the ratios without their leading zeros, to fit a cell.
                    ratio_str(a, sizeof a, bc.r_in), ratio_str(o, sizeof o, bc.r_out);
                    snprintf(l2, sizeof l2, "%s/%s", a[0] == '0' ? a + 1 : a, o[0] == '0' ? o + 1 : o);
                    break;
                default: snprintf(l1, sizeof l1, "skip"); break;
                }
                sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"3\" fill=\"%s\" stroke=\"#fff\"/>"
                              "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"%s\" text-anchor=\"middle\">%s</text>",
                          x + 1, y, CW - 2, CH, op_color(bc.op), x + CW / 2.0, y + (l2[0] ? 17 : 25), ink, l1);
                if (l2[0])
                    sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" fill=\"%s\" text-anchor=\"middle\">%s</text>",
                              x + CW / 2.0, y + 32, ink, l2);
                sb_printf(&b, "\n");
                x += CW;
            }
            x += GAP;
        }
        if (r->L > r->sp->n_layers) {   // the searched segmentation head: BiFPN width and layers
            int rep, w, lo;
            ib_space_head_choice(r->sp, c[r->sp->n_layers], &rep, &w, &lo);
            char l2[32];
            snprintf(l2, sizeof l2, lo ? "r%d s%d" : "r%d", rep, lo);
            sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"3\" fill=\"#7a5195\" stroke=\"#fff\"/>"
                          "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#fff\" text-anchor=\"middle\">w%d</text>"
                          "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" fill=\"#fff\" text-anchor=\"middle\">%s</text>\n",
                      x + 1, y, CW - 2, CH, x + CW / 2.0, y + 17, w, x + CW / 2.0, y + 32, l2);
        }
    }
    // Legend.
    int ly = TOP + n_rows * RH + 20;
    x = LW;
    for (int op = 0; op <= IB_BLOCK_SKIP; op++) {
        static const char *const what[] = {"IBN (k kernel, e expansion)", "Fused-IBN", "Tucker (r_in/r_out)",
                                           "GC-IBN (g groups)", "skip"};
        sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" "
                      "font-size=\"11\">%s</text>\n",
                  x, ly, op_color((ib_block_op)op), x + 18, ly + 11, what[op]);
        x += op == 0 ? 190 : op == 2 ? 140 : 120;
    }
    sb_printf(&b, "</svg>\n");
    return write_sbuf(path, &b);
}

// ---------------------------------------------------------------------------------------------
// Measured picks (cfg->verify): a table is a few percent off on some archs, and the search's argmax finds the
// ones it predicts low. The best-scored archs predicted near the budget are timed on this machine beside the
// budget's reference network, in interleaved rounds, and the pick is the best-scored that runs within it.

static int by_score_then_ms(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double si = sort_run->h_score[i], sj = sort_run->h_score[j];
    if (si != sj) return si > sj ? -1 : 1;
    double mi = sort_run->h_ms[(size_t)i * (size_t)sort_run->T + (size_t)sort_target];
    double mj = sort_run->h_ms[(size_t)j * (size_t)sort_run->T + (size_t)sort_target];
    if (mi != mj) return mi < mj ? -1 : 1;
    return (i > j) - (i < j);
}

static ib_status verify_track(const run *r, int tk, pick_info *pk) {
    const ib_search_cfg *cfg = r->cfg;
    const track *tr = &r->tracks[tk];
    const ib_search_target *tg = &cfg->targets[tr->target];
    const ib_arch *ref = tg->budget_ref[tr->k];
    const char *ref_name = tg->budget_label[tr->k] ? tg->budget_label[tr->k] : ref ? ref->name : "";
    int t = tr->target, n = 0, rounds = cfg->verify_rounds > 0 ? cfg->verify_rounds : 1;
    size_t most = (size_t)(cfg->verify < r->n ? cfg->verify : r->n) + 1;   // the archs timed, and the reference
    int *cand = malloc(sizeof(int) * (size_t)(r->n + 1));
    ib_arch *archs = calloc(most, sizeof *archs);
    double *ms = malloc(sizeof(double) * most);
    sbuf b = {0};
    ib_status s = cand && archs && ms ? IB_OK : ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int i = 0; !s && i < r->n; i++)
        if (r->h_ms[(size_t)i * (size_t)r->T + (size_t)t] <= tr->budget * (1 + cfg->verify_slack)) cand[n++] = i;
    if (!s) {
        sort_run = r, sort_target = t;
        qsort(cand, (size_t)n, sizeof(int), by_score_then_ms);
        n = n < cfg->verify ? n : cfg->verify;
    }
    for (int i = 0; !s && i < n; i++) s = ib_space_arch(r->sp, r->h_choice + (size_t)cand[i] * (size_t)r->L, r->classes, &archs[i]);
    int m = n + (ref != NULL);
    if (!s && cfg->progress)
        fprintf(stderr, "search: %s at %g ms: timing the %d best-scored archs predicted at most %g%% over it%s%s, %d round%s\n",
                tg->name, tr->budget, n, 100 * cfg->verify_slack, ref ? " and " : "", ref_name, rounds,
                rounds > 1 ? "s" : "");
    // Round after round over the list, each keeping its fastest: a slow spell of the machine lands on one
    // round of an arch, not on every round of it.
    for (int round = 0; !s && round < rounds; round++)
        for (int j = 0; !s && j < m; j++) {
            double v;
            if (search_interrupted) s = ib_fail(IB_ERR_INTERRUPTED, "interrupted");
            else if (!(s = cfg->time_arch(cfg->time_user, t, j < n ? &archs[j] : ref, r->res, &v)))
                ms[j] = round == 0 || v < ms[j] ? v : ms[j];
        }
    if (!s) {
        double bud = ref ? ms[n] : tr->budget;
        int chosen = -1;
        for (int i = 0; i < n && chosen < 0; i++)
            if (ms[i] <= bud) chosen = i;
        pk->timed = n, pk->budget_measured_ms = bud, pk->verified = chosen >= 0, pk->measured_ms = NAN;
        if (chosen >= 0) pk->hist = cand[chosen];
        for (int i = 0; i < n; i++)
            if (cand[i] == pk->hist) pk->measured_ms = ms[i];
        char dir[4200], path[4400], bs[32];
        snprintf(bs, sizeof bs, "%g", tr->budget);
        snprintf(dir, sizeof dir, "%s/%s", cfg->out, tg->name);
        sb_printf(&b, "# target: %s; budget %s ms predicted%s%s; measured budget %.4f ms%s; %d rounds, each arch's fastest "
                      "kept; predicted at most %g%% over the budget, best-scored first\n",
                  tg->name, bs, ref ? ", of " : "", ref_name, bud, ref ? " (the reference, timed in the same rounds)" : " (the budget)",
                  rounds, 100 * cfg->verify_slack);
        sb_printf(&b, "rank,index,score,ms,measured_ms,within,chosen,choice,arch\n");
        if (ref) sb_printf(&b, "reference,,,%.4f,%.4f,,,,%s\n", tr->budget, bud, ref_name);
        for (int i = 0; i < n; i++) {
            const int *c = r->h_choice + (size_t)cand[i] * (size_t)r->L;
            sb_printf(&b, "%d,%d,%.6f,%.4f,%.4f,%d,%d,", i + 1, cand[i], r->h_score[cand[i]],
                      r->h_ms[(size_t)cand[i] * (size_t)r->T + (size_t)t], ms[i], ms[i] <= bud, i == chosen);
            choice_cols(r, c, &b);
            sb_printf(&b, "\n");
        }
        str_printf(path, sizeof path, "%s/verify-%sms.csv", dir, bs);
        if (!(s = make_dir(dir))) s = write_sbuf(path, &b);
        if (!s && cfg->progress) {
            if (chosen >= 0)
                fprintf(stderr, "search: %s at %g ms: the pick is #%d of %d by score, %.3f ms measured (predicted %.3f) against "
                                "%.3f ms%s%s\n",
                        tg->name, tr->budget, chosen + 1, n, ms[chosen],
                        r->h_ms[(size_t)cand[chosen] * (size_t)r->T + (size_t)t], bud, ref ? " measured of " : "",
                        ref_name);
            else
                fprintf(stderr, "search: %s at %g ms: none of the %d archs timed ran within %.3f ms; the table's pick stays "
                                "(unverified; --verify more archs, or a lower budget)\n",
                        tg->name, tr->budget, n, bud);
        }
    }
    for (int i = 0; archs && i < n; i++) ib_arch_free(&archs[i]);
    free(b.s), free(cand), free(archs), free(ms);
    return s;
}

static void budget_str(double b, char *buf, size_t n) { snprintf(buf, n, "%g", b); }

static json_t *pick_json(const run *r, int t, int h, const char *file) {
    json_t *o = json_object();
    if (file) json_object_set_new(o, "arch_file", json_string(file));
    sbuf b = {0};
    arch_string(r, r->h_choice + (size_t)h * (size_t)r->L, &b);
    json_object_set_new(o, "arch", json_string(b.s));
    free(b.s);
    json_object_set_new(o, "choice", json_ints(r->h_choice + (size_t)h * (size_t)r->L, r->L));
    json_object_set_new(o, "score", json_real(r->h_score[h]));
    json_object_set_new(o, "ms", json_real(r->h_ms[(size_t)h * (size_t)r->T + (size_t)t]));
    json_object_set_new(o, "macs", json_integer(r->h_macs[h]));
    return o;
}

static ib_status write_outputs(const run *r, const pick_info *picks, ib_search_result *res) {
    if (ib_dist_rank() > 0) return IB_OK;   // rank 0 writes the outputs (and fills res)
    const ib_search_cfg *cfg = r->cfg;
    char dir[4200], path[4400], bs[32];
    ib_status s = IB_OK;
    json_t *root = json_object(), *jts = json_array();
    json_object_set_new(root, "format", json_string("ibnas-search-summary"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "strategy", json_string(ib_search_strategy_name(cfg->strategy)));
    json_object_set_new(root, "seed", json_integer((json_int_t)cfg->seed));
    json_object_set_new(root, "space", json_string(r->sp->name));
    json_object_set_new(root, "res", json_integer(r->res));
    json_object_set_new(root, "population", json_integer(cfg->population));
    json_object_set_new(root, "sample", json_integer(cfg->sample));
    json_object_set_new(root, "batch", json_integer(cfg->batch));
    json_object_set_new(root, "generations", json_integer(cfg->generations));
    int done = r->gen > cfg->generations ? cfg->generations : r->gen - 1;
    json_object_set_new(root, "generations_done", json_integer(done < 0 ? 0 : done));
    json_object_set_new(root, "finished", json_boolean(r->gen > cfg->generations));
    json_object_set_new(root, "subnets_scored", json_integer(r->n));
    json_object_set_new(root, "score", json_string(cfg->score_label ? cfg->score_label : "score"));
    if (cfg->strategy == IB_SEARCH_TUNAS) {
        json_object_set_new(root, "tunas_beta", json_real(cfg->tunas_beta));
        json_object_set_new(root, "tunas_lr", json_real(cfg->tunas_lr));
    }
    json_object_set_new(root, "targets", jts);
    arch_row *all_rows = calloc((size_t)r->n_tracks + 1, sizeof(arch_row));
    if (!all_rows) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    res->n_picks = 0;
    for (int t = 0; !s && t < r->T; t++) {
        const ib_search_target *tg = &cfg->targets[t];
        snprintf(dir, sizeof dir, "%s/%s", cfg->out, tg->name);
        if ((s = make_dir(dir)) || (s = write_pareto(r, t, picks, dir))) break;
        json_t *jt = json_object(), *jp = json_array(), *jb = json_array();
        json_object_set_new(jt, "name", json_string(tg->name));
        json_object_set_new(jt, "picks", jp);
        json_object_set_new(jt, "baselines", jb);
        json_array_append_new(jts, jt);
        arch_row rows[IB_SEARCH_MAX_BUDGETS];
        for (int tk = 0; tk < r->n_tracks; tk++) {
            if (r->tracks[tk].target != t) continue;
            double budget = r->tracks[tk].budget;
            int h = picks[tk].hist;
            budget_str(budget, bs, sizeof bs);
            ib_search_pick *pk = &res->picks[res->n_picks++];
            memset(pk, 0, sizeof *pk);
            pk->target = t, pk->budget = r->tracks[tk].k, pk->budget_ms = budget, pk->found = h >= 0;
            json_t *o;
            if (h >= 0) {
                char file[300];
                snprintf(file, sizeof file, "%s/best-%sms.arch.json", tg->name, bs);
                snprintf(path, sizeof path, "%s/%s", cfg->out, file);
                ib_arch a;
                memset(&a, 0, sizeof a);
                if ((s = ib_space_arch(r->sp, r->h_choice + (size_t)h * (size_t)r->L, r->classes, &a))) break;
                str_printf(a.name, sizeof a.name, "%s-%s-%sms", r->sp->name, tg->name, bs);
                a.input = r->res;
                s = ib_arch_save(&a, path);
                ib_arch_free(&a);
                if (s) break;
                o = pick_json(r, t, h, file);
                pk->score = r->h_score[h], pk->ms = r->h_ms[(size_t)h * (size_t)r->T + (size_t)t];
                pk->macs = r->h_macs[h];
                str_printf(pk->arch_file, sizeof pk->arch_file, "%s", path);
            } else {
                o = json_object();
                json_object_set_new(o, "arch_file", json_null());
            }
            json_t *ordered = json_object();
            json_object_set_new(ordered, "budget_ms", json_real(budget));
            json_object_set_new(ordered, "found", json_boolean(h >= 0));
            if (tg->budget_ref[r->tracks[tk].k])
                json_object_set_new(ordered, "budget_of", json_string(tg->budget_label[r->tracks[tk].k]
                                                                          ? tg->budget_label[r->tracks[tk].k]
                                                                          : tg->budget_ref[r->tracks[tk].k]->name));
            json_object_update(ordered, o);
            json_decref(o);
            const pick_info *pi = &picks[tk];
            json_object_set_new(ordered, "verified", pi->verified < 0 ? json_null() : json_boolean(pi->verified));
            if (pi->verified >= 0) {
                json_object_set_new(ordered, "measured_ms", isnan(pi->measured_ms) ? json_null() : json_real(pi->measured_ms));
                json_object_set_new(ordered, "budget_measured_ms", json_real(pi->budget_measured_ms));
                json_object_set_new(ordered, "timed", json_integer(pi->timed));
            }
            pk->verified = pi->verified, pk->measured_ms = pi->measured_ms;
            pk->budget_measured_ms = pi->budget_measured_ms, pk->timed = pi->timed;
            if (picks[tk].argmax_hist >= 0)
                json_object_set_new(ordered, "policy_argmax", pick_json(r, t, picks[tk].argmax_hist, NULL));
            json_array_append_new(jp, ordered);
        }
        if (s) break;
        // archs.svg of this target, and its rows in the all-targets figure.
        int nr = 0;
        for (int tk = 0; tk < r->n_tracks; tk++) {
            if (r->tracks[tk].target != t) continue;
            int h = picks[tk].hist;
            arch_row *row = &rows[nr++], *all = &all_rows[tk];
            row->hist = h;
            if (h >= 0)
                snprintf(row->label, sizeof row->label, "\xe2\x89\xa4 %g ms: %.2f ms, %.4f", r->tracks[tk].budget,
                         r->h_ms[(size_t)h * (size_t)r->T + (size_t)t], r->h_score[h]);
            else snprintf(row->label, sizeof row->label, "\xe2\x89\xa4 %g ms: none within the budget", r->tracks[tk].budget);
            *all = *row;
            char lab[200];
            snprintf(lab, sizeof lab, "%s %s", tg->name, row->label);
            snprintf(all->label, sizeof all->label, "%s", lab);
        }
        char title[300];
        snprintf(title, sizeof title, "%s: the chosen arch per budget (%s search, %dx%d)", tg->name,
                 ib_search_strategy_name(cfg->strategy), r->res, r->res);
        snprintf(path, sizeof path, "%s/archs.svg", dir);
        if ((s = write_archs_svg(r, rows, nr, title, path))) break;
        // Baselines.
        for (int k = 0; k < cfg->n_baselines; k++) {
            const ib_search_baseline *bl = &cfg->baselines[k];
            double ms = r->base_ms[(size_t)k * (size_t)r->T + (size_t)t];
            json_t *o = json_object();
            json_object_set_new(o, "label", json_string(bl->label));
            json_object_set_new(o, "ms", isnan(ms) ? json_null() : json_real(ms));
            json_object_set_new(o, "macs", json_integer(r->base_macs[k]));
            double sc = baseline_score(r, k);
            json_object_set_new(o, "score", isnan(sc) ? json_null() : json_real(sc));
            json_object_set_new(o, "scored", json_boolean(r->base_in[k] && isnan(bl->score)));
            if (isnan(ms))
                json_object_set_new(o, "note", json_string(r->base_note + ((size_t)k * (size_t)r->T + (size_t)t) * BASE_NOTE));
            json_array_append_new(jb, o);
        }
    }
    if (!s) {
        char title[300];
        snprintf(title, sizeof title, "The chosen arch per target and budget (%s search, %dx%d)",
                 ib_search_strategy_name(cfg->strategy), r->res, r->res);
        snprintf(path, sizeof path, "%s/archs.svg", cfg->out);
        s = write_archs_svg(r, all_rows, r->n_tracks, title, path);
    }
    free(all_rows);
    if (!s) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        snprintf(path, sizeof path, "%s/summary.json", cfg->out);
        s = text ? ib_write_file(path, text, strlen(text)) : ib_fail(IB_ERR_NOMEM, "out of memory");
        free(text);
    }
    json_decref(root);
    if (s) return s;
    // curve_<strategy>.csv: the best score within each budget after every subnet scored.
    sbuf b = {0};
    char nm[200];
    sb_printf(&b, "scored");
    for (int tk = 0; tk < r->n_tracks; tk++) sb_printf(&b, ",%s", track_name(r, tk, nm, sizeof nm));
    sb_printf(&b, "\n");
    double *best = malloc(sizeof(double) * (size_t)r->n_tracks);
    if (!best) return ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int tk = 0; tk < r->n_tracks; tk++) best[tk] = NAN;
    for (int i = 0; i < r->n; i++) {
        sb_printf(&b, "%d", i + 1);
        for (int tk = 0; tk < r->n_tracks; tk++) {
            if (r->h_ms[(size_t)i * (size_t)r->T + (size_t)r->tracks[tk].target] <= r->tracks[tk].budget &&
                (isnan(best[tk]) || r->h_score[i] > best[tk]))
                best[tk] = r->h_score[i];
            if (isnan(best[tk])) sb_printf(&b, ",");
            else sb_printf(&b, ",%.6f", best[tk]);
        }
        sb_printf(&b, "\n");
    }
    free(best);
    snprintf(path, sizeof path, "%s/curve_%s.csv", cfg->out, ib_search_strategy_name(cfg->strategy));
    return write_sbuf(path, &b);
}

// ---------------------------------------------------------------------------------------------
// The run

static ib_status check_cfg(const ib_search_cfg *c) {
    if (c->verify < 0 || (c->verify > 0 && !c->time_arch) || !(c->verify_slack >= 0))
        return ib_fail(IB_ERR_ARG, "search: verify %d needs a timer and a slack >= 0 (%g)", c->verify, c->verify_slack);
    if (!c->space || !c->score || !c->out || !c->out[0])
        return ib_fail(IB_ERR_ARG, "search: a space, a score function and an output folder are needed");
    if (c->n_targets < 1 || c->n_targets > IB_SEARCH_MAX_TARGETS)
        return ib_fail(IB_ERR_ARG, "search: %d targets (1 to %d)", c->n_targets, IB_SEARCH_MAX_TARGETS);
    if (c->population < 1 || c->batch < 1 || c->generations < 0 || c->max_tries < 1 ||
        (c->strategy == IB_SEARCH_EVOLUTION && c->sample < 1))
        return ib_fail(IB_ERR_ARG, "search: population %d, sample %d, batch %d, generations %d, max_tries %d: all must be "
                                   "positive (generations may be 0)",
                       c->population, c->sample, c->batch, c->generations, c->max_tries);
    if ((unsigned)c->strategy > IB_SEARCH_TUNAS) return ib_fail(IB_ERR_ARG, "search: unknown strategy %d", (int)c->strategy);
    if (c->strategy == IB_SEARCH_TUNAS && !(c->tunas_beta < 0 && c->tunas_lr > 0 && c->tunas_baseline >= 0 &&
                                            c->tunas_baseline < 1))
        return ib_fail(IB_ERR_ARG, "search: tunas needs beta < 0 (%g), lr > 0 (%g) and a baseline momentum in [0, 1) (%g)",
                       c->tunas_beta, c->tunas_lr, c->tunas_baseline);
    for (int t = 0; t < c->n_targets; t++) {
        const ib_search_target *tg = &c->targets[t];
        const char *n = tg->name;
        int ok = n && n[0] && strcmp(n, ".") && strcmp(n, "..") && strlen(n) < 64;
        for (const char *p = n; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("_.-", *p);
        if (!ok) return ib_fail(IB_ERR_ARG, "search: target name '%s' must be [A-Za-z0-9_.-], under 64 characters", n ? n : "");
        for (int u = 0; u < t; u++)
            if (!strcmp(c->targets[u].name, n)) return ib_fail(IB_ERR_ARG, "search: target '%s' given twice", n);
        if (!tg->lut) return ib_fail(IB_ERR_ARG, "search: target '%s' has no latency table", n);
        if (tg->n_budgets < 1 || tg->n_budgets > IB_SEARCH_MAX_BUDGETS)
            return ib_fail(IB_ERR_ARG, "search: target '%s' has %d budgets (1 to %d)", n, tg->n_budgets, IB_SEARCH_MAX_BUDGETS);
        for (int k = 0; k < tg->n_budgets; k++) {
            if (!(tg->budget_ms[k] > 0) || !isfinite(tg->budget_ms[k]))
                return ib_fail(IB_ERR_ARG, "search: target '%s': budget %g ms must be positive", n, tg->budget_ms[k]);
            for (int u = 0; u < k; u++)
                if (tg->budget_ms[u] == tg->budget_ms[k])
                    return ib_fail(IB_ERR_ARG, "search: target '%s': budget %g ms given twice", n, tg->budget_ms[k]);
        }
    }
    return IB_OK;
}

static void progress_line(const run *r, double t0) {
    const ib_search_cfg *cfg = r->cfg;
    int g = r->gen - 1;
    fprintf(stderr, "search: %s generation %d/%d, %d scored", ib_search_strategy_name(cfg->strategy), g, cfg->generations,
            r->n);
    char nm[200];
    for (int tk = 0; tk < r->n_tracks; tk++) {
        int h = best_within(r, r->tracks[tk].target, r->tracks[tk].budget, r->n);
        fprintf(stderr, ", %s ", track_name(r, tk, nm, sizeof nm));
        if (h < 0) fprintf(stderr, "-");
        else
            fprintf(stderr, "%.4f (%.2f ms)", r->h_score[h],
                    r->h_ms[(size_t)h * (size_t)r->T + (size_t)r->tracks[tk].target]);
    }
    fprintf(stderr, ", %.1f s\n", ib_time_s() - t0);
}

static ib_status run_setup(run *r, const ib_search_cfg *cfg) {
    r->cfg = cfg;
    r->sp = cfg->space;
    r->L = ib_space_genes(r->sp);   // the layers, then the segmentation head's gene when the space has one
    r->T = cfg->n_targets;
    r->P = cfg->population;
    r->res = cfg->res > 0 ? cfg->res : r->sp->input;
    r->classes = cfg->classes > 0 ? cfg->classes : r->sp->classes;
    if (r->L < 1) return ib_fail(IB_ERR_ARG, "search: space '%s' has no layers", r->sp->name);
    if (!(r->nc = malloc(sizeof(int) * (size_t)r->L))) return ib_fail(IB_ERR_NOMEM, "out of memory");
    r->maxc = 1;
    for (int l = 0; l < r->L; l++) {
        r->nc[l] = l < r->sp->n_layers ? ib_space_choices(r->sp, l, NULL, 0) : ib_space_head_choices(r->sp);
        if (r->nc[l] < 1) return ib_fail(IB_ERR_ARG, "search: layer %d of space '%s' has no choice", l, r->sp->name);
        r->maxc = r->nc[l] > r->maxc ? r->nc[l] : r->maxc;
    }
    // The allowed choices: those of cfg->ops' op types (the segmentation head's gene is not an op: all).
    r->ok = malloc((size_t)r->L * (size_t)r->maxc);
    r->n_ok = calloc((size_t)r->L, sizeof(int));
    if (!r->ok || !r->n_ok) return ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int l = 0; l < r->L; l++) {
        char *ok = r->ok + (size_t)l * (size_t)r->maxc;
        ib_block_cfg *all = NULL;
        if (cfg->ops && l < r->sp->n_layers) {
            if (!(all = malloc(sizeof *all * (size_t)r->nc[l]))) return ib_fail(IB_ERR_NOMEM, "out of memory");
            ib_space_choices(r->sp, l, all, r->nc[l]);
        }
        for (int j = 0; j < r->maxc; j++) {
            ok[j] = j < r->nc[l] && (!all || (cfg->ops >> all[j].op & 1u));
            r->n_ok[l] += ok[j];
        }
        free(all);
        if (!r->n_ok[l]) {
            char list[96] = "";
            for (int op = 0, k = 0; op <= IB_BLOCK_SKIP; op++)
                if (cfg->ops >> op & 1u)
                    k += snprintf(list + k, sizeof list - (size_t)k, "%s%s", k ? ", " : "", ib_block_op_name((ib_block_op)op));
            return ib_fail(IB_ERR_ARG, "search: layer %d of space '%s' offers none of the ops allowed (%s)", l, r->sp->name, list);
        }
    }
    for (int t = 0; t < r->T; t++)
        for (int k = 0; k < cfg->targets[t].n_budgets; k++)
            r->tracks[r->n_tracks++] = (track){t, cfg->targets[t].budget_ms[k], k};
    r->min_choice = malloc(sizeof(int) * (size_t)r->T * (size_t)r->L);
    r->min_ms = malloc(sizeof(double) * (size_t)r->T);
    r->scratch = malloc(sizeof(int) * (size_t)(r->L + r->P + 1));
    int nb = cfg->n_baselines > 0 ? cfg->n_baselines : 0;
    r->base_ms = malloc(sizeof(double) * (size_t)(nb * r->T + 1));
    r->base_macs = calloc((size_t)nb + 1, sizeof(int64_t));
    r->base_note = calloc((size_t)(nb * r->T + 1), BASE_NOTE);
    r->base_choice = calloc((size_t)(nb * r->L + 1), sizeof(int));
    r->base_in = calloc((size_t)nb + 1, sizeof(int));
    if (!r->min_choice || !r->min_ms || !r->scratch || !r->base_ms || !r->base_macs || !r->base_note ||
        !r->base_choice || !r->base_in)
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_status s;
    if ((s = strat_alloc(r, &r->cur)) || (s = strat_alloc(r, &r->snap))) return s;
    if (cfg->lut_task) {   // the space's task network: every arch of the space shares widths and strides
        ib_arch a;
        memset(&a, 0, sizeof a);
        memset(r->scratch, 0, sizeof(int) * (size_t)r->L);
        if (!(s = ib_space_arch(r->sp, r->scratch, r->classes, &a))) s = cfg->lut_task(cfg->lut_task_user, &a, r->res, &r->task);
        ib_arch_free(&a);
        if (s) return s;
        r->has_task = 1;
    }
    // The fastest arch of each target: a budget below it cannot be met.
    for (int t = 0; t < r->T; t++) {
        if ((s = fastest_arch(r, t))) return s;
        for (int k = 0; k < cfg->targets[t].n_budgets; k++)
            if (cfg->targets[t].budget_ms[k] < r->min_ms[t])
                return ib_fail(IB_ERR_ARG, "search: budget %g ms on %s is below the fastest arch of space '%s' (%.3f ms)",
                               cfg->targets[t].budget_ms[k], cfg->targets[t].name, r->sp->name, r->min_ms[t]);
    }
    // Baselines: a missing row is a note, not a failure (a table profiled for the space only).
    for (int k = 0; k < nb; k++) {
        const ib_arch *a = cfg->baselines[k].arch;
        r->base_macs[k] = a ? ib_arch_macs(a, r->res) : 0;
        r->base_in[k] = a && ib_space_check(r->sp, a, cfg->baselines[k].label, r->base_choice + (size_t)k * (size_t)r->L) == IB_OK;
        for (int l = 0; r->base_in[k] && l < r->L; l++)   // an arch of the space with ops the search may not pick: drawn, not scored
            r->base_in[k] = r->ok[(size_t)l * (size_t)r->maxc + (size_t)r->base_choice[(size_t)k * (size_t)r->L + (size_t)l]];
        for (int t = 0; t < r->T; t++) {
            double *ms = &r->base_ms[(size_t)k * (size_t)r->T + (size_t)t];
            char *note = r->base_note + ((size_t)k * (size_t)r->T + (size_t)t) * BASE_NOTE;
            *ms = NAN;
            ib_lut_task bt;
            if (!a) snprintf(note, BASE_NOTE, "no arch given");
            else if ((cfg->lut_task && cfg->lut_task(cfg->lut_task_user, a, r->res, &bt)) ||
                     ib_lut_predict_task(cfg->targets[t].lut, a, r->res, cfg->lut_task ? &bt : NULL, ms)) {
                *ms = NAN;
                snprintf(note, BASE_NOTE, "%s", ib_errmsg());
            }
        }
    }
    return IB_OK;
}

ib_status ib_search_run(const ib_search_cfg *cfg, ib_search_result *res) {
    memset(res, 0, sizeof *res);
    double t0 = ib_time_s();
    ib_status s = check_cfg(cfg);
    if (s) return s;
    run r;
    memset(&r, 0, sizeof r);
    char state_path[4200];
    snprintf(state_path, sizeof state_path, "%s/state.json", cfg->out);
    struct sigaction old_sa, sa;
    int handler = 0;
    pick_info *picks = NULL;
    int *c = NULL;
    if ((s = run_setup(&r, cfg)) || (s = make_dir(cfg->out))) goto done;
    FILE *f = fopen(state_path, "rb");
    if (f) fclose(f);
    if (cfg->resume) {
        if (!f) {
            s = ib_fail(IB_ERR_NOTFOUND, "%s: no search state to resume from", state_path);
            goto done;
        }
        if ((s = state_load(&r, state_path))) goto done;
    } else {
        if (f) {
            s = ib_fail(IB_ERR_ARG, "%s exists: resume that search (--resume), or write to another folder", state_path);
            goto done;
        }
        ib_rng_seed(&r.cur.rng, cfg->seed, 0x5ea4c4);
    }
    if (!(picks = calloc((size_t)r.n_tracks, sizeof *picks)) || !(c = malloc(sizeof(int) * (size_t)r.L))) {
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (cfg->handle_sigint) {
        search_interrupted = 0;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigint;
        sigaction(SIGINT, &sa, &old_sa);
        handler = 1;
    }
    if (cfg->progress)
        fprintf(stderr, "search: %s over space '%s' (%d layers%s), %d target%s, %d budget%s\n",
                ib_search_strategy_name(cfg->strategy), r.sp->name, r.sp->n_layers,
                r.L > r.sp->n_layers ? " and the segmentation head" : "", r.T, r.T > 1 ? "s" : "", r.n_tracks,
                r.n_tracks > 1 ? "s" : "");
    if (cfg->progress && cfg->resume) fprintf(stderr, "search: resumed at generation %d, %d subnets scored\n", r.gen, r.n);
    r.t0 = r.last_note = t0;
    int ran = 0;
    while (r.gen <= cfg->generations) {
        if (cfg->max_generations > 0 && ran >= cfg->max_generations) break;
        strat_copy(&r, &r.snap, &r.cur);
        switch (cfg->strategy) {
        case IB_SEARCH_EVOLUTION: s = gen_evolution(&r); break;
        case IB_SEARCH_RANDOM:
            if (!(s = r.gen == 0 ? score_baselines(&r, 0, NULL) : IB_OK)) s = gen_random(&r, r.gen == 0 ? r.P : cfg->batch);
            break;
        case IB_SEARCH_TUNAS: s = r.gen == 0 ? score_baselines(&r, 0, NULL) : gen_tunas(&r); break;
        }
        if (s) {
            // The generation under way is redone on resume: its start state with every score kept.
            ib_status keep = s;
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ib_errmsg());
            hist_truncate(&r, r.n_scored);   // archs staged but never scored are not kept
            state_save(&r, &r.snap, r.gen, state_path);
            if (keep == IB_ERR_INTERRUPTED) res->interrupted = 1;
            s = keep;
            ib_fail(s, "%s%s", msg, keep == IB_ERR_INTERRUPTED ? "; state saved, resume with --resume" : "");
            break;
        }
        r.gen++, ran++;
        if ((s = state_save(&r, &r.cur, r.gen, state_path))) goto done;
        if (cfg->progress) progress_line(&r, t0), r.last_note = ib_time_s();
    }
    // TuNAS: the policy's argmax arch of each track, scored too (a cache hit when sampled before).
    if (!s && r.gen > cfg->generations && cfg->strategy == IB_SEARCH_TUNAS) {
        strat_copy(&r, &r.snap, &r.cur);
        for (int tk = 0; !s && tk < r.n_tracks; tk++) {
            policy_argmax(&r, tk, c);
            s = stage_choice(&r, c, &picks[tk].argmax_hist);
        }
        if (!s) s = flush_scores(&r);
        ib_status keep = s;
        if (keep) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ib_errmsg());
            hist_truncate(&r, r.n_scored);
            state_save(&r, &r.snap, r.gen, state_path);
            res->interrupted = keep == IB_ERR_INTERRUPTED;
            s = ib_fail(keep, "%s", msg);
        } else if ((s = state_save(&r, &r.cur, r.gen, state_path)))
            goto done;
    }
    for (int tk = 0; tk < r.n_tracks; tk++) {
        picks[tk].hist = best_within(&r, r.tracks[tk].target, r.tracks[tk].budget, r.n);
        if (!(cfg->strategy == IB_SEARCH_TUNAS && r.gen > cfg->generations && !res->interrupted))
            picks[tk].argmax_hist = -1;
        picks[tk].verified = -1, picks[tk].measured_ms = picks[tk].budget_measured_ms = NAN;
    }
    if (s && !res->interrupted) goto done;
    // The picks of a finished search measured (rank 0 alone: it writes the outputs).
    for (int tk = 0; !s && cfg->verify > 0 && r.gen > cfg->generations && ib_dist_rank() == 0 && tk < r.n_tracks; tk++)
        if (cfg->targets[r.tracks[tk].target].timed) {
            s = verify_track(&r, tk, &picks[tk]);
            res->interrupted = s == IB_ERR_INTERRUPTED;
        }
    if (s && !res->interrupted) goto done;
    {
        ib_status w = write_outputs(&r, picks, res);
        if (!s) s = w;
    }
    res->finished = r.gen > cfg->generations && !res->interrupted;
    res->generations_done = r.gen > cfg->generations ? cfg->generations : (r.gen > 0 ? r.gen - 1 : 0);
    res->scored = r.n;
    if (cfg->progress && res->finished) fprintf(stderr, "search: done, %d subnets scored, outputs in %s\n", r.n, cfg->out);
done:
    if (handler) sigaction(SIGINT, &old_sa, NULL);
    res->wall_s = ib_time_s() - t0;
    free(picks), free(c);
    run_free(&r);
    return s;
}
