#!/usr/bin/python3
"""Converts PyTorch weights into an ibnas checkpoint (layers/checkpoint.c, docs/FORMATS.md "Checkpoint").

    python3 tools/torch2ibnas.py --arch mobilenetv2 IN.pth OUT.h5
    python3 tools/torch2ibnas.py --arch FILE.arch.json IN.pth OUT.h5

IN.pth is a state_dict saved with torch.save (or a whole model, or {"state_dict": ...}). With
`--arch mobilenetv2` it is torchvision's mobilenet_v2: the width multiplier is found from the tensor
shapes and the class count from classifier.1.weight. With an arch file the names are taken as they are.
Every tensor the arch needs must be there with the right shape; errors name the tensor. The output has
root attributes format, version, arch (JSON, as ib_arch_to_json writes it) and ibnas_version, parameters
under /params/<name> and BN running statistics under /buffers/<name> (float32; num_batches_tracked is
dropped). It is written to OUT.h5.tmp and renamed.
"""
import argparse
import json
import os
import re
import sys

import h5py
import numpy as np

FORMAT = "ibnas-checkpoint"
VERSION = 1
ARCH_FORMAT = "ibnas-arch"
ARCH_VERSION = 1
OPS = ("ibn", "fused", "tucker", "gcibn", "skip")
ROOT_KEYS = ("format", "version", "name", "task", "classes", "input", "act", "stem", "blocks", "head")
BLOCK_KEYS = ("op", "kernel", "expand", "out", "stride", "groups", "r_in", "r_out", "se", "act")


class ConvertError(Exception):
    pass


def ibnas_version():
    """IB_VERSION_STRING from core/core.h beside this script."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "..", "core", "core.h")) as f:
            m = re.search(r'#define IB_VERSION_STRING "([^"]+)"', f.read())
            if m:
                return m.group(1)
    except OSError:
        pass
    return "0.1.0"


def make_divisible(v, divisor=8):
    """torchvision's _make_divisible; layers/modules.c ib_make_divisible computes it in float32."""
    v = np.float32(v)
    new_v = max(divisor, int(v + np.float32(divisor / 2.0)) // divisor * divisor)
    if new_v < np.float32(0.9) * v:
        new_v += divisor
    return new_v


# ---------------------------------------------------------------------------------------------
# Arch: the same defaults and fields as layers/arch.c

def arch_defaults():
    return dict(name="custom", task="classify", classes=1000, input=224, act="relu6",
                stem=dict(out=32, kernel=3, stride=2), blocks=[], head=dict(out=1280, dropout=0.2))


def mobilenetv2_arch(width, classes):
    """torchvision's mobilenet_v2(width_mult, num_classes), as ib_arch_mobilenetv2."""
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]
    a = arch_defaults()
    a["name"] = "mobilenetv2"
    a["classes"] = classes
    a["stem"]["out"] = make_divisible(np.float32(32) * np.float32(width))
    a["head"]["out"] = make_divisible(np.float32(1280) * np.float32(max(1.0, width)))
    for t, c, n, s in setting:
        for r in range(n):
            a["blocks"].append(dict(op="ibn", kernel=3, expand=t, out=make_divisible(np.float32(c) * np.float32(width)),
                                    stride=s if r == 0 else 1))
    return a


def block_defaults(b, cin):
    full = dict(op=b["op"], kernel=3, expand=1, groups=1, r_in=0.25, r_out=0.75, out=cin, stride=1, se=0.0, act="none")
    full.update(b)
    return full


def arch_from_json(text, source):
    """Reads an arch file's fields with layers/arch.c's defaults (the C side validates it fully on load)."""
    try:
        j = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConvertError(f"{source}:{e.lineno}:{e.colno}: {e.msg}")
    if not isinstance(j, dict) or j.get("format") != ARCH_FORMAT:
        raise ConvertError(f'{source}: format must be "{ARCH_FORMAT}" (is this an arch file?)')
    if j.get("version") != ARCH_VERSION:
        raise ConvertError(f"{source}: version {j.get('version')!r} unsupported (this tool reads version 1)")
    def only(obj, allowed, where):
        if not isinstance(obj, dict):
            raise ConvertError(f"{source}: {where or 'the top level'} must be an object")
        for k in obj:
            if k not in allowed:
                raise ConvertError(f"{source}: {where + '.' if where else ''}{k}: unknown field")

    only(j, ROOT_KEYS, "")
    only(j.get("stem", {}), ("out", "kernel", "stride"), "stem")
    only(j.get("head", {}), ("out", "dropout"), "head")
    a = arch_defaults()
    for k in ("name", "task", "classes", "input", "act"):
        if k in j:
            a[k] = j[k]
    a["stem"].update(j.get("stem", {}))
    a["head"].update(j.get("head", {}))
    cin = a["stem"]["out"]
    for i, b in enumerate(j.get("blocks", [])):
        only(b, BLOCK_KEYS, f"blocks[{i}]")
        if b.get("op") not in OPS:
            raise ConvertError(f"{source}: blocks[{i}].op must be one of {', '.join(OPS)}")
        b = block_defaults(b, cin)
        a["blocks"].append(b)
        cin = b["out"]
    return a


def _g(x):
    """C's printf("%g") of a float32 value."""
    return "%g" % float(np.float32(x))


def arch_to_json(a):
    """Byte for byte what ib_arch_to_json (layers/arch.c) writes, so C and Python agree on the arch."""
    out = ['{\n  "format": "%s", "version": %d,\n' % (ARCH_FORMAT, ARCH_VERSION),
           '  "name": "%s", "task": "%s", "classes": %d, "input": %d, "act": "%s",\n'
           % (a["name"], a["task"], a["classes"], a["input"], a["act"]),
           '  "stem": {"out": %d, "kernel": %d, "stride": %d},\n' % (a["stem"]["out"], a["stem"]["kernel"],
                                                                   a["stem"]["stride"]),
           '  "blocks": [\n']
    cin = a["stem"]["out"]
    n = len(a["blocks"])
    for i, b in enumerate(a["blocks"]):
        b = block_defaults(b, cin)
        s = '    {"op": "%s"' % b["op"]
        if b["op"] != "skip":
            s += ', "kernel": %d' % b["kernel"]
            if b["op"] == "tucker":
                s += ', "r_in": %s, "r_out": %s' % (_g(b["r_in"]), _g(b["r_out"]))
            else:
                s += ', "expand": %d' % b["expand"]
            if b["op"] == "gcibn":
                s += ', "groups": %d' % b["groups"]
            s += ', "out": %d, "stride": %d' % (b["out"], b["stride"])
            if b["se"] > 0:
                s += ', "se": %s' % _g(b["se"])
            if b["act"] != "none":
                s += ', "act": "%s"' % b["act"]
        s += "}%s\n" % ("," if i + 1 < n else "")
        out.append(s)
        cin = b["out"]
    out.append('  ],\n  "head": {"out": %d, "dropout": %s}\n}\n' % (a["head"]["out"], _g(a["head"]["dropout"])))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The tensors a network needs, in registration order (layers/net.c, blocks.c, modules.c)

def _conv(t, prefix, cin, cout, k, groups=1, bias=False):
    t.append((prefix + ".weight", (cout, cin // groups, k, k), False))
    if bias:
        t.append((prefix + ".bias", (cout,), False))


def _bn(t, prefix, c):
    for leaf in ("weight", "bias"):
        t.append((f"{prefix}.{leaf}", (c,), False))
    for leaf in ("running_mean", "running_var"):
        t.append((f"{prefix}.{leaf}", (c,), True))


def _cba(t, prefix, cin, cout, k, groups=1):
    _conv(t, prefix + ".0", cin, cout, k, groups)
    _bn(t, prefix + ".1", cout)


def block_hidden(b, cin):
    if b["op"] == "tucker":
        return make_divisible(np.float32(b["r_out"]) * np.float32(b["out"]))
    if b["op"] == "skip":
        return cin
    return cin * b["expand"]


def block_tensors(t, prefix, b, cin):
    if b["op"] == "skip":
        return
    k, hid = b["kernel"], block_hidden(b, cin)
    stages = []
    if b["op"] == "ibn":
        if b["expand"] != 1:
            stages.append((cin, hid, 1, 1))
        stages.append((hid, hid, k, hid))
    elif b["op"] == "fused":
        stages.append((cin, hid, k, 1))
    elif b["op"] == "gcibn":
        stages.append((cin, hid, k, b["groups"]))
    elif b["op"] == "tucker":
        mid = make_divisible(np.float32(b["r_in"]) * np.float32(cin))
        stages += [(cin, mid, 1, 1), (mid, hid, k, 1)]
    n = 0
    for ci, co, kk, g in stages:
        _cba(t, f"{prefix}.conv.{n}", ci, co, kk, g)
        n += 1
    if b["se"] > 0:
        sq = make_divisible(np.float32(hid) * np.float32(b["se"]))
        _conv(t, f"{prefix}.conv.{n}.fc1", hid, sq, 1, bias=True)
        _conv(t, f"{prefix}.conv.{n}.fc2", sq, hid, 1, bias=True)
        n += 1
    _conv(t, f"{prefix}.conv.{n}", hid, b["out"], 1)
    _bn(t, f"{prefix}.conv.{n + 1}", b["out"])


def arch_tensors(a):
    """[(name, shape, is_buffer)] in the order ib_net_build registers them."""
    t = []
    _cba(t, "features.0", 3, a["stem"]["out"], a["stem"]["kernel"])
    c = a["stem"]["out"]
    for i, b in enumerate(a["blocks"]):
        b = block_defaults(b, c)
        block_tensors(t, f"features.{i + 1}", b, c)
        c = b["out"]
    if a["head"]["out"] > 0:
        _cba(t, f"features.{len(a['blocks']) + 1}", c, a["head"]["out"], 1)
        c = a["head"]["out"]
    t.append(("classifier.1.weight", (a["classes"], c), False))
    t.append(("classifier.1.bias", (a["classes"],), False))
    return t


# ---------------------------------------------------------------------------------------------
# Conversion

TORCHVISION_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def _shape(v):
    return tuple(int(d) for d in v.shape)


def infer_mobilenetv2(sd, source="state_dict"):
    """Width and arch of a torchvision mobilenet_v2 state_dict: the first width (torchvision's,
    then 0.1 to 4.0 in 0.1 steps, then in 0.05 and 0.01 steps) whose arch reproduces every tensor shape.
    Widths giving the same shapes give the same arch, so which of them is found does not matter. When none
    fits every tensor, the closest one is returned and convert() reports the tensor that does not fit."""
    for key in ("features.0.0.weight", "classifier.1.weight"):
        if key not in sd:
            raise ConvertError(f"{source}: no tensor {key}: not a torchvision mobilenet_v2 state_dict")
    stem_out = _shape(sd["features.0.0.weight"])[0]
    classes = _shape(sd["classifier.1.weight"])[0]
    widths = list(TORCHVISION_WIDTHS) + [round(0.1 * i, 1) for i in range(1, 41)] + \
        [round(0.05 * i, 2) for i in range(1, 81)] + [round(0.01 * i, 2) for i in range(1, 401)]
    tried = set()
    best, best_hits = None, -1
    for w in widths:
        if w in tried:
            continue
        tried.add(w)
        a = mobilenetv2_arch(w, classes)
        if a["stem"]["out"] != stem_out:
            continue
        need = arch_tensors(a)
        hits = sum(name in sd and _shape(sd[name]) == shape for name, shape, _ in need)
        if hits == len(need):
            return w, a
        if hits > best_hits:
            best, best_hits = (w, a), hits
    if best is not None:   # the closest width: convert() then names the tensor that does not fit
        return best
    raise ConvertError(f"{source}: features.0.0.weight has {stem_out} output channels, which no width multiplier "
                       f"(torchvision's, or 0.01 to 4.0) of mobilenet_v2 gives")


def convert(sd, a, source="state_dict"):
    """Checks sd against arch a; returns (params, buffers) as ordered lists of (name, float32 array)."""
    params, buffers = [], []
    need = arch_tensors(a)
    names = {n for n, _, _ in need}
    for name, shape, is_buffer in need:
        if name not in sd:
            raise ConvertError(f"{source}: tensor {name} is missing (the arch needs shape {list(shape)})")
        v = sd[name]
        if _shape(v) != shape:
            raise ConvertError(f"{source}: tensor {name} has shape {list(_shape(v))}, the arch needs {list(shape)}")
        arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ConvertError(f"{source}: tensor {name} is {arr.dtype}, expected floating point")
        # A copy: the array must not change when the model it came from trains on.
        (buffers if is_buffer else params).append((name, np.array(arr, dtype=np.float32, order="C", copy=True)))
    extra = [k for k in sd if k not in names and not k.endswith("num_batches_tracked")]
    if extra:
        raise ConvertError(f"{source}: tensor {extra[0]} is not part of the arch"
                           + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    return params, buffers


def write_checkpoint_into(f, arch_json, params, buffers, **dataset_kw):
    """Writes the checkpoint layout into an open h5py file (root attributes, /params, /buffers)."""
    f.attrs["format"] = FORMAT
    f.attrs["version"] = np.int64(VERSION)
    f.attrs["arch"] = arch_json
    f.attrs["ibnas_version"] = ibnas_version()
    for group, items in (("params", params), ("buffers", buffers)):
        g = f.require_group(group)
        for name, arr in items:
            g.create_dataset(name, data=arr, **dataset_kw)


def write_checkpoint(path, arch_json, params, buffers):
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            write_checkpoint_into(f, arch_json, params, buffers)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_state_dict(path):
    import torch
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:   # torch raises many kinds (pickle, zip, runtime)
        raise ConvertError(f"{path}: cannot load with torch.load: {e}")
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: holds a {type(obj).__name__}, expected a state_dict or a model")
    return obj


def resolve_arch(spec, sd, source):
    """(arch dict, arch JSON) for --arch mobilenetv2 or --arch FILE.arch.json."""
    if spec == "mobilenetv2":
        _, a = infer_mobilenetv2(sd, source)
    else:
        try:
            with open(spec) as f:
                text = f.read()
        except OSError as e:
            raise ConvertError(f"{spec}: cannot open ({e.strerror})")
        a = arch_from_json(text, spec)
    return a, arch_to_json(a)


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch state_dict -> ibnas checkpoint")
    ap.add_argument("--arch", required=True, help='"mobilenetv2" (torchvision) or an *.arch.json file')
    ap.add_argument("input", help="state_dict or model saved with torch.save")
    ap.add_argument("output", help="ibnas checkpoint (.h5)")
    args = ap.parse_args(argv)
    try:
        sd = load_state_dict(args.input)
        a, arch_json = resolve_arch(args.arch, sd, args.input)
        params, buffers = convert(sd, a, args.input)
        write_checkpoint(args.output, arch_json, params, buffers)
    except ConvertError as e:
        print(f"torch2ibnas: {e}", file=sys.stderr)
        return 1
    n = sum(arr.size for _, arr in params)
    print(f"{args.output}: {a['name']}, {a['classes']} classes, {len(params)} parameter tensors ({n} values), "
          f"{len(buffers)} buffers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
