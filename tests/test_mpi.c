// Data parallelism and distributed search over MPI (docs/SCALE.md), run as a user runs them: the command
// under `mpirun -np 2`. With --sync-bn and no augmentation two ranks at global batch B end with the
// parameters one process reaches at batch B (to 1e-5; the sums are taken in another order); without
// --sync-bn they differ (each rank normalises by its own half); a checkpoint of either resumes on the other
// rank count; a batch that does not split is refused naming both numbers; segmentation, detection and
// supernets (classification, detection, segmentation) train the same way; a search scores its subnets across
// the ranks and finds the Pareto set one process finds. Skipped when the build has no MPI or mpirun is
// missing. One thread a rank, so two ranks fit two cores.
#include "tests/test.h"

#include "data/data.h"
#include "search/search.h"
#include "tasks/detect.h"
#include "tasks/segment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The launcher, allowed to run as root (CI runs the tests as root) and on more ranks than cores; shared
// memory without single-copy (containers often forbid the ptrace it needs); a waiting rank yields its core
// (the ranks share the cores with each other and other jobs: docs/SCALE.md). Under AddressSanitizer the
// ranks run without leak detection: Open MPI's runtime leaves its own allocations (libmpi, its plugins) at
// exit, which LeakSanitizer reports; errors of memory use are still caught, one-process runs keep leak checks.
#define MPIRUN                                                                                                   \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none " \
    "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 OMPI_MCA_mpi_yield_when_idle=1 "                \
    "OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe --allow-run-as-root --bind-to none "

static int have_mpi(void) {
    if (!ib_dist_built()) return 0;
    return test_run("command -v mpirun >/dev/null 2>&1", NULL, NULL) == 0;
}
#define NEED_MPI()                                                                                   \
    do {                                                                                             \
        if (!ib_dist_built()) SKIP("built without MPI (no libopenmpi-dev when it was built, or MPI=0)"); \
        if (!have_mpi()) SKIP("mpirun is not installed (apt-get install openmpi-bin)");              \
    } while (0)

// A small classifier without dropout (dropout masks are drawn per rank, so they would differ from one
// process's) and a small pack of scenes; the tiny space with its head's dropout off.
static const char *arch_json =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"dp_tiny\", \"classes\": 6, \"input\": 32,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"blocks\": [{\"op\": \"ibn\", \"kernel\": 3, \"expand\": 2, \"out\": 16, \"stride\": 2},"
    "              {\"op\": \"fused\", \"kernel\": 3, \"expand\": 2, \"out\": 16, \"stride\": 1},"
    "              {\"op\": \"tucker\", \"kernel\": 3, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 24, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 2, \"out\": 24, \"stride\": 2}],"
    " \"head\": {\"out\": 32, \"dropout\": 0}}";

// SSDLite needs the stride-16 and stride-32 features: a detection space whose four stages end at stride 32
// (1x1 at 32 px), without dropout.
static const char *det_space_json =
    "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"dp_det\", \"input\": 32, \"classes\": 6,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"stages\": [{\"out\": 16, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"fused\"], \"kernel\": [3], \"expand\": [2]},"
    "  {\"out\": 24, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"fused\"], \"kernel\": [3], \"expand\": [2]},"
    "  {\"out\": 24, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"skip\"], \"kernel\": [3], \"expand\": [2]},"
    "  {\"out\": 32, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"fused\"], \"kernel\": [3], \"expand\": [2]}],"
    " \"head\": {\"out\": 32, \"dropout\": 0.0}}";

static char data[300], arch[300], det_arch[300], space[300], det_space[300];

static void write_text(char *path, size_t n, const char *name, const char *text) {
    snprintf(path, n, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    IB_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

static void fixtures(void) {
    if (data[0]) return;
    write_text(arch, sizeof arch, "dp.arch.json", arch_json);
    // The detector's backbone: the classifier's with a fifth block to stride 32.
    char text[2048];
    const char *end = strstr(arch_json, "}],");
    IB_ASSERT(end, "arch_json: no end of its blocks");
    snprintf(text, sizeof text, "%.*s}, {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 2, \"out\": 32, \"stride\": 2}%s",
             (int)(end - arch_json), arch_json, end + 1);
    write_text(det_arch, sizeof det_arch, "dp_det.arch.json", text);
    write_text(det_space, sizeof det_space, "dp_det.space.json", det_space_json);
    snprintf(data, sizeof data, "%s/dp.h5", test_tmpdir());
    IB_ASSERT(ib_synth_write_pack(data, 256, 32, 1, 1, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());   // boxes, masks
    // The tiny space with its head's dropout off ("dropout": 0.1 -> 0.0).
    char *tiny = test_read_file(project_path("search/spaces/tiny.space.json")), *p = strstr(tiny, "\"dropout\": 0.1");
    IB_ASSERT(p, "search/spaces/tiny.space.json: no \"dropout\": 0.1 to turn off");
    p[strlen("\"dropout\": 0.1") - 1] = '0';
    write_text(space, sizeof space, "tiny_nodrop.space.json", tiny);
    free(tiny);
}

// `ibnas train --arch ARCH`, or `ibnas supernet train --space SPACE` with --sync-bn and 4 steps, on the
// fixtures, flags after (a later flag wins): prefix "" (one process) or MPIRUN; out in the scratch folder.
static int run_training(const char *prefix, int supernet, const char *flags, const char *out, char **err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s%s %s %s --data %s --res 32 --batch 32 --epochs 2 --aug none --lr 0.05 --warmup 0.2 "
             "--threads 1 --workers 1 --quiet --seed 5 --out %s %s",
             prefix, test_ibnas_bin(), supernet ? "supernet train --sync-bn --max-steps 4 --space" : "train --arch",
             supernet ? space : arch, data, test_scratch(out), flags);
    return test_run(cmd, NULL, err);
}
static int train(const char *prefix, const char *flags, const char *out, char **err) {
    return run_training(prefix, 0, flags, out, err);
}
static int supernet_train(const char *prefix, const char *flags, const char *out, char **err) {
    return run_training(prefix, 1, flags, out, err);
}

// What a run writes: a classifier's, a segmenter's or a detector's checkpoint, or a supernet (with its task's
// head when it has one).
enum { CK_CLASSIFY, CK_SEGMENT, CK_DETECT, CK_SUPERNET };

// The parameters and buffers of one file as blocks: a network's, and a head's when it keeps its own.
typedef struct {
    ib_net net;
    ib_seg_head seg;
    ib_detector det;
    ib_supernet sn;
    ib_sn_task *task;
    ib_params *ps[2];
} loaded;

static int load_ckpt(int kind, const char *name, loaded *l) {
    memset(l, 0, sizeof *l);
    const char *path = test_scratch(name);
    switch (kind) {
    case CK_CLASSIFY: if (ib_ckpt_load(&l->net, path)) return 0; l->ps[0] = &l->net.ps; return 1;
    case CK_SEGMENT: if (ib_seg_load(&l->net, &l->seg, path)) return 0; l->ps[0] = &l->net.ps; return 1;
    case CK_DETECT:
        if (ib_detector_load(&l->det, path)) return 0;
        l->ps[0] = &l->det.net.ps, l->ps[1] = &l->det.ps;
        return 1;
    default:
        if (ib_supernet_load(&l->sn, path)) return 0;
        l->ps[0] = &l->sn.ps;
        if (ib_sn_task_open(&l->task, &l->sn, path)) return ib_supernet_free(&l->sn), 0;
        if (l->task) l->ps[1] = l->task->head;
        return 1;
    }
}

static void loaded_free(int kind, loaded *l) {
    if (kind == CK_DETECT) ib_detector_free(&l->det);
    else if (kind == CK_SUPERNET) {
        if (l->task) l->task->free(l->task);
        ib_supernet_free(&l->sn);
    } else ib_net_free(&l->net);
}

// max |a - b| over the parameters (*dp) and over the buffers, BN running statistics (*db), of two files of
// one kind, every block compared (a task's head too). 0 when one does not load or their shapes differ.
static int ckpt_diff_of(int kind, const char *a, const char *b, double *dp, double *db) {
    loaded x, y;
    if (!load_ckpt(kind, a, &x)) return 0;
    if (!load_ckpt(kind, b, &y)) return loaded_free(kind, &x), 0;
    int ok = 1;
    *dp = *db = 0;
    for (int k = 0; k < 2 && ok; k++) {
        const ib_params *p = x.ps[k], *q = y.ps[k];
        if (!p || !q) {
            ok = !p && !q;
            continue;
        }
        ok = p->numel_params == q->numel_params && p->numel_buffers == q->numel_buffers;
        if (ok) {
            *dp = fmax(*dp, max_abs_diff(p->data, q->data, p->numel_params));
            *db = fmax(*db, max_abs_diff(p->buf, q->buf, p->numel_buffers));
        }
    }
    loaded_free(kind, &x);
    loaded_free(kind, &y);
    return ok;
}
static int ckpt_diff(const char *a, const char *b, double *dp, double *db) { return ckpt_diff_of(CK_CLASSIFY, a, b, dp, db); }

// The same training (supernet training for CK_SUPERNET) as one process (NAME_one.h5) and on two ranks
// (NAME_two.h5); *dp and *db get their differences. 0 with the reason in why when a run fails or the files
// do not compare.
static int one_and_two(int kind, const char *flags, const char *name, double *dp, double *db, char *why, size_t n) {
    char one[64], two[64], *err = NULL;
    snprintf(one, sizeof one, "%s_one.h5", name);
    snprintf(two, sizeof two, "%s_two.h5", name);
    for (int k = 0; k < 2; k++) {
        const char *prefix = k ? MPIRUN : "", *out = k ? two : one;
        int rc = kind == CK_SUPERNET ? supernet_train(prefix, flags, out, &err) : train(prefix, flags, out, &err);
        if (rc) snprintf(why, n, "%s failed (%d): %s", k ? "two ranks" : "one process", rc, err ? err : "");
        free(err);
        if (rc) return 0;
    }
    if (ckpt_diff_of(kind, one, two, dp, db)) return 1;
    snprintf(why, n, "checkpoints do not load or differ in shape: %s", ib_errmsg());
    return 0;
}

// Cases of one kind, each trained as one process and on two ranks (one_and_two) with --sync-bn: the parameters
// and the BN statistics must end within 1e-5 after `steps` steps. The differences are printed as notes
// (docs/SCALE.md quotes them). The first case that fails ends the check.
typedef struct {
    const char *flags, *name, *what;
} dp_case;

static void check_two_ranks_equal_one(int kind, const dp_case *cases, int n, int steps) {
    for (int k = 0; k < n; k++) {
        char why[4096];
        double dp = -1, db = -1;
        CHECK(one_and_two(kind, cases[k].flags, cases[k].name, &dp, &db, why, sizeof why), "%s: %s", cases[k].what, why);
        CHECK(dp <= 1e-5 && db <= 1e-5, "%s, after %d steps: max |diff| %g (parameters), %g (BN statistics)",
              cases[k].what, steps, dp, db);
        printf("note: %s, 2 ranks against 1 process after %d steps: max |diff| %.3g (parameters), %.3g (BN statistics)\n",
               cases[k].what, steps, dp, db);
    }
}

TEST(mpi_train_sync_bn_equals_one_process) {
    NEED_MPI();
    fixtures();
    dp_case c = {"--sync-bn --max-steps 6", "sync", "classifier (2 x 16 images against 1 x 32)"};
    check_two_ranks_equal_one(CK_CLASSIFY, &c, 1, 6);
}

// Without --sync-bn each rank normalises by the statistics of its own 16 images: another computation,
// which the test records (docs/SCALE.md quotes it) rather than bounds from above.
TEST(mpi_train_without_sync_bn_differs) {
    NEED_MPI();
    fixtures();
    char why[4096];
    double dp = -1, db = -1;
    CHECK(one_and_two(CK_CLASSIFY, "--max-steps 6", "nosync", &dp, &db, why, sizeof why), "%s", why);
    CHECK(dp > 1e-5 && isfinite(dp), "per-rank batchnorm gave the one-process parameters (max |diff| %g)", dp);
    printf("note: without --sync-bn, 2 ranks x 16 against 1 x 32 after 6 steps: max |diff| %.3g (parameters), %.3g (BN "
           "statistics)\n", dp, db);
}

// A checkpoint written by two ranks resumes in one process and the reverse, and both reach what one
// process reaches in one go.
TEST(mpi_resume_on_another_rank_count) {
    NEED_MPI();
    fixtures();
    char *err = NULL;
    int rc = train("", "--sync-bn --max-steps 10", "whole.h5", &err);
    CHECK(rc == 0, "one process failed (%d): %s", rc, err);
    free(err);
    char flags[600];
    rc = train(MPIRUN, "--sync-bn --max-steps 4", "a.h5", &err);
    CHECK(rc == 0, "two ranks failed (%d): %s", rc, err);
    free(err);
    snprintf(flags, sizeof flags, "--sync-bn --max-steps 6 --resume %s", test_scratch("a.h5"));
    rc = train("", flags, "a.h5", &err);
    CHECK(rc == 0, "one process resuming two ranks' checkpoint failed (%d): %s", rc, err);
    free(err);
    rc = train("", "--sync-bn --max-steps 4", "b.h5", &err);
    CHECK(rc == 0, "one process failed (%d): %s", rc, err);
    free(err);
    snprintf(flags, sizeof flags, "--sync-bn --max-steps 6 --resume %s", test_scratch("b.h5"));
    rc = train(MPIRUN, flags, "b.h5", &err);
    CHECK(rc == 0, "two ranks resuming one process's checkpoint failed (%d): %s", rc, err);
    free(err);
    double dp, db;
    CHECK(ckpt_diff("whole.h5", "a.h5", &dp, &db), "%s", ib_errmsg());
    CHECK(dp <= 1e-5 && db <= 1e-5, "2 ranks then 1 process: max |diff| %g, %g", dp, db);
    CHECK(ckpt_diff("whole.h5", "b.h5", &dp, &db), "%s", ib_errmsg());
    CHECK(dp <= 1e-5 && db <= 1e-5, "1 process then 2 ranks: max |diff| %g, %g", dp, db);
}

TEST(mpi_batch_must_split_across_ranks) {
    NEED_MPI();
    fixtures();
    char *err = NULL;
    int rc = train(MPIRUN, "--batch 33 --max-steps 1", "odd.h5", &err);   // the later --batch wins
    CHECK(rc != 0 && err && strstr(err, "--batch 33") && strstr(err, "2 ranks"), "batch 33 on 2 ranks: rc %d, %s", rc,
          err ? err : "");
    free(err);
}

// The fixtures' scenes again, with their background (mask value IB_SYNTH_CLASSES) as the ignore index: the
// labelled pixels of a batch then differ between its two halves.
static const char *ignored_background_pack(void) {
    static char path[300];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s/dp_ignore.h5", test_tmpdir());
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    ib_dataset *ds;
    IB_ASSERT(ib_dataset_open(&ds, data, &o) == IB_OK, "%s", ib_errmsg());
    ib_pack_writer *pw;
    IB_ASSERT(ib_pack_writer_open(&pw, path, 32, 32, 1, 1, ds->n_classes, (const char *const *)ds->class_names,
                                  IB_SYNTH_CLASSES) == IB_OK, "%s", ib_errmsg());
    for (int64_t i = 0; i < ib_dataset_size(ds); i++) {
        ib_sample smp;
        memset(&smp, 0, sizeof smp);
        IB_ASSERT(ib_dataset_get(ds, i, &smp) == IB_OK && ib_pack_writer_add(pw, &smp) == IB_OK, "%s", ib_errmsg());
        ib_sample_free(&smp);
    }
    IB_ASSERT(ib_pack_writer_close(pw) == IB_OK, "%s", ib_errmsg());
    ib_dataset_close(ds);
    return path;
}

// Segmentation shares the loop's data parallelism; its loss is a mean over labelled pixels, so each rank's
// backward starts from its labelled-pixel count (ib_dp_seed) and the sum is divided by the batch's. Every
// pixel labelled, then the background ignored (the halves' counts differ: scaling each rank's finished
// gradient instead, as before, left 0.2 after 4 steps: synchronised batchnorm added gradients of two
// scales). A small DeepLab head, no flips.
TEST(mpi_train_segment_sync_bn_equals_one_process) {
    NEED_MPI();
    fixtures();
    const char *base = "--task segment --seg-aug none --head-width 16 --sync-bn --max-steps 4";
    char ignored[1200];
    snprintf(ignored, sizeof ignored, "%s --data %s", base, ignored_background_pack());
    dp_case c[2] = {{base, "seg", "segmentation (every pixel labelled)"},
                    {ignored, "seg_ignore", "segmentation (background ignored)"}};
    check_two_ranks_equal_one(CK_SEGMENT, c, 2, 4);
}

// Detection: the multibox loss is a sum over a rank's images divided by its matched anchors, so each rank's
// gradient counts by its matched anchors (ib_dp_step's weight); the backbone's and the head's gradients go
// in one allreduce. The hard-negative (ssd) loss and the focal one, whose images without objects still
// count. Then a checkpoint of two ranks resumes in one process and reaches the uninterrupted run. At --lr 0.05
// this tiny detector's runs agree to 1e-7 for 4 steps, then drift apart (1e-3 after 6): one process drifts as
// far from a last-bit difference (docs/SCALE.md), so the test trains at 0.01.
static const char *det_flags = "--task detect --sync-bn --lr 0.01";

TEST(mpi_train_detect_sync_bn_equals_one_process) {
    NEED_MPI();
    fixtures();
    char ssd[1200], focal[1200];
    snprintf(ssd, sizeof ssd, "%s --det-loss ssd --arch %s --max-steps 6", det_flags, det_arch);
    snprintf(focal, sizeof focal, "%s --det-loss focal --arch %s --max-steps 6", det_flags, det_arch);
    dp_case c[2] = {{ssd, "det_ssd", "detection (ssd loss)"}, {focal, "det_focal", "detection (focal loss)"}};
    check_two_ranks_equal_one(CK_DETECT, c, 2, 6);
    char flags[1200], *err = NULL;
    snprintf(flags, sizeof flags, "%s --det-loss ssd --arch %s --max-steps 3", det_flags, det_arch);
    int rc = train(MPIRUN, flags, "det_resumed.h5", &err);
    CHECK(rc == 0, "two ranks failed (%d): %s", rc, err);
    free(err);
    snprintf(flags, sizeof flags, "%s --det-loss ssd --arch %s --max-steps 3 --resume %s", det_flags, det_arch,
             test_scratch("det_resumed.h5"));
    rc = train("", flags, "det_resumed.h5", &err);
    CHECK(rc == 0, "one process resuming two ranks' detector failed (%d): %s", rc, err);
    free(err);
    double dp = -1, db = -1;
    CHECK(ckpt_diff_of(CK_DETECT, "det_ssd_one.h5", "det_resumed.h5", &dp, &db), "%s", ib_errmsg());
    CHECK(dp <= 1e-5 && db <= 1e-5, "detection, 3 steps on 2 ranks then 3 in 1 process: max |diff| %g, %g", dp, db);
}

// Fair sampling runs five paths a step, drawn from (seed, step): the same on both ranks.
TEST(mpi_supernet_sync_bn_equals_one_process) {
    NEED_MPI();
    fixtures();
    dp_case c = {"", "sn", "classification supernet"};
    check_two_ranks_equal_one(CK_SUPERNET, &c, 1, 4);
}

// Supernets of the other tasks: the head shared by every path takes its gradient in the same allreduce, and
// each rank's counts by the weight of its loss (matched anchors, labelled pixels), the same for every path of
// a step. Both on the space down to stride 32 (fair sampling: two paths a step): an SSDLite head, and a
// DeepLab head at strides 16 and 4.
TEST(mpi_supernet_tasks_sync_bn_equal_one_process) {
    NEED_MPI();
    fixtures();
    char det[1200], seg[1200];
    snprintf(det, sizeof det, "--task detect --space %s", det_space);
    snprintf(seg, sizeof seg, "--task segment --seg-aug none --head deeplab --head-width 16 --space %s", det_space);
    dp_case c[2] = {{det, "sn_detect", "detection supernet"}, {seg, "sn_segment", "segmentation supernet"}};
    check_two_ranks_equal_one(CK_SUPERNET, c, 2, 4);
}

// A search on two ranks scores each generation's subnets across them (evolution: whenever a tournament
// needs a child's score) and must visit the same archs with the same scores as one process: the same
// pareto.csv (every scored arch, its score, latency and front membership) and search state. Scored by the
// held-out loss, which separates every subnet (top-1 on 27 images ties many), so a tournament is decided
// by the scores the other rank computed.
static int search_run(const char *prefix, const char *strategy, const char *sn, const char *lut, double budget,
                      const char *out, char **err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s%s search --supernet %s --lut tpu=%s --budget-ms %g --strategy %s --metric loss --population 5 "
             "--generations 2 --batch 4 --sample 3 --calib-batches 1 --threads 1 --workers 1 --seed 3 --quiet --out %s",
             prefix, test_ibnas_bin(), sn, lut, budget, strategy, test_scratch(out));
    return test_run(cmd, NULL, err);
}

TEST(mpi_search_same_pareto_set) {
    NEED_MPI();
    fixtures();
    char *err = NULL, cmd[4096];
    int rc = supernet_train("", "", "search_sn.h5", &err);
    CHECK(rc == 0, "supernet train failed (%d): %s", rc, err);
    free(err);
    char sn[600], lut[600];
    snprintf(sn, sizeof sn, "%s", test_scratch("search_sn.h5"));
    snprintf(lut, sizeof lut, "%s", test_scratch("tpu.csv"));
    snprintf(cmd, sizeof cmd, "%s latency model --space %s --target edgetpu --res 32 --out %s", test_ibnas_bin(), space, lut);
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 0, "latency model failed (%d): %s", rc, err);
    free(err);
    double budget = test_budget_between(space, lut, 32, NULL, NULL, 0);
    static const char *const strategies[] = {"evolution", "tunas"};   // random: stages a whole generation, as tunas
    for (int k = 0; k < 2; k++) {
        char one[64], two[64];
        snprintf(one, sizeof one, "search_one_%s", strategies[k]);
        snprintf(two, sizeof two, "search_two_%s", strategies[k]);
        rc = search_run("", strategies[k], sn, lut, budget, one, &err);
        CHECK(rc == 0, "%s, one process, failed (%d): %s", strategies[k], rc, err);
        free(err);
        rc = search_run(MPIRUN, strategies[k], sn, lut, budget, two, &err);
        CHECK(rc == 0, "%s, two ranks, failed (%d): %s", strategies[k], rc, err);
        free(err);
        char a[700], b[700];
        snprintf(a, sizeof a, "%s/tpu/pareto.csv", test_scratch(one));
        snprintf(b, sizeof b, "%s/tpu/pareto.csv", test_scratch(two));
        char *ta = test_read_file(a), *tb = test_read_file(b);
        int same = ta[0] && !strcmp(ta, tb);
        int rows = 0;
        for (const char *p = ta; *p; p++) rows += *p == '\n';
        free(ta), free(tb);
        CHECK(same, "%s: %s and %s differ (or are empty)", strategies[k], a, b);
        CHECK(rows > 8, "%s: %s has %d lines: too few subnets scored to show anything", strategies[k], a, rows);
        snprintf(a, sizeof a, "%s/state.json", test_scratch(one));
        snprintf(b, sizeof b, "%s/state.json", test_scratch(two));
        ta = test_read_file(a), tb = test_read_file(b);
        same = ta[0] && !strcmp(ta, tb);
        free(ta), free(tb);
        CHECK(same, "%s: the search states %s and %s differ", strategies[k], a, b);
    }
}

// Verbs that are not distributed (here synth, which writes a pack, and space count) run on rank 0 alone under
// mpirun, which says so once: one pack written once, one report, where two ranks would each write PATH.tmp
// and rename it and print every line twice.
static int count_of(const char *text, const char *what) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

TEST(mpi_one_process_verbs_run_on_rank_zero) {
    NEED_MPI();
    fixtures();
    char cmd[4096], *out = NULL, *err = NULL;
    const char *pack = test_scratch("rank0.h5");
    snprintf(cmd, sizeof cmd, "%s%s synth --out %s --n 16 --size 32 --seed 2", MPIRUN, test_ibnas_bin(), pack);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "synth on 2 ranks failed (%d): %s", rc, err);
    CHECK(count_of(out, "wrote ") == 1, "synth on 2 ranks: 'wrote' %d times, not once: %s", count_of(out, "wrote "), out);
    CHECK(count_of(err, "ibnas synth: not distributed: rank 0 runs it as one process") == 1,
          "synth on 2 ranks: no single note saying rank 0 runs it: %s", err);
    free(out), free(err);
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    ib_dataset *ds = NULL;
    CHECK(ib_dataset_open(&ds, pack, &o) == IB_OK && ib_dataset_size(ds) == 16, "%s: %s, %lld scenes", pack, ib_errmsg(),
          ds ? (long long)ib_dataset_size(ds) : -1LL);
    ib_dataset_close(ds);
    snprintf(cmd, sizeof cmd, "%s%s space count --space %s", MPIRUN, test_ibnas_bin(), space);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && count_of(out, "subnets") == 1, "space count on 2 ranks: rc %d, report %d times: %s%s", rc,
          count_of(out, "subnets"), out, err);
    free(out), free(err);
}
