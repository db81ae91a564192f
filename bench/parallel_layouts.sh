#!/usr/bin/env bash
# Parallel layouts on 2 cores, side by side: 1 rank × 2 threads against 2 ranks × 1 thread
# with dp2, fsdp2, tp2 and tp2+sp on the same model and global batch, alternated for N rounds.
# Prints tokens/s per round, the median ratio to 1 rank × 2 threads, and the bytes each rank
# sends per step (ring algorithms) next to the textbook volume (retort bench's
# communication_per_rank; parallel/communicator.h, launch/bench_command.cpp).
#
#   bench/parallel_layouts.sh [--runs N] [--config FILE]      (defaults 3, configs/bench-cpu.yaml)
# RETORT_BIN overrides build/retort.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=3 CONFIG=configs/bench-cpu.yaml
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--config FILE]" >&2; exit 2 ;;
  esac
done
BIN=${RETORT_BIN:-build/retort}
[ -x "$BIN" ] || { echo "no $BIN; run launch/build.sh first (or set RETORT_BIN)" >&2; exit 2; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2)
declare -A SETS=([dp2]="parallel.dp=2" [fsdp2]="parallel.fsdp=2" [tp2]="parallel.tp=2"
                 [tp2sp]="parallel.tp=2 parallel.sp=true")
LAYOUTS=(one dp2 fsdp2 tp2 tp2sp)
for r in $(seq "$RUNS"); do
  for l in "${LAYOUTS[@]}"; do
    if [ "$l" = one ]; then
      OMP_NUM_THREADS=2 "$BIN" bench "$CONFIG" >"$OUT/$l.$r.json"
    else
      args=(); for kv in ${SETS[$l]}; do args+=(--set "$kv"); done
      OMP_NUM_THREADS=1 "${MPIRUN[@]}" "$BIN" bench "$CONFIG" "${args[@]}" >"$OUT/$l.$r.json"
    fi
    echo "round $r $l: $(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["tokens_per_s"]))' "$OUT/$l.$r.json") tokens/s" >&2
  done
done
python3 - "$OUT" "$RUNS" "${LAYOUTS[@]}" <<'PY'
import json, statistics, sys
out, runs, layouts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {l: [json.load(open(f"{out}/{l}.{r}.json")) for r in range(1, runs + 1)] for l in layouts}
base = statistics.median(j["tokens_per_s"] for j in res["one"])
print("| layout | tokens/s per round | ratio to 1 rank × 2 threads | MB sent per step per rank (measured / theory) |")
print("| --- | --- | ---: | --- |")
for l in layouts:
    tok = [j["tokens_per_s"] for j in res[l]]
    comm = res[l][0]["communication_per_rank"]
    vol = ", ".join(f"{a}: {c['measured_bytes_per_step'] / 1e6:.2f} / {c['theory_bytes_per_step'] / 1e6:.2f}"
                    for a, c in comm.items() if c["measured_bytes_per_step"] or c["theory_bytes_per_step"]) or "—"
    name = "1 rank × 2 threads" if l == "one" else f"{l}: 2 ranks × 1 thread"
    print(f"| {name} | {', '.join(str(round(t)) for t in tok)} | {statistics.median(tok) / base:.2f} | {vol} |")
PY
