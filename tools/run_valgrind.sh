#!/usr/bin/env bash
# A short training job under valgrind (memcheck): `ibnas train` on 64 synthetic scenes for 5 steps (an
# epoch of 4 with validation and a checkpoint, then 1 more), resumed for 1 more, then `ibnas eval`. Any
# invalid read or write, use of uninitialised memory or definite leak fails it (--error-exitcode). Used
# by `make valgrind` and .ci/run; prints "PASS valgrind_train (Ns)" or "FAIL valgrind_train: why".
set -u
build=${1:-build}
bin=$build/ibnas
command -v valgrind >/dev/null || { echo "FAIL valgrind_train: valgrind is not installed (tools/deps.sh ci)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ibnas_valgrind_XXXXXX")
trap 'rm -rf "$work"' EXIT
# (No --track-origins: it doubles the time; rerun with it to find where an uninitialised value came from.)
vg=(valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite)
t0=$(date +%s)
"$bin" synth --out "$work/d.h5" --n 64 --size 32 --seed 1 >/dev/null 2>&1 || { echo "FAIL valgrind_train: synth failed"; exit 1; }
common=(--arch examples/archs/synth_small.arch.json --data "$work/d.h5" --val "$work/d.h5" --res 32 --batch 16
        --epochs 3 --warmup 0.5 --workers 1 --threads 2 --quiet --out "$work/run.h5")
run() {   # label, then the command; valgrind's report goes to the log, which is shown on failure
  local label=$1; shift
  "${vg[@]}" --log-file="$work/$label.vg" "$@" >"$work/$label.out" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL valgrind_train: $label (exit $rc):"; sed 's/^/    /' "$work/$label.vg" | head -n 60; tail -n 5 "$work/$label.out"
    exit 1
  fi
}
run train "$bin" train "${common[@]}" --max-steps 5
run resume "$bin" train "${common[@]}" --resume "$work/run.h5" --max-steps 6
run eval "$bin" eval --model "$work/run.h5" --data "$work/d.h5" --workers 1
echo "PASS valgrind_train ($(( $(date +%s) - t0 ))s)"
