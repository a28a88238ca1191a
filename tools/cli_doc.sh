#!/usr/bin/env bash
# Writes docs/CLI.md's text on stdout: `ibnas --help` and every verb's `--help`, each flag with its default,
# as the binary prints them, so the page cannot say other than the command does.
# usage: tools/cli_doc.sh [IBNAS] > docs/CLI.md   (tests/test_cli_doc.sh checks that the page is current)
set -euo pipefail
ibnas=${1:-build/ibnas}
verbs=("train" "eval" "predict" "infer" "export" "miou" "pack" "synth" "bench train" "bench infer" "space count"
       "space sample" "space check" "supernet train" "supernet eval" "extract" "search" "latency profile"
       "latency model" "latency predict" "latency measure" "latency validate" "coco-eval")
help_of() {   # help_of VERB...: the verb's --help (a verb's usage may go to either stream)
  "$ibnas" "$@" --help 2>&1
}
echo "# Command reference"
echo
echo "Every verb of \`ibnas\` with every flag and its default, as \`ibnas VERB --help\` prints them. This page is"
echo "written by \`tools/cli_doc.sh build/ibnas > docs/CLI.md\`; \`make test\` fails when it and the binary differ."
echo "How each verb is used, with measured numbers: docs/TRAINING.md (train, eval, predict, infer, bench),"
echo "docs/DETECTION.md, docs/SEGMENTATION.md, docs/SEARCH.md (space, supernet, extract, search),"
echo "docs/LATENCY.md (latency), docs/EXPORT.md (export), docs/FORMATS.md (every file)."
echo
echo "## ibnas"
echo
echo '```text'
"$ibnas" --help 2>&1
echo '```'
for v in "${verbs[@]}"; do
  echo
  echo "## ibnas $v"
  echo
  echo '```text'
  # shellcheck disable=SC2086
  help_of $v
  echo '```'
done
