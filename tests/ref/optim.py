# Reference for optim/: ten steps of each optimizer configuration on three small parameter tensors with
# the same fixed per-step gradients and a changing lr (torch.optim; TF-style RMSProp written out from
# TF's equations in float64), LR schedules (the recipe's lr_at), weight EMA and gradient clipping.
# Every hyperparameter is a float32 value, so torch's Python-double scalars equal the C side's floats.
# Run: /usr/bin/python3 tests/ref/optim.py  ->  tests/ref/optim.h5
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import open_ref, close_ref  # noqa: E402

STEPS = 10
# name, shape, no_decay (registration order = order in the flat block)
TENSORS = [("w1", (6, 4), 0), ("b1", (6,), 1), ("w2", (3, 2, 2, 3), 0)]
NUMEL = sum(int(np.prod(s)) for _, s, _ in TENSORS)


def f32(x):
    return float(np.float32(x))


def split(flat):
    out, o = [], 0
    for _, shape, _ in TENSORS:
        n = int(np.prod(shape))
        out.append(flat[o:o + n].reshape(shape))
        o += n
    return out


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


torch.manual_seed(0)
init = torch.randn(NUMEL, dtype=torch.float32)
# Per-step gradients with a different scale per tensor and step, so adaptive methods differ from SGD.
scale_t = torch.cat([torch.full((int(np.prod(s)),), v) for (_, s, _), v in zip(TENSORS, [1.0, 0.3, 2.0])])
grads = torch.randn(STEPS, NUMEL) * scale_t * torch.linspace(1.5, 0.5, STEPS).view(-1, 1)
grads = grads.float()
LRS = np.float32([0.01, 0.05, 0.1, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01])

# name: (kind, hyperparameters, lr multiplier)
CONFIGS = {
    "sgd": ("sgd", dict(), 1.0),
    "sgd_momentum": ("sgd", dict(momentum=0.9), 1.0),
    "sgd_nesterov_wd": ("sgd", dict(momentum=0.9, nesterov=1, weight_decay=0.05), 1.0),
    "sgd_nesterov_wd_nodecay": ("sgd", dict(momentum=0.9, nesterov=1, weight_decay=0.05, no_decay=1), 1.0),
    "rmsprop_tf": ("rmsprop_tf", dict(rho=0.9, momentum=0.9, eps=1e-3), 0.1),
    "rmsprop_tf_nomom_wd": ("rmsprop_tf", dict(rho=0.9, eps=1e-3, weight_decay=0.05, no_decay=1), 0.1),
    "rmsprop_torch": ("rmsprop_torch", dict(rho=0.99, momentum=0.9, eps=1e-8), 0.01),
    "rmsprop_torch_nomom_wd": ("rmsprop_torch", dict(rho=0.9, eps=1e-8, weight_decay=0.05), 0.01),
    "adamw": ("adamw", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05), 0.1),
    "adamw_nodecay": ("adamw", dict(beta1=0.8, beta2=0.99, eps=1e-8, weight_decay=0.5, no_decay=1), 0.1),
}


def run_torch(kind, hp, lrs):
    ps = [torch.nn.Parameter(t.clone()) for t in split(init.clone())]
    wd = f32(hp.get("weight_decay", 0.0))
    if hp.get("no_decay"):
        groups = [{"params": [p], "weight_decay": 0.0 if nd else wd} for p, (_, _, nd) in zip(ps, TENSORS)]
    else:
        groups = [{"params": ps, "weight_decay": wd}]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=1.0, momentum=f32(hp.get("momentum", 0.0)),
                              nesterov=bool(hp.get("nesterov", 0)))
    elif kind == "rmsprop_torch":
        opt = torch.optim.RMSprop(groups, lr=1.0, alpha=f32(hp["rho"]), eps=f32(hp["eps"]),
                                  momentum=f32(hp.get("momentum", 0.0)))
    elif kind == "adamw":
        opt = torch.optim.AdamW(groups, lr=1.0, betas=(f32(hp["beta1"]), f32(hp["beta2"])), eps=f32(hp["eps"]))
    traj = []
    for s in range(STEPS):
        for p, g in zip(ps, split(grads[s])):
            p.grad = g.clone()
        for gr in opt.param_groups:
            gr["lr"] = float(lrs[s])
        opt.step()
        traj.append(flat(ps))
    return torch.stack(traj)


def run_tf_rmsprop(hp, lrs):
    # tf.compat.v1.train.RMSPropOptimizer: ms starts at ONE, eps inside the sqrt; L2 decay as a loss term
    # adds wd * w to the gradient. float64 throughout: an independent check of the float32 C code.
    rho, eps, mom_c = f32(hp["rho"]), f32(hp["eps"]), f32(hp.get("momentum", 0.0))
    wd = f32(hp.get("weight_decay", 0.0))
    wdv = torch.cat([torch.full((int(np.prod(s)),), 0.0 if (nd and hp.get("no_decay")) else wd, dtype=torch.float64)
                     for _, s, nd in TENSORS])
    w = init.double().clone()
    ms = torch.ones(NUMEL, dtype=torch.float64)
    mom = torch.zeros(NUMEL, dtype=torch.float64)
    traj = []
    for s in range(STEPS):
        g = grads[s].double() + wdv * w
        ms = rho * ms + (1 - rho) * g * g
        mom = mom_c * mom + float(lrs[s]) * g / torch.sqrt(ms + eps)
        w = w - mom
        traj.append(w.clone())
    return torch.stack(traj)


# Exactly lr_at of shared/bench/torch_tinyimagenet_recipe.py (0.05 = 0.1 / 2), with its constants
# made parameters: base 0.1, cosine to 0 after `warm` steps of linear warm-up.
def recipe_lr_at(s, warm, total):
    return 0.1 * s / warm if s < warm else 0.05 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))


def main():
    f, path = open_ref("optim")
    setup = f.create_group("setup")
    setup.create_dataset("init", data=init.numpy())
    setup.create_dataset("grads", data=grads.numpy())
    setup.attrs["tensors"] = ",".join(n for n, _, _ in TENSORS)

    opt = f.create_group("opt")
    trajs = {}
    for name, (kind, hp, lr_mul) in CONFIGS.items():
        lrs = np.float32(LRS * np.float32(lr_mul))
        traj = run_tf_rmsprop(hp, lrs) if kind == "rmsprop_tf" else run_torch(kind, hp, lrs)
        trajs[name] = traj.float()
        g = opt.create_group(name)
        g.create_dataset("lr", data=lrs)
        g.create_dataset("params", data=traj.float().numpy())
        g.attrs["kind"] = kind
        for k in ("momentum", "weight_decay", "rho", "eps", "beta1", "beta2"):
            g.attrs[k] = f32(hp.get(k, 0.0))
        g.attrs["nesterov"] = int(hp.get("nesterov", 0))
        g.attrs["no_decay"] = int(hp.get("no_decay", 0))

    # Weight EMA over the SGD-momentum trajectory (and a made-up buffer trajectory), as timm's
    # ModelEmaV2 computes it: ema.mul_(d).add_(w, alpha=1 - d), d in Python double.
    buf_init = torch.rand(5)
    buf_traj = torch.rand(STEPS, 5) + 0.5
    live = trajs["sgd_momentum"]
    ema = f.create_group("ema")
    ema.create_dataset("buf_init", data=buf_init.numpy())
    ema.create_dataset("buf_traj", data=buf_traj.numpy())
    ema.create_dataset("live", data=live.numpy())
    for name, decay, warmup, buffers in (("plain", 0.9, 0, 0), ("warmup_buffers", 0.5, 1, 1)):
        decay = f32(decay)
        sp, sb = init.clone(), buf_init.clone()
        outp, outb, ds = [], [], []
        for n in range(STEPS):
            d = min(decay, (1 + n) / (10 + n)) if warmup else decay
            ds.append(d)
            sp.mul_(d).add_(live[n], alpha=1 - d)
            if buffers:
                sb.mul_(d).add_(buf_traj[n], alpha=1 - d)
            outp.append(sp.clone())
            outb.append(sb.clone())
        g = ema.create_group(name)
        g.attrs["decay"] = decay
        g.attrs["warmup"] = warmup
        g.attrs["buffers"] = buffers
        g.create_dataset("decays", data=np.float32(ds))
        g.create_dataset("params", data=torch.stack(outp).numpy())
        g.create_dataset("buffers", data=torch.stack(outb).numpy())

    # Gradient clipping on the first step's gradients.
    clip = f.create_group("clip")
    for name, max_norm in (("clip", 1.5), ("noclip", 100.0)):
        ps = [torch.nn.Parameter(t.clone()) for t in split(init.clone())]
        for p, gr in zip(ps, split(grads[0])):
            p.grad = gr.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, f32(max_norm))
        g = clip.create_group(name)
        g.attrs["max_norm"] = f32(max_norm)
        g.create_dataset("norm", data=np.float32([norm.item()]))
        g.attrs["norm64"] = grads[0].double().norm().item()
        g.create_dataset("grads", data=flat([p.grad for p in ps]).numpy())

    # Schedules: values at chosen steps. Cosine as the recipe (warm = one epoch of 1562 steps, 10
    # epochs); cosine to a final lr; step decay; constant with warm-up.
    sched = f.create_group("sched")
    warm, total = 1562, 15620
    steps = np.int32([0, 1, 2, 781, 1561, 1562, 1563, 3000, 8591, 12345, 15618, 15619])
    g = sched.create_group("cosine_recipe")
    g.attrs.update(dict(base_lr=0.1, warmup=warm, total=total, final_lr=0.0))
    g.create_dataset("steps", data=steps)
    g.create_dataset("lr", data=np.float32([recipe_lr_at(int(s), warm, total) for s in steps]))

    base, final, warm2, total2 = 0.4, 0.004, 10, 100
    steps2 = np.int32([0, 5, 9, 10, 11, 50, 99, 100, 150])
    g = sched.create_group("cosine_final")
    g.attrs.update(dict(base_lr=base, warmup=warm2, total=total2, final_lr=final))
    g.create_dataset("steps", data=steps2)
    vals = [base * s / warm2 if s < warm2 else
            (final + (base - final) * 0.5 * (1 + math.cos(math.pi * (s - warm2) / (total2 - warm2))) if s < total2
             else final) for s in steps2]
    g.create_dataset("lr", data=np.float32(vals))

    # Step decay as torch.optim.lr_scheduler.StepLR (get_last_lr after `s` scheduler steps, closed form).
    base, gamma, every, warm3 = 0.256, 0.97, 7, 5
    steps3 = np.int32([0, 3, 5, 6, 11, 12, 13, 40, 200])
    g = sched.create_group("step")
    g.attrs.update(dict(base_lr=base, warmup=warm3, every=every, gamma=gamma))
    g.create_dataset("steps", data=steps3)
    g.create_dataset("lr", data=np.float32([base * s / warm3 if s < warm3 else base * gamma ** ((s - warm3) // every)
                                            for s in steps3]))

    g = sched.create_group("constant")
    g.attrs.update(dict(base_lr=0.05, warmup=4))
    g.create_dataset("steps", data=np.int32([0, 1, 3, 4, 1000]))
    g.create_dataset("lr", data=np.float32([0.05 * s / 4 if s < 4 else 0.05 for s in (0, 1, 3, 4, 1000)]))
    close_ref(f, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
