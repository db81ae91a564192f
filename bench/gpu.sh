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
# Raw JSON per run and summary.md go to the results dir (default runs/bench-gpu). A run that
# fails (e.g. torch.compile without a compiler toolchain) leaves NAME-IMPL-I.err there instead,
# its row says so and the others go on; the exit status is then 1.
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
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
RETORT=${RETORT_BIN:-build/retort}
[[ -x "$RETORT" ]] || { echo "== building retort (launch/build.sh)" >&2; launch/build.sh >&2; }
gpus=$("$RETORT" info configs/gpu-125m.yaml --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["cuda_gpus"])')
[[ "$gpus" != 0 ]] || { echo "gpu.sh: no GPU visible to $RETORT (or no CUDA backend in it)" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.err

failed=0
measure() {  # measure FILE CMD...: CMD's JSON into FILE.json, or its stderr into FILE.err
  if "${@:2}" > "$1.json" 2> "$1.err"; then
    rm -f "$1.err"
  else
    rm -f "$1.json"
    failed=$((failed + 1))
    echo "gpu.sh: $(basename "$1") failed: $(tail -n 1 "$1.err")" >&2
  fi
}
for cfg in $CONFIGS; do
  name=$(basename "$cfg" .yaml)
  for i in $(seq 1 "$RUNS"); do
    measure "$OUT/$name-retort-$i" "$RETORT" bench "$cfg" "${SETS[@]}"
    measure "$OUT/$name-eager-$i" "$PYTHON" bench/pytorch_bench.py "$cfg" --device cuda --bf16
    measure "$OUT/$name-compile-$i" "$PYTHON" bench/pytorch_bench.py "$cfg" --device cuda --bf16 \
      --compile
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
    tok = {k: med([r["tokens_per_s"] for r in v]) for k, v in runs.items() if v}
    r0 = runs["retort"][0] if runs["retort"] else {}
    fpt = r0.get("flops_per_token_mfu")
    # the peak retort's MFU used (bench.peak_tflops), for every row
    peak = r0["achieved_gflops"] * 1e9 / r0["mfu"] if r0.get("mfu") else 989e12
    ceil = f"{med([r['matmul_ceiling_gflops'] for r in runs['retort']]) / 1e3:.0f}" if r0 else ""
    for impl, v in runs.items():
        if not v:
            errs = sorted(glob.glob(f"{out}/{name}-{impl}-*.err"))
            why = open(errs[0]).read().strip().splitlines()[-1:] if errs else ["no run"]
            rows.append(f"| {name} | {impl} | failed: {' '.join(why)[:120]} | | | | |")
            continue
        mem = max(r.get("gpu_peak_bytes", 0) for r in v) / 2**30
        mfu = f"{tok[impl] * fpt / peak:.1%}" if fpt else "?"
        ratio = f"{tok['retort'] / tok[impl]:.2f}" if "retort" in tok else ""
        rows.append(f"| {name} | {impl} | {tok[impl]:.0f} | {mfu} | {ceil} | {mem:.1f} | {ratio} |")
kernels = sorted({json.load(open(f))["attention_kernel"] for f in glob.glob(f"{out}/*-retort-*.json")})
table = "\n".join(rows) + f"\n\nretort's attention kernel: {', '.join(kernels) or '-'}"
print(table)
open(os.path.join(out, "summary.md"), "w").write(table + "\n")
PY
[[ $failed = 0 ]] || { echo "gpu.sh: $failed run(s) failed: their .err files are in $OUT" >&2; exit 1; }
