#!/usr/bin/env bash
# The task examples (examples/*.c, built by `make` on the public header alone) run on small synthetic data,
# and what each prints agrees with the command on the files it wrote: the searched pick is in the space and
# under its budget, the fine-tuned classifier's, the segmenter's and the detector's numbers are those
# `ibnas eval` gives for the checkpoints they wrote, and the ONNX export has the graph `ibnas export` writes.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
ibnas=${IBNAS:-$root/build/ibnas}
case $ibnas in /*) ;; *) ibnas=$PWD/$ibnas ;; esac   # the examples run in their own folders
ex=$(dirname "$ibnas")/examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "PASS $1"; }
bad() { echo "FAIL $1: $2"; }
if [ ! -x "$ibnas" ] || [ ! -d "$ex" ]; then echo "SKIP examples: no ibnas command or examples at $ibnas"; exit 0; fi
if ! command -v jq >/dev/null; then echo "SKIP examples: jq is not installed"; exit 0; fi
export OMP_WAIT_POLICY=PASSIVE
# the number after `key` in a line the example printed
printed() { sed -n "s/.*$2 \([0-9.]*\).*/\1/p" "$1" | head -1; }
# |a - b| <= tol
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }

# search_subnet: supernet, modelled table, evolution under a budget, extraction, fine-tuning
d=$tmp/search; mkdir -p "$d"
"$ibnas" synth --out "$d/tr.h5" --n 400 --size 32 --seed 1 --quiet >/dev/null && "$ibnas" synth --out "$d/va.h5" --n 100 --size 32 --seed 2 --quiet >/dev/null
if (cd "$d" && "$ex/search_subnet" "$root/search/spaces/tiny.space.json" tr.h5 va.h5 1 \
      "$root/search/targets/edgetpu.target.json" > out.txt 2> err.txt); then
  missing=""
  for f in supernet.h5 edgetpu.csv search/summary.json subnet.h5 finetuned.h5; do [ -s "$d/$f" ] || missing="$missing $f"; done
  arch=$(sed -n 's/.*predicted [0-9.]* ms (\(.*\))$/\1/p' "$d/out.txt")
  budget=$(printed "$d/out.txt" "budget")
  ms=$(cd "$d" && "$ibnas" latency predict --lut edgetpu.csv --arch "$arch" --json 2>/dev/null | jq -r .ms)
  top1=$("$ibnas" eval --model "$d/finetuned.h5" --data "$d/va.h5" --json 2>/dev/null | jq -r .top1)
  if [ -n "$missing" ]; then bad search_subnet_example "did not write$missing"
  elif ! (cd "$d" && "$ibnas" space check --space "$root/search/spaces/tiny.space.json" --arch "$arch" >/dev/null 2>&1); then
    bad search_subnet_example "its pick '$arch' is not in the space"
  elif ! awk -v m="$ms" -v b="$budget" 'BEGIN { exit !(m != "" && b != "" && m <= b) }'; then
    bad search_subnet_example "its pick predicts $ms ms over the budget $budget"
  elif ! close "$(printed "$d/out.txt" "val top-1")" "$top1" 0.0005; then
    bad search_subnet_example "printed top-1 $(printed "$d/out.txt" "val top-1"), ibnas eval gives $top1"
  else ok search_subnet_example; fi
else bad search_subnet_example "exit $?: $(tail -2 "$d/err.txt")"; fi

# export_onnx: the fine-tuned pick to ONNX, the same graph `ibnas export` writes
if [ -s "$d/finetuned.h5" ] && (cd "$d" && "$ex/export_onnx" finetuned.h5 a.onnx > onnx.txt 2> onnx_err.txt); then
  want=$(cd "$d" && "$ibnas" export --model finetuned.h5 --out b.onnx --json 2>/dev/null | jq -r '"\(.nodes) nodes, \(.initializers) initializers"')
  got=$(sed -n 's/^a.onnx: \([0-9]* nodes, [0-9]* initializers\).*/\1/p' "$d/onnx.txt")
  if [ ! -s "$d/a.onnx" ] || [ "$got" != "$want" ]; then bad export_onnx_example "wrote '$got', ibnas export '$want'"
  else ok export_onnx_example; fi
else bad export_onnx_example "no checkpoint to export, or exit $?: $(tail -2 "$d/onnx_err.txt" 2>/dev/null)"; fi

# train_segmenter: training, evaluation with predicted label maps
d=$tmp/segment; mkdir -p "$d"
"$ibnas" synth --out "$d/tr.h5" --n 256 --size 64 --seed 1 --quiet >/dev/null && "$ibnas" synth --out "$d/va.h5" --n 60 --size 64 --seed 2 --quiet >/dev/null
if (cd "$d" && "$ex/train_segmenter" tr.h5 va.h5 1 bifpn > out.txt 2> err.txt); then
  miou=$("$ibnas" eval --task segment --model "$d/segmenter.h5" --data "$d/va.h5" --json 2>/dev/null | jq -r .miou)
  n=$(ls "$d/pred" 2>/dev/null | grep -c '\.png$')
  if [ "$n" != 60 ]; then bad train_segmenter_example "$n label maps in pred/, want 60"
  elif ! close "$(printed "$d/out.txt" "pixels: mIoU")" "$miou" 0.00005; then
    bad train_segmenter_example "printed mIoU $(printed "$d/out.txt" "pixels: mIoU"), ibnas eval gives $miou"
  else ok train_segmenter_example; fi
else bad train_segmenter_example "exit $?: $(tail -2 "$d/err.txt")"; fi

# train_detector: training, the twelve COCO numbers, detections written
d=$tmp/detect; mkdir -p "$d"
"$ibnas" synth --out "$d/tr.h5" --n 160 --size 96 --seed 1 --quiet >/dev/null && "$ibnas" synth --out "$d/va.h5" --n 50 --size 96 --seed 2 --quiet >/dev/null
if (cd "$d" && "$ex/train_detector" tr.h5 va.h5 1 96 > out.txt 2> err.txt); then
  ap50=$("$ibnas" eval --task detect --model "$d/detector.h5" --data "$d/va.h5" --json 2>/dev/null | jq -r .AP50)
  if ! jq -e 'type == "array"' "$d/detections.json" >/dev/null 2>&1; then bad train_detector_example "no detections.json array"
  elif ! close "$(sed -n 's/^AP50 *\([0-9.]*\)$/\1/p' "$d/out.txt")" "$ap50" 0.00005; then
    bad train_detector_example "printed AP50 $(sed -n 's/^AP50 *//p' "$d/out.txt"), ibnas eval gives $ap50"
  else ok train_detector_example; fi
else bad train_detector_example "exit $?: $(tail -2 "$d/err.txt")"; fi
