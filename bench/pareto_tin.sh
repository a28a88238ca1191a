#!/usr/bin/env bash
# The searched front against a hand-made front on real data (issue 13, docs/SEARCH.md): after
# bench/search_tin.sh has left a supernet, its cpu table and the packs in SRC, search the cpu target under
# each hand-made arch's predicted latency (one evolution run, every budget at once), then train every pick
# and every hand-made arch from scratch with the supernet's recipe, SEEDS times each, and print the two
# fronts side by side with the measured latencies. Resumable: every step skips what its output file holds.
# usage: bench/pareto_tin.sh BUILD_DIR SRC_DIR OUT_DIR HAND1.arch.json [HAND2.arch.json ...]
#   env: the recipe of oneshot_tin.sh (EPOCHS RES THREADS LR CLIP CLASSES), SEEDS="0 1", METRIC=loss,
#        POP=32 GENS=10 BATCH=16 (evolution)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # pick_of
IBNAS="$(cd "${1:?BUILD_DIR}" && pwd)/ibnas"
SRC="$(cd "${2:?SRC_DIR}" && pwd)"
OUT="${3:?OUT_DIR}"; shift 3
[ $# -ge 1 ] || { echo "pareto_tin: give at least one hand-made arch" >&2; exit 2; }
hands=(); for a in "$@"; do hands+=("$(cd "$(dirname "$a")" && pwd)/$(basename "$a")"); done
EPOCHS=${EPOCHS:-20} RES=${RES:-32} THREADS=${THREADS:-1} LR=${LR:-0.1} CLIP=${CLIP:-0} CLASSES=${CLASSES:-50}
POP=${POP:-32} GENS=${GENS:-10} BATCH=${BATCH:-16} METRIC=${METRIC:-loss} SEEDS=${SEEDS:-0 1}
for f in supernet.h5 cpu.csv train.h5 val.h5; do
  [ -f "$SRC/$f" ] || { echo "pareto_tin: $SRC/$f is missing (run bench/search_tin.sh first)" >&2; exit 1; }
done
mkdir -p "$OUT"; cd "$OUT"
common=(--epochs "$EPOCHS" --batch 64 --res "$RES" --lr "$LR" --clip "$CLIP" --wd 4e-5 --label-smoothing 0.1 --aug padcrop --pad 4
        --warmup 0.3 --threads "$THREADS" --quiet)
ms() { "$IBNAS" latency predict --lut "$SRC/cpu.csv" --arch "$1" --res "$RES" --json | sed 's/.*"ms": *\([0-9.e+-]*\).*/\1/'; }

budgets=""
for a in "${hands[@]}"; do b=$(ms "$a"); budgets="${budgets:+$budgets,}$b"; echo "hand-made $(basename "$a"): $b ms"; done
echo "== search (cpu, budgets $budgets)"
if [ ! -f search.done ]; then
  r=(); [ -f search/state.json ] && r=(--resume)
  "$IBNAS" search --supernet "$SRC/supernet.h5" --lut "cpu=$SRC/cpu.csv" --budget-ms "cpu=$budgets" --data "$SRC/train.h5" --strategy evolution \
      --population "$POP" --generations "$GENS" --batch "$BATCH" --seed 0 --res "$RES" --metric "$METRIC" \
      --baselines "$(IFS=,; echo "${hands[*]}")" --threads "$THREADS" --quiet --out search "${r[@]}"
  touch search.done
fi

train() {   # train NAME ARCH SEED
  local name=$1 arch=$2 seed=$3
  [ -f "$name.json" ] && return 0
  local r=(); [ -f "$name.h5" ] && r=(--resume "$name.h5")
  "$IBNAS" train --arch "$arch" --classes "$CLASSES" --data "$SRC/train.h5" --val "$SRC/val.h5" --out "$name.h5" --seed "$seed" \
      "${common[@]}" "${r[@]}" --json > "$name.json.tmp" && mv "$name.json.tmp" "$name.json"
}
echo "== train from scratch: every pick and every hand-made arch, seeds $SEEDS"
for seed in $SEEDS; do
  for a in "${hands[@]}"; do
    b=$(ms "$a"); n=$(basename "$a" .arch.json)
    train "hand_${n}_s$seed" "$a" "$seed"
    train "pick_${b}_s$seed" "$(pick_of "$b")" "$seed"
  done
done
echo "== latency measured end to end (1 thread, batch 1)"
if [ ! -f measured.jsonl ]; then
  for a in "${hands[@]}"; do
    b=$(ms "$a")
    "$IBNAS" latency measure --arch "$a" --res "$RES" --threads 1 --json | sed "s/^{/{\"role\": \"hand\", \"budget\": $b, /"
    "$IBNAS" latency measure --arch "$(pick_of "$b")" --res "$RES" --threads 1 --json | sed "s/^{/{\"role\": \"pick\", \"budget\": $b, /"
  done > measured.jsonl.tmp
  mv measured.jsonl.tmp measured.jsonl
fi
for a in "${hands[@]}"; do b=$(ms "$a"); echo "$b $(basename "$a" .arch.json) $(pick_of "$b")"; done > budgets.txt
/usr/bin/python3 - "$SEEDS" <<'PY'
import json, os, sys
seeds = sys.argv[1].split()
meas = {(m["role"], m["budget"]): m["ms"] for m in map(json.loads, open("measured.jsonl"))}
def top1(name):
    return [json.load(open(f"{name}_s{s}.json"))["val_top1"] * 100 for s in seeds if os.path.exists(f"{name}_s{s}.json")]
def fmt(v): return ", ".join(f"{x:.1f}" for x in v) + (f" (mean {sum(v) / len(v):.2f})" if len(v) > 1 else "")
print("| budget ms (predicted) | hand-made | top-1 % | measured ms | searched pick | top-1 % | measured ms | pick - hand |")
print("|---|---|---|---|---|---|---|---|")
for line in open("budgets.txt"):
    b, n, f = line.split(); bf = float(b)
    pick = json.load(open(f))
    desc = "\\|".join(blk["op"] + (f":k{blk['kernel']}" if "kernel" in blk else "") + (f"e{blk['expand']}" if "expand" in blk else "")
                      + (f"i{blk['r_in']}o{blk['r_out']}" if "r_in" in blk else "") for blk in pick["blocks"])
    h, p = top1(f"hand_{n}"), top1(f"pick_{b}")
    d = f"{sum(p) / len(p) - sum(h) / len(h):+.2f}" if h and p else "-"
    print(f"| {b} | {n} | {fmt(h)} | {meas.get(('hand', bf), float('nan')):.4f} | {desc} | {fmt(p)} | {meas.get(('pick', bf), float('nan')):.4f} | {d} |")
PY
