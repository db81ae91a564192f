#!/usr/bin/env bash
# Collective time per call, build A against build B (e.g. before/after a communicator change),
# alternated for N runs on NP ranks; prints per (collective, bytes) the median over runs of
# each and the ratio B/A.
#
#   bench/collective_latency.sh A_BIN B_BIN [--runs N] [--np NP]    (defaults 5, 2)
# A_BIN/B_BIN: collective_latency executables (build/collective_latency of each build).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 A_BIN B_BIN [--runs N] [--np NP]" >&2; exit 2; }
A=$1 B=$2; shift 2
RUNS=5 NP=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --np) NP=$2; shift 2 ;;
    *) echo "usage: $0 A_BIN B_BIN [--runs N] [--np NP]" >&2; exit 2 ;;
  esac
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$NP")
for r in $(seq "$RUNS"); do
  OMP_NUM_THREADS=1 "${MPIRUN[@]}" "$A" >"$OUT/A.$r"
  OMP_NUM_THREADS=1 "${MPIRUN[@]}" "$B" >"$OUT/B.$r"
  echo "run $r of $RUNS done" >&2
done
python3 - "$OUT" "$RUNS" "$NP" <<'PY'
import collections, statistics, sys
out, runs, np_ = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = collections.defaultdict(lambda: {"A": [], "B": []})
for build in "AB":
    for r in range(1, runs + 1):
        for line in open(f"{out}/{build}.{r}"):
            op, nbytes, us = line.split()
            t[(op, int(nbytes))][build].append(float(us))
print(f"| collective ({np_} ranks) | bytes | A µs (median of {runs}) | B µs | B/A |")
print("| --- | ---: | ---: | ---: | ---: |")
for (op, nbytes), v in t.items():
    a, b = statistics.median(v["A"]), statistics.median(v["B"])
    print(f"| {op} | {nbytes} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
PY
