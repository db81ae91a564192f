#!/usr/bin/env bash
# check.sh — runs THERE: on a lent GPU machine (the device tool's `run`, as root, in the root of
# a copy of this working tree, with `.device` carried), where retort cannot be built. Runs the
# GPU checks from the pack that tests/gpu/device/pack.sh made here (.device/pack.tar.xz):
#
#   bash tests/gpu/device/check.sh [tests|bench|all]      (default all)
#
#   tests: test_cuda_kernels and test_cuda_model (gtest), a 2-rank MPI run on the CPU, and the
#          e2e scripts of ctest's `gpu` label as ctest runs them (gpu_train, gpu_distill;
#          gpu_meshes and gpu_stalled_rank skip themselves with one GPU)
#   bench: retort bench on configs/gpu-125m.yaml and gpu-350m.yaml, each beside the PyTorch peer
#          (bench/pytorch_bench.py --bf16, eager), retort's time per kernel at 350m
#          (RETORT_OP_PROFILE=1), 350m again with train.matmul_tuning=timed, PyTorch's SDPA at
#          its attention shape (bench/attention_peer.py); then torch.compile and `retort
#          generate` (bench/generate.sh, gpu-125m shape) while time is left
#   all:   tests, then bench with the time that is left
#
# CHECK_ALLOW_NO_GPU=1 runs the parts without a GPU (a dry run of this script: the GPU parts skip).
# Every part has its own time limit and the whole stays within CHECK_BUDGET_S (default 480 s,
# so a `run` with timeout_s 560 ends with its summary); a part that would start with too little
# time left is SKIPped. The last lines printed are the summary: one PASS/FAIL/SKIP line per part,
# the tails of failed logs, the benchmark table. Files in $OUT (at most 8 come back):
# summary.txt, test_cuda_kernels.log, test_cuda_model.log, e2e.log, e2e-work.tar.gz (the e2e
# runs' logs and metrics), bench.json, bench.log, profile-350m.json.
# Needs there: an NVIDIA GPU and driver, CUDA 13 (cudart, cuBLASLt) in /usr/local/cuda, cuDNN 9
# and NCCL 2 (the pip packages nvidia-cudnn-cu13 / nvidia-nccl-cu13 of python3, or found by
# `find`), python3 with torch, numpy, h5py and yaml, glibc >= 2.36, bash, coreutils, tar, xz.
set -euo pipefail
MODE=${1:-all}
case $MODE in tests|bench|all) ;; *) echo "check.sh: unknown mode '$MODE' (tests|bench|all)" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ARCHIVE=${RETORT_PACK_ARCHIVE:-$ROOT/.device/pack.tar.xz}
OUT=${OUT:-/tmp/retort-device-out}
BUDGET=${CHECK_BUDGET_S:-480}
BASE=/tmp/retort-check
PACK=$BASE/retort-device
T0=$SECONDS
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
[ -f "$ARCHIVE" ] || { echo "check.sh: $ARCHIVE missing: run tests/gpu/device/pack.sh on the development machine and carry .device" >&2; exit 1; }

SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
RESULTS=() TAILS=()

# ---- unpack and environment ----------------------------------------------------------------
rm -rf "$BASE" && mkdir -p "$BASE"
xz -dc "$ARCHIVE" | tar -C "$BASE" -xf - || { echo "check.sh: could not unpack $ARCHIVE" >&2; exit 1; }
say "== check.sh $MODE: pack $(head -1 "$PACK/MANIFEST.txt" | sed 's/^retort device pack, //'); $(sed -n 2p "$PACK/MANIFEST.txt")"
say "== machine: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"), glibc $(ldd --version 2>/dev/null | head -1 | awk '{print $NF}'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), python3 $(command -v python3 || echo missing)"

# The machine's CUDA libraries: the toolkit's, the driver's, and cuDNN / NCCL from python3's pip
# packages (nvidia-cudnn-cu13, nvidia-nccl-cu13), else wherever `find` sees them.
pipdir() {  # pipdir MODULE: that pip package's lib directory
  python3 -c "import importlib.util as u, os, sys
s = u.find_spec(sys.argv[1])
print(next(os.path.join(p, 'lib') for p in s.submodule_search_locations))" "$1" 2>/dev/null || true
}
CUDA_DIRS=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && CUDA_DIRS+=("$d")
done
for lib in cudnn:libcudnn.so.9 nccl:libnccl.so.2; do
  d=$(pipdir "nvidia.${lib%%:*}")
  if [ -z "$d" ] || [ ! -e "$d/${lib#*:}" ]; then
    f=$(timeout 60 find / -xdev \( -path /proc -o -path /sys -o -path "$BASE" \) -prune -o -name "${lib#*:}" -print 2>/dev/null | head -1)
    d=${f%/*}
  fi
  if [ -n "$d" ]; then
    [[ " ${CUDA_DIRS[*]} " == *" $d "* ]] || CUDA_DIRS+=("$d")
  else say "== warning: ${lib#*:} not found on this machine"; fi
done
"$PACK/setup.sh" "${CUDA_DIRS[@]}" | tee -a "$SUMMARY"
export PATH=$PACK/bin:$PATH
RETORT=$PACK/bin/retort

if command -v nvidia-smi >/dev/null; then
  timeout 30 nvidia-smi 2>&1 | tee -a "$SUMMARY" || true
  GPU=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
else
  GPU="nvidia-smi missing"
fi
# What retort's process loads, and the versions of cuDNN, NCCL, cudart found there.
(. "$PACK/env.local"; ldd "$PACK/libexec/retort") > "$BASE/ldd.txt" 2>&1 || true
grep -E 'cud|nccl|cublas|not found' "$BASE/ldd.txt" | sed 's/ (0x.*//; s/^\s*/   ldd: /' | tee -a "$SUMMARY"
libpath() { awk -v n="$1" '$1 == n && $2 == "=>" {print $3}' "$BASE/ldd.txt"; }
VERSIONS=$(python3 - "$(libpath libcudnn.so.9)" "$(libpath libnccl.so.2)" "$(libpath libcudart.so.13)" <<'PY' 2>&1 || true
import ctypes, sys
cudnn, nccl, cudart = sys.argv[1:4]
out = []
try:
    v = ctypes.CDLL(cudnn).cudnnGetVersion(); out.append(f"cuDNN {v // 10000}.{v // 100 % 100}.{v % 100} ({cudnn})")
except Exception as e: out.append(f"cuDNN ? ({cudnn or 'not found'}: {e})")
try:
    n = ctypes.c_int(); ctypes.CDLL(nccl).ncclGetVersion(ctypes.byref(n)); v = n.value
    out.append(f"NCCL {v // 10000}.{v // 100 % 100}.{v % 100}")
except Exception as e: out.append(f"NCCL ? ({nccl or 'not found'}: {e})")
try:
    n = ctypes.c_int(); ctypes.CDLL(cudart).cudaRuntimeGetVersion(ctypes.byref(n)); out.append(f"cudart {n.value // 1000}.{n.value % 1000 // 10}")
except Exception as e: out.append(f"cudart ? ({e})")
print(", ".join(out))
PY
)
say "== GPU: $GPU; $VERSIONS"
INFO=$("$RETORT" info "$PACK/src/configs/tiny.yaml" 2>&1) || true
say "== retort info: $(echo "$INFO" | grep -E 'devices|error' | head -2 | xargs)"
ngpu=$(echo "$INFO" | sed -n 's/.*cuda backend built, \([0-9]*\) GPU.*/\1/p')
PREFLIGHT=""
if [ -z "$ngpu" ]; then
  PREFLIGHT="retort does not start here: $(echo "$INFO" | tail -1)"
  grep 'not found' "$BASE/ldd.txt" || true
elif [ "$ngpu" = 0 ] && [ "${CHECK_ALLOW_NO_GPU:-0}" != 1 ]; then  # 1: a dry run without a GPU
  PREFLIGHT="retort sees no GPU (libcuda: $(ldconfig -p 2>/dev/null | grep -m1 'libcuda.so.1' | awk '{print $NF}'); LD_LIBRARY_PATH of the pack in $PACK/env.local)"
fi

# The e2e scripts call /usr/bin/python3 for h5py/numpy/torch checks; here python3 may be another.
if ! /usr/bin/python3 -c 'import h5py, numpy, torch, yaml' 2>/dev/null; then
  py=$(command -v python3)
  sed -i "s#/usr/bin/python3#$py#g" "$PACK"/src/tests/e2e/*.sh
  say "== /usr/bin/python3 lacks h5py/numpy/torch/yaml: the pack's e2e scripts use $py"
fi

# ---- parts ---------------------------------------------------------------------------------
left() { echo $((BUDGET - (SECONDS - T0))); }
kill_leftovers() {  # processes of the pack a part left behind (its binaries or scripts in argv)
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
    cmd=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null) || continue
    case $cmd in *"$BASE/"*) kill -9 "$p" 2>/dev/null || true ;; esac
  done
}
# part NAME LIMIT LOG [--stdout FILE] CMD...: runs CMD with at most LIMIT seconds (less when the
# budget is short), output to LOG (stdout to FILE if given); records PASS (exit 0), SKIP (77, or
# no time left) or FAIL.
part() {
  local name=$1 limit=$2 log=$3 stdout=$3; shift 3
  if [ "$1" = --stdout ]; then stdout=$2; shift 2; fi
  local avail=$(( $(left) - 20 )) t=$SECONDS rc=0 status detail
  if [ "$avail" -lt 30 ]; then
    RESULTS+=("SKIP  $name: no time left in the ${BUDGET} s budget"); echo "   SKIP $name (no time left)"; return
  fi
  [ "$limit" -le "$avail" ] || limit=$avail
  echo "== $(printf '%4d' $((SECONDS - T0))) s: $name (limit $limit s)"
  local from=$(( $(wc -l < "$log" 2>/dev/null || echo 0) + 1 ))
  echo "===== $name: $*" >> "$log"
  timeout -k 10 "$limit" "$@" >> "$stdout" 2>> "$log" || rc=$?
  kill_leftovers
  case $rc in
    0) status=PASS detail="" ;;
    77) status=SKIP detail=": $(tail -n +"$((from + 1))" "$log" | grep -m1 -iE 'skip|GPU' | tail -c 150)" ;;
    124|137) status=FAIL detail=": timed out after $limit s" ;;
    *) status=FAIL detail=": exit $rc" ;;
  esac
  if [ "$status" = FAIL ]; then
    TAILS+=("--- $name (last lines of $(basename "$log")):"$'\n'"$(tail -n +"$from" "$log" | grep -v '^\s*$' | tail -n 15 | cut -c1-200)")
  fi
  RESULTS+=("$(printf '%-5s %s (%d s)%s' "$status" "$name" $((SECONDS - t)) "$detail")")
  echo "   $status $name ($((SECONDS - t)) s)${detail}"
}

if [ -n "$PREFLIGHT" ]; then
  RESULTS+=("FAIL  preflight: $PREFLIGHT")
  MODE=none
fi

if [ "$MODE" = tests ] || [ "$MODE" = all ]; then
  for t in test_cuda_kernels test_cuda_model; do
    part "$t" 100 "$OUT/$t.log" env OMP_NUM_THREADS=1 "$PACK/bin/$t" --gtest_color=no
    f=$(grep -sc '^\[  FAILED  \] [A-Za-z]' "$OUT/$t.log" || true)
    [ "${f:-0}" = 0 ] || RESULTS+=("      $t failed tests: $(grep '^\[  FAILED  \] [A-Za-z]' "$OUT/$t.log" | sed 's/\[  FAILED  \] //; s/ (.*//' | sort -u | head -12 | xargs)")
  done
  # Open MPI from the pack: 2 ranks on the CPU (MPI_Init, shared memory, the data-parallel sums).
  part mpi_2ranks_cpu 40 "$OUT/e2e.log" "$PACK/bin/mpirun" --allow-run-as-root --oversubscribe -np 2 \
    "$RETORT" bench "$PACK/src/configs/tiny.yaml" --set parallel.dp=2 --set bench.steps=2 \
    --set bench.warmup=1 --set bench.ceiling_n=64
  for s in gpu_train gpu_distill gpu_meshes gpu_stalled_rank; do
    limit=150; [ "$s" = gpu_train ] || limit=100
    part "e2e_$s" "$limit" "$OUT/e2e.log" env RETORT_BIN="$RETORT" RETORT_SOURCE_DIR="$PACK/src" \
      WORK="$BASE/e2e/$s" OMP_NUM_THREADS=1 bash "$PACK/src/tests/e2e/$s.sh"
  done
  (cd "$BASE" && find e2e -type f \( -name '*.log' -o -name '*.json' -o -name '*.jsonl' -o -name '*.txt' -o -name '*.yaml' \) -size -2M -print0 |
     tar --null -czf "$OUT/e2e-work.tar.gz" -T -) 2>/dev/null || true
fi

BENCH_TABLE=""
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  B=$BASE/bench; mkdir -p "$B"
  for cfg in gpu-125m gpu-350m; do
    limit=120; [ "$cfg" = gpu-125m ] || limit=150
    part "bench retort $cfg" "$limit" "$OUT/bench.log" --stdout "$B/$cfg-retort.json" \
      "$RETORT" bench "$PACK/src/configs/$cfg.yaml"
    part "bench pytorch-eager $cfg" "$limit" "$OUT/bench.log" --stdout "$B/$cfg-eager.json" \
      python3 "$PACK/src/bench/pytorch_bench.py" "$PACK/src/configs/$cfg.yaml" --device cuda --bf16
  done
  # Where retort's step goes: each kernel timed alone (RETORT_OP_PROFILE, core/op_profile.h).
  part "bench retort gpu-350m op profile" 60 "$OUT/bench.log" --stdout "$OUT/profile-350m.json" \
    env RETORT_OP_PROFILE=1 "$RETORT" bench "$PACK/src/configs/gpu-350m.yaml" --set bench.steps=3 \
    --set bench.warmup=1 --set bench.ceiling_n=1024
  # The same 350m bench with every product shape's cuBLASLt algorithm timed (train.matmul_tuning)
  part "bench retort gpu-350m matmul_tuning=timed" 150 "$OUT/bench.log" \
    --stdout "$B/gpu-350m-retort_timed.json" \
    "$RETORT" bench "$PACK/src/configs/gpu-350m.yaml" --set train.matmul_tuning=timed
  # The attention peer at gpu-350m's shape: PyTorch's fused SDPA (compare the profile's
  # attention_cudnn graph rows per call).
  part "attention peer (torch SDPA, B=8 H=16 T=1024 hd=64)" 60 "$OUT/bench.log" \
    --stdout "$B/attention-peer.json" python3 "$PACK/src/bench/attention_peer.py"
  for cfg in gpu-125m gpu-350m; do  # torch.compile compiles first: only with the time left
    part "bench pytorch-compile $cfg" 180 "$OUT/bench.log" --stdout "$B/$cfg-compile.json" \
      python3 "$PACK/src/bench/pytorch_bench.py" "$PACK/src/configs/$cfg.yaml" --device cuda --bf16 --compile
  done
  # retort generate on the GPU (score and sample mode, a gpu-125m-shaped teacher, bf16): tok/s
  part "generate gpu-125m (score; sample at batch 8 and 64)" 90 "$OUT/bench.log" --stdout "$B/generate.jsonl" \
    env RETORT_BIN="$RETORT" bash "$PACK/src/bench/generate.sh" --config "$PACK/src/configs/gpu-125m.yaml" \
    --out "$B/generate"
  BENCH_TABLE=$(python3 - "$B" "$OUT/bench.json" <<'PY' 2>&1 || true
import glob, json, os, sys
d, out = sys.argv[1], sys.argv[2]
runs = {}
for f in sorted(glob.glob(os.path.join(d, "*.json"))):
    try:
        runs[os.path.basename(f)[:-5]] = json.load(open(f))
    except Exception as e:  # an interrupted run leaves a partial file
        runs[os.path.basename(f)[:-5]] = {"error": f"unreadable: {e}"}
json.dump(runs, open(out, "w"), indent=1)
rows = ["| config | impl | tokens/s | MFU (989 TFLOP/s) | matmul ceiling TFLOP/s | peak GPU GiB | attention | retort / this |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for cfg in ("gpu-125m", "gpu-350m"):
    r = runs.get(f"{cfg}-retort", {})
    fpt = r.get("flops_per_token_mfu")
    for impl in ("retort", "retort_timed", "eager", "compile"):
        j = runs.get(f"{cfg}-{impl}")
        if not j or "tokens_per_s" not in j:
            continue
        tok = j["tokens_per_s"]
        f = j.get("flops_per_token_mfu", fpt)
        mfu = f"{tok * f / 989e12:.1%}" if f else "?"
        ceil = f"{j['matmul_ceiling_gflops'] / 1e3:.0f}" if "matmul_ceiling_gflops" in j else ""
        mem = f"{j.get('gpu_peak_bytes', 0) / 2**30:.1f}"
        ratio = f"{r['tokens_per_s'] / tok:.2f}" if "tokens_per_s" in r else ""
        rows.append(f"| {cfg} | {impl} | {tok:.0f} | {mfu} | {ceil} | {mem} | {j.get('attention_kernel', '')} | {ratio} |")
timed = runs.get("gpu-350m-retort_timed", {}).get("tuned_products", [])
changed = sorted((t for t in timed if t["chosen"] != 0), key=lambda t: t["chosen_us"] - t["heuristic_us"])
if timed:
    rows.append(f"\nmatmul_tuning=timed at gpu-350m: {len(changed)} of {len(timed)} shapes chose another algorithm than the heuristic's first")
for t in changed[:12]:
    rows.append(f"  {t['shape']:<40} {t['heuristic_us']:9.1f} -> {t['chosen_us']:9.1f} us (#{t['chosen']} of {t['candidates']})")
print("\n".join(rows))
PY
)
fi

# ---- summary (the last lines of the output) ------------------------------------------------
say ""
say "==================== check.sh $MODE: summary ($((SECONDS - T0)) s of the ${BUDGET} s budget) ===================="
for t in "${TAILS[@]:0:4}"; do say "$t"; done  # the first 4 failures: the rest are in the logs
[ "${#TAILS[@]}" -le 4 ] || say "--- $(( ${#TAILS[@]} - 4 )) more failures: see their logs in \$OUT"
[ -z "$BENCH_TABLE" ] || { say ""; say "$BENCH_TABLE"; }
PROFILE=$(grep -A 50 'time per step by kernel' "$OUT/bench.log" 2>/dev/null | grep -E '^(retort bench|  )' | head -50 || true)
[ -z "$PROFILE" ] || { say ""; say "$PROFILE"; }
[ ! -s "$BASE/bench/attention-peer.json" ] || say "attention peer: $(tr -d '\n ' < "$BASE/bench/attention-peer.json")"
[ ! -s "$BASE/bench/generate.jsonl" ] || { say ""; say "$(cat "$BASE/bench/generate.jsonl")"; }
# What retort said of cuDNN in the benches (engine refusals, head windows taken through
# copies, the first-use checks against the plain kernel), once each.
CUDNN=$(grep -E '^retort: .*cuDNN' "$OUT/bench.log" 2>/dev/null | sort -u | head -12 || true)
[ -z "$CUDNN" ] || { say ""; say "$CUDNN"; }
say ""
say "GPU: $GPU; $VERSIONS"
for r in "${RESULTS[@]}"; do say "$r"; done
npass=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^PASS' || true)
nfail=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL' || true)
nskip=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^SKIP' || true)
say "RESULT: $npass passed, $nfail failed, $nskip skipped (logs and bench.json in \$OUT)"
[ "$nfail" = 0 ]
