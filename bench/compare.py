#!/usr/bin/env python3
"""ibnas against PyTorch on the same machine in the same session (issue 6's targets), for `make bench`.

Runs, alternating the two sides in each round so that both see the same machine load:
  ibnas bench train --arch mobilenetv2 --res 64 --batch 32 --threads 2 --classes 10 --json
  PYTHON TORCH_DIR/torch_mobilenetv2_train.py 2 64 32 10
  ibnas bench infer --arch mobilenetv2 --res 224 --batch 1 --threads 1 --classes 1000 --json
  PYTHON TORCH_DIR/torch_mobilenetv2_infer.py 1 224 1
and, for information, training on 1 thread on both sides (steadier when other processes share the cores)
and PyTorch training in channels_last memory format (bench/torch_train_channels_last.py), its faster
CPU layout, which the reference script does not use but real-data PyTorch code often does.
Each command already reports a median over its own repeats; the table gives the median over rounds.
Peak RSS of both training runs is read the same way: the child's ru_maxrss from wait4().
Prints the ratio table and writes everything (plus the kernel and loader JSON, if given) to --out.
Only the standard library; stdout is the table, so a run can be diffed across commits.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TARGETS = {"train": 2.0, "infer": 0.5, "rss": 1.0}


def run(cmd, timeout):
    """Runs cmd; returns (rc, stdout, stderr, peak RSS of that child in MB, wall seconds)."""
    t0 = time.time()
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        return 127, "", str(e), 0.0, 0.0
    try:
        out, err = communicate_no_wait(p, timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        p.kill()
        out, err, timed_out = "", "timed out after %.0f s" % timeout, True
    _, status, ru = os.wait4(p.pid, 0)   # the child's own rusage (ru_maxrss in KiB on Linux)
    rc = -9 if timed_out else (status >> 8 if os.WIFEXITED(status) else -(status & 0x7F))
    p.returncode = rc   # reaped here: Popen must not wait again
    p.stdout.close()
    p.stderr.close()
    return rc, out, err, ru.ru_maxrss / 1024.0, time.time() - t0


def communicate_no_wait(p, timeout):
    """Reads stdout and stderr to EOF without reaping the child (wait4 must get its rusage)."""
    import selectors
    sel = selectors.DefaultSelector()
    bufs = {p.stdout: [], p.stderr: []}
    for f in bufs:
        sel.register(f, selectors.EVENT_READ)
    deadline = time.time() + timeout
    while sel.get_map():
        left = deadline - time.time()
        if left <= 0:
            raise subprocess.TimeoutExpired(p.args, timeout)
        for key, _ in sel.select(min(left, 1.0)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if chunk:
                bufs[key.fileobj].append(chunk)
            else:
                sel.unregister(key.fileobj)
    return (b"".join(bufs[p.stdout]).decode(errors="replace"), b"".join(bufs[p.stderr]).decode(errors="replace"))


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def torch_status(python):
    """'' if python imports torch and torchvision, else why not."""
    if not os.path.exists(python):
        return "%s does not exist" % python
    try:
        r = subprocess.run([python, "-c", "import torch, torchvision; print(torch.__version__)"],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "%s failed: %s" % (python, e)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["?"])[-1]
        return "%s cannot import torch/torchvision (%s)" % (python, msg)
    return ""


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    return "-" if x is None else ("%.*f" % (nd, x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ibnas", default="build/ibnas")
    ap.add_argument("--torch-dir", default=os.environ.get("IBNAS_TORCH_BENCH_DIR", ""))
    ap.add_argument("--python", default=os.environ.get("IBNAS_BENCH_PYTHON", "/usr/bin/python3"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("IBNAS_BENCH_ROUNDS", "3")))
    ap.add_argument("--budget", type=float, default=float(os.environ.get("IBNAS_BENCH_BUDGET_S", "180")),
                    help="seconds: no new round starts that would end past it, by the mean round so far "
                         "(round 1 always runs)")
    ap.add_argument("--timeout", type=float, default=240, help="per command, seconds")
    ap.add_argument("--kernels-json", default="")
    ap.add_argument("--loader-json", default="")
    ap.add_argument("--out", default="build/bench/results.json")
    a = ap.parse_args()
    if not a.torch_dir:
        here = os.path.dirname(os.path.abspath(__file__))
        a.torch_dir = os.path.normpath(os.path.join(here, "..", "..", "shared", "bench"))

    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "machine": platform.machine(),
               "cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}
    for key, path in (("kernels", a.kernels_json), ("loader", a.loader_json)):
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    results[key] = json.load(f)
            except ValueError as e:
                results[key] = {"error": "unreadable %s: %s" % (path, e)}

    train_py = os.path.join(a.torch_dir, "torch_mobilenetv2_train.py")
    infer_py = os.path.join(a.torch_dir, "torch_mobilenetv2_infer.py")
    skip = ""
    if not (os.path.exists(train_py) and os.path.exists(infer_py)):
        skip = "no PyTorch scripts in %s (set IBNAS_TORCH_BENCH_DIR)" % a.torch_dir
    else:
        skip = torch_status(a.python)
        if skip:
            skip += "; install with: apt-get install python3-torch python3-torchvision"
    cmds = {
        "ibnas_train": [a.ibnas, "bench", "train", "--arch", "mobilenetv2", "--res", "64", "--batch", "32",
                        "--threads", "2", "--classes", "10", "--json"],
        "torch_train": [a.python, train_py, "2", "64", "32", "10"],
        "ibnas_infer": [a.ibnas, "bench", "infer", "--arch", "mobilenetv2", "--res", "224", "--batch", "1",
                        "--threads", "1", "--classes", "1000", "--json"],
        "torch_infer": [a.python, infer_py, "1", "224", "1"],
        # Information, no target: training on 1 thread, which other processes on the machine slow down
        # in proportion, where 2-thread runs stall at every parallel region whose other thread is parked.
        "ibnas_train_1t": [a.ibnas, "bench", "train", "--arch", "mobilenetv2", "--res", "64", "--batch", "32",
                           "--threads", "1", "--classes", "10", "--json"],
        "torch_train_1t": [a.python, train_py, "1", "64", "32", "10"],
        "torch_train_cl": [a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_train_channels_last.py"),
                           "2", "64", "32", "10"],
    }
    order = ["ibnas_train", "torch_train", "ibnas_infer", "torch_infer", "ibnas_train_1t", "torch_train_1t",
             "torch_train_cl"]
    if skip:
        order = [k for k in order if k.startswith("ibnas")]
        print("compare: PyTorch part skipped: " + skip)
    runs = {k: [] for k in order}
    t_start = time.time()
    failed = 0
    rounds_done = 0
    for rnd in range(max(1, a.rounds)):
        elapsed = time.time() - t_start
        if rnd > 0 and elapsed + elapsed / rnd > a.budget:   # another round would end past the budget
            print("compare: %d of %d rounds (another would end past the %.0f s budget)" % (rnd, a.rounds, a.budget))
            break
        for k in order:
            rc, out, err, rss, wall = run(cmds[k], a.timeout)
            obj = last_json(out)
            if rc != 0 or obj is None:
                failed += 1
                tail = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
                print("compare: %s failed (exit %d): %s" % (" ".join(cmds[k]), rc, tail))
                continue
            obj["wait4_peak_rss_mb"] = round(rss, 1)
            obj["wall_s"] = round(wall, 1)
            runs[k].append(obj)
        rounds_done = rnd + 1
        print("compare: round %d done (%.0f s, load average %.1f)" % (rounds_done, time.time() - t_start,
                                                                       os.getloadavg()[0]))
    results["rounds"] = rounds_done
    results["loadavg_end"] = os.getloadavg()[0]
    results["runs"] = runs
    results["commands"] = {k: " ".join(v) for k, v in cmds.items()}

    def m(k, field):
        return med([r.get(field) for r in runs.get(k, [])])

    it, tt = m("ibnas_train", "train_img_per_s"), m("torch_train", "train_img_per_s")
    ii, ti, tx = m("ibnas_infer", "ms"), m("torch_infer", "eager_ms"), m("torch_infer", "xnnpack_ms")
    ir, tr = m("ibnas_train", "wait4_peak_rss_mb"), m("torch_train", "wait4_peak_rss_mb")
    rows = [
        ("train img/s (res 64, b32, 2 thr)", it, tt, "train", ">=", 1),
        ("infer ms (res 224, b1, 1 thr, eager)", ii, ti, "infer", "<=", 2),
        ("train peak RSS MB", ir, tr, "rss", "<=", 1),
    ]
    table = []
    print("\nibnas vs PyTorch, median of %d round(s), each the command's own median; load average %.1f -> %.1f "
          "on %d cores" % (rounds_done, results["loadavg_start"], results["loadavg_end"], os.cpu_count()))
    print("%-38s %10s %10s %8s %8s  %s" % ("metric", "ibnas", "PyTorch", "ratio", "target", ""))
    for name, ours, theirs, key, op, nd in rows:
        ratio = ours / theirs if ours and theirs else None
        target = TARGETS[key]
        ok = None if ratio is None else (ratio >= target if op == ">=" else ratio <= target)
        verdict = "-" if ok is None else ("PASS" if ok else "MISS")
        print("%-38s %10s %10s %8s %8s  %s" % (name, fmt(ours, nd), fmt(theirs, nd),
                                               "-" if ratio is None else "%.2fx" % ratio,
                                               "%s %.1fx" % (op, target), verdict))
        table.append({"metric": name, "ibnas": ours, "pytorch": theirs, "ratio": ratio, "target": op + str(target),
                      "verdict": verdict})
    if tx is not None and ii is not None:
        print("%-38s %10s %10s %8s %8s  %s" % ("(info) infer ms vs XNNPACK", fmt(ii, 2), fmt(tx, 2),
                                               "%.2fx" % (ii / tx), "", ""))
    i1, t1 = m("ibnas_train_1t", "train_img_per_s"), m("torch_train_1t", "train_img_per_s")
    if i1 is not None and t1 is not None:
        print("%-38s %10s %10s %8s %8s  %s" % ("(info) train img/s on 1 thread", fmt(i1, 1), fmt(t1, 1),
                                               "%.2fx" % (i1 / t1), "", ""))
        results["train_1thread"] = {"ibnas": i1, "pytorch": t1, "ratio": i1 / t1}
    tc = m("torch_train_cl", "train_img_per_s")
    if it is not None and tc is not None:
        print("%-38s %10s %10s %8s %8s  %s" % ("(info) train img/s vs channels_last", fmt(it, 1), fmt(tc, 1),
                                               "%.2fx" % (it / tc), "", ""))
        results["train_vs_channels_last"] = {"ibnas": it, "pytorch": tc, "ratio": it / tc}
    busy = max(results["loadavg_start"], results["loadavg_end"]) > (os.cpu_count() or 1)
    if busy:
        print("WARNING: load average above the %d cores: other processes share them, and 2-thread runs stall\n"
              "at every parallel region whose other thread is descheduled, PyTorch's more than ours; the train\n"
              "ratio is then not the quiet machine's (the 1-thread line is the steadier one)." % os.cpu_count())
    results["busy"] = busy
    results["table"] = table
    if skip:
        results["pytorch_skipped"] = skip
    spread = []
    for k in order:
        field = "train_img_per_s" if "train" in k else ("ms" if k == "ibnas_infer" else "eager_ms")
        vals = [r.get(field) for r in runs[k]]
        if vals:
            spread.append("%s %s" % (k, "/".join(fmt(v, 1) for v in vals)))
    if spread:
        print("per round: " + "; ".join(spread))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print("compare: wrote %s" % a.out)
    return 1 if failed else 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
