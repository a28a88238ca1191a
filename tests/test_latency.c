// Latency tables (search/lut.c), the target models and profiler (search/latency.c) and the `ibnas
// latency` verbs: tables round-trip, bad files fail naming file and line, a prediction is the sum of
// its rows, a missing row is named, a profile writes every row and resumes, the EdgeTPU model makes
// depthwise convolutions relatively dearer than full ones, Spearman's rho, and the CLI end to end.
// No timing thresholds: speed numbers belong in docs/LATENCY.md.
#include "tests/test.h"

#include "search/search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    IB_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", test_tmpdir(), name);
    return b;
}

// A tiny arch: stem 8 s2, ibn, skip, fused s2, tucker, gcibn, head 32, 5 classes; at res 32:
// stem 32 -> 16, blocks at 16, 16, 16, 8, 8, head at 8.
static const char *tiny_arch_json =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"tiny\", \"classes\": 5, \"input\": 32,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"blocks\": [{\"op\": \"ibn\", \"kernel\": 3, \"expand\": 3, \"out\": 8, \"stride\": 1},"
    "              {\"op\": \"skip\", \"out\": 8, \"stride\": 1},"
    "              {\"op\": \"fused\", \"kernel\": 5, \"expand\": 4, \"out\": 16, \"stride\": 2},"
    "              {\"op\": \"tucker\", \"kernel\": 3, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 16, \"stride\": 1},"
    "              {\"op\": \"gcibn\", \"kernel\": 3, \"expand\": 4, \"groups\": 2, \"out\": 16, \"stride\": 1}],"
    " \"head\": {\"out\": 32, \"dropout\": 0.0}}";

static const char *tiny_lut_csv =
    "# format: ibnas-lut 1\n"
    "# target: handmade\n"
    "# threads: 1\n"
    "op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\n"
    "stem,3,8,32,32,2,3,0,0,0,0,0.5\n"
    "ibn,8,8,16,16,1,3,3,0,0,0,1.25\n"
    "fused,8,16,16,16,2,5,4,0,0,0,2\n"
    "tucker,16,16,8,8,1,3,0,0,0.25,0.75,0.125\n"
    "gcibn,16,16,8,8,1,3,4,2,0,0,0.0625\n"
    "head,16,5,8,8,0,0,32,0,0,0,0.25\n";

TEST(lut_predict_sums_rows) {
    const char *p = tmp_path("tiny.csv");
    write_text(p, tiny_lut_csv);
    ib_lut *t;
    CHECK(ib_lut_load(&t, p) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(ib_lut_target(t), "handmade"), "target '%s'", ib_lut_target(t));
    CHECK(ib_lut_rows(t) == 6, "%d rows", ib_lut_rows(t));
    ib_arch a;
    CHECK(ib_arch_parse(&a, tiny_arch_json, "tiny") == IB_OK, "%s", ib_errmsg());
    double ms = 0;
    ib_status s = ib_lut_predict(t, &a, 32, &ms);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    CHECK(ms == 0.5 + 1.25 + 2 + 0.125 + 0.0625 + 0.25, "predicted %g", ms);
    // A correction comment is applied: a * sum + b * rows + c (6 rows).
    ib_lut_correction c = {.a = 2, .b = 0.5, .c = 1};
    CHECK(ib_lut_set_correction(t, 32, &c, "(test)") == IB_OK, "%s", ib_errmsg());
    double ms2;
    CHECK(ib_lut_predict(t, &a, 32, &ms2) == IB_OK, "%s", ib_errmsg());
    CHECK(fabs(ms2 - (2 * ms + 0.5 * 6 + 1)) < 1e-9, "corrected %g", ms2);
    // At another resolution every row is missing: the stem's is named, with the file.
    s = ib_lut_predict(t, &a, 64, &ms);
    CHECK(s == IB_ERR_NOTFOUND, "status %d", s);
    CHECK(strstr(ib_errmsg(), p) && strstr(ib_errmsg(), "stem,3,8,64,64,2,3,0,0,0,0") && strstr(ib_errmsg(), "stem"),
          "message: %s", ib_errmsg());
    ib_arch_free(&a);
    ib_lut_free(t);
}

TEST(lut_missing_row_named) {
    const char *p = tmp_path("missing.csv");
    // tiny_lut_csv without its tucker row.
    char *text = malloc(strlen(tiny_lut_csv) + 1), *d = text;
    for (const char *line = tiny_lut_csv; *line;) {
        const char *e = strchr(line, '\n') + 1;
        if (strncmp(line, "tucker", 6)) memcpy(d, line, (size_t)(e - line)), d += e - line;
        line = e;
    }
    *d = 0;
    write_text(p, text);
    free(text);
    ib_lut *t;
    CHECK(ib_lut_load(&t, p) == IB_OK, "%s", ib_errmsg());
    ib_arch a;
    CHECK(ib_arch_parse(&a, tiny_arch_json, "tiny") == IB_OK, "%s", ib_errmsg());
    double ms;
    ib_status s = ib_lut_predict(t, &a, 32, &ms);
    CHECK(s == IB_ERR_NOTFOUND, "status %d", s);
    CHECK(strstr(ib_errmsg(), "tucker,16,16,8,8,1,3,0,0,0.25,0.75") && strstr(ib_errmsg(), "blocks[3]"),
          "message: %s", ib_errmsg());
    ib_arch_free(&a);
    ib_lut_free(t);
}

TEST(lut_round_trip) {
    ib_lut *t = ib_lut_new("cpu");
    CHECK(t, "no table");
    CHECK(ib_lut_set_meta(t, "device", "test machine, 2 cores") == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_set_meta(t, "threads", "2") == IB_OK, "%s", ib_errmsg());
    ib_rng r;
    ib_rng_seed(&r, 7, 0);
    // Enough rows to rehash several times; a replaced value keeps its place.
    for (int i = 0; i < 500; i++) {
        ib_block_cfg c;
        memset(&c, 0, sizeof c);
        c.op = (ib_block_op)(i % 4);
        c.out = 8 * (1 + i % 7), c.stride = 1 + i % 2, c.kernel = 3 + 2 * (i % 3), c.expand = 1 + i % 6;
        c.groups = 2, c.r_in = 0.25f, c.r_out = 0.75f;
        ib_lut_key k = ib_lut_key_block(&c, 16 + i, 8 + i % 5, 8 + i % 5);
        CHECK(ib_lut_set(t, &k, 0.001 * ib_rng_below(&r, 100000)) == IB_OK, "%s", ib_errmsg());
    }
    CHECK(ib_lut_rows(t) == 500, "%d rows", ib_lut_rows(t));
    ib_lut_key k0 = ib_lut_row(t, 3, NULL);
    CHECK(ib_lut_set(t, &k0, 12.5) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_rows(t) == 500, "%d rows after a replace", ib_lut_rows(t));
    const char *p = tmp_path("rt.csv");
    CHECK(ib_lut_save(t, p) == IB_OK, "%s", ib_errmsg());
    CHECK(access(tmp_path("rt.csv.tmp"), F_OK) != 0, "the temporary file was left behind");
    ib_lut *u;
    CHECK(ib_lut_load(&u, p) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_rows(u) == 500, "%d rows read back", ib_lut_rows(u));
    CHECK(!strcmp(ib_lut_target(u), "cpu") && !strcmp(ib_lut_meta(u, "device"), "test machine, 2 cores") &&
              !strcmp(ib_lut_meta(u, "threads"), "2"),
          "comments not read back");
    for (int i = 0; i < 500; i++) {
        double a, b;
        ib_lut_key k = ib_lut_row(t, i, &a), ku = ib_lut_row(u, i, NULL);
        CHECK(ib_lut_find(u, &k, &b), "row %d lost", i);
        CHECK(fabs(a - b) <= 1e-5 * fabs(a), "row %d: %g became %g", i, a, b);
        CHECK(k.op == ku.op && k.cin == ku.cin && k.h == ku.h, "row %d moved", i);
    }
    ib_lut_free(t);
    ib_lut_free(u);
}

// Each bad file gives IB_ERR_FORMAT with "FILE:LINE:" in its message.
TEST(lut_bad_csv_names_file_and_line) {
    static const struct { const char *text, *where, *what; } cases[] = {
        {"# target: x\nop,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,3,0,0,0\n", ":3:",
         "too few"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,3,0,0,0,1,2\n", ":2:", "too many"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\n\nconv,8,8,16,16,1,3,3,0,0,0,1\n", ":3:", "conv"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,x8,16,16,1,3,3,0,0,0,1\n", ":2:", "cout"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,3,0,0,0,-1\n", ":2:", "ms"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,3,0,0,0,nan\n", ":2:", "ms"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\ntucker,8,8,16,16,1,3,0,0,1.5,0.25,1\n", ":2:", "r_in"},
        {"# a\nop,cin,cout,h,w,ms\n", ":2:", "header"},
        {"# only comments\n", ":1:", "header"},
        {"op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,3,0,0,0,1\n"
         "ibn,8,8,16,16,1,3,3,0,0,0,2\n", ":3:", "twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.csv", i);
        const char *p = tmp_path(name);
        write_text(p, cases[i].text);
        ib_lut *t = (ib_lut *)1;
        ib_status s = ib_lut_load(&t, p);
        CHECK(s == IB_ERR_FORMAT && !t, "case %zu: status %d", i, s);
        char where[600];
        snprintf(where, sizeof where, "%s%s", p, cases[i].where);
        CHECK(strstr(ib_errmsg(), where) && strstr(ib_errmsg(), cases[i].what), "case %zu: message '%s'", i,
              ib_errmsg());
    }
    ib_lut *t;
    CHECK(ib_lut_load(&t, tmp_path("absent.csv")) == IB_ERR_IO && strstr(ib_errmsg(), "absent.csv"), "%s",
          ib_errmsg());
}

TEST(lut_spec_parsing) {
    char name[32];
    const char *path;
    CHECK(ib_lut_parse_spec("edgetpu=tables/e.csv", name, sizeof name, &path) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(name, "edgetpu") && !strcmp(path, "tables/e.csv"), "'%s' '%s'", name, path);
    CHECK(ib_lut_parse_spec("tables/e.csv", name, sizeof name, &path) == IB_OK && !name[0] &&
              !strcmp(path, "tables/e.csv"),
          "plain path");
    CHECK(ib_lut_parse_spec("=e.csv", name, sizeof name, &path) == IB_ERR_ARG, "empty name accepted");
    CHECK(ib_lut_parse_spec("x=", name, sizeof name, &path) == IB_ERR_ARG, "empty path accepted");
    CHECK(ib_lut_parse_spec("a b=e.csv", name, sizeof name, &path) == IB_ERR_ARG, "a space in the name accepted");
    // Without a name, loading names the table by its target.
    const char *p = tmp_path("spec.csv");
    write_text(p, tiny_lut_csv);
    ib_lut *t;
    CHECK(ib_lut_load_spec(&t, p, name, sizeof name) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(name, "handmade"), "name '%s'", name);
    ib_lut_free(t);
}

TEST(spearman_known_values) {
    // Textbook example: x = 1..10 and a permutation of ranks; rho = 1 - 6 sum d^2 / (n (n^2 - 1)).
    double x[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, y[10] = {2, 1, 4, 3, 6, 5, 8, 7, 10, 9};
    double rho = ib_spearman(x, y, 10);   // d^2 sum = 10 -> 1 - 60 / 990
    CHECK(fabs(rho - (1 - 60.0 / 990)) < 1e-12, "rho %.15g", rho);
    // Ties take their mean rank: scipy.stats.spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138.
    double a[4] = {1, 2, 2, 3}, b[4] = {1, 3, 2, 4};
    rho = ib_spearman(a, b, 4);
    CHECK(fabs(rho - 0.9486832980505138) < 1e-12, "tied rho %.15g", rho);
    double c[4] = {4, 3, 2, 1};
    CHECK(fabs(ib_spearman(a, c, 4) + 0.9486832980505138) < 1e-12, "reversed");
    CHECK(ib_spearman(x, x, 1) == 0, "n = 1");
}

// Subnet i's parts for the fit tests: block-op ms and counts that vary independently, the stem and head
// at one shape (as in a space), a few skip layers.
static ib_lut_parts fit_parts(int i) {
    ib_lut_parts p;
    memset(&p, 0, sizeof p);
    p.ms[IB_LUT_STEM] = 0.3, p.count[IB_LUT_STEM] = 1;
    p.ms[IB_LUT_HEAD] = 0.2, p.count[IB_LUT_HEAD] = 1;
    p.count[IB_BLOCK_IBN] = 2 + (i * 5) % 7, p.ms[IB_BLOCK_IBN] = 0.4 * p.count[IB_BLOCK_IBN] + 0.1 * (i % 4);
    p.count[IB_BLOCK_FUSED] = 1 + (i * 3) % 5, p.ms[IB_BLOCK_FUSED] = 1.1 * p.count[IB_BLOCK_FUSED] + 0.3 * (i % 3);
    p.count[IB_BLOCK_TUCKER] = (i * 7) % 6, p.ms[IB_BLOCK_TUCKER] = 0.1 * p.count[IB_BLOCK_TUCKER] + 0.05 * (i % 5);
    p.count[IB_BLOCK_SKIP] = 18 - p.count[IB_BLOCK_IBN] - p.count[IB_BLOCK_FUSED] - p.count[IB_BLOCK_TUCKER];
    for (int o = 0; o < IB_LUT_N_OPS; o++)
        if (o != IB_BLOCK_SKIP) p.sum += p.ms[o], p.n_rows += p.count[o];
    return p;
}

TEST(lut_correction_fit) {
    // measured = 1.1 * sum + 0.05 * rows exactly: the fit finds it (no per-op terms).
    ib_lut_parts p[40];
    double meas[40];
    for (int i = 0; i < 40; i++) {
        p[i] = fit_parts(i);
        meas[i] = 1.1 * p[i].sum + 0.05 * p[i].n_rows;
    }
    ib_lut_correction c = ib_lut_fit_correction(p, meas, 8, IB_LUT_RIDGE);
    CHECK(fabs(c.a - 1.1) < 1e-9 && fabs(c.b - 0.05) < 1e-9 && c.c == 0, "fit a %g b %g c %g", c.a, c.b, c.c);
    for (int o = 0; o < IB_LUT_N_OPS; o++)
        CHECK(fabs(c.da[o]) < 1e-9 && fabs(c.db[o]) < 1e-9, "op %d: da %g db %g", o, c.da[o], c.db[o]);
    // Too few points: a pure scale.
    c = ib_lut_fit_correction(p, meas, 2, IB_LUT_RIDGE);
    CHECK(c.b == 0 && c.c == 0 && c.a > 1, "fallback a %g b %g c %g", c.a, c.b, c.c);
    // Known per-op scales, no noise, no penalty: recovered exactly.
    ib_lut_correction want;
    memset(&want, 0, sizeof want);
    want.a = 1.05, want.b = 0.02;
    want.da[IB_BLOCK_FUSED] = 0.15, want.da[IB_BLOCK_TUCKER] = -0.2, want.da[IB_BLOCK_IBN] = 0.04;
    for (int i = 0; i < 40; i++) meas[i] = ib_lut_correct(&want, &p[i]);
    c = ib_lut_fit_correction(p, meas, 40, 0);
    CHECK(fabs(c.a - want.a) < 1e-6 && fabs(c.b - want.b) < 1e-6 && c.c == 0, "a %g b %g", c.a, c.b);
    for (int o = 0; o < IB_LUT_N_OPS; o++)
        CHECK(fabs(c.da[o] - want.da[o]) < 1e-6 && fabs(c.db[o] - want.db[o]) < 1e-6, "op %s: da %g (%g) db %g (%g)",
              ib_lut_op_name(o), c.da[o], want.da[o], c.db[o], want.db[o]);
    // With the penalty the terms shrink toward the global fit but predict closer than it does.
    ib_lut_correction g = ib_lut_fit_correction(p, meas, 7, IB_LUT_RIDGE);   // below IB_LUT_FIT_PER_OP: a, b only
    for (int o = 0; o < IB_LUT_N_OPS; o++) CHECK(g.da[o] == 0 && g.db[o] == 0, "per-op terms from 7 subnets");
    c = ib_lut_fit_correction(p, meas, 40, -1);   // ridge < 0: a, b only, as from 7 subnets
    for (int o = 0; o < IB_LUT_N_OPS; o++) CHECK(c.da[o] == 0 && c.db[o] == 0, "per-op terms with ridge -1");
    c = ib_lut_fit_correction(p, meas, 20, IB_LUT_RIDGE);
    CHECK(c.da[IB_BLOCK_FUSED] > 0 && c.da[IB_BLOCK_FUSED] < want.da[IB_BLOCK_FUSED], "shrunk da %g",
          c.da[IB_BLOCK_FUSED]);
    double err_g = 0, err_c = 0;
    for (int i = 20; i < 40; i++)
        err_g += fabs(ib_lut_correct(&g, &p[i]) / meas[i] - 1), err_c += fabs(ib_lut_correct(&c, &p[i]) / meas[i] - 1);
    CHECK(err_c < err_g, "held-out error per-op %g, global %g", err_c / 20, err_g / 20);
    // Every subnet with the same row count (a small space without skips) but different sums: b * n_rows is
    // the intercept, and a negative b (the set-up a part timed alone pays) is found, not a pure scale.
    for (int i = 0; i < 10; i++) {
        p[i] = fit_parts(i);
        p[i].n_rows = 8;
        meas[i] = 1.02 * p[i].sum - 0.004 * p[i].n_rows;
    }
    c = ib_lut_fit_correction(p, meas, 10, -1);
    CHECK(fabs(c.a - 1.02) < 1e-9 && fabs(c.b + 0.004) < 1e-9, "one row count: a %g b %g", c.a, c.b);
    // Degenerate: every subnet the same, so no row span: a pure scale.
    for (int i = 0; i < 10; i++) p[i] = fit_parts(0), meas[i] = 2 * p[i].sum;
    c = ib_lut_fit_correction(p, meas, 10, IB_LUT_RIDGE);
    CHECK(fabs(c.a - 2) < 1e-12 && c.b == 0 && c.da[IB_BLOCK_FUSED] == 0, "degenerate a %g b %g", c.a, c.b);
}

TEST(lut_correction_formats) {
    const char *p = tmp_path("corr.csv");
    ib_arch a;
    CHECK(ib_arch_parse(&a, tiny_arch_json, "tiny") == IB_OK, "%s", ib_errmsg());
    // A table written before the per-op terms: "a= b= c=" and a note; predicts a * sum + b * rows + c exactly.
    char text[2048];
    snprintf(text, sizeof text, "# correction: res=32 a=1.25 b=0.03 c=0.5 (fit on 20 subnets, seed 1000: mean abs "
             "error 9.1%% -> 2.3%%)\n%s", tiny_lut_csv);
    write_text(p, text);
    ib_lut *t;
    CHECK(ib_lut_load(&t, p) == IB_OK, "%s", ib_errmsg());
    ib_lut_correction c;
    CHECK(ib_lut_get_correction(t, 32, &c), "no correction");
    for (int o = 0; o < IB_LUT_N_OPS; o++) CHECK(c.da[o] == 0 && c.db[o] == 0, "op %d has a term", o);
    double sum, ms;
    int n;
    CHECK(ib_lut_predict_sum(t, &a, 32, &sum, &n) == IB_OK && ib_lut_predict(t, &a, 32, &ms) == IB_OK, "%s",
          ib_errmsg());
    CHECK(ms == 1.25 * sum + 0.03 * n + 0.5, "old-format prediction %.17g, %.17g expected", ms,
          1.25 * sum + 0.03 * n + 0.5);
    // Per-op terms: written, read back, applied (the tiny arch has one row of each op and one skip layer).
    c.da[IB_BLOCK_FUSED] = 0.125, c.db[IB_BLOCK_TUCKER] = -0.0625, c.db[IB_BLOCK_SKIP] = 0.01;
    CHECK(ib_lut_set_correction(t, 32, &c, "(per-op test)") == IB_OK, "%s", ib_errmsg());
    const char *line = ib_lut_meta(t, "correction");
    CHECK(line && !strcmp(line, "res=32 a=1.25 b=0.03 c=0.5 fused.a=0.125 tucker.b=-0.0625 skip.b=0.01 (per-op test)"),
          "line '%s'", line ? line : "(none)");
    CHECK(ib_lut_save(t, p) == IB_OK, "%s", ib_errmsg());
    ib_lut_free(t);
    CHECK(ib_lut_load(&t, p) == IB_OK, "%s", ib_errmsg());
    ib_lut_correction r;
    CHECK(ib_lut_get_correction(t, 32, &r), "no correction after the round trip");
    CHECK(!memcmp(&r, &c, sizeof r), "round trip: a %g b %g fused.a %g tucker.b %g skip.b %g", r.a, r.b,
          r.da[IB_BLOCK_FUSED], r.db[IB_BLOCK_TUCKER], r.db[IB_BLOCK_SKIP]);
    CHECK(ib_lut_predict(t, &a, 32, &ms) == IB_OK, "%s", ib_errmsg());
    CHECK(fabs(ms - (1.25 * sum + 0.03 * n + 0.5 + 0.125 * 2 - 0.0625 + 0.01)) < 1e-12, "per-op prediction %g", ms);
    ib_lut_free(t);
    // A per-op term with a bad number is a format error naming the comment.
    snprintf(text, sizeof text, "# correction: res=32 a=1 b=0 c=0 fused.a=x\n%s", tiny_lut_csv);
    write_text(p, text);
    CHECK(ib_lut_load(&t, p) == IB_ERR_FORMAT && strstr(ib_errmsg(), "fused.a=x"), "message: %s", ib_errmsg());
    ib_arch_free(&a);
}

// ---------------------------------------------------------------------------------------------
// Profiling, the target models and the command

// Two stages, every op: small enough to profile in well under a second at res 32.
static const char *tiny_space_json =
    "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"lat-tiny\", \"input\": 32, \"classes\": 4,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"stages\": ["
    "  {\"out\": 8, \"stride\": 1, \"layers\": 2, \"op\": [\"ibn\", \"fused\", \"tucker\", \"gcibn\", \"skip\"],"
    "   \"kernel\": [3, 5], \"expand\": [2, 4], \"groups\": [2], \"r_in\": [0.25, 0.75], \"r_out\": [0.75]},"
    "  {\"out\": 16, \"stride\": 2, \"layers\": 2, \"op\": [\"ibn\", \"fused\", \"tucker\", \"skip\"],"
    "   \"kernel\": [3], \"expand\": [2], \"r_in\": [0.25], \"r_out\": [0.75]}],"
    " \"head\": {\"out\": 32, \"dropout\": 0.0}}";

static const char *tiny_space_path(void) {
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/lat-tiny.space.json", test_tmpdir());
        write_text(path, tiny_space_json);
    }
    return path;
}

TEST(profile_writes_every_row_and_resumes) {
    ib_space sp;
    CHECK(ib_space_parse(&sp, tiny_space_json, "lat-tiny") == IB_OK, "%s", ib_errmsg());
    ib_lut_key *keys;
    int n = ib_lut_space_keys(&sp, 32, 0, &keys);
    CHECK(n > 10, "%d rows", n);
    const char *out = tmp_path("profile.csv");
    ib_lut_profile_cfg c;
    ib_lut_profile_cfg_default(&c);
    c.space = &sp, c.res = 32, c.out = out;
    c.timing.warmup = 0, c.timing.repeats = 1, c.timing.evict_bytes = 0, c.timing.min_ms = 0;
    c.save_every = 7;
    c.calibrate = 4, c.calibrate_repeats = 1;
    ib_set_threads(1);
    int added = -1, total = -1;
    ib_status s = ib_lut_profile(&c, &added, &total);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    CHECK(added == n && total == n, "added %d of %d (space has %d rows)", added, total, n);
    ib_lut *t;
    CHECK(ib_lut_load(&t, out) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_rows(t) == n, "%d rows in the file, %d expected", ib_lut_rows(t), n);
    for (int i = 0; i < n; i++) {
        double ms = -1;
        CHECK(ib_lut_find(t, &keys[i], &ms) && ms >= 0, "row %d missing", i);
    }
    CHECK(!strcmp(ib_lut_target(t), "cpu") && ib_lut_meta(t, "threads") && !strcmp(ib_lut_meta(t, "threads"), "1") &&
              ib_lut_meta(t, "ibnas") && ib_lut_meta(t, "date") && ib_lut_meta(t, "device"),
          "comments missing");
    CHECK(ib_lut_get_correction(t, 32, NULL), "no correction after calibrating");
    // Every subnet is predicted from the table.
    ib_rng r;
    ib_rng_seed(&r, 3, 0);
    int choice[16];
    for (int i = 0; i < 20; i++) {
        ib_space_sample(&sp, IB_SAMPLE_RANDOM, &r, choice);
        ib_arch a;
        CHECK(ib_space_arch(&sp, choice, 0, &a) == IB_OK, "%s", ib_errmsg());
        double ms;
        s = ib_lut_predict(t, &a, 32, &ms);
        ib_arch_free(&a);
        CHECK(s == IB_OK && isfinite(ms), "%s", ib_errmsg());
    }
    ib_lut_free(t);
    // A second run adds nothing and keeps the correction.
    CHECK(ib_lut_profile(&c, &added, &total) == IB_OK, "%s", ib_errmsg());
    CHECK(added == 0 && total == n, "second run added %d", added);
    // A table that lost rows (a run killed before its last save) gets exactly those back.
    char *text = test_read_file(out);
    char *cut = strstr(text, "\nfused,");
    CHECK(cut, "no fused row in\n%s", text);
    char *end = strchr(cut + 1, '\n');
    memmove(cut, end, strlen(end) + 1);
    write_text(out, text);
    free(text);
    CHECK(ib_lut_profile(&c, &added, &total) == IB_OK, "%s", ib_errmsg());
    CHECK(added == 1, "resumed run added %d rows, 1 expected", added);
    // A table of another thread count is refused rather than mixed.
    ib_set_threads(2);
    s = ib_lut_profile(&c, &added, &total);
    ib_set_threads(1);
    CHECK(s == IB_ERR_ARG && strstr(ib_errmsg(), "threads"), "status %d: %s", s, ib_errmsg());
    free(keys);
    ib_space_free(&sp);
}

// A scripted clock for the task rows: each call returns the next of 5, 3, 4, 7 ms (per row), so what the
// table keeps after rounds is known exactly.
typedef struct {
    int calls, n_rows;
    ib_lut_key keys[2];
    int seen[2];
} scripted_rows;

static ib_status scripted_time(void *user, const ib_lut_key *k, const ib_lut_timing *tm, double *ms) {
    static const double script[] = {5, 3, 4, 7};
    scripted_rows *u = user;
    u->calls++;
    for (int i = 0; i < u->n_rows; i++)
        if (!memcmp(k, &u->keys[i], sizeof *k)) {
            *ms = script[u->seen[i]++ % 4];
            return tm->cold ? IB_OK : ib_fail(IB_ERR_ARG, "rows are timed with cold weights by default");
        }
    return ib_fail(IB_ERR_ARG, "an unknown row was timed");
}

// last[0..1]: the last (done, total) of rows or networks; last[2..3]: of the calibration's subnets.
static void count_progress(void *user, int done, int total, const char *what) {
    int *last = user;
    int k = strncmp(what, "calibrating", 11) ? 0 : 2;
    last[k] = done, last[k + 1] = total;
}

TEST(profile_rounds_keep_each_rows_fastest) {
    ib_space sp;
    CHECK(ib_space_parse(&sp, tiny_space_json, "lat-tiny") == IB_OK, "%s", ib_errmsg());
    const char *out = tmp_path("rounds.csv");
    remove(out);
    ib_lut_profile_cfg c;
    ib_lut_profile_cfg_default(&c);
    c.space = &sp, c.res = 32, c.out = out;
    c.timing.warmup = 0, c.timing.repeats = 1, c.timing.evict_bytes = 0, c.timing.min_ms = 0;
    scripted_rows u = {.n_rows = 2};
    u.keys[0] = (ib_lut_key){.op = IB_LUT_HEAD, .cin = 77, .cout = 3, .h = 1, .w = 1, .expand = 0};
    u.keys[1] = (ib_lut_key){.op = IB_LUT_HEAD, .cin = 78, .cout = 3, .h = 1, .w = 1, .expand = 0};
    c.n_extra = 2, c.extra = u.keys, c.time_extra = scripted_time, c.extra_user = &u;
    int last[4] = {0, 0, 0, 0};
    c.progress = count_progress, c.user = last;
    c.timing.rounds = 3;
    c.calibrate = 2, c.calibrate_repeats = 1, c.calibrate_min_ms = 0;
    ib_set_threads(1);
    int added = -1, total = -1;
    ib_status s = ib_lut_profile(&c, &added, &total);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    // Every row timed in each of 3 rounds, counted once as added; the progress runs to rows x rounds.
    CHECK(added == total && u.calls == 6 && u.seen[0] == 3 && u.seen[1] == 3, "added %d of %d, %d scripted calls",
          added, total, u.calls);
    CHECK(last[0] == 3 * total && last[1] == 3 * total, "progress %d of %d, %d expected", last[0], last[1], 3 * total);
    // The calibration's 2 subnets are timed in the same 3 rounds, then fitted.
    CHECK(last[2] == 6 && last[3] == 6, "calibration progress %d of %d, 6 expected", last[2], last[3]);
    ib_lut *t;
    CHECK(ib_lut_load(&t, out) == IB_OK, "%s", ib_errmsg());
    double ms0 = -1, ms1 = -1;
    CHECK(ib_lut_find(t, &u.keys[0], &ms0) && ib_lut_find(t, &u.keys[1], &ms1), "task rows missing");
    CHECK(ms0 == 3 && ms1 == 3, "rows %g and %g ms: the fastest of 5, 3, 4 is 3", ms0, ms1);
    const char *rd = ib_lut_meta(t, "rounds"), *wt = ib_lut_meta(t, "weights");
    CHECK(rd && !strcmp(rd, "3") && wt && !strcmp(wt, "cold"), "meta rounds '%s', weights '%s'", rd ? rd : "-",
          wt ? wt : "-");
    CHECK(ib_lut_get_correction(t, 32, NULL), "no correction after calibrating in rounds");
    ib_lut_free(t);
    // Rows of another number of rounds, or with warm weights, are not mixed into it.
    c.timing.rounds = 1;
    s = ib_lut_profile(&c, &added, &total);
    CHECK(s == IB_ERR_ARG && strstr(ib_errmsg(), "3 rounds"), "status %d: %s", s, ib_errmsg());
    c.timing.rounds = 3, c.timing.cold = 0;
    s = ib_lut_profile(&c, &added, &total);
    CHECK(s == IB_ERR_ARG && strstr(ib_errmsg(), "cached weights"), "status %d: %s", s, ib_errmsg());
    // Networks: rounds passes over the list (the progress counts them), IB_LUT_PASSES by default.
    ib_arch a[2];
    int choice[16] = {0};
    CHECK(ib_space_arch(&sp, choice, 0, &a[0]) == IB_OK && ib_space_arch(&sp, choice, 0, &a[1]) == IB_OK, "%s",
          ib_errmsg());
    double meas[2];
    ib_lut_timing tm = {.warmup = 0, .repeats = 1};
    CHECK(ib_lut_time_archs(a, 2, 32, &tm, meas, count_progress, last, "nets") == IB_OK, "%s", ib_errmsg());
    CHECK(last[1] == 2 * IB_LUT_PASSES, "%d network timings by default", last[1]);
    tm.rounds = 5;
    CHECK(ib_lut_time_archs(a, 2, 32, &tm, meas, count_progress, last, "nets") == IB_OK, "%s", ib_errmsg());
    CHECK(last[0] == 10 && last[1] == 10 && meas[0] > 0 && meas[1] > 0, "%d of %d network timings, 10 expected",
          last[0], last[1]);
    ib_arch_free(&a[0]), ib_arch_free(&a[1]);
    ib_space_free(&sp);
}

// The flush writes dirty lines back: what was written is still there afterwards, at any alignment.
TEST(cache_flush_keeps_data) {
    size_t n = 3 * 4096 + 13;
    unsigned char *b = malloc(n + 7);
    CHECK(b, "out of memory");
    for (size_t i = 0; i < n + 7; i++) b[i] = (unsigned char)(i * 31 + 7);
    int did = ib_cache_flush(b + 3, n);
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
    CHECK(did == 1, "no flush on a CPU that has one");
#else
    CHECK(did == 0, "a flush reported where there is none");
#endif
    int bad = -1;
    for (size_t i = 0; i < n + 7 && bad < 0; i++)
        if (b[i] != (unsigned char)(i * 31 + 7)) bad = (int)i;
    free(b);
    CHECK(bad < 0, "byte %d changed by the flush", bad);
    CHECK(ib_cache_flush(NULL, 0) == did, "an empty range");
}

static ib_target *load_target(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "search/targets/%s.target.json", name);
    ib_target *t = NULL;
    IB_ASSERT(ib_target_load(&t, path) == IB_OK, "%s", ib_errmsg());
    return t;
}

// The claim of MobileDets and MobileNetEdgeTPU, from the model's own mapping: on the systolic array a
// depthwise conv costs far more than its share of multiply-accumulates, so relative to a full KxK conv it
// is dearer than the FLOP ratio says, and a fused block (more MACs) is not dearer than an ibn block.
TEST(edgetpu_model_depthwise_relatively_expensive) {
    ib_target *tpu = load_target("edgetpu"), *dsp = load_target("dsp");
    CHECK(!strcmp(ib_target_name(tpu), "edgetpu") && !strcmp(ib_target_name(dsp), "dsp"), "names");
    for (int c = 32; c <= 256; c *= 2)
        for (int h = 7; h <= 56; h *= 2) {
            ib_conv_shape dw = {c, c, 3, 1, c}, full = {c, c, 3, 1, 1};
            double udw, ufull;
            double t_dw = ib_target_conv_ms(tpu, &dw, h, h, &udw), t_full = ib_target_conv_ms(tpu, &full, h, h, &ufull);
            double flop_ratio = 1.0 / c;   // MACs(dw) / MACs(full)
            CHECK(t_dw > 0 && t_full > 0 && isfinite(t_dw) && isfinite(t_full), "c %d h %d: %g %g", c, h, t_dw, t_full);
            CHECK(t_dw / t_full > 4 * flop_ratio, "c %d h %d: dw/full %.4f vs MACs %.4f", c, h, t_dw / t_full,
                  flop_ratio);
            CHECK(udw < ufull, "c %d h %d: utilisation dw %.3f full %.3f", c, h, udw, ufull);
        }
    // Blocks at the same shape: fused has ~e*k*k/ (e + k*k/...) times the MACs of ibn but costs no more on
    // the systolic target, while MACs (what a CPU roughly follows) say it is several times dearer.
    ib_block_cfg ibn = {.op = IB_BLOCK_IBN, .out = 32, .stride = 1, .kernel = 3, .expand = 4};
    ib_block_cfg fused = ibn;
    fused.op = IB_BLOCK_FUSED;
    ib_lut_key ki = ib_lut_key_block(&ibn, 32, 56, 56), kf = ib_lut_key_block(&fused, 32, 56, 56);
    double mac_ratio = (double)ib_block_macs(&fused, 32, 56, 56) / (double)ib_block_macs(&ibn, 32, 56, 56);
    double tpu_ratio = ib_target_row_ms(tpu, &kf) / ib_target_row_ms(tpu, &ki);
    CHECK(mac_ratio > 3, "MAC ratio %.2f", mac_ratio);
    CHECK(tpu_ratio < 1.0 && tpu_ratio < mac_ratio / 3, "edgetpu fused/ibn %.3f, MACs %.2f", tpu_ratio, mac_ratio);
    double dsp_ratio = ib_target_row_ms(dsp, &kf) / ib_target_row_ms(dsp, &ki);
    CHECK(dsp_ratio > 0 && isfinite(dsp_ratio), "dsp ratio %g", dsp_ratio);
    ib_target_free(tpu);
    ib_target_free(dsp);
}

TEST(target_file_errors) {
    const char *p = tmp_path("bad.target.json");
    write_text(p, "{\"format\": \"ibnas-target\", \"version\": 1, \"name\": \"x\", \"kind\": \"systolic\","
                  " \"params\": {\"array_rows\": 64, \"array_cols\": 64, \"tile_fill_cycles\": 128, \"clock_mhz\": 500,"
                  " \"bytes_per_value\": 1, \"sram_bytes\": 1000, \"onchip_gbps\": 10, \"offchip_gbps\": 1,"
                  " \"op_overhead_us\": 1}, \"sources\": {\"array_rows\": \"a\"}}");
    ib_target *t;
    CHECK(ib_target_load(&t, p) == IB_ERR_FORMAT && strstr(ib_errmsg(), p) && strstr(ib_errmsg(), "sources.array_cols"),
          "%s", ib_errmsg());
    write_text(p, "{\"format\": \"ibnas-target\",\n \"version\": 1,, }");
    CHECK(ib_target_load(&t, p) == IB_ERR_FORMAT && strstr(ib_errmsg(), ":2:"), "%s", ib_errmsg());
    CHECK(ib_target_load(&t, "no-such-target") == IB_ERR_NOTFOUND && strstr(ib_errmsg(), "no-such-target"), "%s",
          ib_errmsg());
}

// The command as a user runs it: exit codes 0 / 1 / 2, --json keys, files.
TEST(cli_latency_end_to_end) {
    char cmd[2048], *out = NULL, *err = NULL;
    const char *bin = test_ibnas_bin(), *space = tiny_space_path();
    const char *cpu = tmp_path("cli-cpu.csv"), *tpu = tmp_path("cli-tpu.csv"), *dir = tmp_path("cli-val");
    const char *arch = tmp_path("cli.arch.json");
    int rc;
#define RUN(...)                                                                 \
    do {                                                                         \
        free(out), free(err);                                                    \
        out = err = NULL;                                                        \
        snprintf(cmd, sizeof cmd, __VA_ARGS__);                                  \
        rc = test_run(cmd, &out, &err);                                          \
    } while (0)
    RUN("%s latency profile --space %s --target cpu --res 32 --threads 1 --out %s --repeats 1 --warmup 0 "
        "--calibrate 2 --rounds 2 --json", bin, space, cpu);
    CHECK(rc == 0 && strstr(out, "\"added\""), "profile: rc %d\n%s\n%s", rc, out, err);
    RUN("%s latency model --space %s --target edgetpu --res 32 --out %s", bin, space, tpu);
    CHECK(rc == 0, "model: rc %d\n%s", rc, err);
    RUN("%s space sample --space %s --out %s --seed 4", bin, space, arch);
    CHECK(rc == 0, "space sample: rc %d\n%s", rc, err);
    RUN("%s latency predict --lut edgetpu=%s --arch %s --json --verbose", bin, tpu, arch);
    CHECK(rc == 0 && strstr(out, "\"ms\": ") && strstr(out, "\"target\": \"edgetpu\"") && strstr(out, "\"rows\""),
          "predict: rc %d\n%s\n%s", rc, out, err);
    RUN("%s latency predict --lut %s --arch %s --res 32", bin, cpu, arch);
    CHECK(rc == 0 && strstr(out, "cpu: "), "predict cpu: rc %d\n%s\n%s", rc, out, err);
    // mobilenetv2 is not in the tiny space's table: exit 1 naming the missing row.
    RUN("%s latency predict --lut %s --arch mobilenetv2:0.35 --res 32", bin, cpu);
    CHECK(rc == 1 && strstr(err, "no row stem,3,16,32,32") && strstr(err, cpu), "missing row: rc %d\n%s", rc, err);
    // profile --arch adds its rows (and only those: the space's stay as timed, the correction as fitted)
    char *before = test_read_file(cpu);
    RUN("%s latency profile --space %s --target cpu --res 32 --threads 1 --out %s --repeats 1 --warmup 0 --calibrate 2 "
        "--rounds 2 --arch mobilenetv2:0.35 --json", bin, space, cpu);
    char *after = test_read_file(cpu);
    int kept = 1, extra = 0;
    for (char *line = strstr(before, "\nstem,"); line; line = strchr(line + 1, '\n')) {
        size_t n = strcspn(line + 1, "\n");
        if (n) {
            char row[200];
            snprintf(row, sizeof row, "\n%.*s\n", (int)(n < 190 ? n : 190), line + 1);
            kept &= strstr(after, row) != NULL;
        }
    }
    for (char *line = strchr(after, '\n'); line; line = strchr(line + 1, '\n')) extra++;
    for (char *line = strchr(before, '\n'); line; line = strchr(line + 1, '\n')) extra--;
    char *cb = strstr(before, "# correction:"), *ca = strstr(after, "# correction:");
    int same_corr = cb && ca && strcspn(cb, "\n") == strcspn(ca, "\n") && !strncmp(cb, ca, strcspn(cb, "\n"));
    CHECK(rc == 0 && kept && extra >= 10 && same_corr, "profile --arch: rc %d, space rows kept %d, %d rows added, the same "
          "correction %d\n%s", rc, kept, extra, same_corr, err);
    free(before), free(after);
    const char *tpu_arch = tmp_path("cli-tpu-mnv2.csv");
    RUN("%s latency model --space %s --target edgetpu --res 32 --arch mobilenetv2:0.35 --out %s", bin, space, tpu_arch);
    CHECK(rc == 0, "model --arch: rc %d\n%s", rc, err);
    for (int k = 0; k < 3; k++) {   // mobilenetv2:0.35 with the space's classes (as a search resolves a budget's network)
        ib_lut *t;
        ib_arch a;
        double ms = 0;
        const char *path = k == 0 ? cpu : k == 1 ? tpu_arch : tpu;
        CHECK(ib_lut_load(&t, path) == IB_OK && ib_arch_resolve(&a, "mobilenetv2:0.35", 4) == IB_OK, "%s", ib_errmsg());
        ib_status ps = ib_lut_predict(t, &a, 32, &ms);
        CHECK(k == 2 ? ps == IB_ERR_NOTFOUND : ps == IB_OK && ms > 0, "mobilenetv2:0.35 in %s: %s", path, ib_errmsg());
        ib_arch_free(&a);
        ib_lut_free(t);
    }
    RUN("%s latency measure --arch mobilenetv2:0.35 --res 32 --threads 1 --repeats 1 --json", bin);
    CHECK(rc == 0 && strstr(out, "\"ms\": "), "measure: rc %d\n%s\n%s", rc, out, err);
    RUN("%s latency validate --lut %s --space %s --samples 3 --threads 1 --repeats 1 --recalibrate 4 --json --out %s",
        bin, cpu, space, dir);
    CHECK(rc == 0 && strstr(out, "\"mean_abs_pct_err\"") && strstr(out, "\"max_abs_pct_err\"") &&
              strstr(out, "\"spearman\"") && strstr(out, "\"recalibrated\": {\"subnets\": 4, \"a\": "),
          "validate: rc %d\n%s\n%s", rc, out, err);
    double ra = strtod(strstr(out, "\"a\": ") + 5, NULL), rb = strtod(strstr(out, "\"b\": ") + 5, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/validate.svg", dir);
    char *svg = test_read_file(path);
    int svg_ok = strstr(svg, "<svg") && strstr(svg, "y = x") && strstr(svg, "<circle") && strstr(svg, "predicted");
    free(svg);
    CHECK(svg_ok, "validate.svg is not the scatter plot");
    snprintf(path, sizeof path, "%s/validate.csv", dir);
    char *csv = test_read_file(path);
    int csv_ok = strstr(csv, "sample,predicted_ms,measured_ms") != NULL && strstr(csv, ",skip_n,recalibrated_ms,");
    int csv_rounds = strstr(csv, ", 2 rounds\n") != NULL;   // the table's rounds
    // Each subnet's recalibrated prediction is the refit's a * sum_ms + b * n_rows (columns 5, 6 and 20).
    int rows = 0, refit_ok = 1;
    for (char *line = strstr(csv, "\n0,"); line; line = strchr(line + 1, '\n')) {
        char *p = line + 1, *col[22];
        int k = 0;
        for (; k < 22 && *p && *p != '\n'; k++) {
            col[k] = p;
            p += strcspn(p, ",\n");
            if (*p == ',') p++;
        }
        if (k < 22) continue;
        double want = ra * strtod(col[5], NULL) + rb * strtod(col[6], NULL), got = strtod(col[20], NULL);
        refit_ok &= fabs(got - want) <= 1e-4 + 1e-3 * fabs(want);
        rows++;
    }
    free(csv);
    CHECK(csv_ok, "validate.csv has no header or no recalibrated_ms column");
    CHECK(csv_rounds, "validate did not time its subnets in the table's 2 rounds");
    CHECK(rows == 3 && refit_ok, "%d rows; recalibrated_ms is %s a * sum_ms + b * n_rows (a %g, b %g)", rows,
          refit_ok ? "" : "not", ra, rb);
    // Usage errors exit 2, bad files 1.
    RUN("%s latency predict --arch %s", bin, arch);
    CHECK(rc == 2, "predict without --lut: rc %d", rc);
    RUN("%s latency frobnicate", bin);
    CHECK(rc == 2, "unknown sub-verb: rc %d", rc);
    RUN("%s latency model --space %s --target cpu --out %s", bin, space, tpu);
    CHECK(rc == 2, "model cpu: rc %d", rc);
    RUN("%s latency predict --lut %s --arch %s", bin, space, arch);
    CHECK(rc == 1 && strstr(err, space), "a space as a table: rc %d\n%s", rc, err);
    // A modelled table is not extended by a cpu profile.
    RUN("%s latency profile --space %s --res 32 --threads 1 --out %s --repeats 1", bin, space, tpu);
    CHECK(rc == 1 && strstr(err, "edgetpu"), "profile into an edgetpu table: rc %d\n%s", rc, err);
#undef RUN
    free(out), free(err);
}

// The same sources build for a 64-bit ARM board (docs/LATENCY.md, "Building a table on another device"):
// with Debian's cross compiler installed, the latency files compile for aarch64 through the Makefile
// (the whole command also needs the arm64 libraries; the docs give the steps). SKIP without it.
TEST(cross_build_aarch64) {
    if (test_run("command -v aarch64-linux-gnu-gcc >/dev/null 2>&1", NULL, NULL) != 0)
        SKIP("aarch64-linux-gnu-gcc is not installed (apt-get install gcc-aarch64-linux-gnu to run this test)");
    char cmd[2048], *out = NULL, *err = NULL;
    const char *b = tmp_path("arm64");
    snprintf(cmd, sizeof cmd,
             "(make --no-print-directory CC=aarch64-linux-gnu-gcc BUILD=%s %s/obj/search/lut.o %s/obj/search/target.o "
             "&& file %s/obj/search/lut.o)",
             b, b, b, b);
    int rc = test_run(cmd, &out, &err);
    int ok = rc == 0 && strstr(out, "aarch64") != NULL;
    if (!ok) fprintf(stderr, "%s\n%s\n", out ? out : "", err ? err : "");
    free(out), free(err);
    CHECK(ok, "cross build failed: rc %d", rc);
}
