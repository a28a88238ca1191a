#!/usr/bin/python3
"""Converts an ibnas checkpoint (layers/checkpoint.c) into a PyTorch state_dict saved with torch.save.

    python3 tools/ibnas2torch.py IN.h5 OUT.pth

Every /params and /buffers tensor keeps its name, in the order the network registers them (the arch is
read from the checkpoint). Each BatchNorm gets num_batches_tracked = 0 (ibnas does not count batches), so a
mobilenetv2 checkpoint loads into torchvision.models.mobilenet_v2(width_mult=W, num_classes=C) with
load_state_dict(strict=True). The output is written to OUT.pth.tmp and renamed.
"""
import argparse
import collections
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch2ibnas  # noqa: E402
from torch2ibnas import ConvertError  # noqa: E402


def _str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_checkpoint(path):
    """(arch dict, OrderedDict name -> float32 array) of an ibnas checkpoint, checked against its arch."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open as HDF5 ({e})")
    with f:
        fmt = _str(f.attrs.get("format", "missing"))
        if fmt != torch2ibnas.FORMAT:
            raise ConvertError(f'{path}: not an ibnas checkpoint (format attribute is "{fmt}", '
                               f'expected "{torch2ibnas.FORMAT}")')
        version = int(f.attrs.get("version", -1))
        if version != torch2ibnas.VERSION:
            raise ConvertError(f"{path}: checkpoint version {version}, this tool reads version {torch2ibnas.VERSION}")
        if "arch" not in f.attrs:
            raise ConvertError(f"{path}: no arch attribute")
        arch = torch2ibnas.arch_from_json(_str(f.attrs["arch"]), f"{path} (arch attribute)")
        out = collections.OrderedDict()
        for name, shape, is_buffer in torch2ibnas.arch_tensors(arch):
            key = ("buffers/" if is_buffer else "params/") + name
            if key not in f:
                raise ConvertError(f"{path}: no dataset {key}")
            arr = f[key][()]
            if tuple(arr.shape) != tuple(shape):
                raise ConvertError(f"{path}: {key} has shape {list(arr.shape)}, expected {list(shape)}")
            out[name] = np.ascontiguousarray(arr, dtype=np.float32)
    return arch, out


def to_state_dict(tensors):
    """torch tensors, with num_batches_tracked = 0 after each BatchNorm's running_var."""
    import torch
    sd = collections.OrderedDict()
    for name, arr in tensors.items():
        sd[name] = torch.from_numpy(arr.copy())
        if name.endswith(".running_var"):
            sd[name[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd


def main(argv=None):
    ap = argparse.ArgumentParser(description="ibnas checkpoint -> PyTorch state_dict")
    ap.add_argument("input", help="ibnas checkpoint (.h5)")
    ap.add_argument("output", help="state_dict (.pth)")
    args = ap.parse_args(argv)
    import torch
    try:
        arch, tensors = read_checkpoint(args.input)
    except ConvertError as e:
        print(f"ibnas2torch: {e}", file=sys.stderr)
        return 1
    sd = to_state_dict(tensors)
    tmp = args.output + ".tmp"
    try:
        torch.save(sd, tmp)
        os.replace(tmp, args.output)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            print(f"ibnas2torch: {args.output}: cannot write ({e.strerror})", file=sys.stderr)
            return 1
        raise
    print(f"{args.output}: {arch['name']}, {arch['classes']} classes, {len(sd)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
