#!/usr/bin/env bash
# Runs every benchmark binary $1/bench/bench_* (built by `make bench`), one after another. Arguments
# after the build folder are passed to each binary (e.g. --threads 2). Exits non-zero if any failed.
set -u
build=${1:-build}
[ $# -gt 0 ] && shift
status=0
found=0
for b in "$build"/bench/bench_*; do
  [ -f "$b" ] && [ -x "$b" ] || continue
  found=1
  echo "== $(basename "$b")"
  "$b" "$@" || { rc=$?; echo "$(basename "$b"): FAILED (exit $rc)"; status=1; }
done
if [ $found -eq 0 ]; then
  echo "run_bench: no bench_* binaries in $build/bench (make bench builds them)" >&2
  exit 1
fi
exit $status
