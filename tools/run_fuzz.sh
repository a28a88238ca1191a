#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target (tests/fuzz/fuzz_*.c, built with clang, ASan and UBSan) for
# FUZZ_SECONDS seconds, one at a time, seeded from the project's own fixtures. A crash, leak or timeout
# leaves its input in BUILD/runs/<target>/findings/ and fails the run; turn each into a regression case in
# tests/test_bad_inputs.c. Prints executions per target and one closing line.
set -uo pipefail
build=$1 seconds=$2
shift 2
declare -A seeds=(
  [fuzz_decode]="tests/data/folder tests/data/decode tests/data/yolo/images/train"
  [fuzz_mask]="tests/data/seg/trainannot"
  [fuzz_arch]="examples/archs"
  [fuzz_space]="search/spaces"
  [fuzz_lut]="tests/fuzz/seeds"
  [fuzz_coco]="tests/data/coco/annotations tests/data/coco_bad"
  [fuzz_yolo]="tests/data/yolo/labels/train"
  [fuzz_results]="tests/fuzz/seeds/results"
)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
ok=0 bad=0
for bin in "$@"; do
  t=$(basename "$bin")
  corpus=$build/runs/$t/corpus findings=$build/runs/$t/findings
  mkdir -p "$corpus" "$findings"
  for d in ${seeds[$t]:-}; do find "$d" -type f -size -64k -exec cp -n {} "$corpus/" \; 2>/dev/null; done
  log=$build/runs/$t/log
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$findings/" "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  found=$(find "$findings" -type f | wc -l)
  if [ $rc -eq 0 ] && [ "$found" -eq 0 ]; then
    ok=$((ok + 1)); echo "PASS $t: ${runs:-?} executions in ${seconds}s, corpus $(ls "$corpus" | wc -l) files"
  else
    bad=$((bad + 1)); echo "FAIL $t: exit $rc after ${runs:-?} executions; $found finding(s) in $findings"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 | sed 's/^/    /'
  fi
done
echo "$ok passed, $bad failed"
[ $bad -eq 0 ]
