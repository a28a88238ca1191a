#!/usr/bin/env bash
# The demo's report page: DIR/report.html, one self-standing page (no JavaScript, no network) with the
# results table of DIR/summary.json, the Pareto plot and chosen architectures per target, the latency
# prediction scatter, the training curves and sample predictions. Pictures are referenced by relative
# path; every one must exist (the script fails naming a missing one), so the page shows all it lists.
# usage: tools/report.sh DIR      (needs jq)
set -euo pipefail
dir=${1:?usage: tools/report.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
sum="$dir/summary.json"
[ -r "$sum" ] || { echo "report: cannot read $sum" >&2; exit 1; }
command -v jq >/dev/null || { echo "report: jq is missing (apt-get install jq)" >&2; exit 1; }
jq -e . "$sum" >/dev/null || { echo "report: $sum is not JSON" >&2; exit 1; }
q() { jq -r "$1 // empty" "$sum"; }
pct() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.1f%%", v * 100 }'; }
num() { awk -v v="$1" -v f="${2:-%.3f}" 'BEGIN { if (v == "") print "-"; else printf f, v }'; }
esc() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
out="$dir/report.html"
tmp="$out.tmp"
img() {   # img REL CAPTION: a figure, when the file exists (required=1 makes a missing one an error)
  local rel=$1 cap=$2
  if [ ! -f "$dir/$rel" ]; then
    [ "${required:-0}" = 1 ] && { echo "report: $dir/$rel is missing" >&2; exit 1; }
    return 0
  fi
  printf '<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>\n' "$rel" "$cap" "$cap"
}

{
cat <<EOF
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ibnas demo report</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; } figure { display: inline-block; margin: 0.5em; vertical-align: top; }
img { max-width: 540px; border: 1px solid #ddd; } figcaption { font-size: 0.85em; color: #555; }
code { background: #f6f6f6; padding: 0 3px; word-break: break-all; }
.samples img { width: 192px; image-rendering: pixelated; }
</style></head><body>
<h1>ibnas: the search pipeline on synthetic scenes</h1>
<p>$(q '.machine' | esc), $(q '.date' | esc); $(q '.seconds') s in all. Every number below is in
<code>summary.json</code>; every step's command is in <code>tools/demo.sh</code>.</p>
<h2>Results</h2>
<table><tr><th>task</th><th>network</th><th>held-out metric</th><th>latency (cpu, 1 thread, batch 1)</th></tr>
<tr><td>classify</td><td>searched for cpu, fine-tuned</td><td>top-1 $(pct "$(q '.classify.top1')")</td><td>$(num "$(q '.classify.measured_ms')" "%.3f ms measured")</td></tr>
<tr><td>classify</td><td>the same arch trained alone as the baseline is (MobileDets' comparison)</td><td>top-1 $(pct "$(q '.classify.alone.top1')")</td><td>$(num "$(q '.classify.measured_ms')" "%.3f ms measured")</td></tr>
<tr><td>classify</td><td>$(q '.classify.baseline.arch' | esc) (the cpu budget), trained alone: a segmenter for the supernet's epochs, then fine-tuned as a classifier</td><td>top-1 $(pct "$(q '.classify.baseline.top1')")</td><td>$(num "$(q '.classify.baseline.measured_ms')" "%.3f ms measured")</td></tr>
EOF
if [ -n "$(q '.detect.AP50')" ]; then
  echo "<tr><td>detect</td><td>SSDLite on the searched backbone</td><td>AP50 $(num "$(q '.detect.AP50')"), AP $(num "$(q '.detect.AP')")</td><td>-</td></tr>"
fi
if [ -n "$(q '.segment.miou')" ]; then
  echo "<tr><td>segment</td><td>BiFPN on the searched backbone</td><td>mIoU $(num "$(q '.segment.miou')")</td><td>-</td></tr>"
fi
echo "</table>"
echo "<h2>Search: one supernet, a budget per target</h2>"
echo "<p>Latencies here are of the whole backbone as a classifier: the pick is fine-tuned for three tasks.</p>"
# The score the search ranked by: the supernet's (summary .supernet.score: "mIoU"; none: classification top-1).
score_name=$(q '.supernet.score'); score_name=${score_name:-top-1}
score() { if [ "$score_name" = top-1 ]; then pct "$1"; else num "$1" %.3f; fi; }
echo "<table><tr><th>target</th><th>budget</th><th>chosen arch</th><th>held-out $(esc <<< "$score_name") (inherited)</th><th>predicted</th><th>measured here</th></tr>"
for t in $(jq -r '.search | keys_unsorted[]' "$sum"); do
  printf '<tr><td>%s</td><td>%s ms</td><td><code>%s</code></td><td>%s</td><td>%s ms</td><td>%s</td></tr>\n' "$t" \
    "$(num "$(q ".search.$t.budget_ms")" %.4g)" "$(q ".search.$t.arch" | esc)" "$(score "$(q ".search.$t.score")")" \
    "$(num "$(q ".search.$t.predicted_ms")" %.4g)" "$(num "$(q ".search.$t.measured_ms")" '%.3f ms')"
done
echo "</table>"
required=1 img search/archs.svg "Chosen architecture per target: one cell per layer, coloured by op (as the MobileDets figure)"
for t in $(jq -r '.search | keys_unsorted[]' "$sum"); do
  required=1 img "search/$t/pareto.svg" "$t: held-out $score_name against predicted latency; the front and the pick under the budget"
done
echo "<h2>Latency prediction</h2>"
img latency/validate.svg "cpu table: predicted against measured latency of random subnets"
echo "<h2>Training</h2>"
for f in "$dir"/curves/*.svg; do
  [ -f "$f" ] || continue
  img "curves/$(basename "$f")" "$(basename "$f" .svg | tr _ ' ')"
done
# samples/detect/NAME.png (boxes drawn) and samples/segment/NAME.png (classes overlaid), as `ibnas predict`
# writes them; its label maps (NAME.labels.png) are not shown.
samples() {   # samples KIND TITLE
  compgen -G "$dir/samples/$1/*.png" >/dev/null || return 0
  echo "<h3>$2</h3><div class=\"samples\">"
  for f in "$dir"/samples/$1/*.png; do
    case $f in *.labels.png) continue;; esac
    required=1 img "samples/$1/$(basename "$f")" "held-out scene $(basename "$f" .png | sed 's/^0*\([0-9]\)/\1/')"
  done
  echo "</div>"
}
if compgen -G "$dir/samples/*/*.png" >/dev/null; then
  echo "<h2>Sample predictions (held-out scenes, <code>ibnas predict</code>)</h2>"
  samples detect "Detection: boxes scored 0.1 and above, with class id and score (0-5: circle, square, triangle, ring, cross, star)"
  samples segment "Segmentation: predicted classes overlaid (background left as it is; colours in docs/FORMATS.md)"
fi
if [ -n "$(q '.export.file')" ]; then
  f=$(basename "$(q '.export.file')")
  [ -f "$dir/$f" ] || { echo "report: $dir/$f is missing" >&2; exit 1; }
  echo "<h2>Deployment</h2><p>The fine-tuned cpu pick as ONNX (BN folded, $(q '.export.nodes') nodes): <a href=\"$f\">$f</a>; ONNX Runtime gives its logits to 1e-4 (<code>docs/EXPORT.md</code>).</p>"
fi
echo "<p>Not in this page yet: $(q '.not_yet' | esc)</p>"
echo "</body></html>"
} > "$tmp" || { rm -f "$tmp"; exit 1; }
mv "$tmp" "$out"
echo "report: $out"
