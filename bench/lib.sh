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

# budget_of WIDTH: the measured ms of mobilenetv2:WIDTH in mnv2.jsonl (the budgets file both searches write),
# in the shortest form the search names its pick by; budgets_all: every width's, comma-separated.
budget_of() { jq -r "select(.width == $1) | .ms" mnv2.jsonl | awk '{ printf "%.4g", $1 }'; }
budgets_all() { jq -r '.ms' mnv2.jsonl | awk '{ printf "%s%.4g", (NR > 1 ? "," : ""), $1 }'; }

# name BASE SEED: a run's file name; seed 0 keeps the plain name.
name() { [ "$2" = 0 ] && echo "$1" || echo "$1_s$2"; }

# once OUT.json CKPT CMD...: runs CMD (a training or an evaluation that prints JSON) unless OUT.json exists,
# its stdout into OUT.json.tmp, renamed when CMD succeeds; with a CKPT (not "") that exists, --resume CKPT is
# appended, so a stopped training goes on from its last epoch.
once() {
  local out=$1 ck=$2; shift 2
  [ -f "$out" ] && return 0
  local r=(); [ -n "$ck" ] && [ -f "$ck" ] && r=(--resume "$ck")
  "$@" "${r[@]}" > "$out.tmp" && mv "$out.tmp" "$out"
}
