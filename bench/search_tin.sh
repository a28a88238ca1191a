#!/usr/bin/env bash
# The search on real data (issue 13, docs/SEARCH.md): after bench/oneshot_tin.sh has trained a supernet in
# OUT, build the cpu latency table (measured here) and the edgetpu one (modelled), search both targets under
# the latency the baseline arch is predicted to take there (regularised evolution, and random search with
# the same number of subnets scored), then train the chosen cpu arch, the baseline and mobilenetv2:WIDTH
# from scratch with the supernet's recipe, fine-tune the chosen arch from its inherited weights, and
# measure every network's latency end to end. Resumable: every step skips what its output file holds.
# usage: bench/search_tin.sh BUILD_DIR OUT_DIR BASELINE.arch.json
#   env: the recipe of oneshot_tin.sh (EPOCHS RES THREADS LR CLIP CLASSES SPACE), MNV2=0.35,
#        POP=32 GENS=10 BATCH=16 (evolution), CLOCK=cpu (the profile's clock: cpu time holds on a busy machine),
#        METRIC=top1 (the search's score: top1 or loss), STRATS="evolution random" (the strategies run)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IBNAS="$(cd "${1:?BUILD_DIR}" && pwd)/ibnas"
OUT="${2:?OUT_DIR}"
BASE="$(cd "$(dirname "${3:?BASELINE.arch.json}")" && pwd)/$(basename "$3")"
EPOCHS=${EPOCHS:-20} RES=${RES:-32} THREADS=${THREADS:-2} LR=${LR:-0.1} CLIP=${CLIP:-0} CLASSES=${CLASSES:-200}
SPACE="$ROOT/${SPACE:-search/spaces/tiny.space.json}" MNV2=${MNV2:-0.35}
POP=${POP:-32} GENS=${GENS:-10} BATCH=${BATCH:-16} CLOCK=${CLOCK:-cpu} METRIC=${METRIC:-top1}
cd "$OUT"
[ -f supernet.done ] || { echo "search_tin: $OUT has no finished supernet (run bench/oneshot_tin.sh first)" >&2; exit 1; }
common=(--epochs "$EPOCHS" --batch 64 --res "$RES" --lr "$LR" --clip "$CLIP" --wd 4e-5 --label-smoothing 0.1 --aug padcrop --pad 4
        --warmup 0.3 --threads "$THREADS" --quiet)
ms() { "$IBNAS" latency predict --lut "$1" --arch "$2" --res "$RES" --json | sed 's/.*"ms": *\([0-9.e+-]*\).*/\1/'; }

echo "== latency tables"
[ -f cpu.csv.done ] || { "$IBNAS" latency profile --space "$SPACE" --target cpu --res "$RES" --threads 1 --clock "$CLOCK" \
    --classes "$CLASSES" --out cpu.csv && touch cpu.csv.done; }
[ -f edgetpu.csv ] || "$IBNAS" latency model --space "$SPACE" --target "$ROOT/search/targets/edgetpu.target.json" --res "$RES" --classes "$CLASSES" --out edgetpu.csv
bcpu=$(ms cpu.csv "$BASE"); btpu=$(ms edgetpu.csv "$BASE")
echo "budgets (the baseline's predicted latency): cpu $bcpu ms, edgetpu $btpu ms"

for strat in ${STRATS:-evolution random}; do
  echo "== search: $strat"
  [ -f "search_$strat.done" ] && continue
  r=(); [ -f "search_$strat/state.json" ] && r=(--resume)
  "$IBNAS" search --supernet supernet.h5 --lut "cpu=cpu.csv,edgetpu=edgetpu.csv" --budget-ms "cpu=$bcpu;edgetpu=$btpu" \
      --strategy $strat --population "$POP" --generations "$GENS" --batch "$BATCH" --seed 0 --res "$RES" --metric "$METRIC" --baselines "$BASE" --threads "$THREADS" --quiet \
      --out "search_$strat" "${r[@]}"
  touch "search_$strat.done"
done
best=$(ls search_evolution/cpu/best-*ms.arch.json | head -1)
cp "$best" searched_cpu.arch.json
cp "$(ls search_evolution/edgetpu/best-*ms.arch.json | head -1)" searched_edgetpu.arch.json

train() {   # train NAME ARCH [extra flags]
  local name=$1 arch=$2; shift 2
  [ -f "$name.json" ] && return 0
  local r=(); [ -f "$name.h5" ] && r=(--resume "$name.h5")
  "$IBNAS" train --arch "$arch" --classes "$CLASSES" --data train.h5 --val val.h5 --out "$name.h5" "${common[@]}" "$@" "${r[@]}" \
      --json > "$name.json.tmp" && mv "$name.json.tmp" "$name.json"
}
echo "== train from scratch: the chosen cpu arch, the baseline, mobilenetv2:$MNV2"
train searched_alone searched_cpu.arch.json
train baseline_alone "$BASE"
train mnv2_alone "mobilenetv2:$MNV2"
echo "== fine-tune the chosen arch from its inherited weights"
[ -f searched_sub.h5 ] || "$IBNAS" extract --supernet supernet.h5 --arch searched_cpu.arch.json --out searched_sub.h5
if [ ! -f searched_finetuned.json ]; then
  r=(); [ -f searched_finetuned.h5 ] && r=(--resume searched_finetuned.h5)
  "$IBNAS" train --init searched_sub.h5 --data train.h5 --val val.h5 --out searched_finetuned.h5 --epochs $((EPOCHS / 4)) \
      --batch 64 --res "$RES" --lr "$(awk -v l="$LR" 'BEGIN { print l / 5 }')" --wd 4e-5 --label-smoothing 0.1 --aug padcrop \
      --pad 4 --warmup 0.3 --threads "$THREADS" --quiet "${r[@]}" --json > searched_finetuned.json.tmp
  mv searched_finetuned.json.tmp searched_finetuned.json
fi
echo "== latency measured end to end (1 thread, batch 1)"
for a in searched_cpu.arch.json searched_edgetpu.arch.json "$BASE" "mobilenetv2:$MNV2"; do
  "$IBNAS" latency measure --arch "$a" --res "$RES" --threads 1 --json
done > measured.jsonl
/usr/bin/python3 - "$bcpu" "$btpu" <<'PY'
import json, sys
j = lambda n: json.load(open(n))
meas = [json.loads(l) for l in open("measured.jsonl")]
print(f"budgets: cpu {sys.argv[1]} ms, edgetpu {sys.argv[2]} ms (the baseline's predicted latency)")
import os
for s in ("evolution", "random"):
    if not os.path.exists(f"search_{s}/summary.json"): continue
    sm = j(f"search_{s}/summary.json")
    for t in sm["targets"]:
        for p in t["picks"]:
            print(f"search {s:9s} {t['name']:8s} ({sm['subnets_scored']} subnets): held-out score {p.get('score', 0):.4f},"
                  f" predicted {p.get('ms', 0):.4f} ms, {p.get('arch')}")
print("val top-1 (trained from scratch, same recipe):")
for n, m in (("searched_alone", meas[0]), ("baseline_alone", meas[2]), ("mnv2_alone", meas[3])):
    print(f"  {n:16s} {j(n + '.json')['val_top1'] * 100:.2f}%   measured {m['ms']:.4f} ms ({m['arch']})")
print(f"  searched, fine-tuned from inherited weights: {j('searched_finetuned.json')['val_top1'] * 100:.2f}%")
print(f"  edgetpu's chosen arch measured on this cpu: {meas[1]['ms']:.4f} ms")
PY
