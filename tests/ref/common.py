# Helpers for the reference scripts in tests/ref/: each script writes tests/ref/<topic>.h5, one group
# per case. Within a case: inputs x0, x1, ... (float32), the output `out`, the upstream gradient `gout`
# used for backward (loss = sum(out * gout)), the gradients g0, g1, ... of the inputs (absent for
# inputs that take none), integer data as int32 datasets, and the op's arguments as group attributes.
# Run with the system python (python3-torch, python3-h5py): /usr/bin/python3 tests/ref/<topic>.py
import os
import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def open_ref(topic):
    path = os.path.join(HERE, topic + ".h5")
    f = h5py.File(path + ".tmp", "w")
    f.attrs["format"] = "ibnas-ref"
    f.attrs["torch"] = str(torch.__version__)
    return f, path


def close_ref(f, path):
    f.close()
    os.replace(path + ".tmp", path)


def save_case(f, name, inputs, out, grads=None, gout=None, ints=None, attrs=None):
    """inputs: list of tensors; out: tensor; grads: list (None where no grad); ints: dict of int arrays."""
    g = f.create_group(name)
    for i, x in enumerate(inputs):
        g.create_dataset(f"x{i}", data=x.detach().float().numpy())
    g.create_dataset("out", data=out.detach().float().numpy().reshape(out.shape if out.dim() else (1,)))
    if gout is not None:
        g.create_dataset("gout", data=gout.detach().float().numpy().reshape(gout.shape if gout.dim() else (1,)))
    for i, gr in enumerate(grads or []):
        if gr is not None:
            g.create_dataset(f"g{i}", data=gr.detach().float().numpy())
    for k, v in (ints or {}).items():
        g.create_dataset(k, data=np.asarray(v, dtype=np.int32))
    for k, v in (attrs or {}).items():
        g.attrs[k] = v
    return g
