#!/usr/bin/env bash
# `make bench-tin`: issue 5's parity run. The Tiny ImageNet recipe (mobilenetv2, 200 classes, 64x64,
# SGD Nesterov lr 0.1 batch 64, 1 warm-up epoch then cosine, wd 4e-5, label smoothing 0.1, pad-4 crop
# and flip, 10 epochs) trained by ibnas and by ../shared/bench/torch_tinyimagenet_recipe.py, one after
# the other on the same machine, then both val top-1 and wall times side by side. Sequential on
# purpose: two trainings sharing the cores would time neither.
# Usage: bench/tinyimagenet.sh [BUILD] ; environment: IBNAS_TIN_DATA (default ../shared/data/
# tiny-imagenet-200), IBNAS_TIN_DIR (work folder, default BUILD/tin), IBNAS_TIN_EPOCHS (10),
# IBNAS_TIN_THREADS (2), IBNAS_TIN_ONLY=ibnas|torch, IBNAS_BENCH_PYTHON (/usr/bin/python3).
# Re-running resumes: the packs are kept, an unfinished ibnas checkpoint is resumed, and a side whose
# result file exists is not run again (delete BUILD/tin/tin.h5* and *.result.json to rerun). See docs/BENCH.md.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
data=${IBNAS_TIN_DATA:-$here/../shared/data/tiny-imagenet-200}
dir=${IBNAS_TIN_DIR:-$build/tin}
epochs=${IBNAS_TIN_EPOCHS:-10}
threads=${IBNAS_TIN_THREADS:-2}
only=${IBNAS_TIN_ONLY:-}
py=${IBNAS_BENCH_PYTHON:-/usr/bin/python3}
ibnas="$build/ibnas"
[ -x "$ibnas" ] || { echo "tinyimagenet: $ibnas is missing (run make first)" >&2; exit 1; }
[ -f "$data/wnids.txt" ] || { echo "tinyimagenet: no Tiny ImageNet at $data (set IBNAS_TIN_DATA)" >&2; exit 1; }
mkdir -p "$dir"
echo "tinyimagenet: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $epochs epochs, $threads threads"

for split in train val; do
  [ -f "$dir/$split.h5" ] || "$ibnas" pack --format tinyimagenet "$data" --split "$split" --size 64 --out "$dir/$split.h5"
done

if [ "$only" != torch ] && [ ! -f "$dir/ibnas.result.json" ]; then
  resume=()
  if [ -f "$dir/tin.h5" ]; then resume=(--resume "$dir/tin.h5"); touch "$dir/ibnas.resumed"
  else rm -f "$dir/ibnas.resumed"; fi
  echo "== ibnas train (checkpoint $dir/tin.h5, log $dir/tin.h5.csv)"
  "$ibnas" train --task classify --arch mobilenetv2 --data "$dir/train.h5" --val "$dir/val.h5" \
    --epochs "$epochs" --batch 64 --lr 0.1 --optimizer sgd --schedule cosine --warmup 1 --wd 4e-5 \
    --label-smoothing 0.1 --aug padcrop --pad 4 --res 64 --seed 0 --threads "$threads" \
    --out "$dir/tin.h5" "${resume[@]}" --json > "$dir/ibnas.result.json.tmp"
  mv "$dir/ibnas.result.json.tmp" "$dir/ibnas.result.json"
fi

if [ "$only" != ibnas ] && [ ! -f "$dir/torch.result.json" ]; then
  echo "== PyTorch recipe"
  "$py" "$here/../shared/bench/torch_tinyimagenet_recipe.py" "$data" "$epochs" "$threads" 0 | tee "$dir/torch.log"
  tail -n 1 "$dir/torch.log" > "$dir/torch.result.json.tmp"
  mv "$dir/torch.result.json.tmp" "$dir/torch.result.json"
fi

"$py" - "$dir" <<'EOF'
import json, os, sys
d = sys.argv[1]
r = {}
for side in ("ibnas", "torch"):
    p = os.path.join(d, side + ".result.json")
    if os.path.exists(p):
        r[side] = json.load(open(p))
i, t = r.get("ibnas"), r.get("torch")
part = " (resumed: the last part only)" if os.path.exists(os.path.join(d, "ibnas.resumed")) else ""
if i: print(f"ibnas   val top-1 {100 * i['val_top1']:.2f}%  wall {i['wall_s']:.0f}s{part}  ({i['img_per_s']:.0f} img/s)")
if t: print(f"PyTorch val top-1 {100 * t['top1']:.2f}%  wall {t['wall_s']:.0f}s  ({t['impl']})")
if i and t:
    gap = 100 * (i["val_top1"] - t["top1"])
    ok = abs(gap) <= 1.5
    print(f"gap {gap:+.2f} points: {'within' if ok else 'OUTSIDE'} 1.5; wall ratio PyTorch/ibnas {t['wall_s'] / i['wall_s']:.2f}x")
    sys.exit(0 if ok else 1)
EOF
