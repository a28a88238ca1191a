#!/usr/bin/env bash
# The library as a user links it: `make install DESTDIR=$tmp PREFIX=/usr`, then the public header alone
# compiles, pkg-config finds ibnas, and examples/train_classifier.c builds against the installed copy
# (shared and static) and runs a few training steps, an evaluation and an inference on a tiny synthetic
# pack; `make uninstall` removes every file it installed. Prints PASS/FAIL lines for tools/run_tests.sh.
#
# Run by `make test` (and `make SANITIZE=1 test`: MAKEFLAGS carries SANITIZE=1 down to the `make install`
# below, IBNAS_LINK_FLAGS the sanitizer flags the example's link then needs).
set -u
out_shared=""
root=$(cd "$(dirname "$0")/.." && pwd)
CC=${CC:-gcc}
link_extra=${IBNAS_LINK_FLAGS:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ibnas_install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
# A make started from a recipe inherits the jobserver's descriptors in MAKEFLAGS but not the descriptors.
export MAKEFLAGS=$(printf '%s' "${MAKEFLAGS:-}" | sed -E 's/--jobserver-(auth|fds)=[^ ]*//g')
unset MAKELEVEL MFLAGS

# 1. make install into a staging root.
if ! make -s --no-print-directory -C "$root" install DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/install.log" 2>&1; then
  fail install "make install failed: $(tail -n 5 "$tmp/install.log")"
  exit 1
fi
u=$tmp/root/usr
missing=""
for f in bin/ibnas lib/libibnas.a lib/libibnas.so lib/pkgconfig/ibnas.pc include/ibnas.h; do
  [ -e "$u/$f" ] || missing="$missing $f"
done
soname=$(readelf -d "$u/lib/libibnas.so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ -n "$missing" ]; then fail install_files "missing:$missing"
elif [ -z "$soname" ] || [ ! -L "$u/lib/$soname" ] || [ ! -L "$u/lib/libibnas.so" ]; then
  fail install_files "libibnas.so has soname '$soname' but no matching symlink chain"
else pass install_files; fi
ver=$("$u/bin/ibnas" --version 2>&1 | head -n 1)   # the second line says whether MPI is on
case "$ver" in "ibnas "[0-9]*) pass installed_command ;; *) fail installed_command "ibnas --version said: $ver" ;; esac

# 2. The public header compiles alone, as C99 (pedantic) and as C++.
printf '#include <ibnas.h>\nint main(void) { return ib_version()[0] == 0; }\n' >"$tmp/alone.c"
if "$CC" -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$u/include" "$tmp/alone.c" 2>"$tmp/alone.log"; then
  pass header_alone
else fail header_alone "$(head -n 5 "$tmp/alone.log")"; fi
if command -v g++ >/dev/null 2>&1; then
  if g++ -Wall -Wextra -Werror -fsyntax-only -x c++ -I"$u/include" "$tmp/alone.c" 2>"$tmp/alonexx.log"; then
    pass header_cxx
  else fail header_cxx "$(head -n 5 "$tmp/alonexx.log")"; fi
fi

# 3. pkg-config, with the .pc's prefix moved to the staging root.
mkdir -p "$tmp/pc"
sed "s|^prefix=.*|prefix=$u|" "$u/lib/pkgconfig/ibnas.pc" >"$tmp/pc/ibnas.pc"
export PKG_CONFIG_PATH=$tmp/pc
flags=$(pkg-config --cflags --libs ibnas 2>&1)
static_libs=$(pkg-config --static --libs ibnas 2>&1)
case "$flags" in
  *"-I$u/include"*"-L$u/lib"*-libnas*) pass pkg_config ;;
  *) fail pkg_config "pkg-config --cflags --libs ibnas said: $flags" ;;
esac
[ "$(pkg-config --modversion ibnas 2>&1)" = "${ver#ibnas }" ] && pass pkg_config_version ||
  fail pkg_config_version "pkg-config says $(pkg-config --modversion ibnas 2>&1), the command ${ver#ibnas }"

# 4. The example against the installed copy: shared, then static (libibnas.a by name, Libs.private after).
ex=$root/examples/train_classifier.c
# shellcheck disable=SC2086
if "$CC" -std=c11 -Wall -Wextra -Werror $link_extra "$ex" $flags -o "$tmp/ex_shared" 2>"$tmp/cc1.log"; then
  if readelf -d "$tmp/ex_shared" | grep -q "NEEDED.*$soname"; then pass example_build_shared
  else fail example_build_shared "the executable does not need $soname"; fi
else fail example_build_shared "$(head -n 8 "$tmp/cc1.log")"; fi
# shellcheck disable=SC2086
if "$CC" -std=c11 -Wall -Wextra -Werror $link_extra "$ex" $(pkg-config --cflags ibnas) \
     $(printf '%s' "$static_libs" | sed 's/-libnas/-l:libibnas.a/') -o "$tmp/ex_static" 2>"$tmp/cc2.log"; then
  if readelf -d "$tmp/ex_static" | grep -q "NEEDED.*libibnas"; then fail example_build_static "still needs libibnas.so"
  else pass example_build_static; fi
else fail example_build_static "$(head -n 8 "$tmp/cc2.log")"; fi

# 5. Run both on a tiny pack: 3 training steps, evaluation, one inference; exit 0 and real numbers.
"$u/bin/ibnas" synth --out "$tmp/scenes.h5" --n 96 --size 64 --seed 3 --quiet >/dev/null 2>&1 ||
  fail synth_pack "ibnas synth failed"
for kind in shared static; do
  [ -x "$tmp/ex_$kind" ] || continue
  mkdir -p "$tmp/run_$kind"
  out=$(cd "$tmp/run_$kind" && OMP_WAIT_POLICY=PASSIVE LD_LIBRARY_PATH=$u/lib timeout 120 \
        "$tmp/ex_$kind" "$tmp/scenes.h5" "$tmp/scenes.h5" 1 3 2>"$tmp/run_$kind.err"); rc=$?
  if [ $rc -ne 0 ]; then fail "example_run_$kind" "exit $rc: $(tail -n 5 "$tmp/run_$kind.err")"
  elif ! printf '%s\n' "$out" | grep -Eq '^held-out: top-1 [01]\.[0-9]{3}, top-5 [01]\.[0-9]{3} on 96 images'; then
    fail "example_run_$kind" "no evaluation line in: $out"
  elif ! printf '%s\n' "$out" | grep -Eq '^image 0: predicted [a-z]+, labelled [a-z]+'; then
    fail "example_run_$kind" "no inference line in: $out"
  elif [ ! -s "$tmp/run_$kind/train_classifier.h5" ]; then fail "example_run_$kind" "no checkpoint written"
  else pass "example_run_$kind"; fi
  [ "$kind" = shared ] && out_shared=$out
done
# The command's eval (written against the same API) agrees with the example's evaluation of its checkpoint.
if [ -s "$tmp/run_shared/train_classifier.h5" ]; then
  ours=$(printf '%s\n' "$out_shared" | sed -n 's/^held-out: top-1 \([0-9.]*\), top-5 \([0-9.]*\).*/\1 \2/p')
  cli=$(OMP_WAIT_POLICY=PASSIVE "$u/bin/ibnas" eval --model "$tmp/run_shared/train_classifier.h5" --data "$tmp/scenes.h5" \
        --json --quiet 2>&1)
  theirs=$(printf '%s\n' "$cli" | sed -n 's/.*"top1": \([0-9.]*\), "top5": \([0-9.]*\).*/\1 \2/p' |
           awk '{printf "%.3f %.3f", $1, $2}')
  [ -n "$ours" ] && [ "$ours" = "$theirs" ] && pass eval_command_agrees ||
    fail eval_command_agrees "example: '$ours', ibnas eval: '$theirs' ($cli)"
fi
if [ -x "$tmp/ex_shared" ]; then   # the shared build really ran the installed library
  lib=$(LD_LIBRARY_PATH=$u/lib ldd "$tmp/ex_shared" 2>/dev/null | sed -n "s/.*$soname => \([^ ]*\).*/\1/p")
  case "$lib" in
    "$u"/lib/*) pass example_uses_installed_so ;;
    *) fail example_uses_installed_so "resolved to '$lib'" ;;
  esac
fi

# 6. make uninstall leaves no file behind.
make -s --no-print-directory -C "$root" uninstall DESTDIR="$tmp/root" PREFIX=/usr >/dev/null 2>&1
left=$(find "$tmp/root" ! -type d | sed "s|^$tmp/root||")
[ -z "$left" ] && pass uninstall || fail uninstall "left behind: $left"
[ $fails -eq 0 ]
