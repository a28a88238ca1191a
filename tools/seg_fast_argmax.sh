#!/bin/sh
# Usage: tools/seg_fast_argmax.sh IBNAS MODEL DATA [SPLIT] [REPEATS]: eval at batch 1, 1 thread, both ways; prints
# the minimum over repeats of head_ms (upsampling + argmax) and total_ms (whole prediction) per image.
B=$1 M=$2 D=$3 S=${4:-val} R=${5:-5}
for f in "" "--fast-argmax"; do
  i=0; while [ $i -lt $R ]; do "$B" eval --task segment --model "$M" --data "$D" --split "$S" --batch 1 --threads 1 --quiet --json $f; i=$((i+1)); done
done | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
res = {}
for j in rows:
    k = j["fast_argmax"]; r = res.setdefault(k, {"miou": j["miou"], "acc": j["pixel_acc"], "head": 1e9, "total": 1e9})
    r["head"] = min(r["head"], j["head_ms"]); r["total"] = min(r["total"], j["total_ms"])
full, fast = res[False], res[True]
for k, r in (("full", full), ("fast", fast)):
    print("%s: mIoU %.4f pixel acc %.4f  last layers %.3f ms  whole %.3f ms" % (k, r["miou"], r["acc"], r["head"], r["total"]))
print("speed-up: last layers %.2fx, whole %.2fx; mIoU cost %.4f" % (full["head"] / fast["head"], full["total"] / fast["total"], full["miou"] - fast["miou"]))
'
