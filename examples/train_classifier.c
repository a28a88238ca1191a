// Train a small classifier, then evaluate it and classify one image, through the public API alone
// (include/ibnas.h): the model for your own programs. Build it against an installed ibnas with
//     cc train_classifier.c $(pkg-config --cflags --libs ibnas) -o train_classifier
// Usage: train_classifier [TRAIN [VAL [EPOCHS [MAX_STEPS]]]]
//   TRAIN, VAL: packs or folders of 64x64-or-larger images (`ibnas synth --out scenes.h5 --size 64` makes
//   one). Without TRAIN it trains on scenes generated on the fly ("synth") and evaluates on 1000 others.
#include <ibnas.h>

#include <stdio.h>
#include <stdlib.h>

// A small network written inline (an *.arch.json path or "mobilenetv2:0.5" work the same).
static const char *tiny_arch =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"tiny\", \"classes\": 6, \"input\": 64,"
    " \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2},"
    " \"blocks\": [{\"op\": \"fused\", \"kernel\": 3, \"expand\": 2, \"out\": 24, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 5, \"expand\": 4, \"out\": 32, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 32, \"stride\": 1},"
    "              {\"op\": \"tucker\", \"kernel\": 3, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 64, \"stride\": 2}],"
    " \"head\": {\"out\": 128, \"dropout\": 0.1}}";

static int fail(const char *what, ib_status s) {
    fprintf(stderr, "train_classifier: %s: %s: %s\n", what, ib_strerror(s), ib_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    const char *train = argc > 1 ? argv[1] : "synth", *val = argc > 2 ? argv[2] : NULL;
    int epochs = argc > 3 ? atoi(argv[3]) : 2;
    long max_steps = argc > 4 ? atol(argv[4]) : 0;
    const char *ckpt = "train_classifier.h5";
    printf("ibnas %s (header %s)\n", ib_version(), IBNAS_VERSION_STRING);

    // 1. Train: data in, a checkpoint out (rewritten every epoch; a CSV log beside it).
    ib_train_opts o;
    ib_train_opts_default(&o);
    o.arch = tiny_arch;
    o.data = train;
    o.val = val;
    o.out = ckpt;
    o.epochs = epochs > 0 ? epochs : 1;
    o.batch = 32;
    o.res = 64;
    o.lr = 0.2f;
    o.warmup_epochs = 0.25f * (float)o.epochs;
    o.max_steps = max_steps;
    ib_train_report tr;
    ib_status s = ib_train(&o, &tr);
    if (s) return fail("training", s);
    printf("trained %ld steps (%d epochs) in %.1f s\n", tr.steps, tr.epochs_done, tr.wall_s);

    // 2. Load the checkpoint it wrote.
    ib_model *m;
    if ((s = ib_model_load(&m, ckpt))) return fail(ckpt, s);
    printf("model %s: %lld parameters, %d classes, input %dx%d\n", ib_model_name(m), (long long)ib_model_param_count(m),
           ib_model_classes(m), ib_model_input_size(m), ib_model_input_size(m));

    // 3. Evaluate on held-out data: the validation set, or scenes of another seed.
    ib_dataset *ds;
    s = val ? ib_dataset_load(&ds, val, "val") : ib_dataset_synth(&ds, 1000, 64, 7);
    if (s) {
        ib_model_free(m);
        return fail(val ? val : "synth", s);
    }
    ib_eval_report er;
    if ((s = ib_eval(m, ds, NULL, &er))) {
        ib_eval_report_free(&er);
        ib_dataset_close(ds);
        ib_model_free(m);
        return fail("evaluation", s);
    }
    printf("held-out: top-1 %.3f, top-5 %.3f on %lld images (chance %.3f)\n", er.top1, er.top5, (long long)er.images,
           1.0 / ib_dataset_classes(ds));
    ib_eval_report_free(&er);

    // 4. Infer: one image in, class scores out.
    int res = ib_model_input_size(m), classes = ib_model_classes(m), label;
    float *x = malloc(sizeof(float) * 3 * (size_t)res * (size_t)res), *logits = malloc(sizeof(float) * (size_t)classes);
    if (!x || !logits) s = IB_ERR_NOMEM;
    if (!s) s = ib_dataset_input(ds, 0, res, x, &label);
    if (!s) s = ib_model_forward(m, x, 1, res, res, logits);
    if (!s) {
        int best = 0;
        for (int c = 1; c < classes; c++) best = logits[c] > logits[best] ? c : best;
        printf("image 0: predicted %s, labelled %s\n", ib_dataset_class_name(ds, best),
               label >= 0 ? ib_dataset_class_name(ds, label) : "-");
    }
    free(x);
    free(logits);
    ib_dataset_close(ds);
    ib_model_free(m);
    return s ? fail("inference", s) : 0;
}
