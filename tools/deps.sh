#!/usr/bin/env bash
# Installs the Debian packages ibnas builds against, if any is missing; says what it installs and
# does nothing when all are there. Used by `make test` and `make demo`; `make bench` runs it as
# `tools/deps.sh bench`, which adds the system PyTorch that the side-by-side comparison and `make refs` run;
# `make fuzz` as `tools/deps.sh fuzz` (clang, its fuzzer runtime and OpenMP); `make valgrind` (and so .ci/run) as
# `tools/deps.sh ci` (valgrind);
# `make demo` as `tools/deps.sh demo`, which adds chromium (the report page's check; jq, which the demo and the report test use, is in the base list).
set -euo pipefail
pkgs=(gcc make pkg-config libopenblas-openmp-dev libhdf5-dev libpng-dev libjpeg-dev libjansson-dev libprotobuf-c-dev
      protobuf-c-compiler jq libopenmpi-dev openmpi-bin)
if [ "${1:-}" = bench ]; then
  pkgs+=(python3 python3-torch python3-torchvision python3-h5py python3-numpy python3-pil)
fi
if [ "${1:-}" = demo ]; then
  pkgs+=(chromium)
fi
if [ "${1:-}" = fuzz ]; then   # `make fuzz`: clang with libFuzzer and the sanitizers' runtime, clang's OpenMP
  pkgs+=(clang libclang-rt-dev libomp-dev)
fi
if [ "${1:-}" = ci ]; then    # `make valgrind`: a short training job under memcheck
  pkgs+=(valgrind)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null || echo "deps: apt-get update failed; trying the install anyway"
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}"
