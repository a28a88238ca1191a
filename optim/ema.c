// Weight EMA: a shadow copy of the parameters (and optionally the buffers) averaged after every step,
// swapped in for evaluation. Float arithmetic in the order of timm's ModelEmaV2 (ema*d + (1-d)*w).
#include "optim/optim.h"

#include <stdlib.h>
#include <string.h>

#define PAR_MIN 32768

struct ib_ema {
    ib_params *ps;
    float decay;
    int flags;
    int swapped;
    int64_t updates;
    int64_t np, nb;          // parameters and (with IB_EMA_BUFFERS) buffers in the shadow
    float *shadow;           // np + nb floats: the parameters, then the buffers
};

ib_ema *ib_ema_new(ib_params *ps, float decay, int flags) {
    IB_ASSERT(ps->data && ps->buf, "ib_ema_new: call ib_params_alloc first");
    IB_ASSERT(decay >= 0 && decay <= 1, "ib_ema_new: decay %g outside [0, 1]", decay);
    ib_ema *e = calloc(1, sizeof *e);
    if (!e) {
        ib_fail(IB_ERR_NOMEM, "weight EMA: out of memory");
        return NULL;
    }
    e->ps = ps;
    e->decay = decay;
    e->flags = flags;
    e->np = ps->numel_params;
    e->nb = (flags & IB_EMA_BUFFERS) ? ps->numel_buffers : 0;
    e->shadow = malloc(sizeof(float) * (size_t)(e->np + e->nb + 1));
    if (!e->shadow) {
        ib_fail(IB_ERR_NOMEM, "weight EMA: out of memory for %lld floats", (long long)(e->np + e->nb));
        free(e);
        return NULL;
    }
    ib_ema_reset(e);
    return e;
}

void ib_ema_free(ib_ema *e) {
    if (!e) return;
    free(e->shadow);
    free(e);
}

void ib_ema_reset(ib_ema *e) {
    IB_ASSERT(!e->swapped, "ib_ema_reset while the EMA weights are swapped in");
    memcpy(e->shadow, e->ps->data, sizeof(float) * (size_t)e->np);
    if (e->nb) memcpy(e->shadow + e->np, e->ps->buf, sizeof(float) * (size_t)e->nb);
    e->updates = 0;
}

static double decay_now(const ib_ema *e) {
    double d = e->decay;
    if (e->flags & IB_EMA_WARMUP) {
        double w = (1.0 + (double)e->updates) / (10.0 + (double)e->updates);
        if (w < d) d = w;
    }
    return d;
}

float ib_ema_decay_now(const ib_ema *e) { return (float)decay_now(e); }

// s, w: (n). s = s*d + (1-d)*w.
static void ema_kernel(float *s, const float *w, int64_t n, float d, float one_minus_d) {
    for (int64_t j = 0; j < n; j++) s[j] = s[j] * d + one_minus_d * w[j];
}

// a, b: (n). Exchanges the two arrays.
static void swap_kernel(float *a, float *b, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        float t = a[j];
        a[j] = b[j];
        b[j] = t;
    }
}

// The shadow s against the weights w over [lo, hi), on the library's pool (elements are independent).
typedef struct {
    float *s;
    const float *w;
    float fd, om;
} ema_job;

static void ema_range(void *p, int64_t lo, int64_t hi, int worker) {
    const ema_job *j = p;
    ema_kernel(j->s + lo, j->w + lo, hi - lo, j->fd, j->om);
}

static void swap_range(void *p, int64_t lo, int64_t hi, int worker) {
    const ema_job *j = p;
    swap_kernel(j->s + lo, (float *)j->w + lo, hi - lo);
}

void ib_ema_update(ib_ema *e) {
    IB_ASSERT(!e->swapped, "ib_ema_update while the EMA weights are swapped in: swap back first");
    double d = decay_now(e);
    float fd = (float)d, om = (float)(1.0 - d);
    int64_t np = e->np, nb = e->nb;
    float *s = e->shadow;
    const float *w = e->ps->data, *b = e->ps->buf;
    ema_job j = {s, w, fd, om};
    ib_parallel_range(np, PAR_MIN / 2, ema_range, &j);
    if (nb) ema_kernel(s + np, b, nb, fd, om);
    e->updates++;
}

void ib_ema_swap(ib_ema *e) {
    int64_t np = e->np;
    ema_job j = {e->shadow, e->ps->data, 0.0f, 0.0f};
    ib_parallel_range(np, PAR_MIN / 2, swap_range, &j);
    if (e->nb) swap_kernel(e->shadow + np, e->ps->buf, e->nb);
    e->swapped = !e->swapped;
}

int ib_ema_swapped(const ib_ema *e) { return e->swapped; }

int ib_ema_state_count(const ib_ema *e) { return e->nb ? 2 : 1; }

void ib_ema_state(ib_ema *e, int i, const char **name, float **data, int64_t *n) {
    IB_ASSERT(i >= 0 && i < ib_ema_state_count(e), "ib_ema_state: index %d", i);
    IB_ASSERT(!e->swapped, "ib_ema_state while the EMA weights are swapped in");
    if (name) *name = i == 0 ? "params" : "buffers";
    if (data) *data = i == 0 ? e->shadow : e->shadow + e->np;
    if (n) *n = i == 0 ? e->np : e->nb;
}

int64_t ib_ema_updates(const ib_ema *e) { return e->updates; }
void ib_ema_set_updates(ib_ema *e, int64_t n) {
    IB_ASSERT(n >= 0, "ib_ema_set_updates: %lld", (long long)n);
    e->updates = n;
}

ib_status ib_ema_save(const ib_ema *e, ib_h5 *f, const char *group) {
    IB_ASSERT(!e->swapped, "ib_ema_save while the EMA weights are swapped in");
    IB_ASSERT(e->np <= INT32_MAX && e->nb <= INT32_MAX, "ib_ema_save: too many floats for one dataset");
    char path[1024];
    snprintf(path, sizeof path, "%s/updates", group);
    ib_status s = ib_h5_write_i64(f, path, &e->updates, 1, (int[]){1});
    if (!s) s = ib_h5_set_attr_f64(f, group, "decay", e->decay);
    if (!s) s = ib_h5_set_attr_i64(f, group, "flags", e->flags);
    snprintf(path, sizeof path, "%s/params", group);
    if (!s) s = ib_h5_write_f32(f, path, e->shadow, 1, (int[]){(int)e->np});
    snprintf(path, sizeof path, "%s/buffers", group);
    if (!s && e->nb) s = ib_h5_write_f32(f, path, e->shadow + e->np, 1, (int[]){(int)e->nb});
    return s;
}

ib_status ib_ema_load(ib_ema *e, ib_h5 *f, const char *group) {
    IB_ASSERT(!e->swapped, "ib_ema_load while the EMA weights are swapped in");
    char path[1024];
    snprintf(path, sizeof path, "%s/buffers", group);
    if (e->nb && !ib_h5_exists(f, path))
        return ib_fail(IB_ERR_FORMAT, "%s: no %s (the EMA was saved without buffers)", ib_h5_path(f), path);
    ib_status s = e->nb ? ib_h5_read_f32(f, path, e->shadow + e->np, e->nb) : IB_OK;
    snprintf(path, sizeof path, "%s/params", group);
    if (!s) s = ib_h5_read_f32(f, path, e->shadow, e->np);
    int64_t n = 0;
    snprintf(path, sizeof path, "%s/updates", group);
    if (!s) s = ib_h5_read_i64(f, path, &n, 1);
    if (s) return s;
    if (n < 0) return ib_fail(IB_ERR_FORMAT, "%s: %s is negative (%lld)", ib_h5_path(f), path, (long long)n);
    e->updates = n;
    return IB_OK;
}
