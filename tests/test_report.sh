#!/usr/bin/env bash
# The demo's report page (tools/report.sh, tools/plot_csv.sh, tools/check_report.sh) on a small made-up
# demo folder: the numbers of summary.json and the sample predictions (not their label maps) reach the page,
# a missing picture is an error, and in headless chromium (when installed) every picture loads, and a
# picture removed afterwards is caught.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "PASS $1"; }
bad() { echo "FAIL $1: $2"; }
if ! command -v jq >/dev/null; then echo "SKIP report: jq is not installed"; exit 0; fi

d=$tmp/demo
mkdir -p "$d/search/cpu" "$d/curves"
printf 'epoch,step,train_loss,val_top1\n1,10,1.8,0.25\n2,20,1.6,0.41\n3,30,1.5,-1\n' > "$tmp/log.csv"
if bash "$root/tools/plot_csv.sh" "$tmp/log.csv" epoch train_loss,val_top1 "a run" "$d/curves/run.svg" &&
   grep -q '<polyline' "$d/curves/run.svg" && [ "$(grep -c '<polyline' "$d/curves/run.svg")" -eq 2 ]; then
  ok plot_csv_draws_a_line_per_column
else bad plot_csv_draws_a_line_per_column "no svg or wrong line count"; fi
if bash "$root/tools/plot_csv.sh" "$tmp/log.csv" epoch nope t "$tmp/x.svg" 2>"$tmp/err" || [ -e "$tmp/x.svg" ] ||
   ! grep -q "no column nope" "$tmp/err"; then
  bad plot_csv_rejects_a_missing_column "accepted, left a file or said: $(cat "$tmp/err")"
else ok plot_csv_rejects_a_missing_column; fi
cp "$d/curves/run.svg" "$d/search/archs.svg"; cp "$d/curves/run.svg" "$d/search/cpu/pareto.svg"
# sample predictions as `ibnas predict` lays them out: pictures, and label maps the page must not show
ibnas=${IBNAS:-$root/build/ibnas}
samples=0
if [ -x "$ibnas" ] && "$ibnas" synth --images "$tmp/scenes" --n 2 --size 32 --seed 3 --quiet; then
  mkdir -p "$d/samples/detect" "$d/samples/segment"
  cp "$tmp/scenes/000000.png" "$tmp/scenes/000001.png" "$d/samples/detect/"
  cp "$tmp/scenes/000000.png" "$d/samples/segment/"
  cp "$tmp/scenes/000000.mask.png" "$d/samples/segment/000000.labels.png"
  samples=3
else echo "SKIP report_shows_sample_predictions: no ibnas command at $ibnas"; fi
cat > "$d/summary.json" <<'EOF'
{"format": "ibnas-demo-summary", "version": 1, "machine": "test machine", "date": "2026-11-30", "seconds": 12,
 "classify": {"top1": 0.8137, "inherited_top1": 0.5, "measured_ms": 1.234, "alone": {"top1": 0.9452}, "baseline": {"arch": "mobilenetv2:0.35", "top1": 0.7, "measured_ms": 1.5}},
 "search": {"cpu": {"budget_ms": 0.25, "arch": "ibn:k3e4|fused:k5e2", "score": 0.43, "predicted_ms": 0.2, "measured_ms": 0.21}},
 "detect": {"AP50": 0.91, "AP": 0.6}, "not_yet": "nothing"}
EOF
if bash "$root/tools/report.sh" "$d" >/dev/null && grep -q '81.4%' "$d/report.html" && grep -q '94.5%' "$d/report.html" && grep -q 'AP50 0.910' "$d/report.html" && grep -q '1.234 ms measured' "$d/report.html" &&
   grep -q 'ibn:k3e4|fused:k5e2' "$d/report.html" && grep -q 'src="search/cpu/pareto.svg"' "$d/report.html" &&
   ! grep -qi '<script' "$d/report.html"; then
  ok report_holds_the_summary
else bad report_holds_the_summary "numbers or pictures missing from $d/report.html"; fi
if [ $samples -gt 0 ]; then
  if grep -q 'src="samples/detect/000001.png"' "$d/report.html" && grep -q 'src="samples/segment/000000.png"' "$d/report.html" &&
     grep -q 'held-out scene 1<' "$d/report.html" && ! grep -q 'labels.png' "$d/report.html"; then
    ok report_shows_sample_predictions
  else bad report_shows_sample_predictions "samples missing from $d/report.html, or a label map shown"; fi
fi
mv "$d/search/cpu/pareto.svg" "$tmp/p.svg"
if bash "$root/tools/report.sh" "$d" 2>"$tmp/err" >/dev/null || ! grep -q "pareto.svg is missing" "$tmp/err"; then
  bad report_names_a_missing_picture "said: $(cat "$tmp/err")"
else ok report_names_a_missing_picture; fi
mv "$tmp/p.svg" "$d/search/cpu/pareto.svg"
bash "$root/tools/report.sh" "$d" >/dev/null

out=$(bash "$root/tools/check_report.sh" "$d" 2>&1); rc=$?
if [ $rc -eq 77 ]; then echo "SKIP report_in_chromium: chromium is not installed (make demo installs it)"; exit 0; fi
if [ $rc -eq 0 ] && [ -s "$d/report.png" ] && [[ $out == *"$((3 + samples)) pictures, all loaded"* ]]; then ok report_loads_in_chromium
else bad report_loads_in_chromium "rc $rc: $out"; fi
rm "$d/curves/run.svg"
out=$(bash "$root/tools/check_report.sh" "$d" 2>&1); rc=$?
if [ $rc -eq 1 ] && [[ $out == *"not loaded: curves/run.svg"* ]]; then ok chromium_check_catches_a_broken_picture
else bad chromium_check_catches_a_broken_picture "rc $rc: $out"; fi
