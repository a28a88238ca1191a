#!/usr/bin/env bash
# The search against mobilenetv2 at equal latency on real data (issues 13, 15; docs/SEARCH.md "CamVid"):
# a supernet (SAMPLING, fair by default) of the mobiledets space trained as a CamVid segmentation backbone (one DeepLab head shared
# by every path) at RES x RES; a cpu table of the space at that size with the DeepLab head's row; the
# latency of mobilenetv2 segmenters at three widths, measured end to end, as the budgets (a segmenter stops
# at the head's stride, so budgets and predictions are of segmenters, not classifiers); an evolution search
# scored by held-out mIoU (paths and the shared head BN-recalibrated); then every pick and every
# mobilenetv2 width trained alone with one recipe per seed and evaluated on CamVid test: test mIoU and the
# whole segmenter's latency (batch 1, one thread). Resumable: every step skips what its output holds.
# usage: bench/camvid_search.sh BUILD_DIR OUT_DIR
#        (env: RES=96 EPOCHS=25 EPOCHS_ALONE=40 POP=32 GENS=10 SEEDS="0 1" THREADS=2: the supernet's and the
#        search's; one thread on a machine shared with other work, where two-thread OpenMP regions stall;
#        CALIB=20: BN recalibration batches of 64 per scored subnet, for its path and then the head;
#        ALONE_JOBS=2: trainings alone run side by side, 1 to leave a core free; FINETUNE=1: also each pick
#        extracted from the supernet and fine-tuned with the same recipe, per seed; TAU=N: N archs sampled from
#        the space, inherited mIoU against trained alone, Kendall's tau; HEAD=bifpn: the BiFPN head (64 wide, 2
#        layers) instead of DeepLab's; SPACE=mobiledets_seg: the space whose seg_head choices search the BiFPN
#        head's layers and width with the backbone, Autoseg-EdgeTPU's joint search: needs HEAD=bifpn, and the
#        mobilenetv2 baselines keep the fixed 64 x 2 head; SAMPLING=fair|sandwich|uniform and SN_CLIP=N: the
#        supernet's sampling (fair) and --clip (none))
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/bench/lib.sh"   # pick_of, same_arch, budget_of, budgets_all, name
I="$(cd "${1:?BUILD_DIR}" && pwd)/ibnas"
OUT="${2:?OUT_DIR}"
SPACE="$ROOT/search/spaces/${SPACE:-mobiledets}.space.json" HEAD=${HEAD:-deeplab}
D="$ROOT/../shared/data/camvid"
[ -d "$D" ] || { echo "camvid_search: $D is missing (../shared/data/README.md)" >&2; exit 1; }
R=${RES:-96} E=${EPOCHS:-25} EA=${EPOCHS_ALONE:-40} POP=${POP:-32} GENS=${GENS:-10} SEEDS=${SEEDS:-0 1} THREADS=${THREADS:-2} CALIB=${CALIB:-20}
SAMPLING=${SAMPLING:-fair}; sclip=(); [ -n "${SN_CLIP:-}" ] && sclip=(--clip "$SN_CLIP")
seg=(--task segment --head "$HEAD" --seg-aug scale --class-weights median)
common=(--batch 8 --res "$R" --optimizer adamw --lr 0.002 --wd 0.0001 --warmup 1 --workers 1 --quiet)
mkdir -p "$OUT"; cd "$OUT"
echo "== supernet ($E epochs, $SAMPLING sampling, ${R} px) $(date -u +%H:%M)"
if [ ! -f sn.done ]; then
  r=(); [ -f sn.h5 ] && r=(--resume sn.h5)
  "$I" supernet train "${seg[@]}" --space "$SPACE" --data "$D" --out sn.h5 --sampling "$SAMPLING" "${sclip[@]}" --epochs "$E" "${common[@]}" \
      --threads "$THREADS" "${r[@]}"
  touch sn.done
fi
echo "== cpu table $(date -u +%H:%M)"
if [ ! -f cpu.csv.done ]; then
  "$I" latency profile --space "$SPACE" --target cpu --res "$R" --threads 1 --classes 11 --out cpu.csv --quiet \
      --task segment --head "$HEAD"
  touch cpu.csv.done
fi
echo "== mobilenetv2 segmenters measured end to end (the budgets) $(date -u +%H:%M)"
if [ ! -f mnv2.jsonl ]; then
  for w in 0.35 0.5 0.75; do
    "$I" latency measure --arch "mobilenetv2:$w" --res "$R" --threads 1 --repeats 30 --task segment --head "$HEAD" \
        --classes 11 --json | sed "s/^{/{\"width\": $w, /"
  done > mnv2.jsonl.tmp
  mv mnv2.jsonl.tmp mnv2.jsonl
fi
budgets=$(budgets_all)
echo "== search under $budgets ms $(date -u +%H:%M)"
if [ ! -f search.done ]; then
  r=(); [ -f search/state.json ] && r=(--resume)
  "$I" search --task segment --supernet sn.h5 --lut cpu=cpu.csv --budget-ms "cpu=$budgets" --data "$D" --res "$R" \
      --population "$POP" --generations "$GENS" --batch 16 --seed 0 --threads "$THREADS" --calib-batches "$CALIB" \
      --out search "${r[@]}"
  touch search.done
fi
alone() {   # alone NAME ARCH SEED [--init]: trained alone (one thread), then CamVid test; --init: ARCH is a
            # checkpoint (ibnas extract's) to fine-tune
  [ -f "$1.test.json" ] && return 0
  if [ ! -f "$1.json" ]; then
    local r=() net=(--arch "$2"); [ -f "$1.h5" ] && r=(--resume "$1.h5")
    [ "${4:-}" = --init ] && net=(--init "$2")
    "$I" train "${seg[@]}" "${net[@]}" --data "$D" --val "$D" --epochs "$EA" "${common[@]}" --threads 1 --seed "$3" \
        --out "$1.h5" "${r[@]}" --json > "$1.json.tmp"
    mv "$1.json.tmp" "$1.json"
  fi
  "$I" eval --task segment --model "$1.h5" --data "$D" --split test --json --quiet > "$1.test.json.tmp"
  mv "$1.test.json.tmp" "$1.test.json"
}
echo "== trained alone, ${ALONE_JOBS:-2} at a time (one thread each) $(date -u +%H:%M)"
for sd in $SEEDS; do
  prev=""
  for w in 0.35 0.5 0.75; do
    b=$(budget_of "$w")
    a=$(pick_of "$b") p="$(name "pick_$w" "$sd")"
    if [ -n "$prev" ] && same_arch "$a" "$prev_arch" && [ -f "$prev.test.json" ] && [ ! -f "$p.test.json" ]; then
      for f in "$prev".*; do cp "$f" "$p${f#"$prev"}"; done   # the same arch as the previous budget's pick
    fi
    alone "$(name "mnv2_$w" "$sd")" "mobilenetv2:$w" "$sd" & p1=$!
    [ "${ALONE_JOBS:-2}" = 1 ] && wait $p1
    alone "$p" "$a" "$sd" & p2=$!
    wait $p1; wait $p2
    prev="$p" prev_arch="$a"
  done
done
# MobileDets' third arm: each distinct pick extracted with the supernet's weights (path and shared head,
# BN recalibrated) and fine-tuned with the same recipe, per seed.
if [ "${FINETUNE:-0}" = 1 ]; then
  echo "== picks extracted and fine-tuned, one at a time $(date -u +%H:%M)"
  prev_arch=/dev/null
  for w in 0.35 0.5 0.75; do
    b=$(budget_of "$w")
    a=$(pick_of "$b")
    same_arch "$a" "$prev_arch" && continue   # the previous budget's arch
    prev_arch="$a"
    [ -f "sub_$w.h5" ] || "$I" extract --supernet sn.h5 --arch "$a" --calib-batches "$CALIB" --threads "$THREADS" \
        --out "sub_$w.h5"   # written to a temporary file and renamed
    for sd in $SEEDS; do alone "$(name "ft_$w" "$sd")" "sub_$w.h5" "$sd" --init; done
  done
fi
# The one-shot assumption on this supernet (issue 11): TAU archs sampled at random from the space, each scored
# with the supernet's weights (path and head BN recalibrated, as the search scores) and trained alone with the
# recipe above (seed 0), both by mIoU on CamVid val; Kendall's tau and Spearman's rho between the rankings.
if [ "${TAU:-0}" -gt 0 ]; then
  echo "== one-shot assumption: $TAU sampled archs, inherited against trained alone $(date -u +%H:%M)"
  mkdir -p tau
  for i in $(seq "$TAU"); do
    a=tau/a$i.arch.json
    [ -f "$a" ] || "$I" space sample --space "$SPACE" --seed "$i" --classes 11 --out "$a"
    if [ ! -f "tau/a$i.sn.json" ]; then
      "$I" supernet eval --supernet sn.h5 --arch "$a" --data "$D" --calib-batches "$CALIB" --threads 1 --json \
          > "tau/a$i.sn.json.tmp"
      mv "tau/a$i.sn.json.tmp" "tau/a$i.sn.json"
    fi
    [ -f "tau/a$i.ms" ] || "$I" latency predict --lut cpu.csv --arch "$a" --res "$R" --task segment --head "$HEAD" \
        --classes 11 --json | jq -r .ms > "tau/a$i.ms"
    alone "tau/a$i" "$a" 0
  done
  /usr/bin/python3 - "$TAU" <<'PY'
import json, sys
from itertools import combinations
n = int(sys.argv[1])
rows = []
for i in range(1, n + 1):
    sn = json.load(open(f"tau/a{i}.sn.json"))["miou"]
    al = json.load(open(f"tau/a{i}.json"))["val_miou"]
    rows.append((i, float(open(f"tau/a{i}.ms").read()), sn, al))
    print(f"a{i:<3} predicted {rows[-1][1]:.3f} ms  inherited mIoU {sn:.4f}  alone mIoU {al:.4f}")
def rank(v):
    o = sorted(range(len(v)), key=lambda k: v[k])
    r = [0] * len(v)
    for p, k in enumerate(o):
        r[k] = p
    return r
a, b = [r[2] for r in rows], [r[3] for r in rows]
s = sum((x1 - x2) * (y1 - y2) > 0 for (x1, y1), (x2, y2) in combinations(zip(a, b), 2))
d = sum((x1 - x2) * (y1 - y2) < 0 for (x1, y1), (x2, y2) in combinations(zip(a, b), 2))
ra, rb = rank(a), rank(b)
rho = 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))
print(f"Kendall tau {(s - d) / (n * (n - 1) / 2):.3f}, Spearman rho {rho:.3f} over {n} archs")
PY
fi
echo "== the whole segmenters' latency (CamVid test, batch 1, one thread, fastest of 3) $(date -u +%H:%M)"
for w in 0.35 0.5 0.75; do
  b=$(budget_of "$w")
  "$I" latency predict --lut cpu.csv --arch "$(pick_of "$b")" --res "$R" --task segment --head "$HEAD" --classes 11
  "$I" latency measure --arch "$(pick_of "$b")" --res "$R" --threads 1 --repeats 30 --task segment --head "$HEAD" \
      --classes 11
  for m in "mnv2_$w" "pick_$w"; do
    for i in 1 2 3; do
      "$I" eval --task segment --model "$m.h5" --data "$D" --split test --batch 1 --threads 1 --quiet --json
    done | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
print("%-10s test mIoU %.4f  pixel acc %.4f  whole %.3f ms" % (sys.argv[1], rows[0]["miou"], rows[0]["pixel_acc"],
      min(r["total_ms"] for r in rows)))' "$m"
    for sd in $SEEDS; do
      [ "$sd" = 0 ] || jq -r --arg m "$(name "$m" "$sd")" '"\($m) test mIoU \(.miou)"' "$(name "$m" "$sd").test.json"
    done
  done
done
