// api: supernets (include/ibnas.h, "Supernets") over search/ and tasks/.
#include "api/api.h"
#include "tasks/detect.h"
#include "tasks/segment.h"

#include <stdlib.h>
#include <string.h>

void ib_supernet_train_opts_default(ib_supernet_train_opts *o) {
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    memset(o, 0, sizeof *o);
    ib_train_opts_default(&o->train);
    o->train.arch = NULL;
    o->sampling = "fair";
    o->paths = c.n_random;
    o->kd = c.kd;
    o->holdout = c.holdout;
    o->calib_batches = c.calib_batches;
}

ib_status ib_supernet_train(const ib_supernet_train_opts *o, ib_supernet_train_report *r) {
    if (!o || !r) return ib_fail(IB_ERR_ARG, "ib_supernet_train: options and a report are needed");
    memset(r, 0, sizeof *r);
    r->train.val_top1 = r->train.val_top5 = r->smallest_top1 = -1;
    if (!o->train.data || !o->train.out) return ib_fail(IB_ERR_ARG, "ib_supernet_train: data and out are required");
    static const char *const sampling_names[] = {"sandwich", "uniform", "fair"};   // IB_SN_SANDWICH, _UNIFORM, _FAIR
    static const char *const rule_names[] = {"mean", "sum"};                        // IB_SN_MEAN, IB_SN_SUM
    int sampling;
    ib_status s = ib_api_choose("sampling", o->sampling, sampling_names, 3, &sampling);
    if (s) return s;
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    if ((s = ib_api_train_cfg(&o->train, &c.base))) return s;
    c.base.arch = NULL;
    c.base.init = o->train.init;   // a supernet of the same space to start from
    if (o->train.init && o->train.resume)
        return ib_fail(IB_ERR_ARG, "init and resume: a resumed supernet continues its own weights");
    c.space = o->space;
    c.sampling = sampling;
    c.n_random = o->paths;
    c.op_ramp = o->op_ramp;
    if (!(o->op_ramp >= 0)) return ib_fail(IB_ERR_ARG, "op_ramp must not be negative");
    if (o->op_ramp > 0 && sampling == IB_SN_FAIR)
        return ib_fail(IB_ERR_ARG, "op_ramp is uniform's and sandwich's (fair sampling permutes op types per layer)");
    if (o->path_grads) {
        if ((s = ib_api_choose("path_grads", o->path_grads, rule_names, 2, &c.path_grads))) return s;
        if (sampling != IB_SN_FAIR)
            return ib_fail(IB_ERR_ARG, "path_grads is fair sampling's (sandwich sums its paths' gradients, uniform runs one)");
    }
    c.kd = o->kd;
    c.holdout = o->holdout;
    c.calib_batches = o->calib_batches;
    const char *task = o->train.task ? o->train.task : "classify";
    if (!strcmp(task, "detect")) {
        ib_ssd_cfg ssd;
        if ((s = ib_api_ssd_cfg(&o->train, o->train.classes, &ssd)) || (s = ib_sn_task_detect(&c.task, &ssd))) return s;
    } else if (!strcmp(task, "segment")) {   // one head at res x res, as `ibnas train --task segment` builds it
        ib_seg_head_cfg hc;
        if ((o->train.seg_height && o->train.seg_height != c.base.res) || (o->train.seg_width && o->train.seg_width != c.base.res))
            return ib_fail(IB_ERR_ARG, "a segmentation supernet trains and scores at res x res (--res %d), not %dx%d",
                           c.base.res, o->train.seg_width, o->train.seg_height);
        if ((s = ib_api_seg_head_cfg(&o->train, &hc)) ||
            (s = ib_sn_task_segment(&c.task, &hc, o->train.seg_aug, o->train.class_weights)))
            return s;
    } else if (strcmp(task, "classify"))
        return ib_fail(IB_ERR_ARG, "supernet task '%s' is not one of classify, detect, segment", task);
    ib_sn_train_result res;
    s = ib_train_supernet_classify(&c, &res);
    if (c.task) c.task->free(c.task);
    ib_api_train_report(&res.base, &r->train);
    r->smallest_top1 = res.smallest_top1;
    return s;
}

ib_status ib_supernet_open(ib_supernet **out, const char *path) {
    if (!out || !path) return ib_fail(IB_ERR_ARG, "ib_supernet_open: a handle and a path are needed");
    *out = NULL;
    ib_supernet *sn = calloc(1, sizeof *sn);
    if (!sn) return ib_fail(IB_ERR_NOMEM, "out of memory for a supernet");
    ib_status s = ib_supernet_load(sn, path);
    if (s) {
        free(sn);
        return s;
    }
    *out = sn;
    return IB_OK;
}

void ib_supernet_close(ib_supernet *sn) {
    if (!sn) return;
    ib_supernet_free(sn);
    free(sn);
}

int ib_supernet_classes(const ib_supernet *sn) { return sn->base.classes; }
int ib_supernet_input_size(const ib_supernet *sn) { return sn->space.input; }

void ib_supernet_eval_opts_default(ib_supernet_eval_opts *o) {
    ib_sn_eval_cfg c;
    ib_sn_eval_cfg_default(&c);
    memset(o, 0, sizeof *o);
    o->calib_batches = c.calib_batches;
    o->calib_batch = c.calib_batch;
    o->batch = c.batch;
    o->workers = c.workers;
}

// The arch's choice vector in the supernet's space (malloc'd).
static ib_status arch_choice(ib_supernet *sn, const char *spec, int **choice) {
    *choice = NULL;
    if (!spec) return ib_fail(IB_ERR_ARG, "no arch given");
    ib_arch a;
    memset(&a, 0, sizeof a);
    ib_status s = spec[0] == '{' ? ib_arch_parse(&a, spec, "arch") : ib_arch_load(&a, spec);
    if (s) return s;
    if (!(*choice = malloc(sizeof(int) * (size_t)ib_space_genes(&sn->space))))
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s) s = ib_space_check(&sn->space, &a, spec[0] == '{' ? "arch" : spec, *choice);
    ib_arch_free(&a);
    if (s) {
        free(*choice);
        *choice = NULL;
    }
    return s;
}

// The BN recalibration data: o->calib, else the training data the supernet records less its held-out part;
// opened as the task's (NULL: classification's). *base (may be NULL) must be closed after *calib.
static ib_status open_calib(ib_supernet *sn, ib_sn_task *t, const ib_supernet_eval_opts *o, ib_dataset **base,
                            ib_dataset **calib) {
    *base = *calib = NULL;
    if (o->calib) return t ? t->open(t, calib, o->calib, IB_DS_AUTO, "train") : ib_open_labelled(calib, o->calib, IB_DS_AUTO, "train");
    ib_status s = ib_supernet_calib_data(sn, t, base, calib);
    if (!s && !*calib) s = ib_fail(IB_ERR_ARG, "the supernet records no training data: give calibration data (--calib)");
    return s;
}

static void eval_cfg(const ib_supernet_eval_opts *o, ib_sn_eval_cfg *c) {
    ib_sn_eval_cfg_default(c);
    c->res = o->res;
    c->batch = o->batch;
    c->workers = o->workers;
    c->calib_batches = o->calib_batches;
    c->calib_batch = o->calib_batch;
    c->calib_seed = o->calib_seed;
    c->progress = o->progress;
}

// Recalibrates the arch's path (and evaluates it on ds when given).
static ib_status recal_eval(ib_supernet *sn, const int *choice, ib_dataset *ds, const ib_supernet_eval_opts *o,
                            ib_cls_metrics *m) {
    ib_dataset *base, *calib;
    ib_status s = open_calib(sn, NULL, o, &base, &calib);
    if (!s) {
        ib_sn_eval_cfg c;
        eval_cfg(o, &c);
        s = ib_supernet_eval_classify(sn, choice, calib, ds, &c, m);
    }
    if (calib != base) ib_dataset_close(calib);
    ib_dataset_close(base);
    return s;
}

ib_status ib_supernet_evaluate(ib_supernet *sn, const char *arch, ib_dataset *ds, const ib_supernet_eval_opts *o,
                               ib_eval_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_supernet_evaluate: no report given");
    memset(r, 0, sizeof *r);
    if (!sn || !ds) return ib_fail(IB_ERR_ARG, "ib_supernet_evaluate: a supernet and a dataset are needed");
    ib_supernet_eval_opts d;
    if (!o) ib_supernet_eval_opts_default(&d), o = &d;
    if (!ds->has_labels) return ib_fail(IB_ERR_FORMAT, "%s: has no class labels to evaluate on", ib_dataset_path(ds));
    if (sn->task[0] && strcmp(sn->task, "classify"))   // its classifier never trained
        return ib_fail(IB_ERR_ARG, "a supernet trained for %s: its archs are scored with its %s head by "
                       "ib_supernet_evaluate_task (what ibnas supernet eval runs for it)",
                       sn->task, sn->task);
    int *choice;
    ib_status s = arch_choice(sn, arch, &choice);
    if (s) return s;
    ib_cls_metrics m;
    s = recal_eval(sn, choice, ds, o, &m);
    free(choice);
    if (s) return s;
    r->images = m.images;
    r->top1 = m.top1;
    r->top5 = m.top5;
    r->loss = m.loss;
    r->classes = m.n_classes;
    ib_cls_metrics_free(&m);
    return IB_OK;
}

ib_status ib_supernet_extract_model(ib_supernet *sn, const char *arch, const ib_supernet_eval_opts *o, ib_model **out) {
    if (!out || !sn) return ib_fail(IB_ERR_ARG, "ib_supernet_extract_model: a supernet and a handle are needed");
    *out = NULL;
    ib_supernet_eval_opts d;
    if (!o) ib_supernet_eval_opts_default(&d), o = &d;
    int *choice;
    ib_status s = arch_choice(sn, arch, &choice);
    if (s) return s;
    ib_model *m = calloc(1, sizeof *m);
    if (!m) s = ib_fail(IB_ERR_NOMEM, "out of memory for a model");
    if (!s) s = recal_eval(sn, choice, NULL, o, NULL);
    if (!s) s = ib_supernet_extract(sn, choice, &m->net);
    if (!s) m->net.arch.input = o->res > 0 ? o->res : sn->space.input;
    free(choice);
    if (s) {
        if (m && m->net.blocks) ib_net_free(&m->net);
        free(m);
        return s;
    }
    *out = m;
    return IB_OK;
}

// A detection or segmentation supernet's task (*t; a classification supernet is refused with `cls_hint`) and the
// arch's path (*choice) with its BN and then the shared head's recalibrated as supernet eval does, evaluated on ds
// when given (m). fn names the caller in messages. On failure *t may be set (free it).
static ib_status task_path(ib_supernet *sn, const char *arch, ib_dataset *ds, const ib_supernet_eval_opts *o,
                           const char *fn, const char *cls_hint, ib_sn_task **t, int **choice, double m[IB_SN_METRICS]) {
    *t = NULL, *choice = NULL;
    if (!sn->path) return ib_fail(IB_ERR_ARG, "%s: the supernet was not opened from a file", fn);
    ib_status s = ib_sn_task_open(t, sn, sn->path);
    if (!s && !*t) s = ib_fail(IB_ERR_ARG, "%s: a classification supernet: %s", sn->path, cls_hint);
    ib_dataset *base = NULL, *calib = NULL;
    if (!s && !(s = arch_choice(sn, arch, choice)) && !(s = open_calib(sn, *t, o, &base, &calib))) {
        ib_sn_eval_cfg c;
        eval_cfg(o, &c);
        s = ib_supernet_eval_task(sn, *t, *choice, calib, ds, &c, m);
    }
    if (calib != base) ib_dataset_close(calib);
    ib_dataset_close(base);
    return s;
}

ib_status ib_supernet_extract_task(ib_supernet *sn, const char *arch, const ib_supernet_eval_opts *o, const char *out) {
    if (!sn || !out || !out[0]) return ib_fail(IB_ERR_ARG, "ib_supernet_extract_task: a supernet and an output are needed");
    ib_supernet_eval_opts d;
    if (!o) ib_supernet_eval_opts_default(&d), o = &d;
    ib_sn_task *t;
    int *choice;
    double m[IB_SN_METRICS];
    ib_net net;
    memset(&net, 0, sizeof net);
    ib_status s = task_path(sn, arch, NULL, o, "ib_supernet_extract_task",
                            "ib_supernet_extract_model (ibnas extract) writes its archs as classifiers", &t, &choice, m);
    if (!s && !(s = ib_supernet_extract(sn, choice, &net)))
        s = t->save_net(t, &net, o->res > 0 ? o->res : sn->space.input, out);
    if (net.blocks) ib_net_free(&net);
    free(choice);
    if (t) t->free(t);
    return s;
}

const char *ib_supernet_task(const ib_supernet *sn) { return sn && sn->task[0] ? sn->task : "classify"; }

ib_status ib_supernet_evaluate_task(ib_supernet *sn, const char *arch, ib_dataset *ds, const ib_supernet_eval_opts *o,
                                    ib_supernet_task_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_supernet_evaluate_task: no report given");
    memset(r, 0, sizeof *r);
    r->metrics[0] = r->metrics[1] = r->metrics[2] = r->loss = -1;
    if (!sn || !ds) return ib_fail(IB_ERR_ARG, "ib_supernet_evaluate_task: a supernet and a dataset are needed");
    ib_supernet_eval_opts d;
    if (!o) ib_supernet_eval_opts_default(&d), o = &d;
    ib_sn_task *t;
    int *choice;
    double m[IB_SN_METRICS];
    ib_status s = task_path(sn, arch, ds, o, "ib_supernet_evaluate_task",
                            "ib_supernet_evaluate (ibnas supernet eval) scores its archs by top-1", &t, &choice, m);
    if (!s) memcpy(r->metrics, m, sizeof r->metrics), r->loss = m[IB_SN_LOSS];
    if (t) {
        snprintf(r->task, sizeof r->task, "%s", t->name);
        sscanf(t->metrics, "%15[^,],%15[^,],%15s", r->names[0], r->names[1], r->names[2]);
        t->free(t);
    }
    free(choice);
    return s;
}
