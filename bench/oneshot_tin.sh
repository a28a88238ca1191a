#!/usr/bin/env bash
# The one-shot assumption on real data (issue 11, docs/SEARCH.md): a supernet of the mobiledets space
# trained on the Tiny ImageNet subset at low resolution; N sampled archs, each scored with inherited
# weights (after BN recalibration) and trained alone for the same epochs; Kendall's tau between the two
# rankings. Resumable: every step skips what its output file already holds, and the trainings resume.
# usage: bench/oneshot_tin.sh BUILD_DIR [OUT_DIR]
#   env: EPOCHS=2 RES=32 N=10 SAMPLING=uniform THREADS=2 LR=0.1 CLIP=0 CLASSES=200 (the same recipe for the supernet and the archs alone)
#        SPACE=search/spaces/mobiledets.space.json; SRC=DIR takes DIR/train/<class>/ and DIR/val/<class>/ image folders
#        (a class subset, e.g. of symlinks) instead of the whole Tiny ImageNet subset
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IBNAS="$ROOT/${1:-build}/ibnas"
OUT="${2:-$ROOT/build/oneshot}"
EPOCHS=${EPOCHS:-2} RES=${RES:-32} N=${N:-10} SAMPLING=${SAMPLING:-uniform} THREADS=${THREADS:-2} LR=${LR:-0.1} CLIP=${CLIP:-0} CLASSES=${CLASSES:-200}
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
common=(--epochs "$EPOCHS" --batch 64 --res "$RES" --lr "$LR" --clip "$CLIP" --wd 4e-5 --label-smoothing 0.1 --aug padcrop --pad 4
        --warmup 0.3 --threads "$THREADS" --quiet)
if [ ! -f supernet.done ]; then
  r=(); [ -f supernet.h5 ] && r=(--resume supernet.h5)
  "$IBNAS" supernet train --space "$SPACE" --data train.h5 --out supernet.h5 --sampling "$SAMPLING" "${common[@]}" "${r[@]}"
  touch supernet.done
fi
for i in $(seq 1 "$N"); do
  [ -f "a$i.arch.json" ] || "$IBNAS" space sample --space "$SPACE" --seed "$i" --classes "$CLASSES" --out "a$i.arch.json" >/dev/null
  [ -f "inherited$i.json" ] || "$IBNAS" supernet eval --supernet supernet.h5 --arch "a$i.arch.json" --data val.h5 \
      --res "$RES" --calib-batches 20 --threads "$THREADS" --json > "inherited$i.json"
done
for i in $(seq 1 "$N"); do
  [ -f "alone$i.json" ] && continue
  r=(); [ -f "alone$i.h5" ] && r=(--resume "alone$i.h5")
  "$IBNAS" train --arch "a$i.arch.json" --data train.h5 --val val.h5 --out "alone$i.h5" "${common[@]}" "${r[@]}" --json \
      > "alone$i.json.tmp" && mv "alone$i.json.tmp" "alone$i.json"
done
/usr/bin/python3 - "$N" <<'PY'
import json, sys
n = int(sys.argv[1]); rows = []
for i in range(1, n + 1):
    try: rows.append((i, json.load(open(f"inherited{i}.json"))["top1"], json.load(open(f"alone{i}.json"))["val_top1"]))
    except (OSError, ValueError, KeyError): pass
def tau(a, b):
    c = d = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            s = (a[i] - a[j]) * (b[i] - b[j]); c += s > 0; d += s < 0
    return (c - d) / max(1, len(a) * (len(a) - 1) // 2)
print("arch,inherited_top1,alone_top1")
for i, x, y in rows: print(f"a{i},{x:.4f},{y:.4f}")
if len(rows) >= 2: print(f"kendall_tau,{tau([r[1] for r in rows], [r[2] for r in rows]):.3f},n={len(rows)}")
PY
