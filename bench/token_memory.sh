#!/usr/bin/env bash
# Memory and start-up time of training ranks on a large token dataset: the same tokens stored
# contiguously (memory-mapped by retort) and chunked (read into each rank's memory, as every
# file was before mapping). R ranks (dp R) train configs/tiny.yaml for 20 steps on each file in
# turn, ROUNDS times; one line per run: the ranks' peak private (RssAnon) and file-backed
# (RssFile) resident MiB, the node's peak increase in used memory (page cache excluded) and the
# wall time.
#
#   bench/token_memory.sh [--tokens N (500000000: 2 GB)] [--ranks R (2)] [--rounds K (3)] [--out DIR]
#
# RETORT_BIN overrides build/retort (point it at another build for a before/after); needs h5py.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=500000000 R=2 ROUNDS=3 OUT=/tmp/retort-token-memory
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tokens) N=$2; shift 2 ;;
    --ranks) R=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "token_memory.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN=${RETORT_BIN:-$ROOT/build/retort}
mkdir -p "$OUT"
if [ ! -f "$OUT/chunked-$N.h5" ]; then
  /usr/bin/python3 - "$OUT" "$N" <<'PY'
import sys, h5py, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
def write(path, chunks):
    with h5py.File(path + ".tmp", "w") as f:
        d = f.create_dataset("tokens", (n,), dtype=np.int32, chunks=chunks)
        for i in range(0, n, 1 << 26):
            d[i:i + (1 << 26)] = np.random.default_rng(i).integers(0, 512, min(1 << 26, n - i), dtype=np.int32)
        f["doc_offsets"] = np.arange(0, n, 1000, dtype=np.int64)
        f.attrs.update(vocab_size=512, eos_id=2, tokenizer_sha256="none")
    import os; os.replace(path + ".tmp", path)
write(f"{out}/contiguous-{n}.h5", None)
write(f"{out}/chunked-{n}.h5", (1 << 20,))
with h5py.File(f"{out}/val.h5", "w") as f:
    f["tokens"] = rng.integers(0, 512, 100000, dtype=np.int32)
    f["doc_offsets"] = np.array([0], dtype=np.int64)
    f.attrs.update(vocab_size=512, eos_id=2, tokenizer_sha256="none")
PY
fi

measure() {  # FILE: one run, one line
  local run=$OUT/run used0 pid start t
  rm -rf "$run"
  used0=$(free -m | awk '/Mem:/{print $3}')
  start=$(date +%s.%N)
  OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np "$R" "$BIN" train "$ROOT/configs/tiny.yaml" \
    --set "data.train=$1" --set "data.val=$OUT/val.h5" --set "run.dir=$run" --set train.steps=20 \
    --set parallel.dp="$R" --set eval.every=0 --set checkpoint.every=0 >"$OUT/log" 2>&1 &
  pid=$!
  declare -A anon=() file=()
  local peak=0 u p a f
  while kill -0 $pid 2>/dev/null; do
    for p in $(pgrep -f -- "$BIN train" || true); do
      a=$(awk '/RssAnon/{print $2}' /proc/$p/status 2>/dev/null || true)
      f=$(awk '/RssFile/{print $2}' /proc/$p/status 2>/dev/null || true)
      [ -n "$a" ] && [ "$a" -gt "${anon[$p]:-0}" ] && anon[$p]=$a
      [ -n "$f" ] && [ "$f" -gt "${file[$p]:-0}" ] && file[$p]=$f
    done
    u=$(free -m | awk '/Mem:/{print $3}'); [ "$u" -gt "$peak" ] && peak=$u
    sleep 0.2
  done
  wait $pid || { echo "token_memory.sh: training failed, see $OUT/log" >&2; exit 1; }
  t=$(echo "$(date +%s.%N) - $start" | bc)
  local ranks=""
  for p in "${!anon[@]}"; do
    [ "${anon[$p]}" -gt 10240 ] && ranks+=" $((anon[$p] / 1024))/$((file[$p] / 1024))"
  done
  printf '%-10s ranks RssAnon/RssFile MiB:%s  node used +%d MiB  wall %.1f s\n' \
    "$(basename "$1" | cut -d- -f1)" "$ranks" $((peak - used0)) "$t"
}

for ((k = 0; k < ROUNDS; ++k)); do
  measure "$OUT/contiguous-$N.h5"
  measure "$OUT/chunked-$N.h5"
done
