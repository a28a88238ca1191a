#!/usr/bin/env bash
# A line chart (SVG) of columns of a CSV log (the per-epoch logs `ibnas train` and `ibnas supernet train`
# write): one line per Y column against the X column; values below 0 (the logs' "not measured", -1) are
# left out. No dependency beyond awk.
# usage: tools/plot_csv.sh LOG.csv X Y1[,Y2...] TITLE OUT.svg
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: tools/plot_csv.sh LOG.csv X Y1[,Y2...] TITLE OUT.svg" >&2; exit 2; }
csv=$1 xcol=$2 ycols=$3 title=$4 out=$5
[ -r "$csv" ] || { echo "plot_csv: cannot read $csv" >&2; exit 1; }
awk -F, -v xcol="$xcol" -v ycols="$ycols" -v title="$title" '
NR == 1 {
  for (i = 1; i <= NF; i++) col[$i] = i
  if (!(xcol in col)) { print "plot_csv: " FILENAME " has no column " xcol > "/dev/stderr"; bad = 1; exit 1 }
  ny = split(ycols, yn, ",")
  for (k = 1; k <= ny; k++) if (!(yn[k] in col)) { print "plot_csv: " FILENAME " has no column " yn[k] > "/dev/stderr"; bad = 1; exit 1 }
  next
}
{
  n++; x[n] = $col[xcol] + 0
  for (k = 1; k <= ny; k++) y[k, n] = $col[yn[k]] + 0
}
END {
  if (bad) exit 1
  W = 520; H = 300; L = 60; R = 130; T = 30; B = 40
  xmin = 1e300; xmax = -1e300; ymin = 1e300; ymax = -1e300
  for (i = 1; i <= n; i++) {
    if (x[i] < xmin) xmin = x[i]; if (x[i] > xmax) xmax = x[i]
    for (k = 1; k <= ny; k++) if (y[k, i] >= 0) { if (y[k, i] < ymin) ymin = y[k, i]; if (y[k, i] > ymax) ymax = y[k, i] }
  }
  if (n == 0 || ymin > ymax) { xmin = 0; xmax = 1; ymin = 0; ymax = 1 }
  if (xmax == xmin) { xmin -= 0.5; xmax += 0.5 }
  if (ymax == ymin) { ymin -= 0.5; ymax += 0.5 }
  pad = (ymax - ymin) * 0.05; ymin -= pad; ymax += pad
  printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H, W, H
  printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H
  printf "<text x=\"%d\" y=\"18\" font-size=\"13\">%s</text>\n", L, title
  pw = W - L - R; ph = H - T - B
  printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", L, T, pw, ph
  for (t = 0; t <= 4; t++) {
    yv = ymin + (ymax - ymin) * t / 4; py = T + ph - ph * t / 4
    printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L, L + pw, py, py, L - 4, py + 4, yv
    xv = xmin + (xmax - xmin) * t / 4; px = L + pw * t / 4
    printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n", px, T + ph + 15, xv
  }
  printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", L + pw / 2, H - 6, xcol
  split("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b", pal, " ")
  for (k = 1; k <= ny; k++) {
    pts = ""
    for (i = 1; i <= n; i++) if (y[k, i] >= 0)
      pts = pts sprintf("%.1f,%.1f ", L + pw * (x[i] - xmin) / (xmax - xmin), T + ph - ph * (y[k, i] - ymin) / (ymax - ymin))
    c = pal[(k - 1) % 6 + 1]
    if (pts != "") printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", pts, c
    printf "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">%s</text>\n", L + pw + 10, L + pw + 28, T + 10 + 16 * k, T + 10 + 16 * k, c, L + pw + 32, T + 14 + 16 * k, yn[k]
  }
  print "</svg>"
}' "$csv" > "$out.tmp" && mv "$out.tmp" "$out" || { rm -f "$out.tmp"; exit 1; }
