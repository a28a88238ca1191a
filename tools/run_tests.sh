#!/usr/bin/env bash
# Runs each test binary (or *.sh script, through bash) given, then sums what they report. Each prints
# lines "PASS name", "FAIL name: why" and "SKIP name: why"; a binary that crashes or exits non-zero without
# printing a FAIL counts as one failure. The last line is "N passed, N failed" (", N skipped").
set -u
# The few OpenMP loops left (pack, synth) sleep rather than spin while they wait: tests run beside other
# jobs on shared cores. A policy set by the caller wins.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
pass=0; fail=0; skip=0
for t in "$@"; do
  if [[ $t == *.sh ]]; then out=$(bash "$t" 2>&1); rc=$?; else out=$("$t" 2>&1); rc=$?; fi
  printf '%s\n' "$out" | grep -E '^(PASS|FAIL|SKIP)' | sed "s|^|$(basename "$t"): |"
  p=$(printf '%s\n' "$out" | grep -c '^PASS'); f=$(printf '%s\n' "$out" | grep -c '^FAIL'); s=$(printf '%s\n' "$out" | grep -c '^SKIP')
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    echo "$(basename "$t"): FAIL (exit $rc)"; printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'
  elif [ "$f" -gt 0 ]; then
    printf '%s\n' "$out" | grep -v -E '^(PASS|SKIP)' | tail -n 40 | sed 's/^/    /'
  fi
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
done
if [ $skip -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
[ $fail -eq 0 ]
