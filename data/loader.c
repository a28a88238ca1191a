// The batch loader: worker threads read, augment and normalise samples into a ring of batches while
// the consumer trains on the previous one. Work is handed out one sample at a time, in order, and
// each sample's randomness comes from (seed, epoch, index) alone, so the batches do not depend on
// the number of workers or on which worker did what.
#include "data/loader.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    ib_batch b;               // the public view; its arrays below are sized for batch_size
    int64_t step;             // which batch of the epoch the slot holds (-1: none)
    int n, filled;            // samples in the batch, samples written
    ib_status err;            // the first failure (lowest position) among the batch's samples
    int64_t err_pos;
    char errmsg[1024];
    ib_box **sample_boxes;    // per sample, until the consumer joins them into b.boxes
    int *sample_nboxes;
    int64_t boxes_cap;
} slot;

struct ib_loader {
    ib_dataset *ds;
    ib_loader_opts o;
    int want_boxes, want_masks, ignore_index;
    int64_t n_used, n_batches;   // samples and batches per epoch (sharded: this rank's samples)
    int64_t whole;               // sharded: the batch this rank's batch_size is a share of; else 0
    int *order;                  // this epoch's sample order (sharded: this rank's share of each batch, in order)
    slot *slots;
    int n_slots;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv, idle_cv;
    int stop, active, failed, have_held;
    int64_t epoch;
    int64_t next_pos;            // next sample position for a worker to claim
    int64_t next_step;           // next batch for the consumer
    int in_flight;               // samples being prepared outside the lock
};

// splitmix64's finaliser: nearby (seed, epoch, index) triples give unrelated streams.
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return mix64(seed ^ mix64((uint64_t)epoch)); }

void ib_loader_sample_rng(uint64_t seed, int64_t epoch, int64_t index, ib_rng *r) {
    ib_rng_seed(r, mix64(epoch_seed(seed, epoch) ^ mix64((uint64_t)index)), 0x5a17);
}

void ib_loader_opts_default(ib_loader_opts *o, int out_h, int out_w) {
    memset(o, 0, sizeof *o);
    o->batch_size = 64;
    o->shuffle = 1;
    o->workers = 2;
    o->prefetch = 3;
    o->want_boxes = -1;
    o->want_masks = -1;
    ib_aug_opts_default(&o->aug, out_h, out_w);
}

void ib_batch_tensor(const ib_batch *b, ib_tensor *t) { ib_tensor_init(t, b->x, 4, (int[]){b->n, 3, b->h, b->w}); }

int64_t ib_loader_batches(const ib_loader *l) { return l->n_batches; }

// Reads, augments and writes sample position p into its slot. Runs without the lock: the slot's
// row i belongs to this call alone. Returns the failure, with its message left in `msg`.
static ib_status prepare_sample(ib_loader *l, slot *sl, int64_t p, char *msg, size_t msgn) {
    int bs = l->o.batch_size;
    int i = (int)(p % bs);
    int64_t idx = l->order[p];
    const ib_aug_opts *a = &l->o.aug;
    int64_t hw = (int64_t)a->out_h * a->out_w;
    ib_sample s;
    memset(&s, 0, sizeof s);
    ib_status st = ib_dataset_get(l->ds, idx, &s);
    if (st) {
        snprintf(msg, msgn, "%s", ib_errmsg());
        ib_sample_free(&s);
        return st;
    }
    sl->b.indices[i] = idx;
    sl->b.image_ids[i] = s.image_id;
    sl->b.src_h[i] = s.h;
    sl->b.src_w[i] = s.w;
    sl->b.labels[i] = s.label;
    ib_rng r;
    ib_loader_sample_rng(l->o.seed, l->epoch, idx, &r);
    if ((st = ib_aug_apply(a, &s, &r))) {
        snprintf(msg, msgn, "%s (sample %lld of %s)", ib_errmsg(), (long long)idx, ib_dataset_path(l->ds));
        ib_sample_free(&s);
        return st;
    }
    ib_sample_normalize(&s, a->mean, a->std, sl->b.x + i * 3 * hw);
    if (l->want_masks) {
        int32_t *m = sl->b.masks + i * hw;
        for (int64_t k = 0; k < hw; k++) m[k] = s.mask ? s.mask[k] : l->ignore_index;
    }
    if (l->want_boxes) {
        free(sl->sample_boxes[i]);
        sl->sample_boxes[i] = s.boxes;   // taken over: freed when the slot is reused or closed
        sl->sample_nboxes[i] = s.n_boxes;
        s.boxes = NULL;
        s.n_boxes = 0;
    }
    ib_sample_free(&s);
    return IB_OK;
}

// Called with the lock held, at the first sample of a batch: the slot is free (the window ensures it).
static void slot_begin(ib_loader *l, int64_t step) {
    slot *sl = &l->slots[step % l->n_slots];
    int64_t start = step * l->o.batch_size;
    int64_t n = l->n_used - start;
    sl->step = step;
    sl->n = (int)(n < l->o.batch_size ? n : l->o.batch_size);
    sl->filled = 0;
    sl->err = IB_OK;
    sl->err_pos = -1;
    sl->errmsg[0] = 0;
}

static void slot_finish_sample(ib_loader *l, slot *sl, int64_t p, ib_status st, const char *msg) {
    if (st && (sl->err == IB_OK || p < sl->err_pos)) {
        sl->err = st;
        sl->err_pos = p;
        snprintf(sl->errmsg, sizeof sl->errmsg, "%s", msg);
    }
    sl->filled++;
    if (sl->filled == sl->n) pthread_cond_broadcast(&l->ready_cv);
}

// A worker may claim position next_pos when its batch fits the ring beside the batches the consumer
// has not given back.
static int can_claim(const ib_loader *l) {
    if (!l->active || l->failed || l->next_pos >= l->n_used) return 0;
    int64_t step = l->next_pos / l->o.batch_size;
    return step < l->next_step - l->have_held + l->n_slots;
}

static void *worker_main(void *arg) {
    ib_loader *l = arg;
    char msg[1024];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !can_claim(l)) pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop) break;
        int64_t p = l->next_pos++;
        int64_t step = p / l->o.batch_size;
        if (p % l->o.batch_size == 0) slot_begin(l, step);
        slot *sl = &l->slots[step % l->n_slots];
        l->in_flight++;
        pthread_mutex_unlock(&l->mu);
        msg[0] = 0;
        ib_status st = prepare_sample(l, sl, p, msg, sizeof msg);
        pthread_mutex_lock(&l->mu);
        slot_finish_sample(l, sl, p, st, msg);
        if (--l->in_flight == 0) pthread_cond_broadcast(&l->idle_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void slot_free(slot *sl, int bs) {
    free(sl->b.x);
    free(sl->b.labels);
    free(sl->b.indices);
    free(sl->b.image_ids);
    free(sl->b.src_h);
    free(sl->b.src_w);
    free(sl->b.box_offsets);
    free(sl->b.boxes);
    free(sl->b.masks);
    if (sl->sample_boxes)
        for (int i = 0; i < bs; i++) free(sl->sample_boxes[i]);
    free(sl->sample_boxes);
    free(sl->sample_nboxes);
}

static int slot_alloc(ib_loader *l, slot *sl) {
    int bs = l->o.batch_size;
    int64_t hw = (int64_t)l->o.aug.out_h * l->o.aug.out_w;
    memset(sl, 0, sizeof *sl);
    sl->step = -1;
    sl->b.h = l->o.aug.out_h;
    sl->b.w = l->o.aug.out_w;
    sl->b.x = malloc(sizeof(float) * (size_t)(bs * 3 * hw));
    sl->b.labels = malloc(sizeof(int32_t) * (size_t)bs);
    sl->b.indices = malloc(sizeof(int64_t) * (size_t)bs);
    sl->b.image_ids = malloc(sizeof(int64_t) * (size_t)bs);
    sl->b.src_h = malloc(sizeof(int32_t) * (size_t)bs);
    sl->b.src_w = malloc(sizeof(int32_t) * (size_t)bs);
    int ok = sl->b.x && sl->b.labels && sl->b.indices && sl->b.image_ids && sl->b.src_h && sl->b.src_w;
    if (l->want_masks) ok = ok && (sl->b.masks = malloc(sizeof(int32_t) * (size_t)(bs * hw)));
    if (l->want_boxes) {
        sl->b.box_offsets = malloc(sizeof(int64_t) * (size_t)(bs + 1));
        sl->sample_boxes = calloc((size_t)bs, sizeof(ib_box *));
        sl->sample_nboxes = calloc((size_t)bs, sizeof(int));
        ok = ok && sl->b.box_offsets && sl->sample_boxes && sl->sample_nboxes;
    }
    return ok;
}

void ib_loader_close(ib_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->n_threads; t++) pthread_join(l->threads[t], NULL);
    for (int k = 0; k < l->n_slots; k++) slot_free(&l->slots[k], l->o.batch_size);
    free(l->slots);
    free(l->threads);
    free(l->order);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    pthread_cond_destroy(&l->idle_cv);
    free(l);
}

ib_status ib_loader_open(ib_loader **out, ib_dataset *ds, const ib_loader_opts *opts) {
    *out = NULL;
    const char *path = ib_dataset_path(ds);
    if (opts->batch_size < 1) return ib_fail(IB_ERR_ARG, "loader for %s: batch size %d must be >= 1", path, opts->batch_size);
    if (opts->workers < 0 || opts->workers > 64)
        return ib_fail(IB_ERR_ARG, "loader for %s: %d workers (0 .. 64)", path, opts->workers);
    if (opts->aug.out_h < 1 || opts->aug.out_w < 1)
        return ib_fail(IB_ERR_ARG, "loader for %s: output size %dx%d", path, opts->aug.out_h, opts->aug.out_w);
    int64_t size = ib_dataset_size(ds);
    if (size > INT_MAX) return ib_fail(IB_ERR_ARG, "loader for %s: %lld samples is more than the loader indexes", path, (long long)size);
    ib_loader *l = calloc(1, sizeof *l);
    if (!l) return ib_fail(IB_ERR_NOMEM, "loader for %s: out of memory", path);
    l->ds = ds;
    l->o = *opts;
    if (l->o.prefetch < 2) l->o.prefetch = 2;
    if (l->o.prefetch > 8) l->o.prefetch = 8;
    l->want_boxes = opts->want_boxes < 0 ? ds->has_boxes : opts->want_boxes;
    l->want_masks = opts->want_masks < 0 ? ds->has_masks : opts->want_masks;
    l->ignore_index = ib_dataset_ignore_index(ds);
    if (l->want_masks) l->o.aug.mask_fill = l->ignore_index;   // crops pad masks with "unlabelled"
    l->n_used = opts->drop_last ? size / opts->batch_size * opts->batch_size : size;
    l->n_batches = (l->n_used + opts->batch_size - 1) / opts->batch_size;
    if (opts->shard_count > 1) {   // from here on batch_size is the share; n_used this rank's samples
        IB_ASSERT(opts->drop_last && opts->batch_size % opts->shard_count == 0 && opts->shard_rank >= 0 &&
                  opts->shard_rank < opts->shard_count, "loader: batch %d in %d shards (rank %d) needs drop_last",
                  opts->batch_size, opts->shard_count, opts->shard_rank);
        l->whole = opts->batch_size;
        l->o.batch_size = opts->batch_size / opts->shard_count;
        l->n_used = l->n_batches * l->o.batch_size;
    }
    l->epoch = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    pthread_cond_init(&l->idle_cv, NULL);
    l->n_slots = l->o.prefetch;
    l->order = malloc(sizeof(int) * (size_t)(size > 0 ? size : 1));
    l->slots = calloc((size_t)l->n_slots, sizeof(slot));
    int ok = l->order && l->slots;
    for (int k = 0; ok && k < l->n_slots; k++) ok = slot_alloc(l, &l->slots[k]);
    if (!ok) {
        if (!l->slots) l->n_slots = 0;
        ib_loader_close(l);
        return ib_fail(IB_ERR_NOMEM, "loader for %s: out of memory for %d batches of %d at %dx%d", path,
                       opts->prefetch, opts->batch_size, opts->aug.out_h, opts->aug.out_w);
    }
    if (opts->workers > 0) {
        l->threads = calloc((size_t)opts->workers, sizeof(pthread_t));
        if (!l->threads) {
            ib_loader_close(l);
            return ib_fail(IB_ERR_NOMEM, "loader for %s: out of memory", path);
        }
        for (int t = 0; t < opts->workers; t++) {
            if (pthread_create(&l->threads[t], NULL, worker_main, l) != 0) {
                ib_loader_close(l);
                return ib_fail(IB_ERR_NOMEM, "loader for %s: cannot start worker thread %d", path, t);
            }
            l->n_threads++;
        }
    }
    *out = l;
    return IB_OK;
}

void ib_loader_start_epoch(ib_loader *l, int64_t epoch) {
    pthread_mutex_lock(&l->mu);
    // Stop handing out work and let what is in flight land before the ring is reused.
    l->active = 0;
    while (l->in_flight > 0) pthread_cond_wait(&l->idle_cv, &l->mu);
    int64_t size = ib_dataset_size(l->ds);
    for (int64_t i = 0; i < size; i++) l->order[i] = (int)i;
    if (l->o.shuffle) {
        ib_rng r;
        ib_rng_seed(&r, epoch_seed(l->o.seed, epoch), 0x5bu);
        ib_rng_shuffle(&r, l->order, (int)size);
    }
    if (l->whole) {   // keep this rank's part of each whole batch (in place: k never passes its source)
        int64_t share = l->o.batch_size, from = l->o.shard_rank * share;
        for (int64_t k = 0; k < l->n_used; k++) l->order[k] = l->order[k / share * l->whole + from + k % share];
    }
    l->epoch = epoch;
    l->next_pos = 0;
    l->next_step = 0;
    l->have_held = 0;
    l->failed = 0;
    for (int k = 0; k < l->n_slots; k++) l->slots[k].step = -1;
    l->active = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
}

// Joins the per-sample boxes into the batch's flat array (consumer side, the slot is complete).
static ib_status gather_boxes(slot *sl) {
    int64_t total = 0;
    for (int i = 0; i < sl->n; i++) total += sl->sample_nboxes[i];
    if (total > sl->boxes_cap) {
        int64_t cap = total > 2 * sl->boxes_cap ? total : 2 * sl->boxes_cap;
        ib_box *nb = realloc(sl->b.boxes, sizeof(ib_box) * (size_t)cap);
        if (!nb) return ib_fail(IB_ERR_NOMEM, "loader: out of memory for %lld boxes", (long long)total);
        sl->b.boxes = nb;
        sl->boxes_cap = cap;
    }
    int64_t k = 0;
    for (int i = 0; i < sl->n; i++) {
        sl->b.box_offsets[i] = k;
        if (sl->sample_nboxes[i]) memcpy(sl->b.boxes + k, sl->sample_boxes[i], sizeof(ib_box) * (size_t)sl->sample_nboxes[i]);
        k += sl->sample_nboxes[i];
    }
    sl->b.box_offsets[sl->n] = k;
    return IB_OK;
}

ib_status ib_loader_next(ib_loader *l, const ib_batch **out) {
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    IB_ASSERT(l->active, "ib_loader_next: call ib_loader_start_epoch first");
    if (l->have_held) {
        l->have_held = 0;   // the consumer is done with the batch it had: its slot may be refilled
        pthread_cond_broadcast(&l->work_cv);
    }
    if (l->failed || l->next_step >= l->n_batches) {
        pthread_mutex_unlock(&l->mu);
        return IB_OK;
    }
    int64_t step = l->next_step;
    slot *sl = &l->slots[step % l->n_slots];
    if (l->n_threads == 0) {
        // No workers: prepare the batch here, through the same path.
        char msg[1024];
        while (l->next_pos < l->n_used && l->next_pos / l->o.batch_size == step) {
            int64_t p = l->next_pos++;
            if (p % l->o.batch_size == 0) slot_begin(l, step);
            msg[0] = 0;
            ib_status st = prepare_sample(l, sl, p, msg, sizeof msg);
            slot_finish_sample(l, sl, p, st, msg);
        }
    }
    while (!(sl->step == step && sl->filled == sl->n)) pthread_cond_wait(&l->ready_cv, &l->mu);
    l->next_step++;
    ib_status st = sl->err;
    if (!st && l->want_boxes) st = gather_boxes(sl);
    if (st) {
        l->failed = 1;   // workers stop claiming; the epoch ends with this error
        pthread_mutex_unlock(&l->mu);
        return sl->err ? ib_fail(st, "%s", sl->errmsg) : st;
    }
    l->have_held = 1;
    sl->b.n = sl->n;
    sl->b.epoch = l->epoch;
    sl->b.step = step;
    pthread_mutex_unlock(&l->mu);
    *out = &sl->b;
    return IB_OK;
}
