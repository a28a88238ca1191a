#!/usr/bin/python3
"""The blocks beyond IBN against PyTorch (issue 16): one network per block op, ibnas against PyTorch in
channels_last (its fastest CPU path), training and inference, side by side in the same session.

    /usr/bin/python3 bench/blocks.py BUILD [--threads T] [--res R] [--batch B] [--rounds N] [--json OUT]

Each network is MobileNetV2's layout (stem 32, stages of 24/32/64/96/160/320 channels with 2/3/4/3/3/1
layers and its strides, head 1280, 10 classes) with every block the same op: ibn (expansion 4), fused
(expansion 4), tucker (0.25 / 0.75) or gcibn (expansion 4, 2 groups), kernel 3. The PyTorch side builds
each block with tests/ref/layers.py's Block, the module the layer parity tests check ibnas against, so
both sides run the same convolutions. Training: SGD with momentum on random images, as `ibnas bench
train`; inference: eval-mode batch 1 at the same resolution. Rounds alternate ibnas and PyTorch; the
table gives medians over rounds and multiply-adds counted on the PyTorch model (convs and the linear).
Run PyTorch fairly: this script sets glibc's allocator thresholds for itself (../shared/bench/README.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = [(24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]
OPS = {
    "ibn": {"op": "ibn", "kernel": 3, "expand": 4},
    "fused": {"op": "fused", "kernel": 3, "expand": 4},
    "tucker": {"op": "tucker", "kernel": 3, "r_in": 0.25, "r_out": 0.75},
    "gcibn": {"op": "gcibn", "kernel": 3, "expand": 4, "groups": 2},
}


def arch(op, res, classes=10):
    blocks = []
    for out, n, stride in STAGES:
        for i in range(n):
            blocks.append(dict(OPS[op], out=out, stride=stride if i == 0 else 1))
    return {"format": "ibnas-arch", "version": 1, "name": "blocks-" + op, "task": "classify", "classes": classes,
            "input": res, "act": "relu6", "stem": {"out": 32, "kernel": 3, "stride": 2}, "blocks": blocks,
            "head": {"out": 1280, "dropout": 0.2}}


def torch_model(a):
    import torch.nn as nn
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
    from layers import Block  # noqa: E402  (the parity tests' PyTorch block)

    def cba(ci, co, k, s):
        return nn.Sequential(nn.Conv2d(ci, co, k, s, (k - 1) // 2, bias=False), nn.BatchNorm2d(co), nn.ReLU6())

    layers, cin = [cba(3, a["stem"]["out"], 3, 2)], a["stem"]["out"]
    for b in a["blocks"]:
        kw = {k: b[k] for k in ("kernel", "expand", "groups", "r_in", "r_out") if k in b}
        layers.append(Block(b["op"], cin, b["out"], b["stride"], **kw))
        cin = b["out"]
    layers.append(cba(cin, a["head"]["out"], 1, 1))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(a["head"]["dropout"]),
                         nn.Linear(a["head"]["out"], a["classes"]))


def macs(m, res):
    import torch
    import torch.nn as nn
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features
    hs = [x.register_forward_hook(hook) for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    m.eval()
    with torch.no_grad():
        m(torch.zeros(1, 3, res, res))
    for h in hs:
        h.remove()
    return total[0]


def median_s(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]


def torch_side(a, threads, res, batch):
    """Runs in a child process (the allocator settings must be in its environment): train img/s, infer ms."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = torch_model(a).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    x = torch.randn(batch, 3, res, res).to(memory_format=torch.channels_last)
    y = torch.randint(0, a["classes"], (batch,))
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        lossf(m(x), y).backward()
        opt.step()
    m.train()
    for _ in range(3):
        step()
    train = median_s(step, 10)
    m.eval()
    x1 = torch.randn(1, 3, res, res).to(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(5):
            m(x1)
        infer = median_s(lambda: m(x1), 30)
    return {"train_img_per_s": batch / train, "infer_ms": infer * 1e3}


def run_torch(arch_file, threads, res, batch):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="33554432", MALLOC_TRIM_THRESHOLD_="1073741824",
               OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-child", arch_file, str(threads),
                          str(res), str(batch)], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_ibnas(ibnas, arch_file, threads, res, batch):
    def one(mode, extra):
        out = subprocess.run([ibnas, "bench", mode, "--arch", arch_file, "--res", str(res), "--threads", str(threads),
                              "--classes", "10", "--json"] + extra, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    t = one("train", ["--batch", str(batch)])
    i = one("infer", ["--batch", "1"])
    return {"train_img_per_s": t["train_img_per_s"], "infer_ms": i["ms"]}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-child":
        a = json.load(open(sys.argv[2]))
        print(json.dumps(torch_side(a, *(int(v) for v in sys.argv[3:6]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("build", help="the build folder holding ibnas")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ops", default="ibn,fused,tucker,gcibn")
    p.add_argument("--json", help="write every round's numbers here")
    o = p.parse_args()
    ibnas = os.path.join(o.build, "ibnas")
    if not os.access(ibnas, os.X_OK):
        sys.exit(f"blocks.py: {ibnas} is not an executable (build first: make BUILD={o.build})")
    ops = o.ops.split(",")
    for op in ops:
        if op not in OPS:
            sys.exit(f"blocks.py: unknown op '{op}' (one of {', '.join(OPS)})")
    tmp = tempfile.mkdtemp(prefix="ibnas_blocks_")
    files, mac = {}, {}
    for op in ops:
        a = arch(op, o.res)
        files[op] = os.path.join(tmp, op + ".arch.json")
        with open(files[op], "w") as f:
            json.dump(a, f, indent=1)
        mac[op] = macs(torch_model(a), o.res)
    rows = {op: {"ibnas": [], "torch": []} for op in ops}
    for r in range(o.rounds):
        for op in ops:
            rows[op]["ibnas"].append(run_ibnas(ibnas, files[op], o.threads, o.res, o.batch))
            rows[op]["torch"].append(run_torch(files[op], o.threads, o.res, o.batch))
            print(f"round {r + 1}/{o.rounds} {op}: ibnas {rows[op]['ibnas'][-1]}, torch {rows[op]['torch'][-1]}",
                  file=sys.stderr)
    print(f"blocks at {o.res} px, train batch {o.batch}, {o.threads} threads, median of {o.rounds} rounds "
          f"(PyTorch channels_last; GFLOP/s = 2 x MACs x (3 for training) x img/s)")
    print(f"{'op':8} {'MMAC/img':>9} {'train img/s':>12} {'torch':>8} {'ratio':>6} {'GFLOP/s':>8} {'torch':>6}"
          f" {'infer ms':>9} {'torch':>7} {'ratio':>6}")
    summary = {}
    for op in ops:
        med = {side: {k: statistics.median(x[k] for x in rows[op][side]) for k in ("train_img_per_s", "infer_ms")}
               for side in ("ibnas", "torch")}
        gi = 6 * mac[op] * med["ibnas"]["train_img_per_s"] / 1e9
        gt = 6 * mac[op] * med["torch"]["train_img_per_s"] / 1e9
        tr = med["ibnas"]["train_img_per_s"] / med["torch"]["train_img_per_s"]
        ir = med["torch"]["infer_ms"] / med["ibnas"]["infer_ms"]
        print(f"{op:8} {mac[op] / 1e6:9.1f} {med['ibnas']['train_img_per_s']:12.1f} {med['torch']['train_img_per_s']:8.1f}"
              f" {tr:5.2f}x {gi:8.1f} {gt:6.1f} {med['ibnas']['infer_ms']:9.3f} {med['torch']['infer_ms']:7.3f}"
              f" {ir:5.2f}x")
        summary[op] = {"macs": mac[op], "median": med, "train_ratio": tr, "infer_speedup": ir, "rounds": rows[op]}
    if o.json:
        with open(o.json + ".tmp", "w") as f:
            json.dump({"threads": o.threads, "res": o.res, "batch": o.batch, "ops": summary}, f, indent=1)
        os.replace(o.json + ".tmp", o.json)


if __name__ == "__main__":
    main()
