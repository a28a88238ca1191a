#!/usr/bin/env bash
# `make bench`: in one session on this machine, the kernel microbenchmark, the loader benchmark, then
# ibnas against PyTorch (bench/compare.py: training throughput, inference latency, training peak RSS;
# the ratio table with issue 6's targets). Everything is also written to $1/bench/results.json.
# Usage: tools/run_bench.sh [BUILD] [args for bench_kernels, e.g. --threads 2]
# Environment: IBNAS_TORCH_BENCH_DIR (default ../shared/bench beside the repository), IBNAS_BENCH_PYTHON
# (default /usr/bin/python3, which must import torch and torchvision, else the PyTorch part is skipped),
# IBNAS_BENCH_ROUNDS (default 3), IBNAS_BENCH_BUDGET_S (seconds for the comparison rounds, default 180),
# IBNAS_BENCH_ONLY=kernels|loader|compare to run one part. See docs/BENCH.md.
set -u
build=${1:-build}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
out="$build/bench"
mkdir -p "$out"
only=${IBNAS_BENCH_ONLY:-}
status=0
t0=$(date +%s)
echo "make bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
if [ -n "$(awk -v n="$(nproc)" '$1 > n {print "busy"}' /proc/loadavg)" ]; then
  echo "make bench: the machine is busy (load above the core count): numbers will be noisy"
fi

run() {   # run NAME CMD...: prints a header, runs, records failure
  local name=$1; shift
  echo; echo "== $name"
  "$@" || { rc=$?; echo "$name: FAILED (exit $rc)"; status=1; }
}

if [ -z "$only" ] || [ "$only" = kernels ]; then
  if [ -x "$build/bench/bench_kernels" ]; then
    rm -f "$out/kernels.json"
    run bench_kernels "$build/bench/bench_kernels" --json-out "$out/kernels.json" "$@"
  else
    echo "run_bench: $build/bench/bench_kernels is missing (make bench builds it)" >&2; status=1
  fi
fi
if [ -z "$only" ] || [ "$only" = loader ]; then
  if [ -x "$build/bench/bench_loader" ]; then
    rm -f "$out/loader.json"
    run bench_loader "$build/bench/bench_loader" --json-out "$out/loader.json"
  else
    echo "run_bench: $build/bench/bench_loader is missing (make bench builds it)" >&2; status=1
  fi
fi
# Any other bench_* binary someone adds runs too, with the same arguments.
if [ -z "$only" ]; then
  for b in "$build"/bench/bench_*; do
    [ -f "$b" ] && [ -x "$b" ] || continue
    case $(basename "$b") in bench_kernels|bench_loader) continue ;; esac
    run "$(basename "$b")" "$b" "$@"
  done
fi
if [ -z "$only" ] || [ "$only" = compare ]; then
  echo; echo "== ibnas vs PyTorch"
  py=python3
  [ -x /usr/bin/python3 ] && py=/usr/bin/python3
  torch_dir=${IBNAS_TORCH_BENCH_DIR:-$here/../shared/bench}
  "$py" "$here/bench/compare.py" --ibnas "$build/ibnas" --torch-dir "$torch_dir" \
    --kernels-json "$out/kernels.json" --loader-json "$out/loader.json" --out "$out/results.json" || status=1
fi
echo; echo "make bench: $(( $(date +%s) - t0 )) s, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
exit $status
