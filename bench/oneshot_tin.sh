#!/usr/bin/env bash
# The one-shot assumption on real data (issue 11, docs/SEARCH.md): a supernet of the mobiledets space
# trained on the Tiny ImageNet subset at low resolution; N sampled archs, each scored with inherited
# weights (after BN recalibration) and trained alone for the same epochs, and the space's largest and smallest
# subnets (names `largest`, `smallest`) and any arch files of EXTRA the same way; Kendall's tau and Spearman's
# rho between the two rankings, by inherited top-1 and by inherited loss, and a bootstrap 90% interval of tau over the archs. Resumable: every step skips what its output file already holds, and the trainings resume.
# usage: bench/oneshot_tin.sh BUILD_DIR [OUT_DIR]
#   env: EPOCHS=2 RES=32 N=10 SAMPLING=uniform THREADS=2 LR=0.1 CLIP=0 CLASSES=200 (the same recipe for the supernet and the archs alone)
#        ALONE_EPOCHS=N: the archs alone train N epochs instead of EPOCHS (a supernet trained longer than each arch);
#        SPACE=search/spaces/mobiledets.space.json; SRC=DIR takes DIR/train/<class>/ and DIR/val/<class>/ image folders
#        (a class subset, e.g. of symlinks) instead of the whole Tiny ImageNet subset;
#        EXTRA="x.arch.json y.arch.json": more archs scored and trained alone (named by their file);
#        PATH_GRADS=mean|sum: fair sampling's --path-grads (default: the command's, sum);
#        ROLE=alone: only train the archs alone (a second worker beside a ROLE=all one, same OUT_DIR: each
#        stand-alone training is claimed with flock on its .lock file, so two workers never run the same arch;
#        the lock goes with the process, so a killed worker leaves nothing to clean up); ROLE=summary: only the
#        table and the correlations, over the archs that have both scores
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IBNAS="$ROOT/${1:-build}/ibnas"
OUT="${2:-$ROOT/build/oneshot}"
EPOCHS=${EPOCHS:-2} RES=${RES:-32} N=${N:-10} SAMPLING=${SAMPLING:-uniform} THREADS=${THREADS:-2} LR=${LR:-0.1} CLIP=${CLIP:-0} CLASSES=${CLASSES:-200}
ALONE_EPOCHS=${ALONE_EPOCHS:-$EPOCHS}
ROLE=${ROLE:-all}
DATA="$ROOT/../shared/data/tiny-imagenet-200"
SPACE="$ROOT/${SPACE:-search/spaces/mobiledets.space.json}"
mkdir -p "$OUT"; cd "$OUT"
if [ -n "${SRC:-}" ]; then
  [ -f train.h5 ] || "$IBNAS" pack --format imagefolder "$SRC/train" --size "$RES" --out train.h5
  [ -f val.h5 ] || "$IBNAS" pack --format imagefolder "$SRC/val" --size "$RES" --out val.h5
else
  [ -f train.h5 ] || "$IBNAS" pack --format tinyimagenet "$DATA" --size "$RES" --out train.h5
  [ -f val.h5 ] || "$IBNAS" pack --format tinyimagenet "$DATA" --split val --size "$RES" --out val.h5
fi
common=(--batch 64 --res "$RES" --lr "$LR" --clip "$CLIP" --wd 4e-5 --label-smoothing 0.1 --aug padcrop --pad 4
        --warmup 0.3 --threads "$THREADS" --quiet)
if [ "$ROLE" = all ] && [ ! -f supernet.done ]; then
  r=(); [ -f supernet.h5 ] && r=(--resume supernet.h5)
  [ -n "${PATH_GRADS:-}" ] && r+=(--path-grads "$PATH_GRADS")
  "$IBNAS" supernet train --space "$SPACE" --data train.h5 --val val.h5 --out supernet.h5 --sampling "$SAMPLING" --epochs "$EPOCHS" "${common[@]}" "${r[@]}"
  touch supernet.done
fi
# Arch i of the random ones is a$i.arch.json, scored into inherited$i.json and trained alone into alone$i.h5 / .json;
# any other arch NAME (NAME.arch.json) into inherited_NAME.json and alone_NAME.h5 / .json.
names=()
for i in $(seq 1 "$N"); do
  [ -f "a$i.arch.json" ] || "$IBNAS" space sample --space "$SPACE" --seed "$i" --classes "$CLASSES" --out "a$i.arch.json" >/dev/null
  names+=("a$i")
done
for k in largest smallest; do
  [ -f "$k.arch.json" ] || "$IBNAS" space sample --space "$SPACE" --$k --classes "$CLASSES" --out "$k.arch.json" >/dev/null
  names+=("$k")
done
for f in ${EXTRA:-}; do
  n=$(basename "$f" .arch.json); [ -f "$n.arch.json" ] || cp "$f" "$n.arch.json"; names+=("$n")
done
inh() { case $1 in a[0-9]*) echo "inherited${1#a}.json";; *) echo "inherited_$1.json";; esac; }
aln() { case $1 in a[0-9]*) echo "alone${1#a}";; *) echo "alone_$1";; esac; }
for n in "${names[@]}"; do
  [ "$ROLE" = all ] || break
  [ -f "$(inh "$n")" ] || "$IBNAS" supernet eval --supernet supernet.h5 --arch "$n.arch.json" --data val.h5 \
      --res "$RES" --calib-batches 20 --threads "$THREADS" --json > "$(inh "$n")"
done
for n in "${names[@]}"; do
  [ "$ROLE" = summary ] && break
  o=$(aln "$n"); [ -f "$o.json" ] && continue
  exec {lk}>"$o.lock"
  if flock -n "$lk" && [ ! -f "$o.json" ]; then
    r=(); [ -f "$o.h5" ] && r=(--resume "$o.h5")
    "$IBNAS" train --arch "$n.arch.json" --data train.h5 --val val.h5 --out "$o.h5" --epochs "$ALONE_EPOCHS" "${common[@]}" "${r[@]}" --json \
        > "$o.json.tmp" && mv "$o.json.tmp" "$o.json"
  fi
  exec {lk}>&-
done
rows=(); for n in "${names[@]}"; do rows+=("$n:$(inh "$n"):$(aln "$n").json"); done
/usr/bin/python3 - "${rows[@]}" <<'PY'
import json, sys
rows = []
for r in sys.argv[1:]:
    name, inh, aln = r.split(":")
    try: i = json.load(open(inh)); rows.append((name, i["top1"], i["loss"], json.load(open(aln))["val_top1"]))
    except (OSError, ValueError, KeyError): pass
def tau(a, b, k=None):
    """Kendall's tau-a of the archs k (indices into a and b; default all), over the pairs of distinct draws:
    a bootstrap pair that drew one arch twice is left out, not counted as a tie."""
    k = range(len(a)) if k is None else k
    c = d = m = 0
    for i in range(len(k)):
        for j in range(i + 1, len(k)):
            if k[i] != k[j]: s = (a[k[i]] - a[k[j]]) * (b[k[i]] - b[k[j]]); c += s > 0; d += s < 0; m += 1
    return (c - d) / max(1, m)
def rho(a, b):
    rk = lambda v: [sorted(v).index(x) for x in v]
    ra, rb, n = rk(a), rk(b), len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))
print("arch,inherited_top1,inherited_loss,alone_top1")
for n, x, l, y in rows: print(f"{n},{x:.4f},{l:.4f},{y:.4f}")
if len(rows) >= 3:
    t, l, y = [r[1] for r in rows], [-r[2] for r in rows], [r[3] for r in rows]
    print(f"kendall_tau,top1 {tau(t, y):.3f},loss {tau(l, y):.3f},n={len(rows)}")
    print(f"spearman_rho,top1 {rho(t, y):.3f},loss {rho(l, y):.3f},n={len(rows)}")
    # How far tau could move with other archs of the space: 2,000 bootstrap resamples of the archs (seeded)
    import random
    rng, n, bt, bl = random.Random(0), len(rows), [], []
    for _ in range(2000):
        k = [rng.randrange(n) for _ in range(n)]
        bt.append(tau(t, y, k)); bl.append(tau(l, y, k))
    q = lambda v, f: sorted(v)[int(f * (len(v) - 1))]
    print(f"kendall_tau_90ci,top1 {q(bt, .05):.3f}..{q(bt, .95):.3f},loss {q(bl, .05):.3f}..{q(bl, .95):.3f}")
PY
