// optim/: optimizer parity with torch.optim (and TF's RMSProp equations) step by step, LR schedules
// against the recipe's formula, weight EMA, gradient clipping against torch, and bit-exact resume.
#include "optim/optim.h"
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEPS 10
#define NUMEL 66   // w1 (6, 4) + b1 (6) + w2 (3, 2, 2, 3), as tests/ref/optim.py
#define NBUF 5

static char msg[1024];

// The three tensors of the reference (b1 marked no_decay) and a buffer, initialised from the file.
static int make_params(ib_params *ps, ib_h5 *f) {
    ib_params_init(ps);
    ib_params_add(ps, "w1", 2, (int[]){6, 4}, 0);
    ib_params_add_buffer(ps, "bn.running_mean", 1, (int[]){NBUF});
    ib_params_add(ps, "b1", 1, (int[]){6}, 1);
    ib_params_add(ps, "w2", 4, (int[]){3, 2, 2, 3}, 0);
    if (ib_params_alloc(ps) != IB_OK) return 0;
    if (ps->numel_params != NUMEL) return 0;
    for (int j = 0; j < NBUF; j++) ps->buf[j] = 0.25f * (float)j;
    return f ? ib_h5_read_f32(f, "setup/init", ps->data, NUMEL) == IB_OK : 1;
}

static double attr_f(ib_h5 *f, const char *obj, const char *name) {
    double v = NAN;
    IB_ASSERT(ib_h5_attr_f64(f, obj, name, &v) == IB_OK, "%s", ib_errmsg());
    return v;
}

static int64_t attr_i(ib_h5 *f, const char *obj, const char *name) {
    int64_t v = 0;
    IB_ASSERT(ib_h5_attr_i64(f, obj, name, &v) == IB_OK, "%s", ib_errmsg());
    return v;
}

static ib_optim_cfg cfg_from_ref(ib_h5 *f, const char *group) {
    char *kind = NULL;
    IB_ASSERT(ib_h5_attr_str(f, group, "kind", &kind) == IB_OK, "%s", ib_errmsg());
    ib_optim_cfg c = {0};
    if (!strcmp(kind, "sgd")) c.kind = IB_OPTIM_SGD;
    else if (!strcmp(kind, "adamw")) c.kind = IB_OPTIM_ADAMW;
    else {
        c.kind = IB_OPTIM_RMSPROP;
        c.rmsprop_torch = !strcmp(kind, "rmsprop_torch");
    }
    free(kind);
    c.momentum = (float)attr_f(f, group, "momentum");
    c.weight_decay = (float)attr_f(f, group, "weight_decay");
    c.rho = (float)attr_f(f, group, "rho");
    c.eps = (float)attr_f(f, group, "eps");
    c.beta1 = (float)attr_f(f, group, "beta1");
    c.beta2 = (float)attr_f(f, group, "beta2");
    c.nesterov = (int)attr_i(f, group, "nesterov");
    c.no_decay_bn_bias = (int)attr_i(f, group, "no_decay");
    return c;
}

// Worst relative error over the parameter tensors of ps against a flat reference row.
static double worst_tensor_err(const ib_params *ps, const float *ref) {
    double worst = 0;
    for (int i = 0; i < ps->n; i++) {
        if (ps->is_buffer[i]) continue;
        const ib_tensor *t = ps->t[i];
        double e = rel_err(t->data, ref + (t->data - ps->data), ib_numel(t));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

typedef struct {
    char names[32][64];
    int n;
} name_list;

static void collect(const char *name, void *user) {
    name_list *l = user;
    if (l->n < 32) snprintf(l->names[l->n++], 64, "%s", name);
}

// Runs `steps` steps of the reference configuration `group` from the start; returns the worst
// relative error per step against the reference trajectory (or -1 when something failed to load).
static double run_ref_config(ib_h5 *f, const char *group, const ib_optim_cfg *cfg, float *final_params) {
    static float grads[STEPS * NUMEL], traj[STEPS * NUMEL], lrs[STEPS];
    char path[256];
    snprintf(path, sizeof path, "%s/params", group);
    if (ib_h5_read_f32(f, "setup/grads", grads, STEPS * NUMEL) || ib_h5_read_f32(f, path, traj, STEPS * NUMEL))
        return -1;
    snprintf(path, sizeof path, "%s/lr", group);
    if (ib_h5_read_f32(f, path, lrs, STEPS)) return -1;
    ib_params ps;
    if (!make_params(&ps, f)) return -1;
    ib_optim *opt = ib_optim_new(cfg, &ps);
    if (!opt) return -1;
    float buf0[NBUF];
    memcpy(buf0, ps.buf, sizeof buf0);
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        memcpy(ps.grad, grads + s * NUMEL, sizeof(float) * NUMEL);
        ib_optim_step(opt, lrs[s]);
        double e = worst_tensor_err(&ps, traj + s * NUMEL);
        if (!(e <= worst)) worst = e;
        // The step reads the gradients without changing them, and never touches buffers.
        if (memcmp(ps.grad, grads + s * NUMEL, sizeof(float) * NUMEL) || memcmp(ps.buf, buf0, sizeof buf0))
            worst = INFINITY;
    }
    if (ib_optim_step_count(opt) != STEPS) worst = INFINITY;
    if (final_params) memcpy(final_params, ps.data, sizeof(float) * NUMEL);
    ib_optim_free(opt);
    ib_params_free(&ps);
    return worst;
}

TEST(optim_matches_torch_every_step) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("optim.h5")) == IB_OK, "%s", ib_errmsg());
    name_list l = {0};
    CHECK(ib_h5_list(f, "opt", collect, &l) == IB_OK && l.n == 10, "expected 10 configurations, found %d", l.n);
    for (int k = 0; k < l.n; k++) {
        char group[128];
        snprintf(group, sizeof group, "opt/%s", l.names[k]);
        ib_optim_cfg cfg = cfg_from_ref(f, group);
        double e = run_ref_config(f, group, &cfg, NULL);
        printf("  %-26s worst per-tensor rel err over %d steps %.3g\n", l.names[k], STEPS, e);
        CHECK(e >= 0, "%s: %s", l.names[k], ib_errmsg());
        CHECK(e <= 1e-6, "%s: relative error %.3g > 1e-6", l.names[k], e);
    }
    ib_h5_close(f);
}

TEST(optim_variants_really_differ) {
    // The reference must be able to tell the variants apart, or the parity above proves little.
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("optim.h5")) == IB_OK, "%s", ib_errmsg());
    // TF's RMSProp run as torch's (ms from 0, eps outside the sqrt) is far from the TF reference.
    ib_optim_cfg c = cfg_from_ref(f, "opt/rmsprop_tf");
    c.rmsprop_torch = 1;
    double e = run_ref_config(f, "opt/rmsprop_tf", &c, NULL);
    CHECK(e > 1e-2, "torch-style RMSProp matches the TF reference (err %.3g)", e);
    // Without the no-decay flag, the no-decay reference differs in b1 only.
    float with[NUMEL], without[NUMEL];
    c = cfg_from_ref(f, "opt/sgd_nesterov_wd_nodecay");
    CHECK(run_ref_config(f, "opt/sgd_nesterov_wd_nodecay", &c, with) <= 1e-6, "no-decay run");
    c.no_decay_bn_bias = 0;
    run_ref_config(f, "opt/sgd_nesterov_wd_nodecay", &c, without);
    CHECK(!memcmp(with, without, sizeof(float) * 24) && !memcmp(with + 30, without + 30, sizeof(float) * 36),
          "decayed tensors changed with the no-decay flag");
    CHECK(rel_err(with + 24, without + 24, 6) > 1e-4, "b1 decayed despite no_decay");
    // Nesterov off: momentum SGD with weight decay is not the Nesterov reference.
    c = cfg_from_ref(f, "opt/sgd_nesterov_wd");
    c.nesterov = 0;
    CHECK(run_ref_config(f, "opt/sgd_nesterov_wd", &c, NULL) > 1e-3, "Nesterov makes no difference");
    ib_h5_close(f);
}

TEST(optim_config_errors) {
    ib_params ps;
    CHECK(make_params(&ps, NULL), "params");
    ib_optim_cfg c = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
    c.nesterov = 1;
    CHECK(ib_optim_new(&c, &ps) == NULL && strstr(ib_errmsg(), "Nesterov"), "Nesterov without momentum accepted");
    c = ib_optim_cfg_default(IB_OPTIM_ADAMW, 0);
    c.beta2 = 1.0f;
    CHECK(ib_optim_new(&c, &ps) == NULL && strstr(ib_errmsg(), "betas"), "beta2 = 1 accepted");
    c = ib_optim_cfg_default(IB_OPTIM_RMSPROP, 0);
    CHECK(c.rho == 0.9f && c.momentum == 0.9f && c.eps == 1e-3f, "TF RMSProp defaults");
    c.weight_decay = -1;
    CHECK(ib_optim_cfg_check(&c) == IB_ERR_ARG && strstr(ib_errmsg(), "weight decay"), "negative decay accepted");
    ib_schedule s = {.kind = IB_LR_COSINE, .base_lr = 0.1, .warmup_steps = 10, .total_steps = 10};
    CHECK(ib_schedule_check(&s) == IB_ERR_ARG, "cosine with total == warm-up accepted");
    ib_params_free(&ps);
}

TEST(lr_schedules_match_formula) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("optim.h5")) == IB_OK, "%s", ib_errmsg());
    const char *names[] = {"cosine_recipe", "cosine_final", "step", "constant"};
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        char obj[64], path[96];
        snprintf(obj, sizeof obj, "sched/%s", names[k]);
        ib_schedule s = {.base_lr = attr_f(f, obj, "base_lr"), .warmup_steps = (long)attr_i(f, obj, "warmup")};
        if (k < 2) {
            s.kind = IB_LR_COSINE;
            s.total_steps = (long)attr_i(f, obj, "total");
            s.final_lr = attr_f(f, obj, "final_lr");
        } else if (k == 2) {
            s.kind = IB_LR_STEP;
            s.decay_every = (long)attr_i(f, obj, "every");
            s.gamma = attr_f(f, obj, "gamma");
        }
        snprintf(path, sizeof path, "%s/steps", obj);
        int64_t n;
        int nd;
        CHECK(ib_h5_shape(f, path, &nd, &n) == IB_OK && nd == 1 && n <= 16, "%s: %s", path, ib_errmsg());
        int32_t steps[16];
        float want[16];
        CHECK(ib_h5_read_i32(f, path, steps, n) == IB_OK, "%s", ib_errmsg());
        snprintf(path, sizeof path, "%s/lr", obj);
        CHECK(ib_h5_read_f32(f, path, want, n) == IB_OK, "%s", ib_errmsg());
        for (int i = 0; i < n; i++) {
            float got = ib_lr_at(&s, steps[i]);
            double e = want[i] == 0 ? fabs(got) : fabs((double)got - want[i]) / fabs(want[i]);
            if (e > worst) worst = e;
            CHECK(e <= 1e-7, "%s at step %d: %.9g, want %.9g", names[k], steps[i], got, want[i]);
        }
    }
    printf("  worst relative lr error %.3g\n", worst);
    // The recipe's schedule: 0 at step 0, the peak right after warm-up, 0 at the end.
    ib_schedule r = {.kind = IB_LR_COSINE, .base_lr = 0.1, .warmup_steps = 1562, .total_steps = 15620};
    CHECK(ib_lr_at(&r, 0) == 0.0f && ib_lr_at(&r, 1562) == 0.1f && ib_lr_at(&r, 15620) == 0.0f, "recipe endpoints");
    ib_h5_close(f);
}

static int run_ema_case(ib_h5 *f, const char *name, double *worst, char *why, size_t whyn) {
    char obj[64], path[96];
    snprintf(obj, sizeof obj, "ema/%s", name);
    float decay = (float)attr_f(f, obj, "decay");
    int flags = (attr_i(f, obj, "warmup") ? IB_EMA_WARMUP : 0) | (attr_i(f, obj, "buffers") ? IB_EMA_BUFFERS : 0);
    static float live[STEPS * NUMEL], buf_traj[STEPS * NBUF], want_p[STEPS * NUMEL], want_b[STEPS * NBUF];
    float decays[STEPS];
    ib_params ps;
    if (!make_params(&ps, f)) return snprintf(why, whyn, "params"), 0;
    int ok = ib_h5_read_f32(f, "ema/buf_init", ps.buf, NBUF) == IB_OK &&
             ib_h5_read_f32(f, "ema/live", live, STEPS * NUMEL) == IB_OK &&
             ib_h5_read_f32(f, "ema/buf_traj", buf_traj, STEPS * NBUF) == IB_OK;
    snprintf(path, sizeof path, "%s/params", obj);
    ok = ok && ib_h5_read_f32(f, path, want_p, STEPS * NUMEL) == IB_OK;
    snprintf(path, sizeof path, "%s/buffers", obj);
    ok = ok && ib_h5_read_f32(f, path, want_b, STEPS * NBUF) == IB_OK;
    snprintf(path, sizeof path, "%s/decays", obj);
    ok = ok && ib_h5_read_f32(f, path, decays, STEPS) == IB_OK;
    if (!ok) return snprintf(why, whyn, "%s", ib_errmsg()), 0;
    ib_ema *e = ib_ema_new(&ps, decay, flags);
    int want_count = (flags & IB_EMA_BUFFERS) ? 2 : 1;
    if (ib_ema_state_count(e) != want_count) return snprintf(why, whyn, "state count"), 0;
    for (int s = 0; s < STEPS && ok; s++) {
        memcpy(ps.data, live + s * NUMEL, sizeof(float) * NUMEL);
        memcpy(ps.buf, buf_traj + s * NBUF, sizeof(float) * NBUF);
        if (ib_ema_decay_now(e) != decays[s]) {
            snprintf(why, whyn, "%s: decay at update %d is %.9g, want %.9g", name, s, ib_ema_decay_now(e), decays[s]);
            ok = 0;
            break;
        }
        ib_ema_update(e);
        float *sp, *sb = NULL;
        int64_t n;
        ib_ema_state(e, 0, NULL, &sp, &n);
        double err = rel_err(sp, want_p + s * NUMEL, NUMEL);
        if (want_count == 2) {
            ib_ema_state(e, 1, NULL, &sb, &n);
            double eb = rel_err(sb, want_b + s * NBUF, NBUF);
            if (!(eb <= err)) err = eb;
        }
        if (!(err <= *worst)) *worst = err;
        if (!(err <= 1e-6)) {
            snprintf(why, whyn, "%s: update %d: relative error %.3g > 1e-6", name, s, err);
            ok = 0;
        }
    }
    // Swap puts the EMA weights in the model and the live ones aside; swapping back restores both.
    if (ok) {
        float live_p[NUMEL], live_b[NBUF], shadow_p[NUMEL], *sp;
        int64_t n;
        memcpy(live_p, ps.data, sizeof live_p);
        memcpy(live_b, ps.buf, sizeof live_b);
        ib_ema_state(e, 0, NULL, &sp, &n);
        memcpy(shadow_p, sp, sizeof shadow_p);
        ib_ema_swap(e);
        ok = ib_ema_swapped(e) && !memcmp(ps.data, shadow_p, sizeof shadow_p) &&
             (want_count == 2 ? rel_err(ps.buf, want_b + (STEPS - 1) * NBUF, NBUF) <= 1e-6
                              : !memcmp(ps.buf, live_b, sizeof live_b));
        ib_ema_swap(e);
        ok = ok && !ib_ema_swapped(e) && !memcmp(ps.data, live_p, sizeof live_p) && !memcmp(ps.buf, live_b, sizeof live_b);
        if (!ok) snprintf(why, whyn, "%s: swap did not exchange the weights", name);
    }
    ib_ema_free(e);
    ib_params_free(&ps);
    return ok;
}

TEST(ema_matches_reference_and_swaps) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("optim.h5")) == IB_OK, "%s", ib_errmsg());
    double worst = 0;
    int ok = run_ema_case(f, "plain", &worst, msg, sizeof msg) && run_ema_case(f, "warmup_buffers", &worst, msg, sizeof msg);
    ib_h5_close(f);
    CHECK(ok, "%s", msg);
    printf("  worst EMA relative error %.3g\n", worst);
}

TEST(clip_matches_torch) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("optim.h5")) == IB_OK, "%s", ib_errmsg());
    static float grads[STEPS * NUMEL];
    CHECK(ib_h5_read_f32(f, "setup/grads", grads, STEPS * NUMEL) == IB_OK, "%s", ib_errmsg());
    const char *cases[] = {"clip", "noclip"};
    for (int k = 0; k < 2; k++) {
        char obj[64], path[96];
        snprintf(obj, sizeof obj, "clip/%s", cases[k]);
        double max_norm = attr_f(f, obj, "max_norm");
        float want[NUMEL], torch_norm;
        double norm64;
        snprintf(path, sizeof path, "%s/grads", obj);
        CHECK(ib_h5_read_f32(f, path, want, NUMEL) == IB_OK, "%s", ib_errmsg());
        snprintf(path, sizeof path, "%s/norm", obj);
        CHECK(ib_h5_read_f32(f, path, &torch_norm, 1) == IB_OK, "%s", ib_errmsg());
        // The exact norm (float64 in torch) is an attribute: a float32 dataset would round it.
        norm64 = attr_f(f, obj, "norm64");
        ib_params ps;
        CHECK(make_params(&ps, f), "params");
        memcpy(ps.grad, grads, sizeof(float) * NUMEL);
        double norm = ib_clip_grad_norm(&ps, max_norm);
        double en = fabs(norm - torch_norm) / torch_norm, e64 = fabs(norm - norm64) / norm64;
        double eg = rel_err(ps.grad, want, NUMEL);
        printf("  %-6s norm %.9g (torch %.9g, rel %.2g; float64 rel %.2g), grads rel err %.3g\n", cases[k], norm,
               (double)torch_norm, en, e64, eg);
        CHECK(en <= 1e-6 && e64 <= 1e-7, "%s: norm %.9g, torch %.9g", cases[k], norm, (double)torch_norm);
        CHECK(eg <= 1e-6, "%s: clipped grads relative error %.3g", cases[k], eg);
        if (k == 0) CHECK(norm > max_norm && fabs(ib_grad_norm(&ps) - max_norm) < 1e-5 * max_norm, "not clipped to max");
        else CHECK(!memcmp(ps.grad, grads, sizeof(float) * NUMEL), "grads changed although norm < max_norm");
        ib_params_free(&ps);
    }
    ib_h5_close(f);
}

// A parameter block large enough that the OpenMP paths run (above their single-thread cut-off).
static void make_big(ib_params *ps) {
    ib_params_init(ps);
    ib_params_add(ps, "conv.weight", 4, (int[]){64, 32, 3, 3}, 0);
    ib_params_add(ps, "bn.weight", 1, (int[]){64}, 1);
    ib_params_add(ps, "fc.weight", 2, (int[]){1000, 161}, 0);
    ib_params_add(ps, "fc.bias", 1, (int[]){1000}, 1);
    IB_ASSERT(ib_params_alloc(ps) == IB_OK, "alloc");
    ib_rng r;
    ib_rng_seed(&r, 5, 0);
    ib_rng_fill_normal(&r, ps->data, ps->numel_params, 0, 0.1f);
}

TEST(results_do_not_depend_on_thread_count) {
    ib_params a, b;
    make_big(&a);
    make_big(&b);
    ib_optim_cfg c = ib_optim_cfg_default(IB_OPTIM_ADAMW, 0);
    c.no_decay_bn_bias = 1;
    ib_optim *oa = ib_optim_new(&c, &a), *ob = ib_optim_new(&c, &b);
    ib_rng r;
    ib_rng_seed(&r, 6, 0);
    double na = 0, nb = 0;
    for (int s = 0; s < 3; s++) {
        ib_rng_fill_normal(&r, a.grad, a.numel_params, 0, 3);
        memcpy(b.grad, a.grad, sizeof(float) * (size_t)a.numel_params);
        ib_set_threads(1);
        na = ib_clip_grad_norm(&a, 50);
        ib_optim_step(oa, 1e-3f);
        ib_set_threads(2);
        nb = ib_clip_grad_norm(&b, 50);
        ib_optim_step(ob, 1e-3f);
    }
    CHECK(na == nb, "norm with 1 thread %.17g, with 2 %.17g", na, nb);
    CHECK(!memcmp(a.data, b.data, sizeof(float) * (size_t)a.numel_params), "parameters differ between thread counts");
    CHECK(!memcmp(a.grad, b.grad, sizeof(float) * (size_t)a.numel_params), "clipped grads differ");
    ib_optim_free(oa);
    ib_optim_free(ob);
    ib_params_free(&a);
    ib_params_free(&b);
}

// ib_optim_step_active with an element mask: each masked element ends where the plain step takes it (the same
// bits: weight and optimiser state), every other element of the tensor keeps its weight, state and gradient, and
// the stepped gradients are zeroed. The masks are a supernet path's: kernel centres (runs of 3 every 5, 9 of
// every 25), whole rows with gaps, single elements and long runs; every optimiser, one and two threads.
TEST(masked_step_is_the_plain_step_on_the_mask) {
    ib_optim_kind kinds[4] = {IB_OPTIM_SGD, IB_OPTIM_RMSPROP, IB_OPTIM_RMSPROP, IB_OPTIM_ADAMW};
    for (int kc = 0; kc < 4 && !ib_test_failed(); kc++) {
        ib_params a, b;
        make_big(&a);
        make_big(&b);
        int64_t N = a.numel_params;
        uint8_t *elem = calloc((size_t)N, 1), active[4] = {2, 1, 2, 0};
        int64_t w0 = 0, w2 = a.t[2]->data - a.data, n2 = ib_numel(a.t[2]);
        for (int64_t j = 0; j < ib_numel(a.t[0]); j++) {   // conv.weight (64, 32, 3, 3) read as rows of 5x5 blocks
            int64_t q = j % 25, r = q / 5, c = q % 5;
            elem[w0 + j] = r >= 1 && r <= 3 && c >= 1 && c <= 3;
        }
        ib_rng r;
        ib_rng_seed(&r, 11 + (uint64_t)kc, 0);
        for (int64_t j = 0; j < n2; j++) {   // fc.weight: rows of 161, the first 100 of each, then scattered bits
            int64_t c = j % 161;
            elem[w2 + j] = j < n2 / 2 ? c < 100 : (ib_rng_below(&r, 7) < 2);
        }
        ib_optim_cfg c = ib_optim_cfg_default(kinds[kc], kc == 1);
        if (kinds[kc] == IB_OPTIM_SGD) c.momentum = 0.9f, c.nesterov = 1, c.weight_decay = 1e-3f;
        c.no_decay_bn_bias = 1;
        ib_optim *oa = ib_optim_new(&c, &a), *ob = ib_optim_new(&c, &b);
        int ns = ib_optim_state_count(oa);
        float *g = malloc(sizeof(float) * (size_t)N), *keep = malloc(sizeof(float) * (size_t)N * (size_t)(2 + ns));
        for (int s = 0; s < 3; s++) {
            ib_set_threads(s == 1 ? 1 : 2);
            ib_rng_fill_normal(&r, g, N, 0, 1);
            memcpy(a.grad, g, sizeof(float) * (size_t)N), memcpy(b.grad, g, sizeof(float) * (size_t)N);
            memcpy(keep, a.data, sizeof(float) * (size_t)N);
            for (int i = 0; i < ns; i++) {
                float *st;
                ib_optim_state(oa, i, NULL, &st, NULL);
                memcpy(keep + (size_t)(2 + i) * (size_t)N, st, sizeof(float) * (size_t)N);
            }
            ib_optim_step_active(oa, 1e-2f, active, elem, 1);
            ib_optim_step(ob, 1e-2f);
            int64_t bad = 0, stepped = 0;
            for (int ti = 0; ti < a.n; ti++) {
                const ib_tensor *t = a.t[ti];
                for (int64_t j = t->data - a.data, e = j + ib_numel(t); j < e; j++) {
                    int on = active[ti] == 1 || (active[ti] == 2 && elem[j]);
                    stepped += on;
                    if (on) {
                        bad += memcmp(&a.data[j], &b.data[j], sizeof(float)) != 0 || a.grad[j] != 0;
                        for (int i = 0; i < ns; i++) {
                            float *sa, *sb;
                            ib_optim_state(oa, i, NULL, &sa, NULL), ib_optim_state(ob, i, NULL, &sb, NULL);
                            bad += memcmp(&sa[j], &sb[j], sizeof(float)) != 0;
                            sb[j] = sa[j];
                        }
                    } else {
                        bad += a.data[j] != keep[j] || a.grad[j] != g[j];
                        for (int i = 0; i < ns; i++) {
                            float *sa, *sb;
                            ib_optim_state(oa, i, NULL, &sa, NULL), ib_optim_state(ob, i, NULL, &sb, NULL);
                            bad += sa[j] != keep[(size_t)(2 + i) * (size_t)N + (size_t)j];
                            sb[j] = sa[j];   // b follows a's elements outside the mask, so the next step compares
                        }
                    }
                    b.data[j] = a.data[j];
                }
            }
            CHECK(bad == 0, "%s, step %d: %lld elements differ from the plain step or the kept values", ib_optim_name(oa),
                  s, (long long)bad);
            CHECK(stepped > N / 4 && stepped < N, "%s: %lld of %lld elements stepped", ib_optim_name(oa), (long long)stepped,
                  (long long)N);
        }
        ib_set_threads(0);
        free(g), free(keep), free(elem);
        ib_optim_free(oa), ib_optim_free(ob);
        ib_params_free(&a), ib_params_free(&b);
    }
}

// Steps s0..s1-1 of a reproducible run (gradients drawn from a seed per step, a cosine lr).
static void train_steps(ib_params *ps, ib_optim *opt, ib_ema *ema, int s0, int s1) {
    ib_schedule sch = {.kind = IB_LR_COSINE, .base_lr = 0.05, .warmup_steps = 3, .total_steps = 20};
    for (int s = s0; s < s1; s++) {
        ib_rng r;
        ib_rng_seed(&r, 100 + (uint64_t)s, 0);
        ib_rng_fill_normal(&r, ps->grad, ps->numel_params, 0, 1);
        // The gradient depends on the weights, as in training, so a wrong resume cannot hide.
        for (int64_t j = 0; j < ps->numel_params; j++) ps->grad[j] += 0.5f * ps->data[j];
        ib_clip_grad_norm(ps, 8.0);
        ib_optim_step(opt, ib_lr_at(&sch, s));
        if (ema) ib_ema_update(ema);
    }
}

TEST(resume_continues_bit_exactly) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/optim.h5", test_tmpdir());
    for (int k = 0; k < 4; k++) {
        ib_optim_cfg c = ib_optim_cfg_default(k == 0 ? IB_OPTIM_SGD : k == 3 ? IB_OPTIM_ADAMW : IB_OPTIM_RMSPROP, k == 2);
        c.momentum = 0.9f;
        c.nesterov = k == 0;
        c.weight_decay = 1e-2f;
        c.no_decay_bn_bias = 1;
        // Uninterrupted: 12 steps.
        ib_params a;
        CHECK(make_params(&a, NULL), "params");
        for (int j = 0; j < NUMEL; j++) a.data[j] = 0.1f * (float)(j % 13) - 0.6f;
        ib_optim *oa = ib_optim_new(&c, &a);
        ib_ema *ea = ib_ema_new(&a, 0.99f, IB_EMA_WARMUP | IB_EMA_BUFFERS);
        float init[NUMEL];
        memcpy(init, a.data, sizeof init);
        train_steps(&a, oa, ea, 0, 12);

        // Interrupted after 5: save params, optimizer and EMA state, rebuild everything, load, go on.
        ib_params b;
        CHECK(make_params(&b, NULL), "params");
        memcpy(b.data, init, sizeof init);
        ib_optim *ob = ib_optim_new(&c, &b);
        ib_ema *eb = ib_ema_new(&b, 0.99f, IB_EMA_WARMUP | IB_EMA_BUFFERS);
        train_steps(&b, ob, eb, 0, 5);
        ib_h5 *f;
        CHECK(ib_h5_create(&f, tmp) == IB_OK, "%s", ib_errmsg());
        CHECK(ib_h5_write_f32(f, "params/all", b.data, 1, (int[]){NUMEL}) == IB_OK, "%s", ib_errmsg());
        CHECK(ib_optim_save(ob, f, "train/optim") == IB_OK, "%s", ib_errmsg());
        CHECK(ib_ema_save(eb, f, "train/ema") == IB_OK, "%s", ib_errmsg());
        CHECK(ib_h5_close(f) == IB_OK, "%s", ib_errmsg());
        // In memory as well: the enumerated arrays, for a checkpoint writer of its own.
        float saved[2][NUMEL];
        int64_t saved_step = ib_optim_step_count(ob);
        CHECK(saved_step == 5, "step count %lld", (long long)saved_step);
        for (int i = 0; i < ib_optim_state_count(ob); i++) {
            float *d;
            int64_t n;
            const char *name;
            ib_optim_state(ob, i, &name, &d, &n);
            CHECK(n == NUMEL && name && name[0], "state %d", i);
            memcpy(saved[i], d, sizeof(float) * NUMEL);
        }
        float params5[NUMEL];
        memcpy(params5, b.data, sizeof params5);
        ib_optim_free(ob);
        ib_ema_free(eb);
        ib_params_free(&b);

        ib_params r;
        CHECK(make_params(&r, NULL), "params");
        ib_optim *orr = ib_optim_new(&c, &r);
        ib_ema *er = ib_ema_new(&r, 0.99f, IB_EMA_WARMUP | IB_EMA_BUFFERS);
        CHECK(ib_h5_open(&f, tmp) == IB_OK, "%s", ib_errmsg());
        CHECK(ib_h5_read_f32(f, "params/all", r.data, NUMEL) == IB_OK, "%s", ib_errmsg());
        CHECK(ib_optim_load(orr, f, "train/optim") == IB_OK, "%s", ib_errmsg());
        CHECK(ib_ema_load(er, f, "train/ema") == IB_OK, "%s", ib_errmsg());
        // A different optimizer refuses this state with a message naming both.
        ib_optim_cfg other = ib_optim_cfg_default(k == 3 ? IB_OPTIM_SGD : IB_OPTIM_ADAMW, 0);
        ib_optim *oo = ib_optim_new(&other, &r);
        CHECK(ib_optim_load(oo, f, "train/optim") == IB_ERR_FORMAT && strstr(ib_errmsg(), ib_optim_name(orr)),
              "loading %s state into %s: %s", ib_optim_name(orr), ib_optim_name(oo), ib_errmsg());
        ib_optim_free(oo);
        ib_h5_close(f);
        CHECK(ib_optim_step_count(orr) == 5, "restored step count %lld", (long long)ib_optim_step_count(orr));
        train_steps(&r, orr, er, 5, 12);
        CHECK(!memcmp(r.data, a.data, sizeof(float) * NUMEL), "%s: resumed run differs from the uninterrupted one",
              ib_optim_name(oa));
        float *sa, *sr;
        int64_t n;
        ib_ema_state(ea, 0, NULL, &sa, &n);
        ib_ema_state(er, 0, NULL, &sr, &n);
        CHECK(!memcmp(sa, sr, sizeof(float) * NUMEL) && ib_ema_updates(er) == 12, "EMA after resume differs");

        // The in-memory route, and a control: restoring everything but the step count (AdamW's bias
        // correction) or the state arrays must break bit-exactness.
        for (int variant = 0; variant < 3; variant++) {
            ib_params q;
            CHECK(make_params(&q, NULL), "params");
            memcpy(q.data, params5, sizeof params5);
            ib_optim *oq = ib_optim_new(&c, &q);
            if (variant != 2)
                for (int i = 0; i < ib_optim_state_count(oq); i++) {
                    float *d;
                    ib_optim_state(oq, i, NULL, &d, &n);
                    memcpy(d, saved[i], sizeof(float) * NUMEL);
                }
            if (variant != 1) ib_optim_set_step_count(oq, saved_step);
            train_steps(&q, oq, NULL, 5, 12);
            int same = !memcmp(q.data, a.data, sizeof(float) * NUMEL);
            int expect_same = variant == 0 || (variant == 1 && c.kind != IB_OPTIM_ADAMW) ||
                              (variant == 2 && ib_optim_state_count(oq) == 0);
            ib_optim_free(oq);
            ib_params_free(&q);
            CHECK(same == expect_same, "%s, restore variant %d: %s", ib_optim_name(oa), variant,
                  same ? "bit-exact although state was missing" : "differs from the uninterrupted run");
        }
        ib_optim_free(orr);
        ib_ema_free(er);
        ib_params_free(&r);
        ib_optim_free(oa);
        ib_ema_free(ea);
        ib_params_free(&a);
    }
    unlink(tmp);
}
