#!/usr/bin/env bash
# retort vs PyTorch on one GPU, same model, batch and optimizer, side by side (issue: GPU backend).
#
#   bench/gpu.sh [--runs N] [--configs "configs/gpu-125m.yaml configs/gpu-350m.yaml"] [--out DIR]
#                [--set KEY=VALUE ...]   (passed to retort bench, e.g. train.matmul_tuning=timed)
#
# For each config (T = 1024, bf16 matmuls, fp32 master weights and AdamW state):
#   retort bench (parallel.device=cuda, train.precision=bf16), then the PyTorch peer
#   (bench/pytorch_bench.py --device cuda --bf16: autocast bf16, SDPA flash attention), eager
#   and torch.compile, alternated N times (default 3), each in a fresh process.
# Prints a table of medians: tokens/s, MFU (model FLOPs of SPEC §1's PaLM convention / 989
# TFLOP/s, H100 SXM dense bf16; bench.peak_tflops overrides), retort's measured matmul ceiling
# (8192³ bf16 product in the same process), peak GPU memory, and the ratio retort / PyTorch.
# Raw JSON per run and summary.md go to the results dir (default runs/bench-gpu).
# Needs: a GPU, retort built with the CUDA backend (launch/build.sh where nvcc is found;
# RETORT_BIN overrides), python3 with torch (PYTHON overrides).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=3 CONFIGS="configs/gpu-125m.yaml configs/gpu-350m.yaml" OUT=runs/bench-gpu
SETS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --configs) CONFIGS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
RETORT=${RETORT_BIN:-build/retort}
[[ -x "$RETORT" ]] || { echo "== building retort (launch/build.sh)" >&2; launch/build.sh >&2; }
gpus=$("$RETORT" info configs/gpu-125m.yaml --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["cuda_gpus"])')
[[ "$gpus" != 0 ]] || { echo "gpu.sh: no GPU visible to $RETORT (or no CUDA backend in it)" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.json

for cfg in $CONFIGS; do
  name=$(basename "$cfg" .yaml)
  for i in $(seq 1 "$RUNS"); do
    "$RETORT" bench "$cfg" "${SETS[@]}" > "$OUT/$name-retort-$i.json"
    "$PYTHON" bench/pytorch_bench.py "$cfg" --device cuda --bf16 > "$OUT/$name-eager-$i.json"
    "$PYTHON" bench/pytorch_bench.py "$cfg" --device cuda --bf16 --compile \
      > "$OUT/$name-compile-$i.json"
    echo "== $name run $i done" >&2
  done
done

"$PYTHON" - "$OUT" "$CONFIGS" <<'PY'
import glob, json, os, statistics, sys
out, configs = sys.argv[1], sys.argv[2].split()
med = statistics.median
rows = ["| config | impl | tokens/s | MFU | matmul ceiling (TFLOP/s) | peak GPU memory (GiB) | retort / this |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
for cfg in configs:
    name = os.path.basename(cfg)[:-5]
    runs = {impl: [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{name}-{impl}-*.json"))]
            for impl in ("retort", "eager", "compile")}
    tok = {k: med([r["tokens_per_s"] for r in v]) for k, v in runs.items()}
    fpt = runs["retort"][0]["flops_per_token_mfu"]
    r0 = runs["retort"][0]  # the peak retort's MFU used (bench.peak_tflops), for every row
    peak = r0["achieved_gflops"] * 1e9 / r0["mfu"] if r0.get("mfu") else 989e12
    ceil = med([r["matmul_ceiling_gflops"] for r in runs["retort"]]) / 1e3
    for impl, v in runs.items():
        mem = max(r["gpu_peak_bytes"] for r in v) / 2**30
        mfu = tok[impl] * fpt / peak
        rows.append(f"| {name} | {impl} | {tok[impl]:.0f} | {mfu:.1%} | {ceil:.0f} | {mem:.1f} | "
                    f"{tok['retort'] / tok[impl]:.2f} |")
kernels = sorted({r["attention_kernel"] for f in glob.glob(f"{out}/*-retort-*.json") for r in [json.load(open(f))]})
table = "\n".join(rows) + f"\n\nretort's attention kernel: {', '.join(kernels)}"
print(table)
open(os.path.join(out, "summary.md"), "w").write(table + "\n")
PY
