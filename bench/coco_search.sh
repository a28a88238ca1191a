#!/usr/bin/env bash
# The detection search against mobilenetv2 + SSDLite at equal latency on COCO people (issue 14;
# docs/DETECTION.md "COCO people: the search against mobilenetv2"): a supernet (SAMPLING, fair by default) of the mobiledets space
# trained as an SSDLite backbone (one head shared by every path) at RES x RES on the training split less the
# held-out 10%; a cpu table of the space with the SSDLite row; the latency of mobilenetv2 detectors (block tap,
# as the supernet's) at WIDTHS as the budgets; an evolution search scored by AP50 on the held-out images
# (path and head BN-recalibrated); then every pick and every mobilenetv2 width trained alone from scratch
# with one recipe, and each pick extracted from the supernet and fine-tuned with the same recipe (MobileDets'
# arms), all evaluated on the val split: the twelve COCO numbers and each detector's measured latency.
# PRETRAIN=DIR (Tiny ImageNet packs DIR/train.h5 and DIR/val.h5, `ibnas pack --format tinyimagenet`) runs the
# issue's arms instead: each mobilenetv2 width and each pick first trained as a Tiny ImageNet classifier
# (the classification recipe: 10 epochs, 64 px, SGD lr 0.1), then fine-tuned as an SSDLite detector at
# FT_RES with FT_OPT, each on one thread, two at a time (PAR=2).
# Resumable: every step skips what its output holds.
# usage: bench/coco_search.sh BUILD_DIR OUT_DIR
#        (env: RES=128 EPOCHS=5 EPOCHS_ALONE=15 POP=16 GENS=3 SEEDS=0 THREADS=2 CALIB=5 WIDTHS="0.5 0.75";
#        OPT="--lr 0.05": the optimiser flags of the supernet and of every training;
#        PRETRAIN=DIR FT_RES=320 FT_OPT="--optimizer adamw --lr 0.003 --wd 0.0001" TIN_EPOCHS=10 PAR=2;
#        METRIC=ap50: the search's score, or loss; SAMPLING=fair|sandwich|uniform and SN_CLIP=N (--clip of the
#        supernet alone; sandwich with SN_CLIP=2 is what learns on the mobiledets space, docs/SEARCH.md);
#        SN_INIT=SUPERNET.h5: the supernet starts from that one's weights (supernet train --init, e.g. a Tiny
#        ImageNet classification supernet of the same space); SN_OPT="--op-ramp 0.05": more flags of the
#        supernet's training alone; STOP_AFTER=search: stop once the search is done;
#        LAT_RES=320: the cpu table, the mobilenetv2 budgets and the search's latency at that size (search
#        --latency-res), scoring staying at RES; default RES; OPS=ibn,skip: the op types the search may pick
#        (search --ops; MobileDet-CPU's IBN-only space), the supernet trained over the whole space;
#        VERIFY=8: the budgets are the mobilenetv2 widths themselves (--budget-ms cpu=mobilenetv2:W, their rows
#        added to the table, mnv2.jsonl then holds the table's predictions) and the search times its 8 best
#        candidates near each beside that network and picks the best one measured within it (search --verify))
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/bench/lib.sh"   # pick_of, same_arch, budget_of, budgets_all, name, once
I="$(cd "${1:?BUILD_DIR}" && pwd)/ibnas"
OUT="${2:?OUT_DIR}"
SPACE="$ROOT/search/spaces/mobiledets.space.json"
D="$ROOT/../shared/data/coco-person"
[ -d "$D" ] || { echo "coco_search: $D is missing (../shared/data/README.md)" >&2; exit 1; }
R=${RES:-128} E=${EPOCHS:-5} EA=${EPOCHS_ALONE:-15} POP=${POP:-16} GENS=${GENS:-3} SEEDS=${SEEDS:-0}
THREADS=${THREADS:-2} CALIB=${CALIB:-5} WIDTHS=${WIDTHS:-0.5 0.75} SAMPLING=${SAMPLING:-fair} LRES=${LAT_RES:-$R}
sclip=(); [ -n "${SN_CLIP:-}" ] && sclip=(--clip "$SN_CLIP")
sinit=(); [ -n "${SN_INIT:-}" ] && sinit=(--init "$(cd "$(dirname "$SN_INIT")" && pwd)/$(basename "$SN_INIT")")
sopt=(); [ -n "${SN_OPT:-}" ] && read -r -a sopt <<< "$SN_OPT"
sops=(); [ -n "${OPS:-}" ] && sops=(--ops "$OPS")
read -r -a opt <<< "${OPT:---lr 0.05}"
common=(--task detect --batch 16 --res "$R" "${opt[@]}" --warmup 0.3 --workers 1 --quiet)
mkdir -p "$OUT"; cd "$OUT"
echo "== supernet ($E epochs, $SAMPLING sampling, ${R} px) $(date -u +%H:%M)"
if [ ! -f sn.done ]; then
  r=("${sinit[@]}"); [ -f sn.h5 ] && r=(--resume sn.h5)
  "$I" supernet train "${common[@]}" --space "$SPACE" --data "$D" --out sn.h5 --sampling "$SAMPLING" "${sclip[@]}" "${sopt[@]}" --epochs "$E" \
      --threads "$THREADS" "${r[@]}"
  touch sn.done
fi
echo "== cpu table $(date -u +%H:%M)"
if [ ! -f cpu.csv.done ]; then
  "$I" latency profile --space "$SPACE" --target cpu --res "$LRES" --threads 1 --classes 1 --out cpu.csv --quiet \
      --task detect --det-tap-block
  touch cpu.csv.done
fi
if [ -n "${VERIFY:-}" ]; then
  echo "== mobilenetv2 detectors' rows in the table, their predictions the budgets $(date -u +%H:%M)"
  sbudgets=$(for w in $WIDTHS; do printf 'mobilenetv2:%s,' "$w"; done | sed 's/,$//')
  if [ ! -f mnv2.jsonl ]; then
    "$I" latency profile --space "$SPACE" --target cpu --res "$LRES" --threads 1 --classes 1 --out cpu.csv --quiet \
        --task detect --det-tap-block --arch "$sbudgets"
    for w in $WIDTHS; do
      "$I" latency predict --lut cpu=cpu.csv --arch "mobilenetv2:$w" --res "$LRES" --task detect --det-tap-block \
          --classes 1 --json | sed "s/^{/{\"width\": $w, /"
    done > mnv2.jsonl.tmp
    mv mnv2.jsonl.tmp mnv2.jsonl
  fi
  sverify=(--verify "$VERIFY")
else
  echo "== mobilenetv2 detectors measured (block tap, as the supernet's: the budgets) $(date -u +%H:%M)"
  if [ ! -f mnv2.jsonl ]; then
    for w in $WIDTHS; do
      "$I" latency measure --arch "mobilenetv2:$w" --res "$LRES" --threads 1 --repeats 30 --task detect --det-tap-block \
          --classes 1 --json | sed "s/^{/{\"width\": $w, /"
    done > mnv2.jsonl.tmp
    mv mnv2.jsonl.tmp mnv2.jsonl
  fi
  sbudgets=$(budgets_all)
  sverify=()
fi
budgets=$(budgets_all)
echo "== search under $budgets ms $(date -u +%H:%M)"
if [ ! -f search.done ]; then
  r=(); [ -f search/state.json ] && r=(--resume)
  "$I" search --task detect --supernet sn.h5 --lut cpu=cpu.csv --budget-ms "cpu=$sbudgets" --data "$D" --res "$R" --latency-res "$LRES" \
      --population "$POP" --generations "$GENS" --batch 16 --seed 0 --threads "$THREADS" --calib-batches "$CALIB" \
      --metric "${METRIC:-ap50}" "${sops[@]}" "${sverify[@]}" --out search "${r[@]}"
  touch search.done
fi
[ "${STOP_AFTER:-}" = search ] && { echo "== stopped after the search (STOP_AFTER=search)"; exit 0; }
alone() {   # alone NAME ARCH SEED [--init]: trained alone, then evaluated on val; --init: ARCH is a checkpoint
  [ -f "$1.val.json" ] && return 0
  local net=(--arch "$2"); [ "${4:-}" = --init ] && net=(--init "$2")
  once "$1.json" "$1.h5" "$I" train "${common[@]}" "${net[@]}" --data "$D" --epochs "$EA" --threads "$THREADS" \
      --seed "$3" --out "$1.h5" --json
  once "$1.val.json" "" "$I" eval --task detect --model "$1.h5" --data "$D" --split val --res "$R" --json --quiet \
      --threads "$THREADS"
}
if [ -n "${PRETRAIN:-}" ]; then
  FR=${FT_RES:-320} TE=${TIN_EPOCHS:-10} PAR=${PAR:-2}
  read -r -a ftopt <<< "${FT_OPT:---optimizer adamw --lr 0.003 --wd 0.0001}"
  tin() {   # tin NAME ARCH: the Tiny ImageNet classifier NAME.h5, then the detector NAME.det.h5 and its val numbers
    [ -f "$1.val.json" ] && return 0
    once "$1.tin.json" "$1.h5" "$I" train --arch "$2" --data "$PRETRAIN/train.h5" --val "$PRETRAIN/val.h5" \
        --epochs "$TE" --batch 64 --lr 0.1 --warmup 1 --aug padcrop --pad 4 --res 64 --seed 0 --threads 1 --quiet \
        --out "$1.h5" --json
    once "$1.det.json" "$1.det.h5" "$I" train --task detect --init "$1.h5" --data "$D" --res "$FR" --epochs "$EA" \
        --batch 16 "${ftopt[@]}" --warmup 0.3 --seed 0 --threads 1 --workers 1 --quiet --out "$1.det.h5" --json
    once "$1.val.json" "" "$I" eval --task detect --model "$1.det.h5" --data "$D" --split val --res "$FR" --json \
        --quiet --threads 1
  }
  echo "== Tiny ImageNet, then SSDLite at $FR px: each width and its pick, $PAR at a time $(date -u +%H:%M)"
  for w in $WIDTHS; do
    tin "tin_mnv2_$w" "mobilenetv2:$w" &
    [ "$(jobs -rp | wc -l)" -ge "$PAR" ] && wait -n
    tin "tin_pick_$w" "$(pick_of "$(budget_of "$w")")" &
    [ "$(jobs -rp | wc -l)" -ge "$PAR" ] && wait -n
  done
  wait
  echo "== results (COCO people val at $FR px; latency measured at $FR px, batch 1, one thread) $(date -u +%H:%M)"
  for w in $WIDTHS; do
    a=$(pick_of "$(budget_of "$w")")
    echo "-- budget mobilenetv2:$w = $(budget_of "$w") ms at $LRES px; pick $a"
    for m in mnv2 pick; do
      [ $m = mnv2 ] && arch="mobilenetv2:$w" || arch="$a"
      ms=$("$I" latency measure --arch "$arch" --res "$FR" --threads 1 --repeats 30 --task detect --classes 1 --json \
          | jq -r .ms)
      jq -r --arg m "tin_${m}_$w" --arg ms "$ms" --argjson t "$(cat "tin_${m}_$w.tin.json")" \
          '"\($m) \($ms) ms  tin top1 \($t.val_top1)  AP \(.AP) AP50 \(.AP50) AP75 \(.AP75) APs \(.APs) APm \(.APm) APl \(.APl) AR1 \(.AR1) AR10 \(.AR10) AR100 \(.AR100) ARs \(.ARs) ARm \(.ARm) ARl \(.ARl)"' \
          "tin_${m}_$w.val.json"
    done
  done
  exit 0
fi
echo "== trained alone from scratch, and the picks extracted and fine-tuned $(date -u +%H:%M)"
for sd in $SEEDS; do
  prev_arch=/dev/null
  for w in $WIDTHS; do
    a=$(pick_of "$(budget_of "$w")")
    alone "$(name "mnv2_$w" "$sd")" "mobilenetv2:$w" "$sd"
    same_arch "$a" "$prev_arch" && continue   # the previous budget's arch
    prev_arch="$a"
    alone "$(name "pick_$w" "$sd")" "$a" "$sd"
    [ -f "sub_$w.h5" ] || "$I" extract --supernet sn.h5 --arch "$a" --calib-batches "$CALIB" --threads "$THREADS" \
        --res "$R" --out "sub_$w.h5"
    alone "$(name "ft_$w" "$sd")" "sub_$w.h5" "$sd" --init
  done
done
echo "== results (COCO people val; latency measured, batch 1, one thread) $(date -u +%H:%M)"
for w in $WIDTHS; do
  a=$(pick_of "$(budget_of "$w")")
  echo "-- budget mobilenetv2:$w = $(budget_of "$w") ms; pick $a predicted $("$I" latency predict --lut cpu.csv --arch "$a" \
      --res "$LRES" --task detect --det-tap-block --classes 1 --json | jq -r .ms) ms"
  for m in mnv2 pick ft; do
    case $m in
      mnv2) arch="mobilenetv2:$w" tap=() ;;
      pick) arch="$a" tap=() ;;          # trained alone: SSDLite on the expansion, train's default
      ft) arch="$a" tap=(--det-tap-block) ;;   # extracted: the supernet's block tap
    esac
    ms=$("$I" latency measure --arch "$arch" --res "$R" --threads 1 --repeats 30 --task detect "${tap[@]}" --classes 1 \
        --json | jq -r .ms)
    for sd in $SEEDS; do
      f="$(name "${m}_$w" "$sd").val.json"
      [ -f "$f" ] || continue
      jq -r --arg m "$(name "${m}_$w" "$sd")" --arg ms "$ms" \
          '"\($m) \($ms) ms  AP \(.AP) AP50 \(.AP50) AP75 \(.AP75) APs \(.APs) APm \(.APm) APl \(.APl) AR1 \(.AR1) AR10 \(.AR10) AR100 \(.AR100) ARs \(.ARs) ARm \(.ARm) ARl \(.ARl)"' "$f"
    done
  done
done
