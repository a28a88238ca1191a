// The shared head of a detection or segmentation supernet, scored path after path: its BN statistics are
// recalibrated with each path's features (tests/test_det_search.c, tests/test_seg_search.c). The expected
// statistics are computed here another way: the task's training forward (t->loss, path and head in training
// mode) over the same calibration images, the head's buffers zeroed before each batch, so that after it each
// running statistic is 0.1 times that batch's (mean, unbiased variance); their average in double is what the
// recalibration must have written.
#include "tests/test.h"
#include "tasks/tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEED(cond, ...)                           \
    do {                                          \
        if (!(cond)) {                            \
            snprintf(msg, n, __VA_ARGS__);        \
            goto done;                            \
        }                                         \
    } while (0)

// The head's BN statistics (t->head's buffers) that the recalibration over cfg's batches should give path
// `choice`: the average of each batch's, from the task's own training forward.
static ib_status expected_head_stats(ib_supernet *sn, ib_sn_task *t, const int *choice, ib_dataset *calib,
                                     const ib_sn_eval_cfg *cfg, double *expect, char *msg, size_t n) {
    ib_params *h = t->head;
    int64_t nb = h->numel_buffers, ns = sn->ps.numel_buffers;
    float *keep_head = malloc(sizeof(float) * (size_t)nb), *keep_sn = malloc(sizeof(float) * (size_t)ns);
    IB_ASSERT(keep_head && keep_sn, "out of memory");
    memcpy(keep_head, h->buf, sizeof(float) * (size_t)nb);
    memcpy(keep_sn, sn->ps.buf, sizeof(float) * (size_t)ns);   // the path's BNs run with momentum 0.1 below
    memset(expect, 0, sizeof(double) * (size_t)nb);
    // the recalibration's images (ib_recal_loader_open) and this loader's, with the targets t->loss needs,
    // are checked to be the same pixels
    ib_recal_cfg rc;
    ib_recal_cfg_default(&rc, sn->space.input);
    rc.batches = cfg->calib_batches, rc.batch = cfg->calib_batch, rc.seed = cfg->calib_seed, rc.workers = 1;
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, rc.res, rc.res);
    lo.batch_size = rc.batch, lo.shuffle = 1, lo.drop_last = 1, lo.seed = rc.seed, lo.workers = 1;
    lo.want_boxes = !strcmp(t->name, "detect");
    lo.want_masks = !strcmp(t->name, "segment");
    lo.aug.crop = IB_CROP_CENTER;
    memcpy(lo.aug.mean, rc.mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, rc.std, sizeof lo.aug.std);
    ib_loader *lr = NULL, *lt = NULL;
    ib_ctx *pctx = ib_ctx_new(), *ctx = ib_ctx_new();
    ib_status s = ib_recal_loader_open(&lr, calib, &rc);
    if (!s) s = ib_loader_open(&lt, calib, &lo);
    if (!s) {
        ib_net path;
        ib_supernet_path(pctx, sn, choice, &path);
        ib_loader_start_epoch(lr, 0);
        ib_loader_start_epoch(lt, 0);
        for (int b = 0; b < rc.batches && !s; b++) {
            const ib_batch *br, *bt;
            if ((s = ib_loader_next(lr, &br)) || (s = ib_loader_next(lt, &bt))) break;
            if (!br || !bt) {
                s = ib_fail(IB_ERR_ARG, "the test wants %d calibration batches within one epoch", rc.batches);
                break;
            }
            size_t px = (size_t)br->n * 3 * (size_t)br->h * (size_t)br->w;
            if (br->n != bt->n || br->h != bt->h || memcmp(br->x, bt->x, sizeof(float) * px)) {
                s = ib_fail(IB_ERR_ARG, "calibration batch %d: the test's images are not the recalibration's", b);
                break;
            }
            memset(h->buf, 0, sizeof(float) * (size_t)nb);
            ib_ctx_reset(ctx);
            ctx->training = 1, ctx->recording = 0;
            ib_tensor *loss;
            double weight;
            if ((s = t->loss(t, ctx, &path, bt, &loss, &weight))) break;
            for (int64_t i = 0; i < nb; i++) expect[i] += h->buf[i] / (double)0.1f / rc.batches;
        }
    }
    if (s) snprintf(msg, n, "expected statistics: %s", ib_errmsg());
    ib_loader_close(lr);
    ib_loader_close(lt);
    ib_ctx_free(ctx);
    ib_ctx_free(pctx);
    memcpy(h->buf, keep_head, sizeof(float) * (size_t)nb);
    memcpy(sn->ps.buf, keep_sn, sizeof(float) * (size_t)ns);
    free(keep_head), free(keep_sn);
    return s;
}

int test_sn_head_recal(const char *supernet, const char *val, char *msg, size_t n) {
    int ok = 0;
    msg[0] = 0;
    ib_supernet *sn = NULL;
    ib_sn_task *t = NULL;
    ib_dataset *base = NULL, *calib = NULL, *ev = NULL;
    int *a = NULL, *b = NULL;
    float *head_a = NULL, *head_b = NULL, *sn_b = NULL;
    double *expect = NULL;
    NEED(!ib_supernet_open(&sn, supernet), "%s", ib_errmsg());
    NEED(!ib_sn_task_open(&t, sn, supernet) && t && t->head, "%s: no task head: %s", supernet, ib_errmsg());
    NEED(!ib_supernet_calib_data(sn, t, &base, &calib) && calib, "calibration data: %s", ib_errmsg());
    NEED(!t->open(t, &ev, val, IB_DS_AUTO, "val"), "%s", ib_errmsg());
    int L = sn->space.n_layers;
    int64_t nb = t->head->numel_buffers, ns = sn->ps.numel_buffers;
    a = malloc(sizeof(int) * (size_t)L), b = malloc(sizeof(int) * (size_t)L);
    head_a = malloc(sizeof(float) * (size_t)nb), head_b = malloc(sizeof(float) * (size_t)nb);
    sn_b = malloc(sizeof(float) * (size_t)ns);
    expect = malloc(sizeof(double) * (size_t)nb);
    NEED(a && b && head_a && head_b && sn_b && expect && nb > 0, "out of memory (%lld head buffers)", (long long)nb);
    ib_space_sample(&sn->space, IB_SAMPLE_LARGEST, NULL, a);
    ib_space_sample(&sn->space, IB_SAMPLE_SMALLEST, NULL, b);
    ib_sn_eval_cfg cfg;
    ib_sn_eval_cfg_default(&cfg);
    cfg.calib_batches = 3, cfg.calib_batch = 8, cfg.calib_seed = 17, cfg.workers = 1, cfg.batch = 16;

    // A, then B, then A and B again: each path's metrics are the same both times, and the head's statistics
    // after B are B's whatever came before
    double m[4][IB_SN_METRICS];
    const int *order[4] = {a, b, a, b};
    for (int k = 0; k < 4; k++) {
        NEED(!ib_supernet_eval_task(sn, t, order[k], calib, ev, &cfg, m[k]), "scoring %d: %s", k, ib_errmsg());
        if (k == 0) memcpy(head_a, t->head->buf, sizeof(float) * (size_t)nb);
        if (k == 1) memcpy(head_b, t->head->buf, sizeof(float) * (size_t)nb);
        if (k == 1) memcpy(sn_b, sn->ps.buf, sizeof(float) * (size_t)ns);
    }
    for (int i = 0; i < IB_SN_METRICS; i++)   // the task's three metrics and its held-out loss
        NEED(m[0][i] == m[2][i] && m[1][i] == m[3][i] && m[0][i] >= 0, "metric %d: path A %.9g then %.9g, path B %.9g then %.9g",
             i, m[0][i], m[2][i], m[1][i], m[3][i]);
    NEED(!memcmp(head_b, t->head->buf, sizeof(float) * (size_t)nb), "the head's statistics for B depend on what was scored before");

    // the head's recalibration leaves the path's own statistics as the backbone's recalibration wrote them
    NEED(!ib_supernet_eval_classify(sn, b, calib, NULL, &cfg, NULL), "%s", ib_errmsg());
    NEED(!memcmp(sn_b, sn->ps.buf, sizeof(float) * (size_t)ns), "the head's recalibration changed the path's BN statistics");

    // B's statistics are the exact batch average of B's head-BN inputs, and not A's
    if (expected_head_stats(sn, t, b, calib, &cfg, expect, msg, n)) goto done;
    double worst = 0, ab = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < nb; i++) {
        double tol = 1e-5 * (fabs(expect[i]) + 1e-2), d = fabs(head_b[i] - expect[i]);
        NEED(isfinite(head_b[i]) && isfinite(expect[i]), "head buffer %lld: %g, expected %g", (long long)i, head_b[i], expect[i]);
        if (d / tol > worst) worst = d / tol, at = i;
        ab = fmax(ab, fabs((double)head_a[i] - head_b[i]) / (fabs(expect[i]) + 1e-2));
    }
    NEED(worst <= 1, "head buffer %lld of %lld: %.9g after scoring A then B, the average of B's batches %.9g",
         (long long)at, (long long)nb, head_b[at], expect[at]);
    NEED(ab > 1e-2, "the head's statistics for A and B differ by at most %g (relative)", ab);
    if (getenv("IBNAS_TEST_REPORT"))
        fprintf(stderr, "%s: %lld head buffers, worst error %.3g of the tolerance, A vs B %.3g\n", t->name,
                (long long)nb, worst, ab);
    ok = 1;
done:
    free(a), free(b), free(head_a), free(head_b), free(sn_b), free(expect);
    ib_dataset_close(ev);
    if (calib != base) ib_dataset_close(calib);
    ib_dataset_close(base);
    if (t) t->free(t);
    ib_supernet_close(sn);
    return ok;
}
