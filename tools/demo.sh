#!/usr/bin/env bash
# `make demo`: the search pipeline on the embedded default data (synthetic scenes, no download): train a
# weight-sharing supernet over the tiny space (all four IBN variants and skip), build a measured CPU latency
# table and a modelled EdgeTPU one, search both under a latency budget (regularised evolution), extract
# the CPU winner with its inherited weights, fine-tune it, evaluate it, and print a summary.
# Detection and segmentation join this path as they land.
# Usage: tools/demo.sh [BUILD_DIR]   (env: DEMO_DIR, default BUILD_DIR/demo; DEMO_EPOCHS, default 4)
set -euo pipefail
build=${1:-build}
ibnas="$build/ibnas"
dir=${DEMO_DIR:-$build/demo}
epochs=${DEMO_EPOCHS:-4}
space=search/spaces/tiny.space.json
[ -x "$ibnas" ] || { echo "demo: $ibnas is not built (run make)" >&2; exit 1; }
mkdir -p "$dir"
t0=$(date +%s)
py=/usr/bin/python3; [ -x $py ] || py=python3

echo "== 1/6 synthetic scenes: 5000 training and 1000 held-out 32x32 scenes of 6 shape classes"
[ -f "$dir/train.h5" ] || "$ibnas" synth --out "$dir/train.h5" --n 5000 --size 32 --seed 1 --quiet
[ -f "$dir/val.h5" ] || "$ibnas" synth --out "$dir/val.h5" --n 1000 --size 32 --seed 2 --quiet
"$ibnas" space count --space "$space"

echo "== 2/6 supernet over $space: $epochs epochs, sandwich sampling (log in $dir/supernet.h5.csv)"
rm -f "$dir/supernet.h5" "$dir/supernet.h5.csv"
"$ibnas" supernet train --space "$space" --data "$dir/train.h5" --val "$dir/val.h5" --out "$dir/supernet.h5" \
    --epochs "$epochs" --batch 64 --res 32 --lr 0.2 --warmup 0.3 --seed 0 --json > "$dir/supernet.json"

echo "== 3/6 latency tables: cpu measured here (1 thread), edgetpu modelled"
"$ibnas" latency profile --space "$space" --target cpu --res 32 --threads 1 --repeats 7 --out "$dir/cpu.csv"
"$ibnas" latency model --space "$space" --target edgetpu --res 32 --out "$dir/edgetpu.csv"
# Budgets: half-way between the smallest and the largest subnet's predicted latency on each target.
"$ibnas" space sample --space "$space" --smallest --out "$dir/smallest.arch.json" >/dev/null
"$ibnas" space sample --space "$space" --largest --out "$dir/largest.arch.json" >/dev/null
budget() {   # budget TABLE
  local lo hi
  lo=$("$ibnas" latency predict --lut "$1" --arch "$dir/smallest.arch.json" --res 32 --json | sed 's/.*"ms": *\([0-9.e+-]*\).*/\1/')
  hi=$("$ibnas" latency predict --lut "$1" --arch "$dir/largest.arch.json" --res 32 --json | sed 's/.*"ms": *\([0-9.e+-]*\).*/\1/')
  awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.4g", a + 0.5 * (b - a) }'
}
bcpu=$(budget "$dir/cpu.csv"); btpu=$(budget "$dir/edgetpu.csv")

echo "== 4/6 search: regularised evolution under cpu $bcpu ms and edgetpu $btpu ms"
rm -rf "$dir/search"
"$ibnas" search --supernet "$dir/supernet.h5" --lut "cpu=$dir/cpu.csv,edgetpu=$dir/edgetpu.csv" \
    --budget-ms "cpu=$bcpu;edgetpu=$btpu" --population 16 --generations 4 --batch 8 --calib-batches 5 \
    --eval-images 500 --res 32 --seed 0 --out "$dir/search"
best=$(ls "$dir"/search/cpu/best-*ms.arch.json | head -1)

echo "== 5/6 extract $best with its inherited weights, fine-tune it 2 epochs"
"$ibnas" extract --supernet "$dir/supernet.h5" --arch "$best" --out "$dir/sub.h5"
"$ibnas" eval --model "$dir/sub.h5" --data "$dir/val.h5" --json --quiet > "$dir/inherited.json"
rm -f "$dir/finetuned.h5" "$dir/finetuned.h5.csv"
"$ibnas" train --init "$dir/sub.h5" --data "$dir/train.h5" --val "$dir/val.h5" --epochs 2 --batch 64 --res 32 \
    --lr 0.05 --warmup 0.2 --seed 0 --out "$dir/finetuned.h5" --json > "$dir/finetune.json"

echo "== 6/6 evaluate the fine-tuned subnet on the held-out scenes; measure its latency"
"$ibnas" eval --model "$dir/finetuned.h5" --data "$dir/val.h5" --json --quiet > "$dir/eval.json"
"$ibnas" latency measure --arch "$best" --res 32 --threads 1 --json > "$dir/measured.json"
"$ibnas" latency predict --lut "$dir/cpu.csv" --arch "$best" --res 32 --json > "$dir/predicted.json"

"$py" - "$dir" "$(( $(date +%s) - t0 ))" "$best" <<'PY' 2>/dev/null || cat "$dir"/*.json
import json, sys
d, secs, best = sys.argv[1], int(sys.argv[2]), sys.argv[3]
j = lambda n: json.load(open(f"{d}/{n}"))
s, i, f, e = j("supernet.json"), j("inherited.json"), j("finetune.json"), j("eval.json")
m, p = j("measured.json"), j("predicted.json")
print(f"\ndemo summary ({secs} s in all)")
print(f"  supernet: {s['epochs']} epochs, largest path top-1 {s['largest_top1']*100:.1f}%, smallest {s['smallest_top1']*100:.1f}% (chance 16.7%)")
print(f"  search: {d}/search/summary.json; plots {d}/search/*/pareto.svg, {d}/search/archs.svg")
print(f"  chosen for cpu: {best}")
print(f"    inherited weights top-1 {i['top1']*100:.1f}%, after 2 epochs of fine-tuning {e['top1']*100:.1f}% on {e['images']} held-out scenes")
print(f"    latency: predicted {p['ms']:.3f} ms, measured {m['ms']:.3f} ms (batch 1, 1 thread, 32 px)")
print("  not yet in the demo: detection, segmentation, ONNX export")
PY
