#!/usr/bin/env bash
# docs/CLI.md is what the binary's --help texts say (tools/cli_doc.sh writes it): a flag added, renamed or
# given another default without the page being rewritten fails here, naming the first lines that differ.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
ibnas=${IBNAS:-$root/build/ibnas}
if [ ! -x "$ibnas" ]; then echo "FAIL cli_doc_is_current: $ibnas is not built"; exit 0; fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
if ! bash "$root/tools/cli_doc.sh" "$ibnas" > "$tmp"; then
  echo "FAIL cli_doc_is_current: tools/cli_doc.sh failed"
elif ! d=$(diff "$root/docs/CLI.md" "$tmp"); then
  echo "FAIL cli_doc_is_current: docs/CLI.md differs from the binary's --help (rewrite it: tools/cli_doc.sh build/ibnas > docs/CLI.md):"
  printf '%s\n' "$d" | head -n 10
else
  echo "PASS cli_doc_is_current"
fi
