// api: the public API of include/ibnas.h over the internals. Thin on purpose: each function checks what
// comes from the caller, maps the public types onto the internal ones and calls what core, layers, data
// and tasks already do. Nothing here is used by the library itself; the command and the examples use it.
#include "api/api.h"
#include "tasks/detect.h"

#include <stdlib.h>
#include <string.h>

const char *ib_version(void) { return IBNAS_VERSION_STRING; }

const char *ib_strerror(ib_status code) { return ib_status_name(code); }

// ---------------------------------------------------------------------------------------------
// Models


static ib_status model_new(ib_model **out, ib_model **m) {
    if (!out) return ib_fail(IB_ERR_ARG, "ib_model: no place given for the handle");
    *out = NULL;
    if (!(*m = calloc(1, sizeof **m))) return ib_fail(IB_ERR_NOMEM, "out of memory for a model");
    return IB_OK;
}

ib_status ib_model_create(ib_model **out, const char *arch, int classes, uint64_t seed) {
    ib_model *m;
    ib_status s = model_new(out, &m);
    if (s) return s;
    if (!arch || !arch[0]) {
        free(m);
        return ib_fail(IB_ERR_ARG, "ib_model_create: no arch given");
    }
    ib_arch a;
    memset(&a, 0, sizeof a);
    if ((s = ib_arch_resolve(&a, arch, classes))) {
        ib_arch_free(&a);
        free(m);
        return s;
    }
    s = ib_net_build(&m->net, &a);
    ib_arch_free(&a);
    if (s) {
        ib_net_free(&m->net);
        free(m);
        return s;
    }
    ib_net_init_weights(&m->net, seed);
    *out = m;
    return IB_OK;
}

ib_status ib_model_load(ib_model **out, const char *path) {
    ib_model *m;
    ib_status s = model_new(out, &m);
    if (s) return s;
    if (!path) {
        free(m);
        return ib_fail(IB_ERR_ARG, "ib_model_load: no path given");
    }
    char task[32];
    if ((s = ib_ckpt_task(path, task, sizeof task))) {
        free(m);
        return s;
    }
    if (!strcmp(task, "detect")) {
        if (!(m->det = calloc(1, sizeof *m->det))) s = ib_fail(IB_ERR_NOMEM, "out of memory for a model");
        if (!s) s = ib_detector_load(m->det, path);
    } else if (ib_seg_is_checkpoint(path)) {   // a segmentation network: backbone and head
        if (!(m->seg = calloc(1, sizeof *m->seg))) s = ib_fail(IB_ERR_NOMEM, "out of memory for a model");
        if (!s) s = ib_seg_load(&m->net, m->seg, path);
    } else if (strcmp(task, "classify"))
        s = ib_fail(IB_ERR_FORMAT, "%s: task \"%s\" is not one this build loads (classify, detect, segment)", path, task);
    else
        s = ib_ckpt_load(&m->net, path);
    if (s) {
        free(m->det);
        free(m->seg);
        free(m);
        return s;
    }
    *out = m;
    return IB_OK;
}

ib_status ib_model_save(const ib_model *m, const char *path) {
    if (!m || !path) return ib_fail(IB_ERR_ARG, "ib_model_save: a model and a path are needed");
    if (m->det) return ib_detector_save(m->det, path, NULL, NULL);
    if (m->seg) return ib_seg_save(&m->net, m->seg, path, NULL, NULL);
    return ib_ckpt_save(&m->net, path, NULL, NULL);
}

void ib_model_free(ib_model *m) {
    if (!m) return;
    ib_ctx_free(m->ctx);
    if (m->det) ib_detector_free(m->det);
    free(m->det);
    if (m->net.blocks) ib_net_free(&m->net);
    free(m->seg);
    free(m);
}

ib_net *ib_api_model_net(const ib_model *m) { return m->det ? &m->det->net : (ib_net *)&m->net; }
const char *ib_model_name(const ib_model *m) { return ib_api_model_net(m)->arch.name; }
// A detector's classes are its head's (objects, without the background).
int ib_model_classes(const ib_model *m) { return m->det ? m->det->cfg.classes : m->net.arch.classes; }
const char *ib_model_class_name(const ib_model *m, int c) {
    const ib_net *n = m ? ib_api_model_net(m) : NULL;
    return n && c >= 0 && c < n->n_class_names ? n->class_names[c] : NULL;
}
int ib_model_input_size(const ib_model *m) { return ib_api_model_net(m)->arch.input; }
int64_t ib_model_param_count(const ib_model *m) {
    return ib_net_param_count(ib_api_model_net(m)) + (m->det ? m->det->ps.numel_params : 0);
}
char *ib_model_arch_json(const ib_model *m) { return ib_arch_to_json(&ib_api_model_net(m)->arch); }

ib_status ib_model_forward(ib_model *m, const float *x, int n, int h, int w, float *logits) {
    if (!m || !x || !logits) return ib_fail(IB_ERR_ARG, "ib_model_forward: model, input and output are needed");
    if (m->det) return ib_fail(IB_ERR_ARG, "ib_model_forward: %s is a detection model (ib_eval_detect runs it)", ib_model_name(m));
    if (n < 1 || h < 8 || w < 8)
        return ib_fail(IB_ERR_ARG, "ib_model_forward: %d images of %dx%d; at least one image of 8x8 is needed", n, h,
                       w);
    if (m->seg)
        return ib_fail(IB_ERR_ARG, "ib_model_forward: %s is a segmentation model (ib_eval_segment scores it)",
                       m->net.arch.name);
    if (!m->ctx) m->ctx = ib_ctx_new();
    ib_ctx *ctx = m->ctx;
    ib_ctx_reset(ctx);
    ctx->recording = 0;
    ctx->training = 0;
    ib_tensor xt;
    ib_tensor_init(&xt, (float *)x, 4, (int[]){n, 3, h, w});   // read only: nothing is recorded
    ib_tensor *z = ib_net_forward(ctx, &m->net, &xt);
    memcpy(logits, z->data, sizeof(float) * (size_t)n * (size_t)m->net.arch.classes);
    ib_ctx_reset(ctx);
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Data

ib_status ib_dataset_load(ib_dataset **ds, const char *path, const char *split) {
    if (!ds || !path) return ib_fail(IB_ERR_ARG, "ib_dataset_load: a handle and a path are needed");
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = IB_DS_AUTO;
    o.split = split;
    o.ignore_index = 0;   // each source's own: a pack's attribute, CamVid's classes.txt (void 11), else 255
    return ib_dataset_open(ds, path, &o);
}

ib_status ib_dataset_synth(ib_dataset **ds, int n, int size, uint64_t seed) {
    if (!ds) return ib_fail(IB_ERR_ARG, "ib_dataset_synth: no place given for the handle");
    *ds = NULL;
    if (n < 1 || size < 8 || size > 4096)
        return ib_fail(IB_ERR_ARG, "synth: %d scenes of %d pixels; n must be positive and size within 8..4096", n,
                       size);
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = IB_DS_SYNTH;
    o.ignore_index = 255;
    o.synth_n = n;
    o.synth_size = size;
    o.synth_seed = seed;
    return ib_dataset_open(ds, "synth", &o);
}

ib_status ib_api_sample_input(ib_sample *s, ib_crop_mode crop, int oh, int ow, float *x) {
    ib_aug_opts a;
    ib_aug_opts_default(&a, oh, ow);
    a.crop = crop;
    ib_rng r;
    ib_rng_seed(&r, 0, 0);   // centre crop and resize draw nothing
    ib_status st = ib_aug_apply(&a, s, &r);
    if (!st) ib_sample_normalize(s, a.mean, a.std, x);
    ib_sample_free(s);
    return st;
}

ib_status ib_dataset_input(ib_dataset *ds, int64_t i, int res, float *x, int *label) {
    if (!ds || !x || res < 1)
        return ib_fail(IB_ERR_ARG, "ib_dataset_input: a dataset, an output and res >= 1 are needed");
    if (i < 0 || i >= ib_dataset_size(ds))
        return ib_fail(IB_ERR_ARG, "%s: image %lld out of range (%lld images)", ib_dataset_path(ds), (long long)i,
                       (long long)ib_dataset_size(ds));
    ib_sample s;
    memset(&s, 0, sizeof s);
    ib_status st = ib_dataset_get(ds, i, &s);
    if (st) {
        ib_sample_free(&s);
        return st;
    }
    if (label) *label = s.label;
    return ib_api_sample_input(&s, IB_CROP_CENTER, res, res, x);
}

ib_status ib_image_load(const char *path, int res, float *x) {
    if (!path || !x || res < 1) return ib_fail(IB_ERR_ARG, "ib_image_load: a path, an output and res >= 1 are needed");
    ib_sample s;
    memset(&s, 0, sizeof s);
    s.label = -1;
    ib_status st = ib_decode_file(path, &s.rgb, &s.h, &s.w);
    if (st) return st;
    return ib_api_sample_input(&s, IB_CROP_CENTER, res, res, x);
}

ib_status ib_array_load(const char *path, const char *name, float **data, int *ndim, int64_t shape[IB_ARRAY_MAX_DIMS]) {
    if (!path || !name || !data || !ndim || !shape) return ib_fail(IB_ERR_ARG, "ib_array_load: missing argument");
    *data = NULL;
    *ndim = 0;
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    if (!ib_h5_exists(f, name)) s = ib_fail(IB_ERR_NOTFOUND, "%s: no dataset /%s", path, name);
    if (!s) s = ib_h5_shape(f, name, ndim, shape);
    int64_t n = 1;
    for (int d = 0; !s && d < *ndim; d++) n *= shape[d];
    float *x = NULL;
    if (!s && !(x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1))))
        s = ib_fail(IB_ERR_NOMEM, "%s: out of memory for /%s (%lld values)", path, name, (long long)n);
    if (!s) s = ib_h5_read_f32(f, name, x, n);
    ib_h5_close(f);
    if (s) {
        free(x);
        *ndim = 0;
        return s;
    }
    *data = x;
    return IB_OK;
}

ib_status ib_array_save(const char *path, const char *name, const float *data, int ndim, const int64_t *shape) {
    if (!path || !name || !data || !shape || ndim < 0 || ndim > IB_ARRAY_MAX_DIMS)
        return ib_fail(IB_ERR_ARG, "ib_array_save: missing argument or rank %d outside 0..%d", ndim, IB_ARRAY_MAX_DIMS);
    int sh[IB_ARRAY_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || shape[d] > INT32_MAX)
            return ib_fail(IB_ERR_ARG, "%s: /%s dimension %d has size %lld", path, name, d, (long long)shape[d]);
        sh[d] = (int)shape[d];
    }
    ib_h5 *f;
    ib_status s = ib_h5_create(&f, path);
    if (s) return s;
    if ((s = ib_h5_write_f32(f, name, data, ndim, sh))) {
        ib_h5_abort(f);
        return s;
    }
    return ib_h5_close(f);
}

// ---------------------------------------------------------------------------------------------
// Training

void ib_train_opts_default(ib_train_opts *o) {
    ib_train_cfg c;
    ib_train_cfg_default(&c);
    memset(o, 0, sizeof *o);
    o->arch = NULL;   // mobilenetv2, or init's network
    o->epochs = c.epochs;
    o->batch = c.batch;
    o->res = c.res;
    o->lr = c.lr;
    o->optimizer = "sgd";
    o->momentum = c.optim.momentum;
    o->nesterov = c.optim.nesterov;
    o->weight_decay = c.optim.weight_decay;
    o->no_decay_bn_bias = c.optim.no_decay_bn_bias;
    o->schedule = "cosine";
    o->warmup_epochs = c.warmup_epochs;
    o->step_gamma = c.step_gamma;
    o->step_epochs = c.step_epochs;
    o->label_smoothing = c.label_smoothing;
    o->ema = c.ema;
    o->clip = c.clip;
    o->aug = "padcrop";
    o->pad = c.pad;
    o->seed = c.seed;
    o->threads = c.threads;
    o->workers = c.workers;
    o->progress = c.progress;
    o->task = "classify";
    o->seg_head = "deeplab";
    o->seg_aug = "flip";
    ib_api_detect_opts_default(o);
}

ib_status ib_api_choose(const char *field, const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; v && i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return IB_OK;
        }
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        size_t k = strlen(list);
        snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", names[i]);
    }
    return ib_fail(IB_ERR_ARG, "%s '%s' is not one of %s", field, v ? v : "(null)", list);
}

ib_status ib_api_train_cfg(const ib_train_opts *o, ib_train_cfg *cfg) {
    static const char *const opt_names[] = {"sgd", "rmsprop", "rmsprop_torch", "adamw"};
    static const char *const sch_names[] = {"constant", "cosine", "step"};   // ib_lr_kind's order
    static const char *const aug_names[] = {"none", "padcrop", "rrc"};       // ib_aug_kind's order
    int oi, si, ai;
    ib_status s;
    if ((s = ib_api_choose("optimizer", o->optimizer, opt_names, 4, &oi)) ||
        (s = ib_api_choose("schedule", o->schedule, sch_names, 3, &si)) || (s = ib_api_choose("aug", o->aug, aug_names, 3, &ai)))
        return s;

    ib_train_cfg c;
    ib_train_cfg_default(&c);
    c.arch = o->arch ? o->arch : o->init ? NULL : c.arch;   // with init and no arch: init's network
    c.init = o->init;
    c.data = o->data;
    c.val = o->val;
    c.out = o->out;
    c.resume = o->resume;
    c.log = o->log;
    c.classes = o->classes;
    c.epochs = o->epochs;
    c.batch = o->batch;
    c.res = o->res;
    c.lr = o->lr;
    // As `ibnas train` sets them: momentum for sgd and rmsprop, Nesterov for sgd only, the weight decay
    // always (coupled for sgd and rmsprop, decoupled for adamw).
    ib_optim_kind kind = oi == 3 ? IB_OPTIM_ADAMW : oi == 0 ? IB_OPTIM_SGD : IB_OPTIM_RMSPROP;
    c.optim = ib_optim_cfg_default(kind, oi == 2);
    if (kind != IB_OPTIM_ADAMW) c.optim.momentum = o->momentum;
    c.optim.nesterov = kind == IB_OPTIM_SGD && o->nesterov && o->momentum > 0;
    c.optim.weight_decay = o->weight_decay;
    c.optim.no_decay_bn_bias = o->no_decay_bn_bias;
    c.schedule = (ib_lr_kind)si;
    c.warmup_epochs = o->warmup_epochs;
    c.step_gamma = o->step_gamma;
    c.step_epochs = o->step_epochs;
    c.label_smoothing = o->label_smoothing;
    c.ema = o->ema;
    c.clip = o->clip;
    c.aug = (ib_aug_kind)ai;
    c.pad = o->pad;
    c.seed = o->seed;
    c.threads = o->threads;
    c.workers = o->workers;
    c.progress = o->progress;
    c.max_steps = o->max_steps;
    c.sync_bn = o->sync_bn;
    *cfg = c;
    return IB_OK;
}

void ib_api_train_report(const ib_train_result *res, ib_train_report *r) {
    r->epochs_done = res->epochs_done;
    r->steps = res->steps;
    r->last_loss = res->last_loss;
    r->val_top1 = res->val_top1;
    r->val_top5 = res->val_top5;
    r->wall_s = res->wall_s;
    r->img_per_s = res->img_per_s;
    r->interrupted = res->interrupted;
}

// ---------------------------------------------------------------------------------------------
// Segmentation

ib_status ib_api_seg_head_fields(const char *kind, int high_stride, int low_stride, int width, int repeats,
                                 ib_seg_head_cfg *h) {
    ib_seg_head_cfg_default(h);
    static const char *const kinds[] = {"deeplab", "bifpn"};
    int k;
    ib_status s;
    if (kind && (s = ib_api_choose("seg_head", kind, kinds, 2, &k))) return s;
    if (width < 0 || repeats < 0 || low_stride < 0 || high_stride < 0)
        return ib_fail(IB_ERR_ARG, "seg_head_width %d, seg_repeats %d, strides %d, %d: none may be negative", width,
                       repeats, low_stride, high_stride);
    if (kind) snprintf(h->kind, sizeof h->kind, "%s", kind);
    if (high_stride) h->high_stride = high_stride;
    if (low_stride) h->low_stride = low_stride;
    if (width) h->aspp = h->decoder = h->width = width;
    if (repeats) h->repeats = repeats;
    return IB_OK;
}

ib_status ib_api_seg_head_cfg(const ib_train_opts *o, ib_seg_head_cfg *h) {
    return ib_api_seg_head_fields(o->seg_head, o->seg_high_stride, o->seg_low_stride, o->seg_head_width,
                                  o->seg_repeats, h);
}

static ib_status api_train_segment(const ib_train_opts *o, const ib_train_cfg *c, ib_train_report *r) {
    ib_seg_train_cfg sc;
    ib_seg_train_cfg_default(&sc);
    sc.base = *c;
    sc.base.label_smoothing = 0;
    ib_status s = ib_api_seg_head_cfg(o, &sc.head);
    if (s) return s;
    sc.h = o->seg_height, sc.w = o->seg_width;
    sc.aug = o->seg_aug ? o->seg_aug : "flip";
    sc.class_weights = o->class_weights;
    sc.fast_argmax = o->fast_argmax;
    ib_seg_train_result res;
    s = ib_train_segment(&sc, &res);
    ib_api_train_report(&res.base, r);
    r->val_miou = res.val_miou;
    r->val_pixel_acc = res.val_pixel_acc;
    return s;
}

void ib_seg_eval_opts_default(ib_seg_eval_opts *o) {
    ib_seg_eval_cfg c;
    ib_seg_eval_cfg_default(&c);
    memset(o, 0, sizeof *o);
    o->batch = c.batch;
    o->workers = c.workers;
}

// The metrics' counts and arrays into a report, which owns the arrays from then on.
static void seg_report(const ib_seg_metrics *mt, ib_seg_eval_report *r) {
    r->images = mt->images;
    r->pixels = mt->pixels;
    r->classes = mt->classes;
    r->miou = mt->miou;
    r->pixel_acc = mt->pixel_acc;
    r->iou = mt->iou;
    r->confusion = mt->conf;
}

ib_status ib_eval_segment(ib_model *m, ib_dataset *ds, const ib_seg_eval_opts *opts, ib_seg_eval_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_eval_segment: no report given");
    memset(r, 0, sizeof *r);
    r->loss = -1;
    if (!m || !ds) return ib_fail(IB_ERR_ARG, "ib_eval_segment: a model and a dataset are needed");
    if (!m->seg) return ib_fail(IB_ERR_ARG, "ib_eval_segment: %s is not a segmentation model", m->net.arch.name);
    ib_seg_eval_opts d;
    if (!opts) ib_seg_eval_opts_default(&d), opts = &d;
    if (opts->batch < 1 || opts->height < 0 || opts->width < 0 || (opts->height && opts->height < 16) ||
        (opts->width && opts->width < 16))
        return ib_fail(IB_ERR_ARG, "ib_eval_segment: batch %d, size %dx%d (batch >= 1, sizes 0 or >= 16)", opts->batch,
                       opts->width, opts->height);
    ib_seg_eval_cfg c;
    ib_seg_eval_cfg_default(&c);
    c.h = opts->height, c.w = opts->width;
    c.batch = opts->batch;
    c.workers = opts->workers;
    c.fast_argmax = opts->fast_argmax;
    c.progress = opts->progress;
    c.pred_out = opts->pred_out;
    if (!m->ctx) m->ctx = ib_ctx_new();
    c.ctx = m->ctx;
    ib_seg_metrics mt;
    memset(&mt, 0, sizeof mt);
    ib_status s = ib_eval_segment_net(&m->net, m->seg, ds, &c, &mt);
    seg_report(&mt, r);
    r->loss = mt.loss;
    if (mt.images) r->head_ms = 1e3 * mt.head_s / (double)mt.images, r->total_ms = 1e3 * mt.total_s / (double)mt.images;
    return s;
}

ib_status ib_miou_dirs(const char *gt_dir, const char *pred_dir, int classes, int ignore_index,
                       ib_seg_eval_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_miou_dirs: no report given");
    memset(r, 0, sizeof *r);
    r->loss = -1;
    if (!gt_dir || !pred_dir) return ib_fail(IB_ERR_ARG, "ib_miou_dirs: two folders are needed");
    ib_seg_metrics mt;
    ib_status s = ib_seg_miou_dirs(gt_dir, pred_dir, classes, ignore_index, &mt);
    seg_report(&mt, r);
    return s;
}

void ib_seg_eval_report_free(ib_seg_eval_report *r) {
    if (!r) return;
    free(r->iou);
    free(r->confusion);
    memset(r, 0, sizeof *r);
}

ib_status ib_train(const ib_train_opts *o, ib_train_report *r) {
    if (!o || !r) return ib_fail(IB_ERR_ARG, "ib_train: options and a report are needed");
    memset(r, 0, sizeof *r);
    r->val_top1 = r->val_top5 = -1;
    if (!o->data || !o->out) return ib_fail(IB_ERR_ARG, "ib_train: data and out are required");
    r->val_miou = r->val_pixel_acc = -1;
    for (int i = 0; i < 12; i++) r->val_coco[i] = -1;
    static const char *const task_names[] = {"classify", "segment", "detect"};
    int task = 0;
    ib_status s = o->task ? ib_api_choose("task", o->task, task_names, 3, &task) : IB_OK;
    if (s) return s;
    ib_train_cfg c;
    if ((s = ib_api_train_cfg(o, &c))) return s;
    if (task == 1) return api_train_segment(o, &c, r);
    if (task == 2) return ib_api_train_detect(o, &c, r);
    ib_train_result res;
    s = ib_train_classify(&c, &res);
    ib_api_train_report(&res, r);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

void ib_eval_opts_default(ib_eval_opts *o) {
    ib_eval_cfg c;
    ib_eval_cfg_default(&c);
    memset(o, 0, sizeof *o);
    o->res = 0;
    o->batch = c.batch;
    o->workers = c.workers;
}

ib_status ib_eval(ib_model *m, ib_dataset *ds, const ib_eval_opts *opts, ib_eval_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_eval: no report given");
    memset(r, 0, sizeof *r);
    if (!m || !ds) return ib_fail(IB_ERR_ARG, "ib_eval: a model and a dataset are needed");
    if (m->seg) return ib_fail(IB_ERR_ARG, "ib_eval: %s is a segmentation model (ib_eval_segment scores it)", m->net.arch.name);
    if (m->det) return ib_fail(IB_ERR_ARG, "ib_eval: %s is a detection model (use ib_eval_detect)", ib_model_name(m));
    ib_eval_opts d;
    if (!opts) ib_eval_opts_default(&d), opts = &d;
    if (!ds->has_labels || ib_dataset_classes(ds) < 1)
        return ib_fail(IB_ERR_FORMAT, "%s: has no class labels to evaluate a classifier on", ib_dataset_path(ds));
    if (opts->batch < 1 || opts->res < 0 || (opts->res > 0 && opts->res < 8))
        return ib_fail(IB_ERR_ARG, "ib_eval: batch %d, res %d (batch >= 1, res 0 or >= 8)", opts->batch, opts->res);
    ib_eval_cfg c;
    ib_eval_cfg_default(&c);
    c.res = opts->res > 0 ? opts->res : m->net.arch.input;
    c.batch = opts->batch;
    c.workers = opts->workers;
    c.per_class = opts->per_class;
    c.progress = opts->progress;
    ib_cls_metrics mt;
    ib_status s = ib_eval_classify(&m->net, ds, &c, &mt);
    r->images = mt.images;
    r->top1 = mt.top1;
    r->top5 = mt.top5;
    r->loss = mt.loss;
    r->classes = mt.n_classes;
    r->per_class_total = mt.per_class_total;       // the report owns them now
    r->per_class_correct = mt.per_class_correct;
    return s;
}

void ib_eval_report_free(ib_eval_report *r) {
    if (!r) return;
    free(r->per_class_total);
    free(r->per_class_correct);
    memset(r, 0, sizeof *r);
}
