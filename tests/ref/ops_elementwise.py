# Reference for core/norm.c and core/elementwise.c: batchnorm (training over the batch, 4-d and 2-d,
# running-stat updates; eval), the activations with inputs placed exactly on their kinks, add,
# per-channel scale and concat. Computed in float64 from float32 inputs, then cast.
# Writes tests/ref/ops_elementwise.h5; run with /usr/bin/python3 tests/ref/ops_elementwise.py
import torch
import torch.nn.functional as F

from common import open_ref, close_ref, save_case

# common.open_ref stores torch.__version__, a str subclass that h5py cannot convert: pass a plain str.
torch.__version__ = str(torch.__version__)
torch.manual_seed(0)


def f32(*shape, scale=1.0, offset=0.0):
    """float32 values, returned as float64 so that torch computes on exactly what C reads."""
    return (torch.randn(*shape) * scale + offset).float().double()


def backward(out, inputs):
    gout = torch.randn(out.shape).float().double()
    grads = torch.autograd.grad(out, inputs, gout)
    return gout, list(grads)


def bn_case(f, name, shape, training, momentum, eps):
    c = shape[1]
    x = f32(*shape, scale=2.0, offset=0.5).requires_grad_()
    gamma = f32(c, scale=0.5, offset=1.0).requires_grad_()
    beta = f32(c, scale=0.5).requires_grad_()
    rm = f32(c, scale=0.3)
    rv = (torch.rand(c) + 0.5).float().double()
    rm_in, rv_in = rm.clone(), rv.clone()
    out = F.batch_norm(x, rm, rv, gamma, beta, training=training, momentum=momentum, eps=eps)
    gout, grads = backward(out, [x, gamma, beta])
    g = save_case(f, name, [x, gamma, beta], out, grads=grads, gout=gout,
                  attrs={"training": int(training), "momentum": momentum, "eps": eps})
    g.create_dataset("running_mean_in", data=rm_in.float().numpy())
    g.create_dataset("running_var_in", data=rv_in.float().numpy())
    g.create_dataset("running_mean_out", data=rm.float().numpy())
    g.create_dataset("running_var_out", data=rv.float().numpy())


def act_case(f, name, fn):
    # Random values over [-8, 8] plus every kink exactly, to pin torch's choice of gradient there.
    # 96 elements: a multiple of every vector width, so torch uses its vectorised kernels throughout
    # (for hardswish at exactly 3 its scalar tail loop would give 1.5 where the vector loop gives 1).
    x = torch.cat([torch.rand(2 * 3 * 4 * 4 - 8) * 16 - 8,
                   torch.tensor([-3.0, 0.0, 3.0, 6.0, -6.0, 1e-3, -2.999, 5.999])])
    x = x[torch.randperm(x.numel())].reshape(2, 3, 4, 4).float().double().requires_grad_()
    out = fn(x)
    gout, grads = backward(out, [x])
    save_case(f, name, [x], out, grads=grads, gout=gout)


def main():
    f, path = open_ref("ops_elementwise")
    bn_case(f, "bn4d_train", (4, 6, 5, 5), True, 0.1, 1e-5)
    bn_case(f, "bn2d_train", (16, 7), True, 0.3, 1e-3)
    bn_case(f, "bn4d_eval", (3, 5, 4, 4), False, 0.1, 1e-5)
    act_case(f, "relu", F.relu)
    act_case(f, "relu6", F.relu6)
    act_case(f, "hswish", F.hardswish)
    act_case(f, "hsigmoid", F.hardsigmoid)
    act_case(f, "sigmoid", torch.sigmoid)

    a = f32(2, 4, 3, 5).requires_grad_()
    b = f32(2, 4, 3, 5).requires_grad_()
    out = a + b
    gout, grads = backward(out, [a, b])
    save_case(f, "add", [a, b], out, grads=grads, gout=gout)

    x = f32(2, 5, 4, 3).requires_grad_()
    s = f32(2, 5, 1, 1).requires_grad_()
    out = x * s
    gout, grads = backward(out, [x, s])
    save_case(f, "mul_channel", [x, s], out, grads=grads, gout=gout)

    xs = [f32(2, c, 3, 4).requires_grad_() for c in (2, 3, 1)]
    out = torch.cat(xs, dim=1)
    gout, grads = backward(out, xs)
    save_case(f, "concat", xs, out, grads=grads, gout=gout)

    close_ref(f, path)


if __name__ == "__main__":
    main()
