// Data parallelism over the ranks of an MPI job (docs/SCALE.md): what a training loop adds to run on N
// processes as one. Each rank's loader yields its share of every global batch (data/loader.h, shard_*),
// each rank's loss is the mean over its share, so the mean of the ranks' gradients is the gradient of the
// whole batch's mean loss; it is taken with one allreduce over the contiguous gradient block (ps->grad
// and its spare floats, which carry the step's loss, image count and stop flag), or over a packed copy when
// a task head keeps its gradients in a second block. Every rank then takes the same optimizer step from
// the same parameters, so they stay identical without being sent again. Batchnorm is per rank unless
// sync_bn (core/norm.c sums its statistics over the ranks).
#include "tasks/tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ib_status ib_dp_begin(ib_dp *dp, const ib_train_cfg *cfg) {
    memset(dp, 0, sizeof *dp);
    dp->rank = ib_dist_rank();
    dp->size = ib_dist_size();
    dp->sync_bn = cfg->sync_bn && dp->size > 1;
    if (dp->size > 1 && (cfg->batch < dp->size || cfg->batch % dp->size))
        return ib_fail(IB_ERR_ARG, "--batch %d does not split evenly across %d ranks: the global batch must be a "
                       "multiple of the rank count (e.g. --batch %d)", cfg->batch, dp->size,
                       (cfg->batch / dp->size + 1) * dp->size);
    return IB_OK;
}

void ib_dp_end(ib_dp *dp) {
    free(dp->pack);
    dp->pack = NULL, dp->cap = 0;
}

void ib_dp_bcast(const ib_dp *dp, ib_params *ps, ib_optim *opt, ib_ema *ema) {
    if (dp->size < 2) return;
    ib_dist_bcast(ps->data, ps->numel_params * (int64_t)sizeof(float), 0);
    ib_dist_bcast(ps->buf, ps->numel_buffers * (int64_t)sizeof(float), 0);
    const char *name;
    float *data;
    int64_t n;
    for (int i = 0; opt && i < ib_optim_state_count(opt); i++)
        ib_optim_state(opt, i, &name, &data, &n), ib_dist_bcast(data, n * (int64_t)sizeof(float), 0);
    for (int i = 0; ema && i < ib_ema_state_count(ema); i++)
        ib_ema_state(ema, i, &name, &data, &n), ib_dist_bcast(data, n * (int64_t)sizeof(float), 0);
}


// g[lo, hi) *= c, on the library's pool.
typedef struct {
    float *g;
    float c;
} scale_job;

static void scale_range(void *p, int64_t lo, int64_t hi, int worker) {
    const scale_job *j = p;
    for (int64_t i = lo; i < hi; i++) j->g[i] *= j->c;
}

ib_status ib_dp_step(ib_dp *dp, ib_params *ps, ib_params *head, double weight, double min_weight, double *loss_sum,
                     int64_t *images, int *stop) {
    if (dp->size < 2) return IB_OK;
    int64_t n0 = ps->numel_params, n1 = head ? head->numel_params : 0, n = n0 + n1;
    float *g = ps->grad;   // IB_GRAD_SPARE floats after the gradient hold the scalars
    if (head) {
        if (dp->cap < n + IB_GRAD_SPARE) {
            float *p = realloc(dp->pack, sizeof(float) * (size_t)(n + IB_GRAD_SPARE));
            if (!p) return ib_fail(IB_ERR_NOMEM, "out of memory packing %lld gradients", (long long)n);
            dp->pack = p, dp->cap = n + IB_GRAD_SPARE;
        }
        g = dp->pack;
        memcpy(g, ps->grad, sizeof(float) * (size_t)n0);
        memcpy(g + n0, head->grad, sizeof(float) * (size_t)n1);
    }
    // A loss normalised by a count of its own (ib_dp_seed): the gradients are of this rank's sum, and the whole
    // batch's loss is the ranks' sums over max(sum_r w_r, min). min_weight is the same on every rank (the mode too).
    g[n] = (float)*loss_sum, g[n + 1] = (float)*images, g[n + 2] = *stop ? 1.0f : 0.0f, g[n + 3] = (float)weight;
    ib_dist_allreduce_f32(g, n + 4);
    scale_job j = {g, min_weight > 0 ? (float)(1.0 / fmax(g[n + 3], min_weight)) : 1.0f / (float)dp->size};
    ib_parallel_range(n, 65536, scale_range, &j);
    if (head) {
        memcpy(ps->grad, g, sizeof(float) * (size_t)n0);
        memcpy(head->grad, g + n0, sizeof(float) * (size_t)n1);
    }
    *loss_sum = g[n], *images = (int64_t)g[n + 1], *stop = g[n + 2] > 0;
    return IB_OK;
}

double ib_dp_seed(const ib_dp *dp, double weight, double min_weight) {
    return dp->size > 1 && min_weight > 0 ? fmax(weight, min_weight) : 1.0;
}

ib_status ib_dp_saved(const ib_dp *dp, ib_status s) {
    if (dp->size < 2) return s;
    int v = (int)s;
    ib_dist_bcast(&v, sizeof v, 0);
    if (dp->rank == 0 || !v) return dp->rank == 0 ? s : IB_OK;
    return ib_fail((ib_status)v, "rank 0 could not write the checkpoint");
}
