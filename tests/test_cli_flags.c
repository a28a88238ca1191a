// Every verb against unknown, malformed and impossible flags: a usage error (exit 2, the flag named on
// stderr), never a crash, a hang or a run with a nonsense value. The numeric flags tried are the ones
// each verb's --help lists as numbers (N or X). Values that parse but no run can use (a budget below
// the fastest subnet, a space without choices) are tried with every required flag given.
#include "tests/test.h"

#include "data/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const VERBS[] = {
    "train",           "eval",          "miou",           "bench train",    "bench infer",   "infer",         "export",
    "pack",            "synth",         "space count",    "space sample",   "space check",   "supernet train",
    "supernet eval",   "extract",       "search",         "latency profile", "latency model", "latency predict",
    "latency measure", "latency validate", "coco-eval",
};
#define N_VERBS ((int)(sizeof VERBS / sizeof VERBS[0]))

// Flags that take a count or a size, and values no run can use.
static const char *const NUMERIC[] = {"--batch", "--epochs", "--res", "--n", "--size", "--workers", "--threads",
                                      "--budget-ms", "--classes", "--repeats"};
static const char *const BAD_VALUES[] = {"-5", "abc", "99999999999999999999", ""};

// Runs `ibnas ARGS` under a time limit; appends a line to report (and returns 0) unless the exit code is
// `want` (or any usage/run error when want is -1) and stderr names `named`.
static int expect(const char *bin, const char *args, int want, const char *named, char *report, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 60 %s %s", bin, args);
    char *err = NULL;
    int rc = test_run(cmd, NULL, &err);
    int ok = (want >= 0 ? rc == want : rc == 1 || rc == 2) && (!named || strstr(err, named));
    if (!ok) {
        size_t k = strlen(report);
        char *nl = strchr(err, '\n');
        if (nl) *nl = 0;
        snprintf(report + k, n - k, "\n  ibnas %s: exit %d%s, stderr: %.160s", args, rc,
                 rc == 124 ? " (ran on: timed out)" : rc > 128 ? " (crashed)" : "", err);
    }
    free(err);
    return ok;
}

TEST(every_verb_refuses_unknown_flags) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    static char report[16384];
    report[0] = 0;
    int bad = 0;
    for (int v = 0; v < N_VERBS; v++) {
        char args[256];
        snprintf(args, sizeof args, "%s --no-such-flag 3", VERBS[v]);
        bad += !expect(bin, args, 2, "--no-such-flag", report, sizeof report);
        snprintf(args, sizeof args, "%s --help", VERBS[v]);
        bad += !expect(bin, args, 0, NULL, report, sizeof report);
    }
    bad += !expect(bin, "no-such-verb", 2, "no-such-verb", report, sizeof report);
    bad += !expect(bin, "bench --arch x", 2, "--arch", report, sizeof report);
    CHECK(!bad, "%d wrong answers:%s", bad, report);
}

TEST(every_verb_refuses_impossible_numbers) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    static char report[32768];
    report[0] = 0;
    int bad = 0, tried = 0;
    for (int v = 0; v < N_VERBS; v++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s %s --help", bin, VERBS[v]);
        char *help = NULL;
        test_run(cmd, &help, NULL);
        int first = 1;
        for (size_t f = 0; f < sizeof NUMERIC / sizeof NUMERIC[0]; f++) {
            char as_int[64], as_num[64];   // how --help shows a numeric flag ("--batch N", "--budget-ms X")
            snprintf(as_int, sizeof as_int, "%s N ", NUMERIC[f]), snprintf(as_num, sizeof as_num, "%s X ", NUMERIC[f]);
            if (!strstr(help, as_int) && !strstr(help, as_num)) continue;
            // Every flag with a negative value; the verb's first numeric flag with each bad value.
            size_t n_values = first ? sizeof BAD_VALUES / sizeof BAD_VALUES[0] : 1;
            first = 0;
            for (size_t b = 0; b < n_values; b++) {
                char args[512];
                snprintf(args, sizeof args, "%s %s '%s'", VERBS[v], NUMERIC[f], BAD_VALUES[b]);
                bad += !expect(bin, args, 2, NUMERIC[f], report, sizeof report);
                tried++;
            }
        }
        free(help);
    }
    CHECK(tried > 60, "only %d flag values tried: the verbs' --help changed?", tried);
    CHECK(!bad, "%d of %d wrong answers:%s", bad, tried, report);
}

// Values that parse but no run can use, with every required flag given: an error naming what is wrong
// (exit 1 or 2), before any training or search step. Fixtures: 64 scenes, a supernet of the tiny space
// trained one epoch on them, its modelled edgetpu table, and a space whose first stage allows no op.
TEST(impossible_values_with_the_required_flags_given) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    char data[400], sn[400], lut[400], empty[400], out[400], cmd[4096], *err = NULL;
    const char *dir = test_tmpdir();
    snprintf(data, sizeof data, "%s/iv_scenes.h5", dir);
    snprintf(sn, sizeof sn, "%s/iv_supernet.h5", dir);
    snprintf(lut, sizeof lut, "%s/iv_edgetpu.csv", dir);
    snprintf(empty, sizeof empty, "%s/iv_empty.space.json", dir);
    snprintf(out, sizeof out, "%s/iv_out", dir);
    IB_ASSERT(ib_synth_write_pack(data, 64, 32, 1, 0, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    char space[600], arch[600];
    snprintf(space, sizeof space, "%s", project_path("search/spaces/tiny.space.json"));
    snprintf(arch, sizeof arch, "%s", project_path("examples/archs/synth_small.arch.json"));
    snprintf(cmd, sizeof cmd, "%s supernet train --space %s --data %s --epochs 1 --warmup 0.2 --batch 16 --res 32 --threads 1 "
             "--quiet --out %s && %s latency model --space %s --target edgetpu --res 32 --out %s", bin, space, data, sn, bin,
             space, lut);
    int rc = test_run(cmd, NULL, &err);
    IB_ASSERT(rc == 0, "fixtures: exit %d: %s", rc, err);
    free(err);
    // The tiny space with stage 0's op list emptied.
    FILE *in = fopen(space, "r"), *o = fopen(empty, "w");
    IB_ASSERT(in && o, "cannot copy %s to %s", space, empty);
    char line[4096];
    int done = 0;
    while (fgets(line, sizeof line, in)) {
        char *op = done ? NULL : strstr(line, "\"op\": [");
        if (op) {
            char *close = strchr(op, ']');
            IB_ASSERT(close, "%s: an op list on one line was expected", space);
            fprintf(o, "%.*s\"op\": []%s", (int)(op - line), line, close + 1);
            done = 1;
        } else fputs(line, o);
    }
    fclose(in), fclose(o);
    IB_ASSERT(done, "%s: no op list found", space);

    char train[2048], search[2048];
    snprintf(train, sizeof train, "train --arch %s --data %s --res 32 --out %s.h5 --quiet", arch, data, out);
    snprintf(search, sizeof search, "search --supernet %s --lut tpu=%s --data %s --res 32 --out %s --quiet --threads 1",
             sn, lut, data, out);
    char sn_train[2048];
    snprintf(sn_train, sizeof sn_train, "supernet train --space %s --data %s --res 32 --quiet --out %s.h5", space, data,
             out);
    struct { const char *args, *extra, *named; } cases[] = {
        {train, "--batch 0", "must be positive"},
        {train, "--epochs 0", "must be positive"},
        {train, "--epochs 2 --warmup 2", "covers the whole run"},
        {sn_train, "--batch 1", "batch at least 2"},
        {search, "--budget-ms tpu=0.000001", "below the fastest arch"},
        {search, "--budget-ms tpu=-1", "not a positive number"},
        {search, "--budget-ms tpu=1 --population 0", "all must be positive"},
        {"space count --space", empty, "must be an array of op names"},
    };
    static char report[8192];
    report[0] = 0;
    int bad = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        char args[4096];
        snprintf(args, sizeof args, "%s %s", cases[i].args, cases[i].extra);
        bad += !expect(bin, args, -1, cases[i].named, report, sizeof report);
    }
    CHECK(!bad, "%d of %d wrong answers:%s", bad, n, report);
    CHECK(access(out, F_OK) != 0, "a refused search wrote %s", out);
}
