#!/usr/bin/python3
"""Cross-validates corrections of a latency table's sum (docs/LATENCY.md, "How well the sum predicts a network")
on the per-op columns of `ibnas latency validate --out DIR` (DIR/validate.csv): repeated random splits, n_train
subnets to fit (as `profile --calibrate N` would), the rest held out; prints the held-out mean
|predicted / measured - 1| and Spearman's rho of each model:

  plain          the sum of the rows
  a_b            a * sum + b * rows (what `profile --calibrate` fits)
  a_b_l1         the same, fitted to the least absolute relative error instead of squares
  a_b+a_op       + a scale per block op (profile --calibrate-per-op), ridge-penalised by lam
  a_b+b_op       + a cost per row of each block op and per skip layer, ridge-penalised by lam
  a_b+a_op+b_op  both

Fits are weighted least squares on the relative error (weights 1 / measured^2), as ib_lut_fit_correction.

usage: /usr/bin/python3 bench/lut_correction_cv.py [--train 10 20] [--splits 300] [--lams 0 0.3 1 3] [--auto]
                                                   [--synthetic FUSED_SCALE TUCKER_ROW_MS] -- DIR/validate.csv ...
"""
import argparse, csv, sys
import numpy as np

OPS = ["ibn", "fused", "tucker", "gcibn"]


def load(path):
    rows = [r for r in csv.DictReader(l for l in open(path) if not l.startswith("#"))]
    g = lambda k: np.array([float(r[k]) for r in rows])
    d = {"y": g("measured_ms"), "sum": g("sum_ms"), "n": g("n_rows"), "skip_n": g("skip_n")}
    for o in OPS + ["stem", "head"]:
        d[o + "_ms"], d[o + "_n"] = g(o + "_ms"), g(o + "_n")
    return d


def design(d, model):
    """Columns: the global pair (sum, n_rows), then the per-op deviations the model adds (penalised)."""
    base = [d["sum"], d["n"]]
    extra = []
    ops = [o for o in OPS if d[o + "_n"].any()]
    if "a_op" in model: extra += [d[o + "_ms"] for o in ops]
    if "b_op" in model: extra += [d[o + "_n"] for o in ops] + ([d["skip_n"]] if d["skip_n"].any() else [])
    return np.column_stack(base + extra), len(base)


def fit(X, y, nb, lam):
    """Weighted (1/y^2) least squares through the origin; deviations (columns nb..) penalised by
    lam * (mean weighted square of the column) * coef^2, i.e. ridge on standardised columns."""
    w = 1 / y**2
    A = (X * w[:, None]).T @ X
    r = (X * w[:, None]).T @ y
    P = np.zeros(X.shape[1])
    P[nb:] = lam * np.diag(A)[nb:] / len(y)
    try:
        return np.linalg.solve(A + np.diag(P), r)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A + np.diag(P), r, rcond=None)[0]


def fit_l1(X, y, iters=50):
    """Least absolute relative error: iteratively reweighted least squares (weights 1 / (y^2 |residual|))."""
    th = fit(X, y, X.shape[1], 0)
    for _ in range(iters):
        r = np.abs(X @ th / y - 1)
        w = 1 / np.maximum(r, 1e-3)
        A = (X * (w / y**2)[:, None]).T @ X
        th = np.linalg.solve(A, (X * (w / y**2)[:, None]).T @ y)
    return th


def loo_error(X, y, nb, lam):
    """Mean |relative error| of leave-one-out predictions of the penalised fit (each point refitted without it)."""
    e = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        th = fit(X[keep], y[keep], nb, lam)
        e.append(abs(X[i] @ th / y[i] - 1))
    return np.mean(e)


MARGIN = 0.9


def fit_auto(X, y, nb, lams):
    """The global pair, or the per-op fit at one of lams when it predicts the calibration subnets left out
    one at a time with less than MARGIN times the global pair's error."""
    g = loo_error(X[:, :nb], y, nb, 0)
    best = (MARGIN * g, None)
    for lam in lams:
        e = loo_error(X, y, nb, lam)
        if e < best[0]: best = (e, lam)
    if best[1] is None:
        return np.concatenate([fit(X[:, :nb], y, nb, 0), np.zeros(X.shape[1] - nb)])
    return fit(X, y, nb, best[1])


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def cv(d, model, lam, n_train, splits, seed=0):
    X, nb = design(d, model)
    y = d["y"]
    rng = np.random.default_rng(seed)
    errs, rhos = [], []
    for _ in range(splits):
        idx = rng.permutation(len(y))
        tr, te = idx[:n_train], idx[n_train:]
        if model == "plain":
            p = X[te, 0]
        elif model == "a_b_l1":
            p = X[te][:, :nb] @ fit_l1(X[tr][:, :nb], y[tr])
        elif lam == "auto":
            p = X[te] @ fit_auto(X[tr], y[tr], nb, [0.3, 1, 3])
        else:
            cols = slice(0, nb) if model == "a_b" else slice(None)
            th = fit(X[tr][:, cols], y[tr], nb, lam)
            p = X[te][:, cols] @ th
        errs.append(np.mean(np.abs(p / y[te] - 1)) * 100)
        rhos.append(spearman(p, y[te]))
    return np.mean(errs), np.mean(rhos)


def add_structure(d, fused_scale, tucker_row_ms):
    """A synthetic op effect on top of measured data: fused rows fused_scale times slower inside a network,
    each tucker row tucker_row_ms more (what the per-op terms are meant to catch)."""
    d = dict(d)
    d["y"] = d["y"] + (fused_scale - 1) * d["fused_ms"] + tucker_row_ms * d["tucker_n"]
    return d


def main():
    global MARGIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--splits", type=int, default=300)
    ap.add_argument("--lams", type=float, nargs="+", default=[0, 0.03, 0.1, 0.3, 1, 3])
    ap.add_argument("--auto", action="store_true", help="also: lam chosen per split by leave-one-out")
    ap.add_argument("--margin", type=float, default=MARGIN, help="auto: the per-op fit's LOO error must be below this x the global's")
    ap.add_argument("--synthetic", type=float, nargs=2, metavar=("FUSED_SCALE", "TUCKER_ROW_MS"),
                    help="add a known op effect to the measurements first")
    ap.add_argument("csv", nargs="+")
    a = ap.parse_args()
    MARGIN = a.margin
    models = ["plain", "a_b", "a_b_l1", "a_b+a_op", "a_b+b_op", "a_b+a_op+b_op"]
    for path in a.csv:
        d = load(path)
        if a.synthetic: d = add_structure(d, *a.synthetic)
        print(f"{path}: {len(d['y'])} subnets, measured {d['y'].min():.2f} to {d['y'].max():.2f} ms")
        for nt in a.train:
            for m in models:
                lams = [0] if m in ("plain", "a_b", "a_b_l1") else a.lams + (["auto"] if a.auto else [])
                cells = []
                for lam in lams:
                    e, r = cv(d, m, lam, nt, a.splits)
                    cells.append(f"lam {lam}: {e:5.2f}% {r:.3f}")
                print(f"  train {nt:3d} {m:14s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
