#!/usr/bin/env bash
# Registers, spills and static shared memory of every kernel in core/cuda/*.cu, as ptxas reports
# them (no GPU needed: nvcc compiles each file again with -Xptxas -v).
#
#   bench/cuda_resources.sh [--arch 90] [--min-registers 0] [FILE.cu ...]
#
# One line per kernel and file: registers per thread, spill bytes (stores/loads), static shared
# memory, and how many 256-thread blocks of it fit an SM's 64 Ki registers (2048 threads at most,
# so 8 at best; registers are allocated 8 at a time per thread). A kernel launched with B
# threads needs registers · B <= 65536 or it fails to launch: __launch_bounds__ makes ptxas keep
# to that. Needs: nvcc (NVCC overrides; default /usr/local/cuda/bin/nvcc).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
ARCH=90 MIN_REGS=0 FILES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) ARCH=$2; shift 2 ;;
    --min-registers) MIN_REGS=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "cuda_resources.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) FILES+=("$1"); shift ;;
  esac
done
[[ -x $NVCC ]] || { echo "cuda_resources.sh: no nvcc at $NVCC (set NVCC)" >&2; exit 1; }
[[ ${#FILES[@]} -gt 0 ]] || FILES=("$ROOT"/core/cuda/*.cu)
CUDA_INCLUDE=$(dirname "$(dirname "$NVCC")")/include
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-16s %5s %9s %6s %9s  %s\n' file regs spills smem blocks/SM kernel
for f in "${FILES[@]}"; do
  "$NVCC" -O3 -DNDEBUG -DRETORT_HAVE_CUDA=1 -std=c++17 --expt-relaxed-constexpr -I"$ROOT" \
    -I"$CUDA_INCLUDE" --generate-code=arch=compute_$ARCH,code=sm_$ARCH -Xptxas -v -c "$f" \
    -o "$tmp/k.o" 2> "$tmp/ptxas.txt" || { cat "$tmp/ptxas.txt" >&2; exit 1; }
  # ptxas prints, per kernel: "Compiling entry function 'NAME'", then "N bytes spill stores,
  # M bytes spill loads", then "Used R registers, ..., S bytes smem".
  python3 - "$(basename "$f" .cu)" "$MIN_REGS" "$tmp/ptxas.txt" <<'PY' | c++filt
import re, sys
name, min_regs, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kernel = spills = None
for line in open(path):
    if m := re.search(r"Compiling entry function '([^']+)'", line):
        kernel, spills = m.group(1), "0/0"
    elif m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line):
        spills = f"{m.group(1)}/{m.group(2)}"
    elif kernel and (m := re.search(r"Used (\d+) registers", line)):
        regs = int(m.group(1))
        smem = re.search(r"(\d+) bytes smem", line)
        per_thread = (max(regs, 1) + 7) // 8 * 8
        blocks = min(65536 // (per_thread * 256), 8)
        if regs >= min_regs:
            print(f"{name:<16} {regs:5d} {spills:>9} {int(smem.group(1)) if smem else 0:6d} "
                  f"{blocks:9d}  {kernel}")
        kernel = None
PY
done
