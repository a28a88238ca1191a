// Every verb against unknown, malformed and impossible flags: a usage error (exit 2, the flag named on
// stderr), never a crash, a hang or a run with a nonsense value. The numeric flags tried are the ones
// each verb's --help lists as numbers (N or X).
#include "tests/test.h"

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
