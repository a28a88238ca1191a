// Learning-rate schedules: linear warm-up, then constant, cosine or step decay, as pure functions of
// the step. The cosine form is term for term the lr_at of shared/bench/torch_tinyimagenet_recipe.py,
// evaluated in double like Python, so our lr equals the recipe's rounded to float.
#include "optim/optim.h"

#include <math.h>

ib_status ib_schedule_check(const ib_schedule *s) {
    if (s->kind != IB_LR_CONSTANT && s->kind != IB_LR_COSINE && s->kind != IB_LR_STEP)
        return ib_fail(IB_ERR_ARG, "lr schedule: unknown kind %d", (int)s->kind);
    if (!(s->base_lr >= 0 && isfinite(s->base_lr)))
        return ib_fail(IB_ERR_ARG, "lr schedule: base lr %g must be >= 0", s->base_lr);
    if (s->warmup_steps < 0) return ib_fail(IB_ERR_ARG, "lr schedule: warm-up steps %ld < 0", s->warmup_steps);
    if (s->kind == IB_LR_COSINE && s->total_steps <= s->warmup_steps)
        return ib_fail(IB_ERR_ARG, "lr schedule: cosine needs total steps (%ld) > warm-up steps (%ld)",
                       s->total_steps, s->warmup_steps);
    if (s->kind == IB_LR_COSINE && !(s->final_lr >= 0 && isfinite(s->final_lr)))
        return ib_fail(IB_ERR_ARG, "lr schedule: final lr %g must be >= 0", s->final_lr);
    if (s->kind == IB_LR_STEP && s->decay_every <= 0)
        return ib_fail(IB_ERR_ARG, "lr schedule: step decay every %ld steps must be > 0", s->decay_every);
    if (s->kind == IB_LR_STEP && !(s->gamma > 0 && isfinite(s->gamma)))
        return ib_fail(IB_ERR_ARG, "lr schedule: gamma %g must be > 0", s->gamma);
    return IB_OK;
}

float ib_lr_at(const ib_schedule *s, long step) {
    IB_ASSERT(ib_schedule_check(s) == IB_OK, "ib_lr_at: %s", ib_errmsg());
    if (step < 0) step = 0;
    long warm = s->warmup_steps;
    if (step < warm) return (float)(s->base_lr * (double)step / (double)warm);
    switch (s->kind) {
    case IB_LR_CONSTANT: return (float)s->base_lr;
    case IB_LR_COSINE: {
        // Past the end the cosine would rise again; hold the final lr instead.
        if (step >= s->total_steps) return (float)s->final_lr;
        double c = cos(M_PI * (double)(step - warm) / (double)(s->total_steps - warm));
        return (float)(s->final_lr + (s->base_lr - s->final_lr) * 0.5 * (1.0 + c));
    }
    case IB_LR_STEP: {
        long k = (step - warm) / s->decay_every;
        return (float)(s->base_lr * pow(s->gamma, (double)k));
    }
    }
    return 0.0f;
}
