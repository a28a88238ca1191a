// The COCO bbox evaluator: the numbers pycocotools' COCOeval (iouType "bbox") gives, computed the way it
// computes them (evaluateImg, accumulate, summarize), step for step where the order matters: stable sorts
// by score, each detection matched greedily to the best remaining ground truth at each IoU threshold,
// crowd ground truth matchable any number of times with IoU over the detection's area, detections
// matched to ignored ground truth (crowd or outside the area range) ignored, unmatched detections outside
// the area range ignored, 101-point interpolated precision.
#include "tasks/detect.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const ib_coco_stat_names[IB_COCO_STATS] = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                       "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

enum { T_N = 10, R_N = 101, A_N = 4, M_N = 3 };
static const int max_dets[M_N] = {1, 10, 100};

// numpy.linspace as COCOeval's params build them: start + i * step, the last set to stop.
static void thresholds(double iou[T_N], double rec[R_N]) {
    double step = (0.95 - 0.5) / (T_N - 1);
    for (int i = 0; i < T_N; i++) iou[i] = (double)i * step + 0.5;
    iou[T_N - 1] = 0.95;
    step = 1.0 / (R_N - 1);
    for (int i = 0; i < R_N; i++) rec[i] = (double)i * step;
    rec[R_N - 1] = 1.0;
}

static const double area_lo[A_N] = {0, 0, 32 * 32, 96 * 96};
static const double area_hi[A_N] = {1e10, 32 * 32, 96 * 96, 1e10};

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}
static int64_t find_i64(const int64_t *v, int64_t n, int64_t x) {
    const int64_t *p = bsearch(&x, v, (size_t)n, sizeof *v, cmp_i64);
    return p ? p - v : -1;
}

// maskApi.c bbIou: crowd ground truth divides by the detection's area.
static double box_iou(const double *d, const double *g, int crowd) {
    double w = fmin(d[2] + d[0], g[2] + g[0]) - fmax(d[0], g[0]);
    if (w <= 0) return 0;
    double h = fmin(d[3] + d[1], g[3] + g[1]) - fmax(d[1], g[1]);
    if (h <= 0) return 0;
    double i = w * h, da = d[2] * d[3], ga = g[2] * g[3];
    return i / (crowd ? da : da + ga - i);
}

// A stable order of indices by descending score (numpy's mergesort of -score).
typedef struct {
    double score;
    int64_t i;
} scored;
static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

// What evaluateImg returns for one image, one category, one area range (maxDet 100).
typedef struct {
    int present;              // 0: no gt and no dt (None)
    int nd, ng;
    double *score;            // nd
    unsigned char *matched;   // T x nd: dtMatches != 0
    unsigned char *dt_ig;     // T x nd
    unsigned char *gt_ig;     // ng
} img_eval;

typedef struct {
    int64_t img, cat;          // indices
    int64_t i;                 // file order
} key;
static int cmp_key(const void *a, const void *b) {
    const key *x = a, *y = b;
    if (x->cat != y->cat) return x->cat < y->cat ? -1 : 1;
    if (x->img != y->img) return x->img < y->img ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

ib_status ib_coco_evaluate(const int64_t *img_ids_in, int64_t n_img, const int64_t *cat_ids_in, int64_t n_cat,
                           const ib_coco_gt *gt, int64_t n_gt, const ib_coco_det *dt, int64_t n_dt,
                           double stats[IB_COCO_STATS]) {
    double iou_thr[T_N], rec_thr[R_N];
    thresholds(iou_thr, rec_thr);
    ib_status st = IB_OK;
    int64_t *img_ids = malloc(sizeof(int64_t) * (size_t)(n_img + 1));
    int64_t *cat_ids = malloc(sizeof(int64_t) * (size_t)(n_cat + 1));
    key *gk = malloc(sizeof(key) * (size_t)(n_gt + 1));
    key *dk = malloc(sizeof(key) * (size_t)(n_dt + 1));
    int64_t *dt_id = malloc(sizeof(int64_t) * (size_t)(n_dt + 1));
    // precision T x R x K x A x M, recall T x K x A x M
    size_t np_ = (size_t)T_N * R_N * (size_t)n_cat * A_N * M_N, nr = (size_t)T_N * (size_t)n_cat * A_N * M_N;
    double *prec = malloc(sizeof(double) * (np_ + 1)), *recall = malloc(sizeof(double) * (nr + 1));
    img_eval *ev = calloc((size_t)n_img + 1, sizeof(img_eval));
    if (!img_ids || !cat_ids || !gk || !dk || !dt_id || !prec || !recall || !ev) {
        st = ib_fail(IB_ERR_NOMEM, "coco eval: out of memory");
        goto done;
    }
    memcpy(img_ids, img_ids_in, sizeof(int64_t) * (size_t)n_img);
    memcpy(cat_ids, cat_ids_in, sizeof(int64_t) * (size_t)n_cat);
    qsort(img_ids, (size_t)n_img, sizeof *img_ids, cmp_i64);
    qsort(cat_ids, (size_t)n_cat, sizeof *cat_ids, cmp_i64);
    for (size_t i = 0; i < np_; i++) prec[i] = -1;
    for (size_t i = 0; i < nr; i++) recall[i] = -1;

    int64_t ngk = 0, ndk = 0;
    for (int64_t i = 0; i < n_gt; i++) {
        int64_t im = find_i64(img_ids, n_img, gt[i].image_id), c = find_i64(cat_ids, n_cat, gt[i].category_id);
        if (im < 0 || c < 0) continue;   // getAnnIds(imgIds, catIds) leaves it out
        gk[ngk++] = (key){im, c, i};
    }
    for (int64_t i = 0; i < n_dt; i++) {
        dt_id[i] = i + 1;
        int64_t im = find_i64(img_ids, n_img, dt[i].image_id);
        if (im < 0) {
            st = ib_fail(IB_ERR_ARG, "coco eval: detection %lld is on image %lld, which the ground truth does not have",
                         (long long)i, (long long)dt[i].image_id);
            goto done;
        }
        int64_t c = find_i64(cat_ids, n_cat, dt[i].category_id);
        if (c < 0) continue;
        dk[ndk++] = (key){im, c, i};
    }
    qsort(gk, (size_t)ngk, sizeof *gk, cmp_key);
    qsort(dk, (size_t)ndk, sizeof *dk, cmp_key);

    int64_t gp = 0, dp = 0;
    for (int64_t k = 0; k < n_cat; k++) {
        int64_t g_begin = gp, d_begin = dp;
        while (gp < ngk && gk[gp].cat == k) gp++;
        while (dp < ndk && dk[dp].cat == k) dp++;
        for (int a = 0; a < A_N; a++) {
            // evaluateImg for every image of this category and area range
            int64_t gq = g_begin, dq = d_begin;
            for (int64_t im = 0; im < n_img; im++) {
                img_eval *e = &ev[im];
                free(e->score), free(e->matched), free(e->dt_ig), free(e->gt_ig);
                memset(e, 0, sizeof *e);
                int64_t g0 = gq, d0 = dq;
                while (gq < gp && gk[gq].img == im) gq++;
                while (dq < dp && dk[dq].img == im) dq++;
                int ng = (int)(gq - g0), nd_all = (int)(dq - d0);
                if (ng == 0 && nd_all == 0) continue;
                e->present = 1;
                // detections by score (stable), at most 100
                scored *ds = malloc(sizeof(scored) * (size_t)(nd_all + 1));
                int *go = malloc(sizeof(int) * (size_t)(ng + 1));
                unsigned char *gig = malloc((size_t)ng + 1);
                int64_t *gtm = calloc((size_t)T_N * (size_t)ng + 1, sizeof(int64_t));
                int nd = nd_all < max_dets[M_N - 1] ? nd_all : max_dets[M_N - 1];
                e->nd = nd, e->ng = ng;
                e->score = malloc(sizeof(double) * (size_t)(nd + 1));
                e->matched = calloc((size_t)T_N * (size_t)nd + 1, 1);
                e->dt_ig = calloc((size_t)T_N * (size_t)nd + 1, 1);
                e->gt_ig = malloc((size_t)ng + 1);
                int64_t *dtm = calloc((size_t)T_N * (size_t)nd + 1, sizeof(int64_t));
                if (!ds || !go || !gig || !gtm || !e->score || !e->matched || !e->dt_ig || !e->gt_ig || !dtm) {
                    free(ds), free(go), free(gig), free(gtm), free(dtm);
                    st = ib_fail(IB_ERR_NOMEM, "coco eval: out of memory");
                    goto done;
                }
                for (int j = 0; j < nd_all; j++) ds[j] = (scored){dt[dk[d0 + j].i].score, dk[d0 + j].i};
                qsort(ds, (size_t)nd_all, sizeof *ds, cmp_scored);
                // ground truth: not ignored first (stable)
                int o = 0;
                for (int pass = 0; pass < 2; pass++)
                    for (int j = 0; j < ng; j++) {
                        const ib_coco_gt *g = &gt[gk[g0 + j].i];
                        int ig = g->iscrowd || g->area < area_lo[a] || g->area > area_hi[a];
                        if (ig == pass) go[o] = (int)gk[g0 + j].i, gig[o] = (unsigned char)ig, o++;
                    }
                for (int t = 0; t < T_N; t++)
                    for (int di = 0; di < nd; di++) {
                        const ib_coco_det *d = &dt[ds[di].i];
                        double best = fmin(iou_thr[t], 1 - 1e-10);
                        int m = -1;
                        for (int gi = 0; gi < ng; gi++) {
                            const ib_coco_gt *g = &gt[go[gi]];
                            if (gtm[t * ng + gi] > 0 && !g->iscrowd) continue;
                            if (m > -1 && gig[m] == 0 && gig[gi] == 1) break;
                            double iou = box_iou(d->bbox, g->bbox, g->iscrowd != 0);
                            if (iou < best) continue;
                            best = iou, m = gi;
                        }
                        if (m == -1) continue;
                        e->dt_ig[t * nd + di] = gig[m];
                        dtm[t * nd + di] = gt[go[m]].id;
                        gtm[t * ng + m] = dt_id[ds[di].i];
                    }
                for (int di = 0; di < nd; di++) {
                    const ib_coco_det *d = &dt[ds[di].i];
                    double darea = d->bbox[2] * d->bbox[3];
                    int out = darea < area_lo[a] || darea > area_hi[a];
                    e->score[di] = d->score;
                    for (int t = 0; t < T_N; t++) {
                        e->matched[t * nd + di] = dtm[t * nd + di] != 0;
                        if (dtm[t * nd + di] == 0 && out) e->dt_ig[t * nd + di] = 1;
                    }
                }
                memcpy(e->gt_ig, gig, (size_t)ng);
                free(ds), free(go), free(gig), free(gtm), free(dtm);
            }
            // accumulate for each maxDets
            for (int mi = 0; mi < M_N; mi++) {
                int md = max_dets[mi];
                int64_t n_all = 0, npig = 0, n_e = 0;
                for (int64_t im = 0; im < n_img; im++) {
                    if (!ev[im].present) continue;
                    n_e++;
                    n_all += ev[im].nd < md ? ev[im].nd : md;
                    for (int j = 0; j < ev[im].ng; j++) npig += ev[im].gt_ig[j] == 0;
                }
                if (n_e == 0 || npig == 0) continue;
                scored *all = malloc(sizeof(scored) * (size_t)(n_all + 1));
                int64_t *src = malloc(sizeof(int64_t) * 2 * (size_t)(n_all + 1));
                double *pr = malloc(sizeof(double) * (size_t)(n_all + 1)), *rc = malloc(sizeof(double) * (size_t)(n_all + 1));
                if (!all || !src || !pr || !rc) {
                    free(all), free(src), free(pr), free(rc);
                    st = ib_fail(IB_ERR_NOMEM, "coco eval: out of memory");
                    goto done;
                }
                int64_t q = 0;
                for (int64_t im = 0; im < n_img; im++) {
                    if (!ev[im].present) continue;
                    int n = ev[im].nd < md ? ev[im].nd : md;
                    for (int j = 0; j < n; j++) {
                        all[q] = (scored){ev[im].score[j], q};
                        src[2 * q] = im, src[2 * q + 1] = j;
                        q++;
                    }
                }
                qsort(all, (size_t)n_all, sizeof *all, cmp_scored);
                for (int t = 0; t < T_N; t++) {
                    int64_t tp = 0, fp = 0;
                    for (int64_t j = 0; j < n_all; j++) {
                        const img_eval *e = &ev[src[2 * all[j].i]];
                        int64_t c = src[2 * all[j].i + 1];
                        int m = e->matched[t * e->nd + c], ig = e->dt_ig[t * e->nd + c];
                        if (!ig) tp += m, fp += !m;
                        rc[j] = (double)tp / (double)npig;
                        pr[j] = (double)tp / ((double)fp + (double)tp + 2.220446049250313e-16);
                    }
                    recall[(((size_t)t * (size_t)n_cat + (size_t)k) * A_N + (size_t)a) * M_N + (size_t)mi] =
                        n_all ? rc[n_all - 1] : 0;
                    for (int64_t j = n_all - 1; j > 0; j--)
                        if (pr[j] > pr[j - 1]) pr[j - 1] = pr[j];
                    int64_t pi = 0;
                    for (int r = 0; r < R_N; r++) {
                        while (pi < n_all && rc[pi] < rec_thr[r]) pi++;   // searchsorted, side left
                        double v = pi < n_all ? pr[pi] : 0;
                        prec[((((size_t)t * R_N + (size_t)r) * (size_t)n_cat + (size_t)k) * A_N + (size_t)a) * M_N +
                             (size_t)mi] = v;
                    }
                }
                free(all), free(src), free(pr), free(rc);
            }
        }
    }

    // summarize
    for (int s = 0; s < IB_COCO_STATS; s++) {
        int ap = s < 6, t_only = -1, a = 0, mi = 2;
        if (s == 1) t_only = 0;
        if (s == 2) t_only = 5;
        if (s >= 3 && s <= 5) a = s - 2;
        if (s >= 6 && s <= 8) mi = s - 6;
        if (s >= 9) a = s - 8;
        double sum = 0;
        int64_t n = 0;
        for (int t = 0; t < T_N; t++) {
            if (t_only >= 0 && t != t_only) continue;
            for (int64_t k = 0; k < n_cat; k++) {
                if (ap)
                    for (int r = 0; r < R_N; r++) {
                        double v = prec[((((size_t)t * R_N + (size_t)r) * (size_t)n_cat + (size_t)k) * A_N + (size_t)a) *
                                             M_N + (size_t)mi];
                        if (v > -1) sum += v, n++;
                    }
                else {
                    double v = recall[(((size_t)t * (size_t)n_cat + (size_t)k) * A_N + (size_t)a) * M_N + (size_t)mi];
                    if (v > -1) sum += v, n++;
                }
            }
        }
        stats[s] = n ? sum / (double)n : -1;
    }

done:
    if (ev)
        for (int64_t im = 0; im < n_img; im++) free(ev[im].score), free(ev[im].matched), free(ev[im].dt_ig), free(ev[im].gt_ig);
    free(ev), free(img_ids), free(cat_ids), free(gk), free(dk), free(dt_id), free(prec), free(recall);
    return st;
}

// ---------------------------------------------------------------------------------------------
// Files

// What a JSON value is, for messages: "a string", "null", "missing".
static const char *json_kind(const json_t *x) {
    switch (x ? json_typeof(x) : JSON_NULL) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return x ? "null" : "missing";
    }
    return "?";
}

// Field k of o as an integer (a real with no fraction, within int64, counts); else 0 and why.
static int get_i64(json_t *o, const char *k, int64_t *v, char *why, size_t n) {
    json_t *x = json_object_get(o, k);
    if (json_is_integer(x)) return *v = json_integer_value(x), 1;
    double r = json_is_real(x) ? json_real_value(x) : 0.5;
    if (r == floor(r) && fabs(r) < 9e18) return *v = (int64_t)r, 1;
    if (json_is_real(x)) snprintf(why, n, "\"%s\" is %g, expected an integer", k, r);
    else snprintf(why, n, "\"%s\" is %s, expected an integer", k, json_is_object(o) ? json_kind(x) : "not there (not an object)");
    return 0;
}

// "bbox": [x, y, w, h], four numbers, w and h not negative; else 0 and why.
static int get_box(json_t *o, double b[4], char *why, size_t n) {
    json_t *x = json_object_get(o, "bbox");
    if (!json_is_array(x) || json_array_size(x) != 4) {
        snprintf(why, n, "\"bbox\" is %s, expected [x, y, w, h]",
                 json_is_array(x) ? "a list of other than 4" : json_is_object(o) ? json_kind(x) : "not there (not an object)");
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        json_t *v = json_array_get(x, (size_t)i);
        if (!json_is_number(v)) {
            snprintf(why, n, "\"bbox\"[%d] is %s, expected a number", i, json_kind(v));
            return 0;
        }
        b[i] = json_number_value(v);
    }
    if (b[2] < 0 || b[3] < 0) {
        snprintf(why, n, "\"bbox\" has width %g and height %g: sizes must not be negative", b[2], b[3]);
        return 0;
    }
    return 1;
}

// Field k of o as a number; else 0 and why.
static int get_num(json_t *o, const char *k, double *v, char *why, size_t n) {
    json_t *x = json_object_get(o, k);
    if (json_is_number(x)) return *v = json_number_value(x), 1;
    snprintf(why, n, "\"%s\" is %s, expected a number", k, json_kind(x));
    return 0;
}

ib_status ib_coco_evaluate_files(const char *gt_json, const char *dets_json, double stats[IB_COCO_STATS]) {
    json_error_t je;
    json_t *g = json_load_file(gt_json, JSON_REJECT_DUPLICATES, &je);
    if (!g) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", gt_json, je.line, je.column, je.text);
    json_t *d = json_load_file(dets_json, JSON_REJECT_DUPLICATES, &je);
    if (!d) {
        json_decref(g);
        return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", dets_json, je.line, je.column, je.text);
    }
    ib_status st = IB_OK;
    int64_t *img = NULL, *cat = NULL;
    ib_coco_gt *ga = NULL;
    ib_coco_det *da = NULL;
    json_t *images = json_object_get(g, "images"), *cats = json_object_get(g, "categories"),
           *anns = json_object_get(g, "annotations");
    if (!json_is_array(images) || !json_is_array(cats) || (anns && !json_is_array(anns))) {
        st = ib_fail(IB_ERR_FORMAT, "%s: expected arrays \"images\", \"categories\" and \"annotations\"", gt_json);
        goto out;
    }
    if (!json_is_array(d)) {
        st = ib_fail(IB_ERR_FORMAT, "%s: expected a list of detections (the COCO results format)", dets_json);
        goto out;
    }
    size_t ni = json_array_size(images), nc = json_array_size(cats), na = anns ? json_array_size(anns) : 0,
           nd = json_array_size(d);
    img = malloc(sizeof(int64_t) * (ni + 1)), cat = malloc(sizeof(int64_t) * (nc + 1));
    ga = malloc(sizeof(ib_coco_gt) * (na + 1)), da = malloc(sizeof(ib_coco_det) * (nd + 1));
    if (!img || !cat || !ga || !da) {
        st = ib_fail(IB_ERR_NOMEM, "out of memory");
        goto out;
    }
    char why[300];
    for (size_t i = 0; i < ni; i++)
        if (!get_i64(json_array_get(images, i), "id", &img[i], why, sizeof why)) {
            st = ib_fail(IB_ERR_FORMAT, "%s: images[%zu]: %s", gt_json, i, why);
            goto out;
        }
    for (size_t i = 0; i < nc; i++)
        if (!get_i64(json_array_get(cats, i), "id", &cat[i], why, sizeof why)) {
            st = ib_fail(IB_ERR_FORMAT, "%s: categories[%zu]: %s", gt_json, i, why);
            goto out;
        }
    for (size_t i = 0; i < na; i++) {
        json_t *a = json_array_get(anns, i), *crowd = json_object_get(a, "iscrowd");
        ib_coco_gt *x = &ga[i];
        if (!get_i64(a, "id", &x->id, why, sizeof why) || !get_i64(a, "image_id", &x->image_id, why, sizeof why) ||
            !get_i64(a, "category_id", &x->category_id, why, sizeof why) || !get_box(a, x->bbox, why, sizeof why) ||
            !get_num(a, "area", &x->area, why, sizeof why)) {
            st = ib_fail(IB_ERR_FORMAT, "%s: annotations[%zu]: %s", gt_json, i, why);
            goto out;
        }
        x->iscrowd = crowd ? (json_is_true(crowd) || (json_is_number(crowd) && json_number_value(crowd) != 0)) : 0;
    }
    for (size_t i = 0; i < nd; i++) {
        json_t *a = json_array_get(d, i);
        ib_coco_det *x = &da[i];
        if (!get_i64(a, "image_id", &x->image_id, why, sizeof why) ||
            !get_i64(a, "category_id", &x->category_id, why, sizeof why) || !get_box(a, x->bbox, why, sizeof why) ||
            !get_num(a, "score", &x->score, why, sizeof why)) {
            st = ib_fail(IB_ERR_FORMAT, "%s: detection [%zu]: %s", dets_json, i, why);
            goto out;
        }
    }
    st = ib_coco_evaluate(img, (int64_t)ni, cat, (int64_t)nc, ga, (int64_t)na, da, (int64_t)nd, stats);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ib_errmsg());
        st = ib_fail(st, "%s: %s", dets_json, msg);
    }
out:
    free(img), free(cat), free(ga), free(da);
    json_decref(g), json_decref(d);
    return st;
}
