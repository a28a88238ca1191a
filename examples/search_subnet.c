// The search pipeline through the public API alone (include/ibnas.h): train a weight-sharing supernet over a
// search space, build a latency table for a target, search the best subnet under a budget, extract it with its
// inherited weights and fine-tune it. Build against an installed ibnas with
//     cc search_subnet.c $(pkg-config --cflags --libs ibnas) -o search_subnet
// Usage: search_subnet SPACE TRAIN.h5 VAL.h5 [EPOCHS [TARGET]]
//   SPACE: a *.space.json (search/spaces/tiny.space.json is small); TRAIN, VAL: classification data
//   (`ibnas synth --out train.h5 --n 4000 --size 32` and `--out val.h5 --seed 2 --n 500` make them).
//   TARGET: a modelled target, "edgetpu" (default) or "dsp" (found in $IBNAS_TARGETS, ./search/targets or beside
//   the ibnas binary), or the path of a *.target.json; a table measured on this CPU comes from
//   ib_latency_profile instead (ibnas latency profile), used the same way.
// Writes supernet.h5, TARGET.csv, search/ (Pareto CSV and plots, summary.json), subnet.h5 and finetuned.h5.
#include <ibnas.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "search_subnet: %s: %s\n", what, ib_errmsg());
    return 1;
}

// The predicted ms of the space's largest or smallest subnet on the table.
static int predict_extreme(ib_space *sp, const ib_lut *t, const char *how, int res, double *ms) {
    char *arch;
    if (ib_space_sample_arch(sp, how, 0, 0, &arch)) return 1;
    ib_status s = ib_lut_predict_arch(t, arch, res, ms);
    free(arch);
    return s != IB_OK;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SPACE TRAIN.h5 VAL.h5 [EPOCHS [TARGET]]\n", argv[0]);
        return 2;
    }
    const char *space = argv[1], *train = argv[2], *val = argv[3];
    int epochs = argc > 4 ? atoi(argv[4]) : 5;
    const char *target = argc > 5 ? argv[5] : "edgetpu";
    const int res = 32;

    // 1. The supernet: every op of every layer, trained with fair sampling (a path per op type a step).
    ib_supernet_train_opts so;
    ib_supernet_train_opts_default(&so);
    so.space = space;
    so.train.data = train;
    so.train.val = val;
    so.train.out = "supernet.h5";
    so.train.epochs = epochs;
    so.train.res = res;
    so.train.warmup_epochs = 0.3f;
    so.train.progress = 0;
    ib_supernet_train_report sr;
    if (ib_supernet_train(&so, &sr)) return fail("supernet train");
    printf("supernet: %d epochs, held-out top-1 of its largest path %.3f, smallest %.3f\n", sr.train.epochs_done,
           sr.train.val_top1, sr.smallest_top1);

    // 2. The target's latency table, and a budget halfway between the space's smallest and largest subnets.
    // The table is named by the target ("edgetpu" for ".../edgetpu.target.json").
    char name[64], table[80];
    const char *base = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
    snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    snprintf(table, sizeof table, "%s.csv", name);
    if (ib_latency_model(space, target, res, 0, table, NULL)) return fail("latency model");
    ib_space *sp;
    ib_lut *lut;
    if (ib_space_open(&sp, space)) return fail("space");
    if (ib_lut_load(&lut, table)) return fail("latency table");
    double lo, hi;
    if (predict_extreme(sp, lut, "smallest", res, &lo) || predict_extreme(sp, lut, "largest", res, &hi))
        return fail("predict");
    ib_lut_free(lut);
    ib_space_close(sp);
    char luts[160], budget[64];
    snprintf(luts, sizeof luts, "%s=%s", name, table);
    snprintf(budget, sizeof budget, "%.6g", (lo + hi) / 2);
    printf("%s: subnets predicted %.4f to %.4f ms; budget %s ms\n", name, lo, hi, budget);

    // 3. Regularised evolution under the budget, scoring subnets with inherited weights on held-out training data.
    ib_search_opts q;
    ib_search_opts_default(&q);
    q.supernet = "supernet.h5";
    q.luts = luts;
    q.budgets = budget;
    q.population = 8;
    q.generations = 3;
    q.batch = 4;
    q.calib_batches = 4;
    q.res = res;
    q.out = "search";
    q.progress = 0;
    ib_search_report qr;
    if (ib_search(&q, &qr)) return fail("search");
    const ib_search_arch *best = &qr.results[0];
    if (!best->found) {
        fprintf(stderr, "search_subnet: no subnet met %s ms\n", budget);
        return 1;
    }
    printf("search: %lld subnets scored; best under %.4g ms: held-out %s %.3f, predicted %.4f ms (%s)\n",
           (long long)qr.subnets_scored, best->budget_ms, qr.score_name, best->score, best->ms, best->arch_file);

    // 4. The pick with its inherited weights (BN recalibrated), then fine-tuned as an ordinary network.
    ib_supernet *sn;
    ib_model *m;
    ib_supernet_eval_opts eo;
    ib_supernet_eval_opts_default(&eo);
    eo.res = res;
    if (ib_supernet_open(&sn, "supernet.h5")) return fail("open supernet");
    if (ib_supernet_extract_model(sn, best->arch_file, &eo, &m)) return fail("extract");
    ib_status s = ib_model_save(m, "subnet.h5");
    ib_model_free(m);
    ib_supernet_close(sn);
    if (s) return fail("save subnet");
    ib_train_opts t;
    ib_train_opts_default(&t);
    t.init = "subnet.h5";
    t.data = train;
    t.val = val;
    t.out = "finetuned.h5";
    t.epochs = epochs;
    t.res = res;
    t.lr = 0.02f;
    t.warmup_epochs = 0;
    t.progress = 0;
    ib_train_report tr;
    if (ib_train(&t, &tr)) return fail("fine-tune");
    printf("fine-tuned %d epochs: val top-1 %.3f\n", tr.epochs_done, tr.val_top1);
    return 0;
}
