// api/detect: the public detection functions (include/ibnas.h, "Detection") over tasks/detect.h.
#include "api/api.h"
#include "tasks/detect.h"

#include <stdlib.h>
#include <string.h>

ib_status ib_coco_eval(const char *gt_json, const char *dets_json, double stats[IB_COCO_NSTATS]) {
    if (!gt_json || !dets_json || !stats) return ib_fail(IB_ERR_ARG, "ib_coco_eval: gt_json, dets_json and stats are required");
    return ib_coco_evaluate_files(gt_json, dets_json, stats);
}

const char *ib_coco_stat_name(int i) { return i >= 0 && i < IB_COCO_STATS ? ib_coco_stat_names[i] : NULL; }

const char *ib_model_task(const ib_model *m) { return !m ? "classify" : m->det ? "detect" : m->seg ? "segment" : "classify"; }

void ib_api_detect_opts_default(ib_train_opts *o) {
    ib_ssd_cfg c;
    ib_ssd_cfg_default(&c, 0);
    o->det_min_scale = c.min_scale, o->det_max_scale = c.max_scale;
    o->det_ratios = "1,2,0.5";
    o->det_match_iou = c.match_iou;
    o->det_neg_ratio = c.neg_ratio;
    o->det_nms_iou = c.nms_iou;
    o->det_score_thr = c.score_thr;
    o->det_max_dets = c.max_dets;
    o->det_loss = "ssd";
    o->det_focal_alpha = c.focal_alpha, o->det_focal_gamma = c.focal_gamma;
}

// "1,2,0.5" -> ratios
static ib_status parse_ratios(const char *s, ib_ssd_cfg *c) {
    c->n_ratios = 0;
    const char *p = s;
    while (p && *p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0) || c->n_ratios == IB_SSD_MAX_RATIOS || (*end && *end != ','))
            return ib_fail(IB_ERR_ARG, "det_ratios '%s': want 1 to %d positive numbers separated by commas", s, IB_SSD_MAX_RATIOS);
        c->ratios[c->n_ratios++] = (float)v;
        p = *end ? end + 1 : end;
    }
    if (!c->n_ratios) return ib_fail(IB_ERR_ARG, "det_ratios '%s': no ratio given", s ? s : "");
    return IB_OK;
}

ib_status ib_api_ssd_cfg(const ib_train_opts *o, int classes, ib_ssd_cfg *ssd) {
    ib_ssd_cfg_default(ssd, classes);
    ib_status s = parse_ratios(o->det_ratios ? o->det_ratios : "1,2,0.5", ssd);
    if (s) return s;
    if (!(o->det_min_scale > 0 && o->det_min_scale <= o->det_max_scale && o->det_max_scale <= 1))
        return ib_fail(IB_ERR_ARG, "det scales %g..%g: want 0 < min <= max <= 1", (double)o->det_min_scale,
                       (double)o->det_max_scale);
    if (!(o->det_match_iou > 0 && o->det_match_iou <= 1 && o->det_nms_iou > 0 && o->det_nms_iou <= 1 &&
          o->det_score_thr >= 0 && o->det_score_thr < 1 && o->det_neg_ratio >= 0 && o->det_max_dets >= 1))
        return ib_fail(IB_ERR_ARG, "detection options out of range (match and NMS IoU in (0, 1], score threshold in "
                       "[0, 1), negative ratio >= 0, max dets >= 1)");
    ssd->min_scale = o->det_min_scale, ssd->max_scale = o->det_max_scale;
    ssd->match_iou = o->det_match_iou, ssd->neg_ratio = o->det_neg_ratio;
    ssd->nms_iou = o->det_nms_iou, ssd->score_thr = o->det_score_thr, ssd->max_dets = o->det_max_dets;
    static const char *const losses[] = {"ssd", "focal"};
    int loss = 0;
    if (o->det_loss && (s = ib_api_choose("det_loss", o->det_loss, losses, 2, &loss))) return s;
    if (!(o->det_focal_alpha >= 0 && o->det_focal_alpha <= 1 && o->det_focal_gamma >= 0))
        return ib_fail(IB_ERR_ARG, "focal alpha %g (want [0, 1]) or gamma %g (want >= 0) out of range",
                       (double)o->det_focal_alpha, (double)o->det_focal_gamma);
    ssd->focal = loss == 1;
    ssd->focal_alpha = o->det_focal_alpha, ssd->focal_gamma = o->det_focal_gamma;
    return IB_OK;
}

ib_status ib_api_train_detect(const ib_train_opts *o, const ib_train_cfg *c, ib_train_report *r) {
    ib_det_train_cfg dc;
    dc.base = *c;
    ib_status s = ib_api_ssd_cfg(o, c->classes, &dc.ssd);
    if (s) return s;
    ib_det_train_result res;
    s = ib_train_detect(&dc, &res);
    ib_api_train_report(&res.base, r);
    memcpy(r->val_coco, res.stats, sizeof r->val_coco);
    return s;
}

void ib_det_eval_opts_default(ib_det_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch = 32;
    o->workers = 2;
}

ib_status ib_eval_detect(ib_model *m, ib_dataset *ds, const ib_det_eval_opts *opts, ib_det_eval_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_eval_detect: no report given");
    memset(r, 0, sizeof *r);
    if (!m || !ds) return ib_fail(IB_ERR_ARG, "ib_eval_detect: a model and a dataset are needed");
    if (!m->det) return ib_fail(IB_ERR_ARG, "ib_eval_detect: %s is not a detection model", ib_model_name(m));
    ib_det_eval_opts d;
    if (!opts) ib_det_eval_opts_default(&d), opts = &d;
    if (opts->batch < 1 || opts->res < 0 || (opts->res > 0 && opts->res < 32))
        return ib_fail(IB_ERR_ARG, "ib_eval_detect: batch %d, res %d (batch >= 1, res 0 or >= 32)", opts->batch, opts->res);
    ib_det_eval_cfg c;
    ib_det_eval_cfg_default(&c);
    c.res = opts->res > 0 ? opts->res : m->det->net.arch.input;
    c.batch = opts->batch;
    c.workers = opts->workers;
    c.progress = opts->progress;
    c.dets_out = opts->dets_out;
    return ib_detector_eval(m->det, ds, &c, r->coco, &r->images);
}
