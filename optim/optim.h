// optim: turns gradients into weight updates on a model's flat parameter block (ib_params): SGD, RMSProp
// (TF's or torch's), AdamW, LR schedules, weight EMA, gradient clipping; all state saves for checkpoints.
// Per step: ib_clip_grad_norm(ps, 10); ib_optim_step(opt, ib_lr_at(&sched, step)); ib_ema_update(ema);
#ifndef IB_OPTIM_H
#define IB_OPTIM_H

#include "core/core.h"

// ---------------------------------------------------------------------------------------------
// Optimizers. Every parameter of ps (not the buffers) is updated from ps->grad; the state (momentum,
// second moments) is one contiguous block of a few copies of the parameter block. Arithmetic is in
// float32 with the operation order of torch.optim, so a run matches PyTorch to float rounding.

typedef enum {
    IB_OPTIM_SGD = 0,
    IB_OPTIM_RMSPROP,   // TensorFlow's form unless cfg.rmsprop_torch
    IB_OPTIM_ADAMW,
} ib_optim_kind;

typedef struct ib_optim_cfg {
    ib_optim_kind kind;
    float momentum;          // SGD, RMSProp; 0 keeps no momentum buffer
    int nesterov;            // SGD (needs momentum > 0)
    float weight_decay;      // SGD, RMSProp: coupled (g += wd * w); AdamW: decoupled (w *= 1 - lr * wd)
    int no_decay_bn_bias;    // 1: no weight decay on tensors with ps->no_decay set (BN weights, biases)
    float rho;               // RMSProp decay of the mean square (TF's rho/decay, torch's alpha)
    float eps;               // RMSProp: TF inside the sqrt, torch outside; AdamW: outside the sqrt
    int rmsprop_torch;       // RMSProp as torch.optim.RMSprop (ms starts at 0, eps outside the sqrt)
    float beta1, beta2;      // AdamW
} ib_optim_cfg;

// The usual defaults of each kind: torch's for SGD (momentum 0) and AdamW (0.9, 0.999, eps 1e-8,
// wd 0.01); RMSProp as MnasNet/MobileNetV3 trained it in TF (rho 0.9, momentum 0.9, eps 1e-3);
// rmsprop_torch = 1 gives torch's (alpha 0.99, eps 1e-8, momentum 0).
ib_optim_cfg ib_optim_cfg_default(ib_optim_kind kind, int rmsprop_torch);
// IB_ERR_ARG with a message naming the bad field (values may come from command-line flags).
ib_status ib_optim_cfg_check(const ib_optim_cfg *cfg);

typedef struct ib_optim ib_optim;

// ps must be allocated (ib_params_alloc) and outlive the optimizer. Returns NULL with a message
// (ib_errmsg) when the config is invalid or memory runs out.
ib_optim *ib_optim_new(const ib_optim_cfg *cfg, ib_params *ps);
void ib_optim_free(ib_optim *opt);
// One update with learning rate lr from the gradients in ps->grad (left untouched).
void ib_optim_step(ib_optim *opt, float lr);
// The same for the tensors i of ps with active[i] != 0 only: all of tensor i when active[i] is 1 (or elem is
// NULL), and when it is 2 only its elements j whose byte elem[j] is set (elem: a 0/1 byte per element of the
// parameter block, indexed as ps->data). The others keep their weights and optimizer state, as torch.optim
// leaves a parameter whose grad is None: a supernet step updates exactly the weights its paths ran, not the
// rest of a shared tensor a path read a slice of (docs/SEARCH.md). AdamW's bias correction still counts every
// step. active NULL: ib_optim_step. clear: the gradients of the weights it stepped are zeroed as it goes (so the
// next step needs no zeroing pass over the same marks); otherwise left untouched.
void ib_optim_step_active(ib_optim *opt, float lr, const uint8_t *active, const uint8_t *elem, int clear);
// Back to the state of a new optimizer (zero momentum, step 0), e.g. before fine-tuning.
void ib_optim_reset(ib_optim *opt);
const ib_optim_cfg *ib_optim_get_cfg(const ib_optim *opt);
// "sgd", "rmsprop_tf", "rmsprop_torch", "adamw": written with saved state and checked on load.
const char *ib_optim_name(const ib_optim *opt);

// State for checkpoints: named flat float arrays of numel_params floats each ("momentum_buffer";
// "ms", "mom"; "square_avg", "momentum_buffer"; "exp_avg", "exp_avg_sq"), plus the step count
// (number of ib_optim_step calls, which AdamW's bias correction uses). Writing the arrays back
// through `data` and setting the step count resumes a run bit-exactly.
int ib_optim_state_count(const ib_optim *opt);
void ib_optim_state(ib_optim *opt, int i, const char **name, float **data, int64_t *n);
int64_t ib_optim_step_count(const ib_optim *opt);
void ib_optim_set_step_count(ib_optim *opt, int64_t step);
// The same through HDF5: <group>/<name> float32 [n] datasets, <group>/step int64 [1], and the
// optimizer's name as attribute "optimizer" of the group. Load checks the name and every size; after
// a failed load the state is partly overwritten: report the error rather than train on.
ib_status ib_optim_save(const ib_optim *opt, ib_h5 *f, const char *group);
ib_status ib_optim_load(ib_optim *opt, ib_h5 *f, const char *group);

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules, a pure function of the step (so a resumed run needs only the step).
// Every kind starts with a linear warm-up from 0: lr = base_lr * step / warmup_steps while
// step < warmup_steps. Then:
//   constant: base_lr;
//   cosine:   final_lr + (base_lr - final_lr) * 0.5 * (1 + cos(pi * (step - warm) / (total - warm))),
//             final_lr from total_steps on (the lr_at of shared/bench/torch_tinyimagenet_recipe.py);
//   step:     base_lr * gamma^floor((step - warm) / decay_every), counted from the end of the warm-up
//             (torch's StepLR, TF's staircase exponential_decay, when warmup_steps is 0).
// Computed in double, returned as float.

typedef enum { IB_LR_CONSTANT = 0, IB_LR_COSINE, IB_LR_STEP } ib_lr_kind;

typedef struct ib_schedule {
    ib_lr_kind kind;
    double base_lr;
    long warmup_steps;
    long total_steps;        // cosine: the step where lr reaches final_lr
    double final_lr;         // cosine
    long decay_every;        // step: steps between decays
    double gamma;            // step: factor per decay
} ib_schedule;

// IB_ERR_ARG with a message when a field makes no sense (e.g. total_steps <= warmup_steps for cosine).
// ib_lr_at asserts this, so check schedules built from user input first.
ib_status ib_schedule_check(const ib_schedule *s);
float ib_lr_at(const ib_schedule *s, long step);

// ---------------------------------------------------------------------------------------------
// Weight EMA: a shadow copy of the parameters (and optionally the buffers) updated as
// shadow = d * shadow + (1 - d) * w after each optimizer step; swap exchanges shadow and live
// weights, so evaluating with the EMA weights is swap, evaluate, swap.

enum {
    IB_EMA_WARMUP = 1,       // d = min(decay, (1 + n) / (10 + n)), n = updates so far (TF's num_updates)
    IB_EMA_BUFFERS = 2,      // also average the buffers (BN running statistics)
};

typedef struct ib_ema ib_ema;

// The shadow starts as a copy of the current weights: create it after initialising or loading them.
// Returns NULL with a message when memory runs out.
ib_ema *ib_ema_new(ib_params *ps, float decay, int flags);
void ib_ema_free(ib_ema *e);
void ib_ema_update(ib_ema *e);
void ib_ema_swap(ib_ema *e);
int ib_ema_swapped(const ib_ema *e);     // 1 between two swaps (live weights are in the shadow)
void ib_ema_reset(ib_ema *e);            // shadow = current weights, update count 0
float ib_ema_decay_now(const ib_ema *e); // the decay the next update will use
// State for checkpoints: "params" (numel_params) and, with IB_EMA_BUFFERS, "buffers"; the update
// count. Save/load as for the optimizer (<group>/<name>, <group>/updates). Not while swapped.
int ib_ema_state_count(const ib_ema *e);
void ib_ema_state(ib_ema *e, int i, const char **name, float **data, int64_t *n);
int64_t ib_ema_updates(const ib_ema *e);
void ib_ema_set_updates(ib_ema *e, int64_t n);
ib_status ib_ema_save(const ib_ema *e, ib_h5 *f, const char *group);
ib_status ib_ema_load(ib_ema *e, ib_h5 *f, const char *group);

// ---------------------------------------------------------------------------------------------
// Gradient clipping by the global L2 norm over every parameter gradient, as
// torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), grads *= coef only when coef < 1.
// The norm is summed in double in a fixed order (independent of the thread count). Returns the norm
// before clipping; a NaN or Inf norm leaves the grads untouched (the caller decides to skip the step).
double ib_grad_norm(const ib_params *ps);
double ib_clip_grad_norm(ib_params *ps, double max_norm);

#endif
