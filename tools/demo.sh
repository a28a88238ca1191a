#!/usr/bin/env bash
# `make demo`: the main job on the embedded default data, no download. Today: generate synthetic scenes,
# train a small inverted-bottleneck classifier (examples/archs/synth_small.arch.json), evaluate it on
# held-out scenes, print a summary. The supernet, latency tables and search join this path as they land.
# Usage: tools/demo.sh [BUILD_DIR]   (env: DEMO_DIR, default BUILD_DIR/demo; DEMO_EPOCHS, default 5)
set -euo pipefail
build=${1:-build}
ibnas="$build/ibnas"
dir=${DEMO_DIR:-$build/demo}
epochs=${DEMO_EPOCHS:-5}
arch=examples/archs/synth_small.arch.json
[ -x "$ibnas" ] || { echo "demo: $ibnas is not built (run make)" >&2; exit 1; }
mkdir -p "$dir"
t0=$(date +%s)

echo "== 1/3 synthetic scenes: 12000 training and 2000 held-out 64x64 scenes of 6 shape classes"
[ -f "$dir/train.h5" ] || "$ibnas" synth --out "$dir/train.h5" --n 12000 --size 64 --seed 1
[ -f "$dir/val.h5" ] || "$ibnas" synth --out "$dir/val.h5" --n 2000 --size 64 --seed 2

echo "== 2/3 train $arch for $epochs epochs (SGD Nesterov, warm-up + cosine; log in $dir/demo.h5.csv)"
rm -f "$dir/demo.h5" "$dir/demo.h5.csv"
"$ibnas" train --task classify --arch "$arch" --data "$dir/train.h5" --val "$dir/val.h5" \
    --epochs "$epochs" --warmup 0.3 --lr 0.2 --batch 64 --res 64 --seed 0 --out "$dir/demo.h5" --json > "$dir/train.json"

echo "== 3/3 evaluate on the held-out scenes"
"$ibnas" eval --task classify --model "$dir/demo.h5" --data "$dir/val.h5" --per-class --quiet
"$ibnas" eval --task classify --model "$dir/demo.h5" --data "$dir/val.h5" --json --quiet > "$dir/eval.json"

/usr/bin/env python3 - "$dir" "$(( $(date +%s) - t0 ))" <<'PY' 2>/dev/null || cat "$dir/train.json" "$dir/eval.json"
import json, sys
d, secs = sys.argv[1], int(sys.argv[2])
t = json.load(open(f"{d}/train.json")); e = json.load(open(f"{d}/eval.json"))
print(f"\ndemo summary ({secs} s in all)")
print(f"  trained {t['epochs']} epochs, {t['steps']} steps, {t['img_per_s']:.0f} img/s, final train loss {t['train_loss']:.3f}")
print(f"  held-out top-1 {e['top1']*100:.1f}% (chance 16.7%), top-5 {e['top5']*100:.1f}%, on {e['images']} scenes")
print(f"  checkpoint {d}/demo.h5 (ibnas eval/infer read it; tools/ibnas2torch.py takes it to PyTorch)")
print("  not yet in the demo: supernet training, latency tables, search, detection, segmentation")
PY
