// The search strategies on a synthetic objective (a deterministic function of the choice vector that
// rewards some ops and kernels, so no supernet is needed) over a small space with made-up latency tables
// for two targets: every chosen arch meets its budget by prediction; an arch is scored once; the same seed
// gives the same files; a run stopped after some generations, or by Ctrl-C mid-generation, resumes to the
// files an uninterrupted run writes; evolution beats random search at the same number of scored subnets;
// TuNAS returns an arch within its budget; the outputs exist and parse; bad settings fail with a message.
#include "tests/test.h"

#include "data/data.h"
#include "search/search.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Three stages of three layers, every op: about 15 choices a layer, 10^10 archs.
static const char *space_json =
    "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"testspace\", \"input\": 32, \"classes\": 6,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2},"
    " \"stages\": ["
    "  {\"out\": 16, \"stride\": 1, \"layers\": 3, \"op\": [\"ibn\", \"fused\", \"tucker\", \"gcibn\", \"skip\"],"
    "   \"kernel\": [3, 5], \"expand\": [2, 4], \"groups\": [2], \"r_in\": [0.25], \"r_out\": [0.25, 0.75]},"
    "  {\"out\": 24, \"stride\": 2, \"layers\": 3, \"op\": [\"ibn\", \"fused\", \"tucker\", \"gcibn\", \"skip\"],"
    "   \"kernel\": [3, 5], \"expand\": [2, 4], \"groups\": [2], \"r_in\": [0.25], \"r_out\": [0.25, 0.75]},"
    "  {\"out\": 32, \"stride\": 2, \"layers\": 3, \"op\": [\"ibn\", \"fused\", \"tucker\", \"gcibn\", \"skip\"],"
    "   \"kernel\": [3, 5], \"expand\": [2, 4], \"groups\": [2], \"r_in\": [0.25], \"r_out\": [0.25, 0.75]}],"
    " \"head\": {\"out\": 64, \"dropout\": 0.1}}";

static ib_space space;
static ib_lut *lut_cpu, *lut_tpu;
static double budget_cpu[2], budget_tpu[2];   // about the 25th and 60th percentiles of random archs
static int fixtures_ready;

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    IB_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

// Made-up latencies: `cpu` follows MACs; on `tpu` a full convolution is cheap and depthwise dear, so
// fused blocks win there (the shape of the EdgeTPU model, not its numbers).
static double row_ms(const ib_lut_key *k, int tpu) {
    if (k->op == IB_LUT_STEM) return 0.05;
    if (k->op == IB_LUT_HEAD) return 0.08;
    ib_block_cfg c;
    memset(&c, 0, sizeof c);
    c.op = (ib_block_op)k->op, c.out = k->cout, c.stride = k->stride, c.kernel = k->kernel, c.expand = k->expand;
    c.groups = k->groups, c.r_in = k->r_in, c.r_out = k->r_out;
    double macs = (double)ib_block_macs(&c, k->cin, k->h, k->w);
    double scale = 1e-6;
    if (tpu) scale *= c.op == IB_BLOCK_FUSED ? 0.25 : c.op == IB_BLOCK_TUCKER ? 0.5 : 1.5;
    return 0.01 + macs * scale;
}

static ib_lut *make_lut(const char *target, int tpu) {
    ib_lut_key *keys;
    int n = ib_lut_space_keys(&space, 32, 0, &keys);
    IB_ASSERT(n > 0, "no rows: %s", ib_errmsg());
    ib_lut *t = ib_lut_new(target);
    IB_ASSERT(t, "out of memory");
    for (int i = 0; i < n; i++) IB_ASSERT(ib_lut_set(t, &keys[i], row_ms(&keys[i], tpu)) == IB_OK, "%s", ib_errmsg());
    free(keys);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.csv", test_tmpdir(), target);
    IB_ASSERT(ib_lut_save(t, path) == IB_OK, "%s", ib_errmsg());
    ib_lut_free(t);
    ib_lut *back;
    IB_ASSERT(ib_lut_load(&back, path) == IB_OK, "%s", ib_errmsg());
    return back;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double predict(const ib_lut *t, const int *choice) {
    ib_arch a;
    IB_ASSERT(ib_space_arch(&space, choice, 0, &a) == IB_OK, "%s", ib_errmsg());
    double ms;
    IB_ASSERT(ib_lut_predict(t, &a, 32, &ms) == IB_OK, "%s", ib_errmsg());
    ib_arch_free(&a);
    return ms;
}

static void fixtures(void) {
    if (fixtures_ready) return;
    char path[512];
    snprintf(path, sizeof path, "%s/test.space.json", test_tmpdir());
    write_text(path, space_json);
    IB_ASSERT(ib_space_load(&space, path) == IB_OK, "%s", ib_errmsg());
    lut_cpu = make_lut("cpu", 0);
    lut_tpu = make_lut("tpu", 1);
    // Budgets from the spread of random archs' latencies, so that both bind.
    enum { N = 400 };
    double cpu[N], tpu[N];
    int c[64];
    ib_rng r;
    ib_rng_seed(&r, 99, 0);
    for (int i = 0; i < N; i++) {
        ib_space_sample(&space, IB_SAMPLE_RANDOM, &r, c);
        cpu[i] = predict(lut_cpu, c), tpu[i] = predict(lut_tpu, c);
    }
    qsort(cpu, N, sizeof(double), cmp_double);
    qsort(tpu, N, sizeof(double), cmp_double);
    budget_cpu[0] = round(cpu[N / 4] * 100) / 100, budget_cpu[1] = round(cpu[N * 3 / 5] * 100) / 100;
    budget_tpu[0] = round(tpu[N / 4] * 100) / 100, budget_tpu[1] = round(tpu[N * 3 / 5] * 100) / 100;
    fixtures_ready = 1;
}

// ---------------------------------------------------------------------------------------------
// The synthetic objective: per layer a value for its op and fields (fused pays early, tucker late,
// larger expansions and kernels a little), a bonus for neighbours of the same op (so layers interact),
// and a slowly growing term in the MACs.

typedef struct scorer {
    int calls;
    int raise_at;             // raise SIGINT during this call (1-based; 0: never)
    int n_seen, cap_seen;
    int *seen;                // every choice vector scored, to check none is scored twice
} scorer;

static double layer_value(const ib_block_cfg *b, int stage) {
    switch (b->op) {
    case IB_BLOCK_IBN: return 0.010 * b->expand / 4.0 + (b->kernel == 5 ? 0.004 : 0);
    case IB_BLOCK_FUSED: return (stage == 0 ? 0.022 : 0.003) * b->expand / 4.0;
    case IB_BLOCK_TUCKER: return 0.005 + (stage == 2 ? 0.012 : 0) + (b->r_out > 0.5f ? 0.002 : 0);
    case IB_BLOCK_GCIBN: return 0.011 + (b->kernel == 5 ? 0.003 : 0) + 0.002 * (b->expand == 4);
    default: return -0.004;
    }
}

static ib_status synthetic_score(void *user, const int *choice, double *score) {
    scorer *s = user;
    s->calls++;
    if (s->n_seen == s->cap_seen) {
        s->cap_seen = s->cap_seen ? 2 * s->cap_seen : 256;
        s->seen = realloc(s->seen, sizeof(int) * (size_t)s->cap_seen * (size_t)space.n_layers);
        IB_ASSERT(s->seen, "out of memory");
    }
    memcpy(s->seen + (size_t)s->n_seen++ * (size_t)space.n_layers, choice, sizeof(int) * (size_t)space.n_layers);
    ib_arch a;
    IB_ASSERT(ib_space_arch(&space, choice, 0, &a) == IB_OK, "%s", ib_errmsg());
    double v = 0.3 + 0.01 * log((double)ib_arch_macs(&a, 32));
    for (int l = 0; l < a.n_blocks; l++) {
        v += layer_value(&a.blocks[l], ib_space_layer_info(&space, l).stage);
        if (l && a.blocks[l].op == a.blocks[l - 1].op && a.blocks[l].op != IB_BLOCK_SKIP) v += 0.004;
    }
    ib_arch_free(&a);
    *score = v;
    if (s->raise_at && s->calls == s->raise_at) raise(SIGINT);   // as a Ctrl-C while this subnet is scored
    return IB_OK;
}

static int seen_twice(const scorer *s) {
    for (int i = 0; i < s->n_seen; i++)
        for (int j = 0; j < i; j++)
            if (!memcmp(s->seen + (size_t)i * (size_t)space.n_layers, s->seen + (size_t)j * (size_t)space.n_layers,
                        sizeof(int) * (size_t)space.n_layers))
                return 1;
    return 0;
}

static ib_search_baseline baseline_mnv2;
static ib_arch mnv2;

static void base_cfg(ib_search_cfg *c, scorer *sc, const char *out, int two_targets) {
    fixtures();
    ib_search_cfg_default(c);
    c->space = &space;
    c->n_targets = two_targets ? 2 : 1;
    c->targets[0] = (ib_search_target){.name = "cpu", .lut = lut_cpu, .n_budgets = 2, .budget_ms = {budget_cpu[0], budget_cpu[1]}};
    c->targets[1] = (ib_search_target){.name = "tpu", .lut = lut_tpu, .n_budgets = 2, .budget_ms = {budget_tpu[0], budget_tpu[1]}};
    c->population = 12;
    c->sample = 4;
    c->batch = 6;
    c->generations = 6;
    c->seed = 7;
    c->score = synthetic_score;
    c->user = sc;
    c->score_label = "synthetic score";
    c->out = out;
    memset(sc, 0, sizeof *sc);
    // mobilenetv2 is no arch of the space, and the tables hold the space's rows only: its latency is
    // reported missing, not an error.
    if (!mnv2.blocks) ib_arch_mobilenetv2(&mnv2, 0.35f, 6);
    baseline_mnv2 = (ib_search_baseline){"mobilenetv2:0.35", &mnv2, 0.5};
    c->n_baselines = 1;
    c->baselines = &baseline_mnv2;
}

static char *out_dir(const char *name) {
    static char bufs[32][512];
    static int k;
    char *b = bufs[k++ % 32];
    snprintf(b, 512, "%s/%s", test_tmpdir(), name);
    return b;
}

// DIR/LEAF whole, NUL-terminated; "" when absent.
static char *read_at(const char *dir, const char *leaf) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, leaf);
    return test_read_file(path);
}

static int file_exists(const char *dir, const char *leaf) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, leaf);
    FILE *f = fopen(path, "r");
    if (f) fclose(f);
    return f != NULL;
}

// The files of two runs are the same, byte for byte. Returns the first that differs (NULL: none).
static const char *same_files(const char *a, const char *b, const char *const *leaves) {
    for (int i = 0; leaves[i]; i++) {
        char *x = read_at(a, leaves[i]), *y = read_at(b, leaves[i]);
        int same = x[0] && !strcmp(x, y);
        free(x), free(y);
        if (!same) return leaves[i];
    }
    return NULL;
}

// ---------------------------------------------------------------------------------------------

TEST(search_meets_budgets_and_writes_outputs) {
    ib_search_cfg c;
    scorer sc;
    char *out = out_dir("evo2");
    base_cfg(&c, &sc, out, 1);
    ib_search_result r;
    CHECK(ib_search_run(&c, &r) == IB_OK, "search: %s", ib_errmsg());
    CHECK(r.finished && !r.interrupted && r.generations_done == 6, "finished %d, generations %d", r.finished,
          r.generations_done);
    CHECK(r.scored == sc.calls && sc.calls > 40, "%lld scored, %d calls", (long long)r.scored, sc.calls);
    CHECK(!seen_twice(&sc), "an arch was scored twice: the cache must serve repeats");
    CHECK(r.n_picks == 4, "%d picks", r.n_picks);
    for (int i = 0; i < r.n_picks; i++) {
        const ib_search_pick *p = &r.picks[i];
        CHECK(p->found, "no arch within %g ms on target %d", p->budget_ms, p->target);
        // The arch file is the one chosen, and meets its budget by the table's prediction.
        ib_arch a;
        CHECK(ib_arch_load(&a, p->arch_file) == IB_OK, "%s", ib_errmsg());
        double ms;
        CHECK(ib_lut_predict(p->target ? lut_tpu : lut_cpu, &a, 32, &ms) == IB_OK, "%s", ib_errmsg());
        CHECK(ib_space_check(&space, &a, p->arch_file, NULL) == IB_OK, "%s", ib_errmsg());
        ib_arch_free(&a);
        CHECK(ms <= p->budget_ms && fabs(ms - p->ms) < 1e-9, "%s: %.4f ms (reported %.4f) over %g ms", p->arch_file, ms,
              p->ms, p->budget_ms);
    }
    // Outputs.
    const char *files[] = {"state.json", "summary.json", "curve_evolution.csv", "archs.svg", "cpu/pareto.csv",
                           "cpu/pareto.svg", "cpu/archs.svg", "tpu/pareto.csv", "tpu/pareto.svg", "tpu/archs.svg", NULL};
    for (int i = 0; files[i]; i++) CHECK(file_exists(out, files[i]), "%s/%s missing", out, files[i]);
    char leaf[64];
    snprintf(leaf, sizeof leaf, "cpu/best-%gms.arch.json", budget_cpu[0]);
    CHECK(file_exists(out, leaf), "%s/%s missing", out, leaf);
    char path[1200];
    snprintf(path, sizeof path, "%s/summary.json", out);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(j, "%s:%d: %s", path, err.line, err.text);
    json_t *ts = json_object_get(j, "targets");
    int ok = json_integer_value(json_object_get(j, "subnets_scored")) == r.scored &&
             !strcmp(json_string_value(json_object_get(j, "strategy")), "evolution") && json_array_size(ts) == 2;
    for (size_t t = 0; ok && t < 2; t++) {
        json_t *picks = json_object_get(json_array_get(ts, t), "picks");
        ok = json_array_size(picks) == 2;
        for (size_t k = 0; ok && k < 2; k++) {
            json_t *p = json_array_get(picks, k);
            ok = json_is_true(json_object_get(p, "found")) &&
                 json_array_size(json_object_get(p, "choice")) == (size_t)space.n_layers &&
                 json_real_value(json_object_get(p, "ms")) <= json_real_value(json_object_get(p, "budget_ms")) &&
                 json_string_value(json_object_get(p, "arch_file"));
        }
        json_t *bl = json_array_get(json_object_get(json_array_get(ts, t), "baselines"), 0);
        ok = ok && json_is_null(json_object_get(bl, "ms")) && json_string_value(json_object_get(bl, "note"));
    }
    json_decref(j);
    CHECK(ok, "summary.json lacks what it should hold");
    // pareto.csv: a comment, a header and a row per scored arch; the front is not empty; the arch strings
    // name the ops.
    char *csv = read_at(out, "cpu/pareto.csv");
    int lines = 0, on_front = 0;
    for (char *p = csv; *p; p++) lines += *p == '\n';
    for (char *p = strstr(csv, "\n") + 1; p && (p = strchr(p, '\n')); p++)
        if (p[1]) {
            int k = 0;
            char *q = p + 1;
            for (; *q && k < 4; q++) k += *q == ',';
            on_front += *q == '1';
        }
    int has_ops = strstr(csv, "ibn:k") || strstr(csv, "fused:k");
    free(csv);
    CHECK(lines == r.scored + 2 && on_front >= 2 && has_ops, "pareto.csv: %d lines for %lld archs, %d on the front", lines,
          (long long)r.scored, on_front);
    char *svg = read_at(out, "cpu/pareto.svg");
    ok = strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, "predicted latency") &&
         strstr(svg, "mobilenetv2:0.35: no latency") && strstr(svg, "synthetic score");
    free(svg);
    CHECK(ok, "pareto.svg lacks its axes, labels or the baseline's note");
    svg = read_at(out, "archs.svg");
    ok = strstr(svg, "</svg>") && strstr(svg, "tpu \xe2\x89\xa4") && strstr(svg, "GC-IBN");
    free(svg);
    CHECK(ok, "archs.svg lacks rows or its legend");
    free(sc.seen);
}

TEST(search_same_seed_same_result) {
    ib_search_cfg c;
    scorer sc;
    ib_search_result r;
    const char *dirs[3] = {out_dir("seed_a"), out_dir("seed_b"), out_dir("seed_c")};
    for (int i = 0; i < 3; i++) {
        base_cfg(&c, &sc, dirs[i], 1);
        c.seed = i == 2 ? 8 : 7;
        CHECK(ib_search_run(&c, &r) == IB_OK, "search: %s", ib_errmsg());
        free(sc.seen);
    }
    const char *leaves[] = {"summary.json", "cpu/pareto.csv", "tpu/pareto.csv", "curve_evolution.csv",
                            "cpu/pareto.svg", "archs.svg", NULL};
    const char *d = same_files(dirs[0], dirs[1], leaves);
    CHECK(!d, "seed 7 twice: %s differs", d);
    CHECK(same_files(dirs[0], dirs[2], leaves), "seeds 7 and 8 gave the same files");
}

// A baseline that is an arch of the space is scored like any subnet and joins evolution's first population:
// the summary carries its score, and no search ends below it under a budget it meets. The baseline here is
// the best of 3000 random archs within the cpu budget, so a first population alone (no generations) of
// random archs would almost surely miss it; with it seeded, the pick is the baseline or better.
TEST(search_scores_and_seeds_baselines_of_the_space) {
    ib_search_cfg c;
    scorer sc, probe;
    base_cfg(&c, &sc, out_dir("seeded"), 0);
    memset(&probe, 0, sizeof probe);
    ib_rng rng;
    ib_rng_seed(&rng, 99, 1);
    int L = space.n_layers, *ch = malloc(sizeof(int) * (size_t)L), *best = malloc(sizeof(int) * (size_t)L);
    double best_score = -INFINITY;
    for (int i = 0; i < 3000; i++) {
        ib_space_sample(&space, IB_SAMPLE_RANDOM, &rng, ch);
        double v;
        if (predict(lut_cpu, ch) > budget_cpu[0]) continue;
        synthetic_score(&probe, ch, &v);
        if (v > best_score) best_score = v, memcpy(best, ch, sizeof(int) * (size_t)L);
    }
    free(probe.seen);
    CHECK(isfinite(best_score), "no random arch within %g ms", budget_cpu[0]);
    ib_arch good;
    CHECK(ib_space_arch(&space, best, 0, &good) == IB_OK, "%s", ib_errmsg());
    ib_search_baseline bl[2] = {baseline_mnv2, {"hand-made", &good, NAN}};
    c.baselines = bl, c.n_baselines = 2;
    for (int strategy = 0; strategy < 2; strategy++) {
        c.strategy = strategy == 0 ? IB_SEARCH_EVOLUTION : IB_SEARCH_RANDOM;
        c.generations = 0;
        c.out = out_dir(strategy == 0 ? "seeded_evo" : "seeded_random");
        memset(&sc, 0, sizeof sc);
        ib_search_result r;
        CHECK(ib_search_run(&c, &r) == IB_OK, "search: %s", ib_errmsg());
        CHECK(!seen_twice(&sc), "an arch was scored twice");
        free(sc.seen);
        CHECK(r.scored == 2 * c.population + (strategy == 0 ? -1 : 1), "%s: %lld scored, want two first populations (one member the baseline)",
              ib_search_strategy_name(c.strategy), (long long)r.scored);
        CHECK(r.picks[0].found && r.picks[0].score >= best_score - 1e-12, "%s: pick %.6f under %g ms, baseline %.6f",
              ib_search_strategy_name(c.strategy), r.picks[0].score, budget_cpu[0], best_score);
        char *sum = read_at(c.out, "summary.json");
        json_error_t e;
        json_t *j = json_loads(sum, 0, &e), *bs = NULL;
        free(sum);
        json_t *t0 = json_array_get(json_object_get(j, "targets"), 0);
        bs = json_object_get(t0, "baselines");
        json_t *b1 = json_array_get(bs, 1), *b0 = json_array_get(bs, 0);
        CHECK(json_is_true(json_object_get(b1, "scored")) &&
                  fabs(json_real_value(json_object_get(b1, "score")) - best_score) < 1e-9,
              "the hand-made baseline's score in summary.json is not its scored value %.6f", best_score);
        CHECK(!json_is_true(json_object_get(b0, "scored")) && json_real_value(json_object_get(b0, "score")) == 0.5,
              "mobilenetv2 (no arch of the space) keeps its given score");
        json_decref(j);
    }
    ib_arch_free(&good);
    free(ch), free(best);
}

// A run stopped after 2 generations, resumed for 3, then to the end; and one stopped by a Ctrl-C in the
// middle of a generation, resumed: both write the uninterrupted run's files.
static void resume_case(ib_search_strategy strategy, const char *name) {
    ib_search_cfg c;
    scorer sc;
    ib_search_result r;
    char n1[64], n2[64], n3[64];
    snprintf(n1, sizeof n1, "%s_full", name);
    snprintf(n2, sizeof n2, "%s_legs", name);
    snprintf(n3, sizeof n3, "%s_sigint", name);
    const char *full = out_dir(n1), *legs = out_dir(n2), *intr = out_dir(n3);
    base_cfg(&c, &sc, full, 1);
    c.strategy = strategy;
    CHECK(ib_search_run(&c, &r) == IB_OK, "%s uninterrupted: %s", name, ib_errmsg());
    int64_t full_scored = r.scored;
    free(sc.seen);

    base_cfg(&c, &sc, legs, 1);
    c.strategy = strategy;
    c.max_generations = 2;
    CHECK(ib_search_run(&c, &r) == IB_OK && !r.finished, "%s first leg: %s", name, ib_errmsg());
    CHECK(r.generations_done == 1, "%s first leg: %d generations after the first population", name, r.generations_done);
    c.resume = 1;
    c.max_generations = 3;
    CHECK(ib_search_run(&c, &r) == IB_OK && !r.finished && r.generations_done == 4, "%s second leg: %s (%d done)", name,
          ib_errmsg(), r.generations_done);
    c.max_generations = 0;
    CHECK(ib_search_run(&c, &r) == IB_OK && r.finished, "%s last leg: %s", name, ib_errmsg());
    CHECK(r.scored == full_scored && sc.calls == full_scored, "%s: %lld scored over the legs (%d calls), %lld at once",
          name, (long long)r.scored, sc.calls, (long long)full_scored);
    free(sc.seen);

    // Ctrl-C during the 60th score (inside generation 1 or 2): that score is kept, the run stops with
    // IB_ERR_INTERRUPTED.
    base_cfg(&c, &sc, intr, 1);
    c.strategy = strategy;
    c.handle_sigint = 1;
    sc.raise_at = 60;
    ib_status s = ib_search_run(&c, &r);
    CHECK(s == IB_ERR_INTERRUPTED && r.interrupted && !r.finished, "%s: Ctrl-C gave %d (%s)", name, (int)s, ib_errmsg());
    CHECK(sc.calls == 60 && file_exists(intr, "summary.json"), "%s: %d scores after the Ctrl-C at the 60th", name,
          sc.calls);
    sc.raise_at = 0;
    c.resume = 1;
    CHECK(ib_search_run(&c, &r) == IB_OK && r.finished, "%s after Ctrl-C: %s", name, ib_errmsg());
    CHECK(sc.calls == full_scored, "%s: %d scores with the Ctrl-C, %lld without (the scores before it are kept)", name,
          sc.calls, (long long)full_scored);
    free(sc.seen);

    char curve[64];
    snprintf(curve, sizeof curve, "curve_%s.csv", ib_search_strategy_name(strategy));
    const char *leaves[] = {"summary.json", "cpu/pareto.csv", "tpu/pareto.csv", curve, "cpu/pareto.svg",
                            "tpu/archs.svg", "state.json", NULL};
    const char *d = same_files(full, legs, leaves);
    CHECK(!d, "%s: stopped and resumed, %s differs from the uninterrupted run's", name, d);
    d = same_files(full, intr, leaves);
    CHECK(!d, "%s: interrupted and resumed, %s differs from the uninterrupted run's", name, d);
}

TEST(search_resume_equals_uninterrupted_evolution) { resume_case(IB_SEARCH_EVOLUTION, "evolution"); }
TEST(search_resume_equals_uninterrupted_random) { resume_case(IB_SEARCH_RANDOM, "random"); }
TEST(search_resume_equals_uninterrupted_tunas) { resume_case(IB_SEARCH_TUNAS, "tunas"); }

// The best score within the budget after n subnets scored, from a curve file (column 1; -1: none yet).
static double curve_at(const char *dir, const char *leaf, int n, int *rows) {
    char *t = read_at(dir, leaf), *p = strchr(t, '\n');
    double v = -1;
    *rows = 0;
    while (p && p[1]) {
        int k = atoi(p + 1);
        char *q = strchr(p + 1, ',');
        if (k <= n && q && q[1] != '\n' && q[1] != ',') v = atof(q + 1);
        (*rows)++;
        p = strchr(p + 1, '\n');
    }
    free(t);
    return v;
}

TEST(evolution_beats_random_at_equal_subnets_scored) {
    // One target, its tight budget; 20 seeds; both compared at the same count of scored subnets.
    enum { SEEDS = 20 };
    const int marks[] = {25, 50, 100, 150};
    double evo[4] = {0}, rnd[4] = {0};
    int wins = 0;
    for (int seed = 0; seed < SEEDS; seed++) {
        int nrows[2];
        double last[2];
        for (int k = 0; k < 2; k++) {
            ib_search_cfg c;
            scorer sc;
            ib_search_result r;
            char name[64];
            snprintf(name, sizeof name, "cmp_%d_%d", k, seed);
            base_cfg(&c, &sc, out_dir(name), 0);
            c.targets[0].n_budgets = 1;
            c.strategy = k ? IB_SEARCH_RANDOM : IB_SEARCH_EVOLUTION;
            c.seed = (uint64_t)seed;
            c.population = 16;
            c.sample = 4;
            c.batch = 8;
            c.generations = 20;
            c.n_baselines = 0;
            CHECK(ib_search_run(&c, &r) == IB_OK, "search: %s", ib_errmsg());
            free(sc.seen);
            const char *leaf = k ? "curve_random.csv" : "curve_evolution.csv";
            for (int m = 0; m < 4; m++) (k ? rnd : evo)[m] += curve_at(out_dir(name), leaf, marks[m], &nrows[k]) / SEEDS;
            last[k] = curve_at(out_dir(name), leaf, 150, &nrows[k]);
        }
        CHECK(nrows[0] >= 150 && nrows[1] >= 150, "seed %d: %d and %d subnets scored, 150 wanted", seed, nrows[0], nrows[1]);
        wins += last[0] > last[1];
    }
    printf("evolution vs random (mean best score within %.2f ms over %d seeds):\n", budget_cpu[0], SEEDS);
    for (int m = 0; m < 4; m++) printf("  %4d scored: evolution %.4f, random %.4f\n", marks[m], evo[m], rnd[m]);
    printf("  evolution ahead at 150 in %d of %d seeds\n", wins, SEEDS);
    CHECK(evo[3] > rnd[3] && evo[2] > rnd[2], "evolution %.4f/%.4f vs random %.4f/%.4f at 100/150 scored", evo[2], evo[3],
          rnd[2], rnd[3]);
    CHECK(wins >= SEEDS * 3 / 4, "evolution ahead in only %d of %d seeds", wins, SEEDS);
}

TEST(tunas_returns_an_arch_within_budget) {
    ib_search_cfg c;
    scorer sc;
    ib_search_result r;
    char *out = out_dir("tunas_budget");
    base_cfg(&c, &sc, out, 1);
    c.strategy = IB_SEARCH_TUNAS;
    c.generations = 15;
    c.batch = 8;
    CHECK(ib_search_run(&c, &r) == IB_OK, "tunas: %s", ib_errmsg());
    for (int i = 0; i < r.n_picks; i++)
        CHECK(r.picks[i].found && r.picks[i].ms <= r.picks[i].budget_ms, "tunas: budget %g ms: found %d, %.3f ms",
              r.picks[i].budget_ms, r.picks[i].found, r.picks[i].ms);
    char path[1200];
    snprintf(path, sizeof path, "%s/summary.json", out);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(j, "%s: %s", path, err.text);
    json_t *p = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
    json_t *am = json_object_get(p, "policy_argmax");
    int ok = json_array_size(json_object_get(am, "choice")) == (size_t)space.n_layers &&
             json_is_real(json_object_get(am, "ms"));
    json_decref(j);
    CHECK(ok, "summary.json: no policy_argmax arch for tunas");
    free(sc.seen);
}

// --ops: every arch a strategy scores (and so every pick) uses only the allowed op types; allowing every op
// type draws what no restriction draws, file for file; a set no layer of a stride-2 stage offers is refused.
TEST(search_ops_keeps_to_the_allowed_op_types) {
    const unsigned allow = 1u << IB_BLOCK_IBN | 1u << IB_BLOCK_SKIP;
    const ib_search_strategy strategies[] = {IB_SEARCH_EVOLUTION, IB_SEARCH_RANDOM, IB_SEARCH_TUNAS};
    for (int k = 0; k < 3; k++) {
        ib_search_cfg c;
        scorer sc;
        ib_search_result r;
        char name[32];
        snprintf(name, sizeof name, "ops_%d", k);
        base_cfg(&c, &sc, out_dir(name), 1);
        c.strategy = strategies[k];
        c.ops = allow;
        CHECK(ib_search_run(&c, &r) == IB_OK, "%s: %s", ib_search_strategy_name(c.strategy), ib_errmsg());
        int bad = 0, skips = 0, ibns = 0;
        for (int i = 0; i < sc.n_seen; i++) {
            ib_arch a;
            CHECK(ib_space_arch(&space, sc.seen + (size_t)i * (size_t)space.n_layers, 0, &a) == IB_OK, "%s", ib_errmsg());
            for (int l = 0; l < a.n_blocks; l++) {
                bad += !(allow >> a.blocks[l].op & 1u);
                skips += a.blocks[l].op == IB_BLOCK_SKIP, ibns += a.blocks[l].op == IB_BLOCK_IBN;
            }
            ib_arch_free(&a);
        }
        CHECK(sc.n_seen > 20 && !bad && skips && ibns, "%s: %d archs scored, %d blocks of other ops (%d skip, %d ibn)",
              ib_search_strategy_name(c.strategy), sc.n_seen, bad, skips, ibns);
        for (int i = 0; i < r.n_picks; i++) CHECK(r.picks[i].found, "no pick under %g ms", r.picks[i].budget_ms);
        free(sc.seen);
    }
    const char *dirs[2] = {out_dir("ops_all"), out_dir("ops_none")};
    for (int i = 0; i < 2; i++) {
        ib_search_cfg c;
        scorer sc;
        ib_search_result r;
        base_cfg(&c, &sc, dirs[i], 1);
        c.ops = i ? 0 : (1u << (IB_BLOCK_SKIP + 1)) - 1;
        CHECK(ib_search_run(&c, &r) == IB_OK, "search: %s", ib_errmsg());
        free(sc.seen);
    }
    const char *leaves[] = {"summary.json", "cpu/pareto.csv", "tpu/pareto.csv", "curve_evolution.csv", NULL};
    const char *d = same_files(dirs[0], dirs[1], leaves);
    CHECK(!d, "every op allowed: %s differs from the search without --ops", d);
    ib_search_cfg c;
    scorer sc;
    ib_search_result r;
    base_cfg(&c, &sc, out_dir("ops_skip"), 1);
    c.ops = 1u << IB_BLOCK_SKIP;
    CHECK(ib_search_run(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "none of the ops allowed (skip)"), "skip alone: %s",
          ib_errmsg());
    CHECK(sc.calls == 0, "a refused search scored %d subnets", sc.calls);
}

// ---------------------------------------------------------------------------------------------
// Measured picks (cfg->verify): a timer that measures every arch as the cpu table predicts it, except the
// archs listed as slow (1.5x) and the reference network (ref_factor x its prediction).

typedef struct fake_timer {
    int calls;
    int n_slow;
    char slow[4][128];        // choice strings ("0-3-16-...") measured 1.5x their prediction
    const ib_arch *ref;
    double ref_factor;
} fake_timer;

static void choice_str(const int *c, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int l = 0; l < space.n_layers && k < n; l++) k += (size_t)snprintf(buf + k, n - k, "%s%d", l ? "-" : "", c[l]);
}

static ib_status fake_time(void *user, int target, const ib_arch *a, int res, double *ms) {
    fake_timer *f = user;
    f->calls++;
    ib_status s = ib_lut_predict(lut_cpu, a, res, ms);
    if (s || target != 0) return s ? s : ib_fail(IB_ERR_ARG, "timed target %d", target);
    if (a == f->ref) {
        *ms *= f->ref_factor;
        return IB_OK;
    }
    int c[64];
    char str[128];
    if ((s = ib_space_check(&space, a, "timed", c))) return s;
    choice_str(c, str, sizeof str);
    for (int i = 0; i < f->n_slow; i++)
        if (!strcmp(str, f->slow[i])) *ms *= 1.5;
    return IB_OK;
}

typedef struct pareto_rows {
    int n;
    double score[4096], ms[4096];
    char choice[4096][128];
} pareto_rows;

static void read_pareto(const char *dir, pareto_rows *p) {
    char *t = read_at(dir, "cpu/pareto.csv"), *save = NULL;
    p->n = 0;
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int idx;
        char ch[128];
        double sc, ms;
        if (line[0] == '#' || sscanf(line, "%d,%lf,%lf,%*d,%*d,%127[^,]", &idx, &sc, &ms, ch) != 4) continue;
        p->score[p->n] = sc, p->ms[p->n] = ms;
        snprintf(p->choice[p->n++], 128, "%s", ch);
    }
    free(t);
}

// The pick of budget k in summary.json as a choice string.
static void summary_pick(const char *dir, int k, char *buf, size_t n) {
    char *t = read_at(dir, "summary.json");
    json_t *j = json_loads(t, 0, NULL);
    free(t);
    IB_ASSERT(j, "%s/summary.json does not parse", dir);
    json_t *ch = json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), (size_t)k), "choice");
    int c[64] = {0};
    for (size_t l = 0; l < json_array_size(ch) && l < 64; l++) c[l] = (int)json_integer_value(json_array_get(ch, l));
    choice_str(c, buf, n);
    json_decref(j);
}

// The best score of the rows predicted within lim, leaving out choice `not` ("" none); -1 when none.
static double best_score_within(const pareto_rows *p, double lim, const char *not) {
    double best = -1;
    for (int i = 0; i < p->n; i++)
        if (p->ms[i] <= lim && strcmp(p->choice[i], not) && p->score[i] > best) best = p->score[i];
    return best;
}

TEST(search_verify_picks_the_best_arch_measured_within_the_budget) {
    ib_search_cfg c;
    scorer sc;
    ib_search_result r0, r;
    char *plain = out_dir("verify_plain"), *out = out_dir("verify_on");
    base_cfg(&c, &sc, plain, 0);
    c.n_baselines = 0;
    CHECK(ib_search_run(&c, &r0) == IB_OK && r0.n_picks == 2, "search: %s", ib_errmsg());
    CHECK(r0.picks[0].verified == -1 && isnan(r0.picks[0].measured_ms), "not verified: %d", r0.picks[0].verified);
    free(sc.seen);
    pareto_rows *pr = malloc(sizeof *pr);
    IB_ASSERT(pr, "out of memory");
    read_pareto(plain, pr);
    CHECK(pr->n > 40, "%d rows in pareto.csv", pr->n);
    // The table's picks measure 1.5x: over their budgets. The next best-scored arch predicted within each
    // budget is then the pick (the others measure as predicted).
    fake_timer ft;
    memset(&ft, 0, sizeof ft);
    for (int k = 0; k < 2; k++) summary_pick(plain, k, ft.slow[k], sizeof ft.slow[k]);
    ft.n_slow = 2;
    base_cfg(&c, &sc, out, 0);
    c.n_baselines = 0;
    c.verify = 6, c.verify_rounds = 2, c.time_arch = fake_time, c.time_user = &ft;
    c.targets[0].timed = 1;
    CHECK(ib_search_run(&c, &r) == IB_OK && r.n_picks == 2, "search --verify: %s", ib_errmsg());
    int rows_timed = 0;
    for (int k = 0; k < 2; k++) {
        double b = c.targets[0].budget_ms[k];
        char pick[128], leaf[64];
        summary_pick(out, k, pick, sizeof pick);
        double want = best_score_within(pr, b, ft.slow[k]);
        CHECK(r.picks[k].verified == 1 && r.picks[k].found && strcmp(pick, ft.slow[k]) && fabs(r.picks[k].score - want) < 2e-6,
              "budget %g: verified %d, pick %s (score %.6f), the table's %s, the best other within %.6f", b,
              r.picks[k].verified, pick, r.picks[k].score, ft.slow[k], want);
        CHECK(fabs(r.picks[k].measured_ms - r.picks[k].ms) < 1e-9 && r.picks[k].budget_measured_ms == b && r.picks[k].timed >= 2,
              "budget %g: measured %g, predicted %g, budget measured %g, %d timed", b, r.picks[k].measured_ms, r.picks[k].ms,
              r.picks[k].budget_measured_ms, r.picks[k].timed);
        // verify-<b>ms.csv: best-scored first, all predicted within 5% over the budget, within = measured <= budget,
        // the chosen row the first within
        snprintf(leaf, sizeof leaf, "cpu/verify-%gms.csv", b);
        char *t = read_at(out, leaf), *save = NULL;
        int rows = 0, chosen_at = -1, first_within = -1, bad = 0;
        double prev = INFINITY;
        for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            int rank, idx, within, chosen;
            double s, ms, meas;
            char ch[128];
            if (sscanf(line, "%d,%d,%lf,%lf,%lf,%d,%d,%127[^,]", &rank, &idx, &s, &ms, &meas, &within, &chosen, ch) != 8) continue;
            int slow = !strcmp(ch, ft.slow[k]) || !strcmp(ch, ft.slow[1 - k]);
            bad += s > prev || ms > b * 1.05 + 1e-4 || fabs(meas - ms * (slow ? 1.5 : 1)) > 1e-3 || within != (meas <= b);
            if (within && first_within < 0) first_within = rows;
            if (chosen) chosen_at = rows;
            if (chosen && strcmp(ch, pick)) bad++;
            prev = s, rows++;
        }
        free(t);
        rows_timed += rows;
        CHECK(rows == r.picks[k].timed && rows <= 6 && rows >= 2 && !bad && chosen_at >= 0 && chosen_at == first_within,
              "%s: %d rows (%d timed), %d bad, chosen row %d, first within %d", leaf, rows, r.picks[k].timed, bad, chosen_at,
              first_within);
    }
    CHECK(ft.calls == 2 * rows_timed, "%d timings for %d archs in 2 rounds", ft.calls, rows_timed);
    const char *leaves[] = {"cpu/pareto.csv", "curve_evolution.csv", NULL};
    const char *d = same_files(plain, out, leaves);
    CHECK(!d, "verification changed the search itself: %s differs", d);
    free(sc.seen);

    // A budget given as a network measured 3% under its prediction: the pick is the best-scored arch whose
    // measurement (its prediction here) is within 0.97 x the budget, every candidate timed.
    ib_arch ref;
    int zero[64] = {0};
    CHECK(ib_space_arch(&space, zero, 0, &ref) == IB_OK, "%s", ib_errmsg());
    double ref_ms;
    CHECK(ib_lut_predict(lut_cpu, &ref, 32, &ref_ms) == IB_OK, "%s", ib_errmsg());
    memset(&ft, 0, sizeof ft);
    ft.ref = &ref, ft.ref_factor = 0.97;
    base_cfg(&c, &sc, out_dir("verify_ref"), 0);
    c.n_baselines = 0;
    c.targets[0].n_budgets = 1;
    c.targets[0].budget_ms[0] = ref_ms;
    c.targets[0].budget_ref[0] = &ref;
    c.targets[0].budget_label[0] = "all-zero";
    c.targets[0].timed = 1;
    c.verify = 100000, c.verify_rounds = 1, c.time_arch = fake_time, c.time_user = &ft;
    CHECK(ib_search_run(&c, &r) == IB_OK && r.n_picks == 1, "search with a network budget: %s", ib_errmsg());
    read_pareto(out_dir("verify_ref"), pr);
    double want = best_score_within(pr, 0.97 * ref_ms, "");
    CHECK(want > 0 && r.picks[0].verified == 1 && fabs(r.picks[0].score - want) < 2e-6 &&
              fabs(r.picks[0].budget_measured_ms - 0.97 * ref_ms) < 1e-9 && r.picks[0].measured_ms <= 0.97 * ref_ms,
          "budget %g ms (measured %g): pick %.6f at %g ms measured, want %.6f", ref_ms, r.picks[0].budget_measured_ms,
          r.picks[0].score, r.picks[0].measured_ms, want);
    char *summary = read_at(out_dir("verify_ref"), "summary.json");
    CHECK(strstr(summary, "\"budget_of\": \"all-zero\"") && strstr(summary, "\"verified\": true"), "summary: %s", summary);
    free(summary);
    free(sc.seen);

    // None of the timed archs within: the table's pick stays, unverified.
    memset(&ft, 0, sizeof ft);
    summary_pick(plain, 0, ft.slow[0], sizeof ft.slow[0]);
    ft.n_slow = 1;
    base_cfg(&c, &sc, out_dir("verify_none"), 0);   // the plain search's settings, so its history
    c.n_baselines = 0;
    c.verify = 1, c.verify_slack = 0, c.time_arch = fake_time, c.time_user = &ft;
    c.targets[0].timed = 1;
    CHECK(ib_search_run(&c, &r) == IB_OK, "%s", ib_errmsg());
    char pick[128];
    summary_pick(out_dir("verify_none"), 0, pick, sizeof pick);
    CHECK(r.picks[0].verified == 0 && !strcmp(pick, ft.slow[0]) && fabs(r.picks[0].measured_ms - 1.5 * r.picks[0].ms) < 1e-9,
          "verified %d, pick %s (the table's %s), measured %g predicted %g", r.picks[0].verified, pick, ft.slow[0],
          r.picks[0].measured_ms, r.picks[0].ms);
    free(sc.seen);
    ib_arch_free(&ref);
    free(pr);
}

TEST(search_rejects_bad_settings) {
    ib_search_cfg c;
    scorer sc;
    ib_search_result r;
    base_cfg(&c, &sc, out_dir("bad_budget"), 1);
    c.targets[0].budget_ms[0] = 0.01;
    CHECK(ib_search_run(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "below the fastest arch"), "tiny budget: %s",
          ib_errmsg());
    base_cfg(&c, &sc, out_dir("bad_name"), 1);
    c.targets[1].name = "../x";
    CHECK(ib_search_run(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "target name"), "bad name: %s", ib_errmsg());
    // A finished run's folder: a new search there must not overwrite it; a resume with other settings fails.
    base_cfg(&c, &sc, out_dir("bad_exists"), 1);
    c.generations = 1;
    CHECK(ib_search_run(&c, &r) == IB_OK, "search: %s", ib_errmsg());
    free(sc.seen);
    base_cfg(&c, &sc, out_dir("bad_exists"), 1);
    c.generations = 1;
    CHECK(ib_search_run(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "--resume"), "existing state: %s", ib_errmsg());
    c.resume = 1;
    c.seed = 8;
    CHECK(ib_search_run(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "other settings"), "other seed: %s", ib_errmsg());
    base_cfg(&c, &sc, out_dir("no_state"), 1);
    c.resume = 1;
    CHECK(ib_search_run(&c, &r) == IB_ERR_NOTFOUND, "resume without a state: %s", ib_errmsg());
    CHECK(sc.calls == 0, "a failed setup scored %d subnets", sc.calls);
}

// The verb end to end on a supernet with fresh weights (no training: only the plumbing is under test):
// the held-out part the supernet records is scored, two tables, per-target budgets, a baseline the tables
// lack, --json; then a second search into the same folder without --resume is refused.
TEST(cli_search_end_to_end) {
    fixtures();
    const char *d = test_tmpdir(), *bin = test_ibnas_bin();
    char data[600], snp[600], cmd[8192], *out = NULL, *err = NULL;
    snprintf(data, sizeof data, "%s/e2e_train.h5", d);
    snprintf(snp, sizeof snp, "%s/e2e_sn.h5", d);
    CHECK(ib_synth_write_pack(data, 160, 32, 3, 0, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    ib_supernet sn;
    CHECK(ib_supernet_build(&sn, &space, 6) == IB_OK, "%s", ib_errmsg());
    ib_supernet_init_weights(&sn, 1);
    sn.train_data = strdup(data);
    sn.holdout = 0.25;
    sn.split_seed = 5;
    ib_status s = ib_supernet_save(&sn, snp, NULL, NULL);
    ib_supernet_free(&sn);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    snprintf(cmd, sizeof cmd,
             "%s search --supernet %s --lut cpu=%s/cpu.csv,tpu=%s/tpu.csv --budget-ms 'cpu=%g;tpu=%g,%g' --population 3 "
             "--generations 1 --batch 1 --sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 "
             "--baselines mobilenetv2:0.35=0.2 --seed 3 --out %s/e2e_out --json",
             bin, snp, d, d, budget_cpu[1], budget_tpu[0], budget_tpu[1], d);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "search failed (%d): %s", rc, err);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    CHECK(j, "--json printed no JSON (%s): %s", jerr.text, out);
    json_t *ts = json_object_get(j, "targets");
    int ok = json_array_size(ts) == 2 && json_is_true(json_object_get(j, "finished")) &&
             json_integer_value(json_object_get(j, "subnets_scored")) >= 3;
    for (size_t t = 0; ok && t < 2; t++) {
        json_t *picks = json_object_get(json_array_get(ts, t), "picks");
        ok = json_array_size(picks) == t + 1;
        for (size_t k = 0; ok && k < json_array_size(picks); k++) {
            json_t *p = json_array_get(picks, k);
            double top1 = json_real_value(json_object_get(p, "score"));
            ok = json_is_true(json_object_get(p, "found")) && top1 >= 0 && top1 <= 1 &&
                 json_real_value(json_object_get(p, "ms")) <= json_real_value(json_object_get(p, "budget_ms"));
        }
    }
    json_decref(j);
    CHECK(ok, "summary: %s", out);
    CHECK(strstr(err, "generation 1/1"), "no progress line per generation on stderr: %s", err);
    free(out), free(err);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/e2e_out", d);
    CHECK(file_exists(dir, "tpu/archs.svg") && file_exists(dir, "cpu/pareto.svg") && file_exists(dir, "curve_evolution.csv"),
          "outputs missing in %s", dir);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "--resume"), "a second search into the folder gave %d: %s", rc, err);
    free(out), free(err);
    char resume_cmd[8300];
    snprintf(resume_cmd, sizeof resume_cmd, "%s --resume --quiet", cmd);
    // Another held-out fraction of the supernet's own training data would score images it trained on.
    snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut cpu=%s/cpu.csv --budget-ms %g --holdout 0.3 --out %s/e2e_h",
             bin, snp, d, budget_cpu[1], d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "held out 0.25"), "--holdout 0.3 on a supernet that held out 0.25 gave %d: %s", rc, err);
    free(out), free(err);
    // --ops names what it does not know, and what it repeats.
    const char *bad_ops[2][2] = {{"ibn,foo", "'foo' is not an op"}, {"ibn,skip,ibn", "'ibn' is given twice"}};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut cpu=%s/cpu.csv --budget-ms %g --ops %s --out %s/e2e_ops",
                 bin, snp, d, budget_cpu[1], bad_ops[k][0], d);
        rc = test_run(cmd, &out, &err);
        CHECK(rc != 0 && strstr(err, bad_ops[k][1]), "--ops %s gave %d: %s", bad_ops[k][0], rc, err);
        free(out), free(err);
    }
    // --resume of a finished search rescores nothing and prints the same summary.
    rc = test_run(resume_cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, "\"subnets_scored\""), "resume of a finished search (%d): %s", rc, err);
    free(out), free(err);
    // --metric loss scores by minus the held-out cross-entropy: every score is negative and above -ln(6)*4
    // (an untrained net's loss is near ln 6), the pick has the best of them; a resume under the other
    // metric is refused, and an unknown metric named.
    snprintf(cmd, sizeof cmd,
             "%s search --supernet %s --lut cpu=%s/cpu.csv --budget-ms %g --population 3 --generations 1 --batch 1 "
             "--sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 --seed 3 --metric loss --quiet "
             "--out %s/e2e_loss --json",
             bin, snp, d, budget_cpu[1], d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "search --metric loss failed (%d): %s", rc, err);
    j = json_loads(out, 0, &jerr);
    CHECK(j, "--json printed no JSON: %s", out);
    json_t *pick = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
    double best = json_real_value(json_object_get(pick, "score"));
    json_decref(j);
    free(out), free(err);
    char csv[700];
    snprintf(csv, sizeof csv, "%s/e2e_loss/cpu/pareto.csv", d);
    FILE *f = fopen(csv, "r");
    CHECK(f, "no %s", csv);
    char line[8192];
    int rows = 0;
    double top = -1e30;
    while (fgets(line, sizeof line, f)) {
        double sc, ms;
        int idx;
        if (sscanf(line, "%d,%lf,%lf,", &idx, &sc, &ms) != 3) continue;
        CHECK(sc < 0 && sc > -4 * log(6.0), "%s: score %g is not minus a cross-entropy", csv, sc);
        if (ms <= budget_cpu[1] && sc > top) top = sc;
        rows++;
    }
    fclose(f);
    CHECK(rows >= 3 && fabs(best - top) < 1e-6, "%d rows; the pick's score %.9g, the best under the budget %.9g", rows, best, top);
    snprintf(resume_cmd, sizeof resume_cmd, "%s search --supernet %s --lut cpu=%s/cpu.csv --budget-ms %g --population 3 "
             "--generations 1 --batch 1 --sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 --seed 3 "
             "--quiet --out %s/e2e_loss --resume", bin, snp, d, budget_cpu[1], d);
    rc = test_run(resume_cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "state.json"), "resume under top1 of a loss search gave %d: %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut cpu=%s/cpu.csv --budget-ms 1 --metric top5 --out %s/e2e_m",
             bin, snp, d, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "top5"), "--metric top5 gave %d: %s", rc, err);
    free(out), free(err);
    // --verify on a table of this machine with a budget given as a network (an arch file of the space): the
    // picks are timed for real; the summary carries the measurements and verify-<budget>ms.csv exists.
    // The same table with another device's name is not timed.
    for (int other = 0; other < 2; other++) {
        ib_lut *t;
        char lut_path[700], here[256];
        snprintf(lut_path, sizeof lut_path, "%s/cpu.csv", d);
        CHECK(ib_lut_load(&t, lut_path) == IB_OK, "%s", ib_errmsg());
        ib_lut_device_name(here, sizeof here);
        ib_lut_set_meta(t, "device", other ? "another CPU" : here);
        ib_lut_set_meta(t, "threads", "1");
        snprintf(lut_path, sizeof lut_path, "%s/cpu_here%d.csv", d, other);
        CHECK(ib_lut_save(t, lut_path) == IB_OK, "%s", ib_errmsg());
        ib_lut_free(t);
        int c6[64] = {0, 3, 3, 0, 3, 3, 0, 3, 3};
        ib_arch ref;
        char ref_path[700];
        snprintf(ref_path, sizeof ref_path, "%s/ref.arch.json", d);
        CHECK(ib_space_arch(&space, c6, 6, &ref) == IB_OK && ib_arch_save(&ref, ref_path) == IB_OK, "%s", ib_errmsg());
        ib_arch_free(&ref);
        snprintf(cmd, sizeof cmd,
                 "%s search --supernet %s --lut cpu=%s --budget-ms cpu=%s --population 4 --generations 1 --batch 2 "
                 "--sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 --seed 3 --verify 3 "
                 "--out %s/e2e_verify%d --json",
                 bin, snp, lut_path, ref_path, d, other);
        rc = test_run(cmd, &out, &err);
        CHECK(rc == 0, "search --verify failed (%d): %s", rc, err);
        j = json_loads(out, 0, &jerr);
        CHECK(j, "--json printed no JSON: %s", out);
        pick = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
        json_t *v = json_object_get(pick, "verified");
        double meas = json_real_value(json_object_get(pick, "measured_ms")),
               bud = json_real_value(json_object_get(pick, "budget_measured_ms"));
        const char *of = json_string_value(json_object_get(pick, "budget_of"));
        if (other)
            CHECK(json_is_null(v) && strstr(err, "measured on another CPU") && of && !strcmp(of, ref_path), "not timed: %s / %s",
                  out, err);
        else
            CHECK(json_is_boolean(v) && bud > 0 && (json_is_false(v) || (meas > 0 && meas <= bud)) &&
                      strstr(err, "timing the") && of && !strcmp(of, ref_path),
                  "verified %s, measured %g against %g ms: %s", json_is_true(v) ? "yes" : "no", meas, bud, err);
        json_decref(j);
        free(out), free(err);
    }
    char vdir[700];
    snprintf(vdir, sizeof vdir, "%s/e2e_verify0/cpu", d);
    char *sum = read_at(vdir, "../summary.json");
    json_t *js = json_loads(sum, 0, NULL);
    free(sum);
    CHECK(js, "e2e_verify0/summary.json does not parse");
    double bms = json_real_value(json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(js, "targets"), 0), "picks"), 0), "budget_ms"));
    json_decref(js);
    char leaf[200];
    snprintf(leaf, sizeof leaf, "verify-%gms.csv", bms);
    char *vcsv = read_at(vdir, leaf);
    CHECK(strstr(vcsv, "reference,,,") && strstr(vcsv, "rank,index,score,ms,measured_ms,within,chosen"), "%s/%s: %s", vdir, leaf, vcsv);
    free(vcsv);
    // A budget that is neither a number nor a network, and a network the table has no rows for, are named.
    const char *bad_budgets[2][2] = {{"cpu=nosuch.arch.json", "neither a number of ms nor a network"},
                                     {"cpu=mobilenetv2:0.35", "mobilenetv2:0.35 on cpu"}};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut cpu=%s/cpu.csv --budget-ms '%s' --out %s/e2e_badb", bin, snp,
                 d, bad_budgets[k][0], d);
        rc = test_run(cmd, &out, &err);
        CHECK(rc != 0 && strstr(err, bad_budgets[k][1]), "--budget-ms %s gave %d: %s", bad_budgets[k][0], rc, err);
        free(out), free(err);
    }
}
