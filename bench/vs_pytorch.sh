#!/usr/bin/env bash
# retort vs a plain PyTorch eager peer on the same model, optimizer and batch, side by side.
#
#   bench/vs_pytorch.sh [--runs N] [--config FILE] [--out DIR] [--steps S] [--warmup W]
#                       [--sweep-steps S] [--torch-setting NAME] [--threads N]
#
#   --runs N            timed runs of each implementation, alternated (default 3)
#   --config FILE       retort config (default configs/bench-cpu.yaml)
#   --out DIR           results dir for raw JSON, summary.json, summary.md
#                       (default runs/bench-vs-pytorch)
#   --steps/--warmup    timed / untimed steps per run for both (default 10 / 2)
#   --sweep-steps S     timed steps per PyTorch thread-setting sweep run (default 3)
#   --torch-setting N   skip the sweep and use this setting (names below)
#   --threads N         cores given to each process (default 2)
#
# 1. Builds retort if build/retort is missing (launch/build.sh); RETORT_BIN overrides the binary.
# 2. Sweeps PyTorch settings with short runs and keeps the fastest: intra-op threads x OpenBLAS
#    threads, then (at the best of those) glibc's default allocator and AdamW foreach=False.
# 3. Runs retort, pytorch, retort, pytorch, ... each in a fresh process, so drift hits both.
# 4. Prints a table (medians over runs; each run's figure is the median step time) and writes
#    every run's raw JSON plus summary.json and summary.md to the results dir.
# PyTorch is Debian's python3-torch at /usr/bin/python3 (PYTHON overrides).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

RUNS=3 CONFIG=configs/bench-cpu.yaml OUT=runs/bench-vs-pytorch STEPS=10 WARMUP=2
SWEEP_STEPS=3 SETTING="" THREADS=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --sweep-steps) SWEEP_STEPS=$2; shift 2 ;;
    --torch-setting) SETTING=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "vs_pytorch.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
RETORT=${RETORT_BIN:-build/retort}
if [[ ! -x "$RETORT" ]]; then
  echo "== building retort (launch/build.sh)" >&2
  launch/build.sh >&2
  RETORT=build/retort
fi
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "vs_pytorch.sh: $PYTHON has no torch" >&2; exit 1; }
# Both multiply with the same OpenBLAS kernels: retort's (it replaces the generic Prescott
# kernels that OpenBLAS < 0.3.25 picks on CPUs newer than itself; core/blas_kernels.h), given to
# the peer's OpenBLAS through OPENBLAS_CORETYPE unless that is set already.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$("$RETORT" info "$CONFIG" | sed -n 's/^devices *cpu, OpenBLAS kernels \([A-Za-z0-9]*\).*/\1/p')}
echo "== OpenBLAS kernels (both): $OPENBLAS_CORETYPE" >&2
mkdir -p "$OUT"
rm -f "$OUT"/retort-*.json "$OUT"/pytorch-*.json "$OUT"/sweep-*.json

# PyTorch settings are named like intra2-blas1[-plainmalloc][-noforeach]:
#   intraN       torch.set_num_threads(N) and OMP_NUM_THREADS=N (ATen's own kernels, OpenMP)
#   blasN        OPENBLAS_NUM_THREADS=N (Debian's torch calls OpenBLAS, pthread build, for matmuls)
#   malloc       by default GLIBC_TUNABLES keeps freed memory in the heap (mmap_max=0, no trim):
#                eager PyTorch on CPU has no caching allocator, and glibc otherwise mmaps and
#                page-faults every large activation afresh each step (the role jemalloc/tcmalloc
#                play in PyTorch's CPU tuning guides; neither is installed here).
#                -plainmalloc runs with glibc's defaults.
#   foreach      AdamW(foreach=True) unless -noforeach.
MALLOC_TUNED="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
run_torch() {  # setting steps warmup outfile
  local s=$1 tt=${1#intra}; tt=${tt%%-*}
  local blas=${s#*-blas}; blas=${blas%%-*}
  local tun=$MALLOC_TUNED extra=()
  [[ $s == *-plainmalloc* ]] && tun=""
  [[ $s == *-noforeach* ]] && extra+=(--no-foreach)
  GLIBC_TUNABLES=$tun OMP_NUM_THREADS=$tt OPENBLAS_NUM_THREADS=$blas MKL_NUM_THREADS=$tt \
    "$PYTHON" bench/pytorch_bench.py "$CONFIG" --threads "$tt" --steps "$2" --warmup "$3" \
    "${extra[@]}" >"$4"
}
run_retort() {  # outfile
  OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS \
    "$RETORT" bench "$CONFIG" --set bench.steps="$STEPS" --set bench.warmup="$WARMUP" >"$1"
}
tok_s() { "$PYTHON" -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["tokens_per_s"])' "$1"; }
best="" best_tok=0
try() {  # setting: one short sweep run, keeps the fastest in $best
  run_torch "$1" "$SWEEP_STEPS" 1 "$OUT/sweep-$1.json"
  local t; t=$(tok_s "$OUT/sweep-$1.json")
  echo "   $1: $t tokens/s" >&2
  if "$PYTHON" -c "import sys; sys.exit(0 if $t > $best_tok else 1)"; then best=$1 best_tok=$t; fi
}

if [[ -z $SETTING ]]; then
  echo "== PyTorch sweep ($SWEEP_STEPS timed steps each): threads, then allocator and foreach" >&2
  for s in "intra$THREADS-blas$THREADS" "intra$THREADS-blas1" "intra1-blas$THREADS" "intra1-blas1"; do
    try "$s"
  done
  threads_best=$best
  try "$threads_best-plainmalloc"
  try "$threads_best-noforeach"
  SETTING=$best
fi
[[ $SETTING =~ ^intra[0-9]+-blas[0-9]+(-plainmalloc)?(-noforeach)?$ ]] ||
  { echo "vs_pytorch.sh: bad --torch-setting $SETTING (e.g. intra1-blas2[-plainmalloc][-noforeach])" >&2; exit 2; }
echo "== PyTorch setting: $SETTING" >&2

for ((i = 1; i <= RUNS; ++i)); do
  run_retort "$OUT/retort-$i.json"
  echo "   run $i retort:  $(tok_s "$OUT/retort-$i.json") tokens/s" >&2
  run_torch "$SETTING" "$STEPS" "$WARMUP" "$OUT/pytorch-$i.json"
  echo "   run $i pytorch: $(tok_s "$OUT/pytorch-$i.json") tokens/s" >&2
done

"$PYTHON" - "$OUT" "$SETTING" "$CONFIG" "$THREADS" <<'EOF'
import glob, json, os, statistics, sys
out, setting, config, threads = sys.argv[1:]
load = lambda pat: [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, pat)))]
R, P, S = load("retort-*.json"), load("pytorch-*.json"), load("sweep-*.json")
med = lambda xs: statistics.median(xs)
r_tok, p_tok = med([r["tokens_per_s"] for r in R]), med([p["tokens_per_s"] for p in P])
gf = med([r["achieved_gflops"] for r in R])
ceil = med([r["matmul_ceiling_gflops"] for r in R])
p = P[0]
summary = {
    "config": config, "threads": int(threads), "runs": len(R),
    "retort_tokens_per_s": r_tok, "retort_tokens_per_s_runs": [r["tokens_per_s"] for r in R],
    "pytorch_tokens_per_s": p_tok, "pytorch_tokens_per_s_runs": [x["tokens_per_s"] for x in P],
    "ratio": r_tok / p_tok,
    "flops_per_token_mfu": R[0]["flops_per_token_mfu"], "flops_per_token_exact": R[0]["flops_per_token_exact"],
    "tokens_per_step": R[0]["tokens_per_step"], "openblas_kernels": os.environ["OPENBLAS_CORETYPE"],
    "retort_achieved_gflops": gf, "pytorch_achieved_gflops": med([x["achieved_gflops"] for x in P]),
    "sgemm_gflops_1024": ceil, "sgemm_gflops_1024_runs": [r["matmul_ceiling_gflops"] for r in R],
    "retort_fraction_of_sgemm": gf / ceil,
    "retort_peak_rss_bytes": max(r["peak_rss_bytes"] for r in R),
    "pytorch_peak_rss_bytes": max(x["peak_rss_bytes"] for x in P),
    "pytorch_setting": setting, "torch_version": p["torch_version"],
    "pytorch_env": p["env"], "pytorch_intra_op_threads": p["torch_num_threads"],
    "pytorch_adamw_foreach": p["adamw_foreach"],
    "sweep": {os.path.basename(f)[6:-5]: json.load(open(f))["tokens_per_s"]
              for f in sorted(glob.glob(os.path.join(out, "sweep-*.json")))},
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
rows = [
    ("retort tokens/s (median of %d)" % len(R), "%.0f" % r_tok),
    ("PyTorch %s eager tokens/s (median of %d, %s)" % (p["torch_version"], len(P), setting), "%.0f" % p_tok),
    ("ratio retort / PyTorch", "%.2f×" % (r_tok / p_tok)),
    ("retort model GFLOP/s (flops_per_token_mfu = %d)" % R[0]["flops_per_token_mfu"], "%.1f" % gf),
    ("PyTorch model GFLOP/s", "%.1f" % summary["pytorch_achieved_gflops"]),
    ("OpenBLAS sgemm 1024³ ceiling GFLOP/s (same runs; %s kernels)" % summary["openblas_kernels"], "%.1f" % ceil),
    ("retort fraction of sgemm ceiling", "%.1f%%" % (100 * gf / ceil)),
    ("peak RSS retort / PyTorch (MiB)", "%.0f / %.0f" % (summary["retort_peak_rss_bytes"] / 2**20,
                                                        summary["pytorch_peak_rss_bytes"] / 2**20)),
]
md = ["| %s | %d threads |" % (config, int(threads)), "| --- | ---: |"]
md += ["| %s | %s |" % r for r in rows]
if summary["sweep"]:
    md += ["", "PyTorch thread sweep (tokens/s, short runs): " +
           ", ".join("%s %.0f" % kv for kv in summary["sweep"].items()) + "; used: " + setting + "."]
md += ["", "Command: `bench/vs_pytorch.sh --runs %d`; raw JSON in `%s/`." % (len(R), out)]
open(os.path.join(out, "summary.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
