#!/usr/bin/env bash
# Steadiness and a busy machine (issue 16; docs/BENCH.md "Steadiness"): mobilenetv2 training images/s of
# `ibnas bench train` RUNS times in a row, then RUNS times beside a competing process (a one-thread busy
# loop, as another job on the machine), against PyTorch's best layout (channels_last) under the same two
# conditions; OLD_BUILD, when given, is a second ibnas build measured the same way (the one before a change).
# Prints per side and condition the runs, their spread (max / min) and the busy-to-quiet ratio of medians.
# usage: bench/steady.sh BUILD_DIR [OLD_BUILD_DIR]   (env: RES=64 BATCH=32 THREADS=2 RUNS=5)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
R=${RES:-64} B=${BATCH:-32} T=${THREADS:-2} N=${RUNS:-5}
PY=${IBNAS_BENCH_PYTHON:-/usr/bin/python3}
TORCH="$ROOT/../shared/bench/torch_mobilenetv2_train.py"
sides=("new=$(cd "$1" && pwd)/ibnas")
[ $# -ge 2 ] && sides+=("old=$(cd "$2" && pwd)/ibnas")
run_side() {   # run_side NAME: one images/s figure
  case $1 in
    torch) MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 "$PY" "$TORCH" "$T" "$R" "$B" 10 |
             jq -r '.train_img_per_s_channels_last' ;;
    *) local bin; for s in "${sides[@]}"; do [ "${s%%=*}" = "$1" ] && bin=${s#*=}; done
       "$bin" bench train --res "$R" --batch "$B" --threads "$T" --classes 10 --json | jq -r '.train_img_per_s' ;;
  esac
}
names=(); for s in "${sides[@]}"; do names+=("${s%%=*}"); done
[ -f "$TORCH" ] && "$PY" -c 'import torch, torchvision' 2>/dev/null && names+=(torch)
echo "steady: $(nproc) cores, res $R, batch $B, $T threads, $N runs each, load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A got
for cond in quiet busy; do
  bp=
  if [ $cond = busy ]; then ( while :; do :; done ) & bp=$!; sleep 1; fi
  for i in $(seq "$N"); do
    for n in "${names[@]}"; do got[$n,$cond]+="$(run_side "$n") "; done
  done
  [ -n "$bp" ] && { kill "$bp"; wait "$bp" 2>/dev/null || true; }
done
stats() {   # stats "V V V": median and max/min
  tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f %.2f", v[int((NR + 1) / 2)], v[NR] / v[1] }'
}
for n in "${names[@]}"; do
  read -r mq sq <<<"$(stats "${got[$n,quiet]}")"
  read -r mb sb <<<"$(stats "${got[$n,busy]}")"
  printf '%-6s quiet: %s(median %s, max/min %s)  busy: %s(median %s, max/min %s)  busy/quiet %s\n' "$n" \
    "${got[$n,quiet]}" "$mq" "$sq" "${got[$n,busy]}" "$mb" "$sb" "$(awk -v a="$mb" -v b="$mq" 'BEGIN { printf "%.2f", a / b }')"
done
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
