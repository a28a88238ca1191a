#!/usr/bin/env bash
# Opens DIR/report.html in a real browser (Debian's chromium, headless) and checks that every picture
# loads and that nothing errors; keeps a screenshot as DIR/report.png. The page itself has no script: the
# check runs on a copy with one appended (DIR/.report-check.html, removed afterwards), which lists the
# pictures that did not load and any error, and chromium prints the resulting DOM.
# Exit: 0 checked and fine, 1 a picture or the page failed, 77 chromium is not installed (skipped).
# usage: tools/check_report.sh DIR
set -euo pipefail
dir=$(cd "${1:?usage: tools/check_report.sh DIR}" && pwd)
[ -f "$dir/report.html" ] || { echo "check_report: $dir/report.html is missing" >&2; exit 1; }
chrome=""
for c in chromium chromium-browser google-chrome; do command -v $c >/dev/null && { chrome=$(command -v $c); break; }; done
[ -n "$chrome" ] || { echo "check_report: skipped, chromium is not installed (apt-get install chromium)"; exit 77; }
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --allow-file-access-from-files --no-first-run
       --user-data-dir="$(mktemp -d)")
check="$dir/.report-check.html"
trap 'rm -f "$check"' EXIT
grep -q '</body></html>$' "$dir/report.html" || { echo "check_report: $dir/report.html does not end in </body></html>" >&2; exit 1; }
{
  sed 's|</body></html>$||' "$dir/report.html"
  cat <<'EOF2'
<script>
window.__errs = [];
window.addEventListener("error", function (e) { window.__errs.push("error: " + (e.message || (e.target && e.target.src))); }, true);
window.addEventListener("load", function () {
  var bad = [], imgs = document.images;
  for (var i = 0; i < imgs.length; i++)
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad.push("not loaded: " + imgs[i].getAttribute("src"));
  var p = document.createElement("pre"); p.id = "ibnas-check";
  p.textContent = "IMAGES " + imgs.length + "\n" + bad.concat(window.__errs).join("\n") + "\nEND";
  document.body.appendChild(p);
});
</script></body></html>
EOF2
} > "$check"
dom=$("$chrome" "${flags[@]}" --virtual-time-budget=10000 --dump-dom "file://$check" 2>/dev/null || true)
result=$(printf '%s\n' "$dom" | sed -n '/<pre id="ibnas-check">/,/END/p' | sed -e 's/<pre id="ibnas-check">//')
if [ -z "$result" ]; then
  echo "check_report: chromium did not render $dir/report.html (no check output)" >&2
  exit 1
fi
n=$(printf '%s\n' "$result" | sed -n 's/^IMAGES \([0-9]*\)$/\1/p')
problems=$(printf '%s\n' "$result" | grep -v '^IMAGES \|^END' | grep -v '^$' || true)
"$chrome" "${flags[@]}" --hide-scrollbars --window-size=1280,4800 --screenshot="$dir/report.png" "file://$dir/report.html" \
    >/dev/null 2>&1 || echo "check_report: the screenshot failed" >&2
if [ -n "$problems" ]; then
  echo "check_report: $dir/report.html: $problems" >&2
  exit 1
fi
echo "check_report: $dir/report.html: $n pictures, all loaded, no errors; screenshot $dir/report.png"
