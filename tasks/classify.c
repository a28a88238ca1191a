// Classification: the training loop and top-1/top-5 evaluation.
//
// Resuming is exact: the data order and every augmentation draw are functions of (seed, epoch, index)
// (data/loader.h), and the checkpoint carries everything else that changes during a run (weights, BN
// statistics, optimizer and EMA state, the step, the batch reached within the epoch, the dropout RNG and
// the epoch's running loss), so a resumed run computes the same numbers as one that never stopped.
#include "tasks/tasks.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const float imagenet_mean[3] = {0.485f * 255, 0.456f * 255, 0.406f * 255};
static const float imagenet_std[3] = {0.229f * 255, 0.224f * 255, 0.225f * 255};

void ib_cls_metrics_free(ib_cls_metrics *m) {
    free(m->per_class_total);
    free(m->per_class_correct);
    memset(m, 0, sizeof *m);
}

void ib_eval_cfg_default(ib_eval_cfg *c) {
    memset(c, 0, sizeof *c);
    c->res = 224;
    c->batch = 100;
    c->workers = 2;
    memcpy(c->mean, imagenet_mean, sizeof c->mean);
    memcpy(c->std, imagenet_std, sizeof c->std);
}

// Cross-entropy of one row and whether the label is in the top 1 / top 5 (ranked by how many logits
// are strictly greater, so ties count in the label's favour).
static double row_stats(const float *z, int c, int label, int *in1, int *in5) {
    double mx = z[0];
    for (int j = 1; j < c; j++) mx = z[j] > mx ? z[j] : mx;
    double s = 0;
    int greater = 0;
    for (int j = 0; j < c; j++) {
        s += exp((double)z[j] - mx);
        greater += z[j] > z[label];
    }
    *in1 = greater < 1;
    *in5 = greater < 5;
    return log(s) + mx - z[label];
}

// done0: where this timing started (a resumed epoch starts part-way), so the ETA uses the measured rate.
void ib_progress_line(const char *what, int64_t done, int64_t done0, int64_t total, double t0, const char *extra) {
    static int tty = -1;   // into a file or pipe: only the last state of each bar, as one line
    if (tty < 0) tty = isatty(2);
    if (!tty && done != total) return;
    double dt = ib_time_s() - t0;
    double eta = done > done0 ? dt * (double)(total - done) / (double)(done - done0) : 0;
    int width = 24, fill = total > 0 ? (int)(width * done / total) : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "%s%s [%s] %lld/%lld %s ETA %dm%02ds  ", tty ? "\r" : "", what, bar, (long long)done, (long long)total, extra,
            (int)eta / 60, (int)eta % 60);
    fflush(stderr);
}

// Resuming: the log keeps the rows of the epochs the checkpoint holds and loses any later ones (a run
// killed between an epoch's row and its checkpoint would otherwise show that epoch twice). Rewritten
// through PATH.tmp and a rename, as checkpoints are.
ib_status ib_log_trim(const char *path, int64_t epochs_done) {
    FILE *in = fopen(path, "r");
    if (!in) return IB_OK;
    char tmp[4200], line[4096];
    ib_status s;
    FILE *out = ib_wfile_open(path, tmp, sizeof tmp, &s);
    if (!out) {
        fclose(in);
        return s;
    }
    int header = 1, dropped = 0;
    while (fgets(line, sizeof line, in)) {
        if (!header && strtol(line, NULL, 10) > epochs_done) {
            dropped++;
            continue;
        }
        header = 0;
        fputs(line, out);
    }
    int bad = ferror(in) != 0;
    fclose(in);
    if (bad || !dropped) {
        ib_wfile_discard(out, tmp);
        return bad ? ib_fail(IB_ERR_IO, "%s: cannot read the training log", path) : IB_OK;
    }
    return ib_wfile_commit(out, tmp, path);
}

ib_status ib_eval_classify(ib_net *net, ib_dataset *ds, const ib_eval_cfg *cfg, ib_cls_metrics *m) {
    memset(m, 0, sizeof *m);
    int classes = net->arch.classes;
    if (ib_dataset_classes(ds) > classes)
        return ib_fail(IB_ERR_ARG, "%s: %d classes, the network predicts %d", ib_dataset_path(ds), ib_dataset_classes(ds),
                       classes);
    m->n_classes = classes;
    if (cfg->per_class) {
        m->per_class_total = calloc((size_t)classes, sizeof(int64_t));
        m->per_class_correct = calloc((size_t)classes, sizeof(int64_t));
        if (!m->per_class_total || !m->per_class_correct) return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, cfg->res, cfg->res);
    lo.batch_size = cfg->batch;
    lo.shuffle = 0;
    lo.workers = cfg->workers;
    lo.want_boxes = 0;
    lo.want_masks = 0;
    lo.aug.crop = IB_CROP_CENTER;
    memcpy(lo.aug.mean, cfg->mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, cfg->std, sizeof lo.aug.std);
    ib_loader *l;
    ib_status s = ib_loader_open(&l, ds, &lo);
    if (s) return s;
    ib_ctx *ctx = cfg->ctx ? cfg->ctx : ib_ctx_new();
    ctx->recording = 0;
    ctx->training = 0;
    int64_t n1 = 0, n5 = 0, batches = ib_loader_batches(l), done = 0;
    double loss = 0, t0 = ib_time_s();
    ib_loader_start_epoch(l, 0);
    const ib_batch *b;
    while ((s = ib_loader_next(l, &b)) == IB_OK && b) {
        ib_ctx_reset(ctx);
        ib_tensor x;
        ib_batch_tensor(b, &x);
        ib_tensor *z = ib_net_forward(ctx, net, &x);
        for (int i = 0; i < b->n; i++) {
            int y = b->labels[i], in1, in5;
            IB_ASSERT(y >= 0 && y < classes, "label %d out of range", y);
            loss += row_stats(z->data + (int64_t)i * classes, classes, y, &in1, &in5);
            n1 += in1, n5 += in5;
            if (m->per_class_total) m->per_class_total[y]++, m->per_class_correct[y] += in1;
        }
        m->images += b->n;
        if (cfg->progress) ib_progress_line("eval", ++done, 0, batches, t0, "");
    }
    if (cfg->progress) fputc('\n', stderr);
    if (cfg->ctx) ib_ctx_reset(ctx);
    else ib_ctx_free(ctx);
    ib_loader_close(l);
    if (s) return s;
    if (m->images) {
        m->top1 = (double)n1 / (double)m->images;
        m->top5 = (double)n5 / (double)m->images;
        m->loss = loss / (double)m->images;
    }
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Training

void ib_train_cfg_default(ib_train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->arch = "mobilenetv2";
    c->epochs = 10;
    c->batch = 64;
    c->res = 64;
    c->lr = 0.1f;
    c->optim = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
    c->optim.momentum = 0.9f;
    c->optim.nesterov = 1;
    c->optim.weight_decay = 4e-5f;
    c->schedule = IB_LR_COSINE;
    c->warmup_epochs = 1;
    c->step_gamma = 0.97f;
    c->step_epochs = 2.4f;
    c->label_smoothing = 0.1f;
    c->aug = IB_AUG_PADCROP;
    c->pad = 4;
    memcpy(c->mean, imagenet_mean, sizeof c->mean);
    memcpy(c->std, imagenet_std, sizeof c->std);
    c->workers = 2;
    c->progress = 1;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

void ib_sigint_catch(struct sigaction *old) {
    struct sigaction sa;
    interrupted = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, old);
}
int ib_sigint_seen(void) { return interrupted != 0; }

typedef ib_train_state train_state;

// The settings a resumed run must share with the checkpoint's: with another batch, data set, learning rate,
// length (the schedule) or optimizer the result would be the numbers of neither run. Attributes of
// /train/state, as text, the flag that sets each beside it.
#define N_SETTINGS 5
static const char *const SETTING_ATTR[N_SETTINGS] = {"batch", "data", "lr", "epochs", "optimizer"};
static const char *const SETTING_FLAG[N_SETTINGS] = {"--batch", "--data", "--lr", "--epochs", "--optimizer"};

static void run_settings(const train_state *t, char v[N_SETTINGS][4096]) {
    const ib_train_cfg *c = t->cfg;
    char *real = c->data ? realpath(c->data, NULL) : NULL;   // the same data however the path was written
    snprintf(v[0], 4096, "%d", c->batch);
    snprintf(v[1], 4096, "%s", real ? real : c->data ? c->data : "");
    snprintf(v[2], 4096, "%.9g", c->lr);
    snprintf(v[3], 4096, "%d", c->epochs);
    snprintf(v[4], 4096, "%s", ib_optim_name(t->opt));
    free(real);
}

static ib_status settings_check(ib_h5 *f, const train_state *t) {
    char now[N_SETTINGS][4096];
    run_settings(t, now);
    for (int i = 0; i < N_SETTINGS; i++) {
        char *was = NULL;
        if (ib_h5_attr_str(f, "train/state", SETTING_ATTR[i], &was)) continue;   // a checkpoint from before they were kept
        ib_status s = strcmp(was, now[i]) ? ib_fail(IB_ERR_ARG, "%s: was trained with %s %s, this run has %s %s; resume with "
                                                   "the same %s (or start a new run)", ib_h5_path(f), SETTING_FLAG[i], was,
                                                   SETTING_FLAG[i], now[i], SETTING_FLAG[i])
                                           : IB_OK;
        free(was);
        if (s) return s;
    }
    return IB_OK;
}

ib_status ib_train_state_save(ib_h5 *f, void *user) {
    train_state *t = user;
    ib_status s = ib_optim_save(t->opt, f, "train/optim");
    if (!s && t->ema) s = ib_ema_save(t->ema, f, "train/ema");
    int64_t meta[6] = {t->epoch, t->batch_in_epoch, t->step, (int64_t)t->seed, (int64_t)t->dropout_rng->state,
                       (int64_t)t->dropout_rng->inc};
    if (!s) s = ib_h5_write_i64(f, "train/state", meta, 1, (int[]){6});
    double acc[2] = {t->epoch_loss, (double)t->epoch_images};
    if (!s) s = ib_h5_set_attr_f64(f, "train/state", "epoch_loss_sum", acc[0]);
    if (!s) s = ib_h5_set_attr_f64(f, "train/state", "epoch_images", acc[1]);
    if (t->cfg) {
        char now[N_SETTINGS][4096];
        run_settings(t, now);
        for (int i = 0; i < N_SETTINGS && !s; i++) s = ib_h5_set_attr_str(f, "train/state", SETTING_ATTR[i], now[i]);
    }
    return s;
}

// "stopped: OUT holds the last good state (after step N)", or that there is none.
static const char *last_good(const train_state *t, char *buf, size_t n) {
    if (!t->saved) snprintf(buf, n, "stopped before any checkpoint was written");
    else snprintf(buf, n, "stopped: %s holds the last good state (after step %lld)", t->saved, (long long)t->saved_step);
    return buf;
}

ib_status ib_train_loss_check(const train_state *t, float loss) {
    if (isfinite(loss)) return IB_OK;
    char where[4200];
    return ib_fail(IB_ERR_ARG, "the loss became %g at step %lld (lower --lr?); %s", loss, (long long)t->step,
                   last_good(t, where, sizeof where));
}

ib_status ib_train_saved(train_state *t, ib_status s) {
    if (!s) {
        t->saved = t->cfg ? t->cfg->out : NULL, t->saved_step = t->step;
        return IB_OK;
    }
    char why[1024], where[4200];
    snprintf(why, sizeof why, "%s", ib_errmsg());
    return ib_fail(s, "%s; the checkpoint of step %lld was not saved, %s", why, (long long)t->step,
                   last_good(t, where, sizeof where));
}

ib_status ib_train_class_names(ib_net *net, const ib_dataset *ds, int classes) {
    if (classes < 1) return IB_OK;
    const char **names = calloc((size_t)classes, sizeof *names);
    if (!names) return ib_fail(IB_ERR_NOMEM, "out of memory");
    for (int c = 0; c < classes; c++) names[c] = ib_dataset_class_name(ds, c);
    ib_status s = ib_net_set_class_names(net, names, classes);
    free(names);
    return s;
}

ib_status ib_train_out_check(const char *out, const char *what) {
    if (!out) return ib_fail(IB_ERR_ARG, "an output %s path is needed", what);
    return ib_h5_check_creatable(out);
}

int64_t ib_train_ckpt_bytes(const ib_params *ps, ib_optim *opt, ib_ema *ema) {
    int64_t floats = ps->numel_params + ps->numel_buffers, n;
    const char *name;
    float *data;
    for (int i = 0; opt && i < ib_optim_state_count(opt); i++) ib_optim_state(opt, i, &name, &data, &n), floats += n;
    for (int i = 0; ema && i < ib_ema_state_count(ema); i++) ib_ema_state(ema, i, &name, &data, &n), floats += n;
    return floats * (int64_t)sizeof(float);
}

static void mb(char *buf, size_t n, double bytes) {
    if (bytes < 1e6) snprintf(buf, n, "%.0f kB", bytes / 1e3);
    else snprintf(buf, n, "%.1f MB", bytes / 1e6);
}

ib_status ib_train_room_check(const char *out, int64_t bytes) {
    char need[32], have[32];
    mb(need, sizeof need, (double)bytes);
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < (uint64_t)bytes) {
        mb(have, sizeof have, (double)rl.rlim_cur);
        return ib_fail(IB_ERR_IO, "%s: a checkpoint takes at least %s, more than the file size limit of %s (ulimit -f); "
                       "nothing was trained", out, need, have);
    }
    // The folder's free space: a save writes OUT.tmp beside OUT (which stays until the rename).
    size_t n = strlen(out) + 3;
    char *dir = malloc(n);
    if (!dir) return ib_fail(IB_ERR_NOMEM, "out of memory");
    const char *slash = strrchr(out, '/');
    if (!slash) snprintf(dir, n, ".");
    else snprintf(dir, n, "%.*s", slash == out ? 1 : (int)(slash - out), out);
    struct statvfs vs;
    int known = statvfs(dir, &vs) == 0 && vs.f_blocks > 0;
    free(dir);
    if (!known) return IB_OK;   // a file system that does not say: the save reports a full disk if it comes
    double avail = (double)vs.f_bavail * (double)vs.f_frsize;
    if (avail < (double)bytes) {
        mb(have, sizeof have, avail);
        return ib_fail(IB_ERR_IO, "%s: a checkpoint takes at least %s and its disk has %s free; free some space or "
                       "write elsewhere (--out); nothing was trained", out, need, have);
    }
    return IB_OK;
}

ib_status ib_train_state_load(ib_h5 *f, train_state *t) {
    int64_t meta[6];
    ib_status s = ib_h5_read_i64(f, "train/state", meta, 6);
    if (s) return ib_fail(s, "%s: no training state to resume from (/train/state): %s", ib_h5_path(f), ib_errmsg());
    if ((uint64_t)meta[3] != t->seed)
        return ib_fail(IB_ERR_ARG, "%s: was trained with seed %lld; resume with the same seed", ib_h5_path(f),
                       (long long)meta[3]);
    if (t->cfg && (s = settings_check(f, t))) return s;
    if ((s = ib_optim_load(t->opt, f, "train/optim"))) return s;
    if (t->ema && (s = ib_ema_load(t->ema, f, "train/ema"))) return s;
    t->epoch = meta[0], t->batch_in_epoch = meta[1], t->step = meta[2];
    t->saved = t->cfg ? t->cfg->resume : NULL, t->saved_step = t->step;
    t->dropout_rng->state = (uint64_t)meta[4];
    t->dropout_rng->inc = (uint64_t)meta[5];
    double imgs = 0;
    if (ib_h5_attr_f64(f, "train/state", "epoch_loss_sum", &t->epoch_loss) ||
        ib_h5_attr_f64(f, "train/state", "epoch_images", &imgs))
        return ib_fail(IB_ERR_FORMAT, "%s: /train/state lacks the epoch's running loss", ib_h5_path(f));
    t->epoch_images = (int64_t)imgs;
    return IB_OK;
}

ib_status ib_open_labelled(ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split) {
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = fmt;
    o.split = split;
    o.ignore_index = 255;
    ib_status s = ib_dataset_open(ds, path, &o);
    if (s) return s;
    if (!(*ds)->has_labels) {
        s = ib_fail(IB_ERR_FORMAT, "%s: has no class labels to train a classifier on", path);
        ib_dataset_close(*ds);
        *ds = NULL;
    }
    return s;
}

ib_status ib_train_state_resume(const char *path, ib_train_state *ts) {
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    s = ib_train_state_load(f, ts);
    ib_h5_close(f);
    return s;
}

static const char *log_path(const ib_train_cfg *cfg, char *path, size_t n) {
    if (cfg->log) snprintf(path, n, "%s", cfg->log);
    else snprintf(path, n, "%s.csv", cfg->out);
    return path;
}

ib_status ib_train_log_open(const ib_train_cfg *cfg, int64_t epochs_done, const char *header, FILE **log) {
    char path[4096];
    log_path(cfg, path, sizeof path);
    int fresh = access(path, F_OK) != 0 || !cfg->resume;
    ib_status s;
    if (!fresh && (s = ib_log_trim(path, epochs_done))) return s;
    if (!(*log = fopen(path, fresh ? "w" : "a"))) return ib_fail(IB_ERR_IO, "%s: cannot write the training log", path);
    if (fresh) fprintf(*log, "%s\n", header);
    return IB_OK;
}

ib_status ib_train_log_flush(const ib_train_cfg *cfg, FILE *log) {
    errno = 0;
    if (fflush(log) == 0 && !ferror(log)) return IB_OK;
    char path[4096];
    return ib_fail(IB_ERR_IO, "%s: cannot write the training log: %s", log_path(cfg, path, sizeof path),
                   errno ? strerror(errno) : "write error");
}

ib_status ib_train_loader_open(const ib_train_cfg *cfg, ib_dataset *train, ib_loader **loader, long *steps_per_epoch,
                               ib_schedule *schedule) {
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, cfg->res, cfg->res);
    lo.batch_size = cfg->batch;
    lo.shuffle = 1;
    lo.drop_last = 1;   // as the PyTorch recipe: len // batch steps an epoch
    lo.workers = cfg->workers;
    lo.seed = cfg->seed;
    lo.want_boxes = 0;
    lo.want_masks = 0;
    lo.aug.crop = cfg->aug == IB_AUG_PADCROP ? IB_CROP_PAD : cfg->aug == IB_AUG_RRC ? IB_CROP_RESIZED : IB_CROP_CENTER;
    lo.aug.pad = cfg->pad;
    lo.aug.hflip_p = cfg->aug == IB_AUG_NONE ? 0.0f : 0.5f;
    memcpy(lo.aug.mean, cfg->mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, cfg->std, sizeof lo.aug.std);
    return ib_train_loader_open_with(cfg, train, &lo, loader, steps_per_epoch, schedule);
}

ib_status ib_train_loader_open_with(const ib_train_cfg *cfg, ib_dataset *train, const ib_loader_opts *lo,
                                    ib_loader **loader, long *steps_per_epoch, ib_schedule *schedule) {
    ib_dp dp;   // under mpirun: this rank's share of every batch
    ib_status s = ib_dp_begin(&dp, cfg);
    if (s) return s;
    ib_loader_opts share = *lo;
    share.shard_count = dp.size, share.shard_rank = dp.rank;
    if ((s = ib_loader_open(loader, train, &share))) return s;
    long spe = (long)ib_loader_batches(*loader);
    if (spe < 1) {
        return ib_fail(IB_ERR_ARG, "%s: %lld images make no batch of %d", cfg->data, (long long)ib_dataset_size(train),
                       cfg->batch);
    }
    ib_schedule sch = {.kind = cfg->schedule,
                       .base_lr = cfg->lr,
                       .warmup_steps = (long)lround(cfg->warmup_epochs * (double)spe),
                       .total_steps = (long)cfg->epochs * spe,
                       .final_lr = 0,
                       .decay_every = (long)fmax(1, lround(cfg->step_epochs * (double)spe)),
                       .gamma = cfg->step_gamma};
    if (sch.kind == IB_LR_COSINE && sch.warmup_steps >= sch.total_steps) {
        return ib_fail(IB_ERR_ARG, "--warmup %g epochs covers the whole run of %d epochs: use fewer warm-up epochs "
                       "(e.g. --warmup %g) or more --epochs", cfg->warmup_epochs, cfg->epochs, 0.2 * cfg->epochs);
    }
    if ((s = ib_schedule_check(&sch))) return s;
    *steps_per_epoch = spe;
    *schedule = sch;
    return IB_OK;
}

ib_status ib_train_classify(const ib_train_cfg *cfg, ib_train_result *res) {
    memset(res, 0, sizeof *res);
    res->val_top1 = res->val_top5 = -1;
    ib_set_threads(cfg->threads);
    ib_dataset *train = NULL, *val = NULL;
    ib_loader *loader = NULL;
    ib_ctx *ctx = NULL;
    FILE *log = NULL;
    ib_net net;
    memset(&net, 0, sizeof net);
    train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.seed = cfg->seed;
    ts.cfg = cfg;
    struct sigaction old_sa;
    int handler = 0;
    ib_status s;
    ib_dp dp;   // data parallelism under mpirun (one rank: every ib_dp call is a no-op)

    if (cfg->epochs < 1 || cfg->batch < 1 || cfg->res < 8 || !(cfg->lr > 0))
        return ib_fail(IB_ERR_ARG, "epochs, batch, res and lr must be positive (res at least 8)");
    if ((s = ib_dp_begin(&dp, cfg))) return s;
    const int progress = cfg->progress && dp.rank == 0;
    if ((s = ib_train_out_check(cfg->out, "checkpoint"))) return s;
    if ((s = ib_optim_cfg_check(&cfg->optim))) return s;
    if ((s = ib_open_labelled(&train, cfg->data, cfg->data_format, "train"))) goto done;
    if (cfg->val && (s = ib_open_labelled(&val, cfg->val, cfg->data_format, "val"))) goto done;
    int classes = cfg->classes > 0 ? cfg->classes : ib_dataset_classes(train);
    if (classes < 2) {
        s = ib_fail(IB_ERR_FORMAT, "%s: %d classes; pass --classes", cfg->data, classes);
        goto done;
    }
    if (classes < ib_dataset_classes(train)) {
        s = ib_fail(IB_ERR_ARG, "%s: %d classes in the data, but --classes %d", cfg->data, ib_dataset_classes(train),
                    classes);
        goto done;
    }

    // The network: the checkpoint's when resuming; when fine-tuning, --init's as it is if it classifies the data's
    // classes and no arch is asked for, else built (the arch asked for, or --init's with the data's classes and a
    // classifier) and initialised, then every tensor of --init with the same name and shape copied in (a
    // segmentation checkpoint's backbone, a classifier of other classes: the classifier starts fresh); else
    // built and initialised.
    if (cfg->resume) {
        if ((s = ib_ckpt_load(&net, cfg->resume))) goto done;
        if (net.arch.classes != classes) {
            s = ib_fail(IB_ERR_ARG, "%s: the network has %d classes, the data %d", cfg->resume, net.arch.classes,
                        classes);
            goto done;
        }
    } else if (cfg->init) {
        ib_net src;
        if ((s = ib_ckpt_load(&src, cfg->init))) goto done;
        if (!cfg->arch && src.arch.classes == classes && !strcmp(src.arch.task, "classify")) {
            net = src;
        } else {
            ib_arch arch;
            memset(&arch, 0, sizeof arch);
            s = cfg->arch ? ib_arch_resolve(&arch, cfg->arch, classes) : ib_arch_copy(&arch, &src.arch);
            if (!s) {
                arch.classes = classes;
                snprintf(arch.task, sizeof arch.task, "classify");
                s = ib_net_build(&net, &arch);
            }
            ib_arch_free(&arch);
            int copied = 0;
            if (!s) {
                ib_net_init_weights(&net, cfg->seed);
                copied = ib_params_copy_matching(&net.ps, &src.ps);
                if (!copied)
                    s = ib_fail(IB_ERR_ARG, "%s: no tensor matches the network being trained (another arch?)", cfg->init);
            }
            if (!s && progress)
                fprintf(stderr, "train: %d of %d tensors from %s, the rest initialised\n", copied, net.ps.n, cfg->init);
            ib_net_free(&src);
            if (s) goto done;
        }
        net.arch.input = cfg->res;   // fine-tuning: a new run from these weights
        ib_rng_seed(&net.dropout_rng, cfg->seed, 0xd0);
    } else {
        ib_arch arch;
        if ((s = ib_arch_resolve(&arch, cfg->arch, classes))) goto done;
        arch.input = cfg->res;
        s = ib_net_build(&net, &arch);
        ib_arch_free(&arch);
        if (s) goto done;
        ib_net_init_weights(&net, cfg->seed);
    }
    if ((s = ib_train_class_names(&net, train, classes))) goto done;
    ts.dropout_rng = &net.dropout_rng;
    if (!(ts.opt = ib_optim_new(&cfg->optim, &net.ps))) {
        s = ib_fail(IB_ERR_ARG, "%s", ib_errmsg());
        goto done;
    }
    if (cfg->ema > 0 && !(ts.ema = ib_ema_new(&net.ps, cfg->ema, IB_EMA_BUFFERS))) {
        s = IB_ERR_NOMEM;
        goto done;
    }
    if (cfg->resume && (s = ib_train_state_resume(cfg->resume, &ts))) goto done;
    ib_dp_bcast(&dp, &net.ps, ts.opt, ts.ema);
    if ((s = ib_train_room_check(cfg->out, ib_train_ckpt_bytes(&net.ps, ts.opt, ts.ema)))) goto done;

    long spe;
    ib_schedule sch;
    if ((s = ib_train_loader_open(cfg, train, &loader, &spe, &sch))) goto done;

    if (dp.rank == 0 &&
        (s = ib_train_log_open(cfg, ts.epoch, "epoch,step,lr,train_loss,val_top1,val_top5,val_loss,epoch_s,img_per_s", &log)))
        goto done;

    ib_sigint_catch(&old_sa);
    handler = 1;

    ctx = ib_ctx_new();
    double t_run = ib_time_s();
    long steps_run = 0;
    if (progress)
        fprintf(stderr, "train: %s, %lld parameters, %lld images, %d classes, %ld steps an epoch%s\n", net.arch.name,
                (long long)ib_net_param_count(&net), (long long)ib_dataset_size(train), classes, spe,
                cfg->resume ? " (resumed)" : "");
    if (progress && dp.size > 1)
        fprintf(stderr, "train: %d ranks, %d images each of every batch of %d%s\n", dp.size, cfg->batch / dp.size,
                cfg->batch, dp.sync_bn ? ", batchnorm synchronised" : "");
    for (int64_t e = ts.epoch; e < cfg->epochs; e++) {
        ts.epoch = e;
        ib_loader_start_epoch(loader, e);
        const ib_batch *b;
        for (int64_t k = 0; k < ts.batch_in_epoch; k++)   // resuming mid-epoch: skip what was done
            if ((s = ib_loader_next(loader, &b)) || !b) goto done;
        double t_epoch = ib_time_s();
        int64_t images_run = 0, batch0 = ts.batch_in_epoch;
        while ((s = ib_loader_next(loader, &b)) == IB_OK && b) {
            float lr = ib_lr_at(&sch, ts.step);
            ib_ctx_reset(ctx);
            ctx->training = 1;
            ctx->recording = 1;
            ctx->release_grads = 1;   // nothing reads activation grads after the step: reuse their memory
            ctx->sync_bn = dp.sync_bn;
            ib_tensor x;
            ib_batch_tensor(b, &x);
            ib_tensor *z = ib_net_forward(ctx, &net, &x);
            ib_tensor *loss = ib_cross_entropy(ctx, z, b->labels, cfg->label_smoothing, -1);
            ib_params_zero_grad(&net.ps);
            ib_backward(ctx, loss, NULL);
            ctx->sync_bn = 0;
            double loss_sum = (double)loss->data[0] * b->n;
            int64_t n_img = b->n;
            int stop = interrupted;
            if ((s = ib_dp_step(&dp, &net.ps, NULL, 0, 0, &loss_sum, &n_img, &stop))) goto done;
            if (stop) interrupted = 1;   // any rank's Ctrl-C. Below, the agreed stop decides, not the flag, which a
                                         // signal may set on one rank alone after the allreduce
            if (cfg->clip > 0) ib_clip_grad_norm(&net.ps, cfg->clip);
            ib_optim_step(ts.opt, lr);
            if (ts.ema) ib_ema_update(ts.ema);
            if ((s = ib_train_loss_check(&ts, (float)(loss_sum / (double)n_img)))) goto done;
            ts.epoch_loss += loss_sum;
            ts.epoch_images += n_img;
            ts.step++, ts.batch_in_epoch++, steps_run++;
            images_run += n_img;
            res->steps = ts.step;
            if (progress) {
                char extra[128];
                snprintf(extra, sizeof extra, "loss %.4f lr %.4f %.0f img/s", ts.epoch_loss / (double)ts.epoch_images, lr,
                         (double)images_run / (ib_time_s() - t_epoch));
                char what[32];
                snprintf(what, sizeof what, "epoch %lld/%d", (long long)e + 1, cfg->epochs);
                ib_progress_line(what, ts.batch_in_epoch, batch0, spe, t_epoch - 1e-9, extra);
            }
            if (stop || (cfg->max_steps > 0 && steps_run >= cfg->max_steps)) {
                if (progress) fputc('\n', stderr);
                res->wall_s = ib_time_s() - t_run;
                if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_ckpt_save(&net, cfg->out,
                                                                                            ib_train_state_save, &ts)))))
                    goto done;
                res->interrupted = stop;
                if (progress || (stop && dp.rank == 0))
                    fprintf(stderr, "train: %s at epoch %lld, batch %lld; saved %s, which resumes from here\n",
                            stop ? "interrupted" : "stopped", (long long)e + 1, (long long)ts.batch_in_epoch,
                            cfg->out);
                s = stop ? ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", cfg->out) : IB_OK;
                goto done;
            }
        }
        if (s) goto done;
        if (progress) fputc('\n', stderr);
        double epoch_s = ib_time_s() - t_epoch;
        res->last_loss = ts.epoch_loss / (double)(ts.epoch_images ? ts.epoch_images : 1);
        res->img_per_s = (double)images_run / epoch_s;
        ib_cls_metrics m = {0};
        if (val) {   // every rank evaluates (the same numbers), so none waits for rank 0 and none differs
            ib_eval_cfg ec;
            ib_eval_cfg_default(&ec);
            ec.res = cfg->res;
            ec.workers = cfg->workers;
            ec.ctx = ctx;   // the step's arena is free between steps: evaluation needs no second one
            memcpy(ec.mean, cfg->mean, sizeof ec.mean);
            memcpy(ec.std, cfg->std, sizeof ec.std);
            if (ts.ema) ib_ema_swap(ts.ema);
            s = ib_eval_classify(&net, val, &ec, &m);
            if (ts.ema) ib_ema_swap(ts.ema);
            if (s) goto done;
            res->val_top1 = m.top1, res->val_top5 = m.top5;
        }
        if (log) fprintf(log, "%lld,%ld,%.6g,%.6f,%.6f,%.6f,%.6f,%.2f,%.1f\n", (long long)e + 1, ts.step,
                         ib_lr_at(&sch, ts.step), res->last_loss, val ? m.top1 : -1.0, val ? m.top5 : -1.0,
                         val ? m.loss : -1.0, epoch_s, res->img_per_s);
        if (log && (s = ib_train_log_flush(cfg, log))) goto done;
        if (progress) fprintf(stderr, "epoch %lld: loss %.4f%s", (long long)e + 1, res->last_loss, val ? "" : "\n");
        if (progress && val) fprintf(stderr, " val top1 %.4f top5 %.4f\n", m.top1, m.top5);
        ib_cls_metrics_free(&m);
        ts.epoch = e + 1;
        ts.batch_in_epoch = 0;
        ts.epoch_loss = 0;
        ts.epoch_images = 0;
        res->epochs_done = (int)(e + 1);
        if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_ckpt_save(&net, cfg->out, ib_train_state_save,
                                                                                    &ts)))))
            goto done;
        if (interrupted && dp.size < 2) {   // several ranks: the next step's allreduce carries it to every rank
            res->interrupted = 1;
            s = ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", cfg->out);
            goto done;
        }
    }
    res->wall_s = ib_time_s() - t_run;
    s = IB_OK;
done:
    if (handler) sigaction(SIGINT, &old_sa, NULL);
    if (log) fclose(log);
    ib_dp_end(&dp);
    ib_ctx_free(ctx);
    ib_loader_close(loader);
    ib_ema_free(ts.ema);
    ib_optim_free(ts.opt);
    if (net.blocks) ib_net_free(&net);
    ib_dataset_close(val);
    ib_dataset_close(train);
    return s;
}
