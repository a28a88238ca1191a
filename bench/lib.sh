# Shell helpers the bench scripts share (sourced, not run).

# pick_of BUDGET: the search's pick under BUDGET ms in search/cpu (the search names a pick by the budget's
# shortest form, best-0.142ms for 0.1420, so it is matched by value); fails naming the budget when none.
pick_of() {
  local f x
  for f in search/cpu/best-*ms.arch.json; do
    x=${f##*/best-}; x=${x%ms.arch.json}
    awk -v a="$x" -v b="$1" 'BEGIN { exit !(a + 0 == b + 0) }' && { echo "$f"; return 0; }
  done
  echo "$(basename "$0"): no pick for the budget $1 ms in search/cpu" >&2; return 1
}

# same_arch A B: two arch files are the same arch but for their names.
same_arch() { cmp -s <(grep -v '"name"' "$1") <(grep -v '"name"' "$2"); }
