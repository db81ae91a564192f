#!/usr/bin/env bash
# OpenBLAS's kernels (core/blas_kernels.h): on a CPU with AVX2 and FMA retort never runs
# OpenBLAS's generic Prescott kernels unless the user asks for them; a user's OPENBLAS_CORETYPE
# is kept; the re-execution that corrects OpenBLAS's choice keeps the arguments, the exit codes
# and MPI.
source "$(dirname "$0")/lib.sh"
unset OPENBLAS_CORETYPE RETORT_OPENBLAS_DETECTED
# kernels CMD...: the kernels `retort info` reports ("SkylakeX", "SkylakeX (chosen by retort: ...)")
kernels() { "$@" | sed -n 's/^devices *cpu, OpenBLAS kernels \(.*\); .*/\1/p'; }
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }

k=$(kernels retort info "$TINY")
[ -n "$k" ] || fail "retort info names no OpenBLAS kernels"
echo "this machine: $k"
if has avx2 && has fma; then
  [[ $k != Prescott* ]] || fail "OpenBLAS's generic Prescott kernels run on a CPU with AVX2 and FMA: $k"
fi
if [[ $k == *"chosen by retort: OpenBLAS picked Prescott"* ]]; then
  want=Haswell
  if has avx512f && has avx512cd && has avx512bw && has avx512dq && has avx512vl; then want=SkylakeX; fi
  [[ $k == "$want "* ]] || fail "retort chose '$k'; this CPU's best is $want"
fi

# The user's choice is kept, even a slow one.
k=$(OPENBLAS_CORETYPE=Prescott kernels retort info "$TINY")
[ "$k" = Prescott ] || fail "OPENBLAS_CORETYPE=Prescott was not kept: '$k'"

# Arguments (one with a space) and exit codes pass through the re-execution.
retort config "$TINY" --set "run.dir=$WORK/a dir" --set train.lr=0.25 > config.out
grep -q "dir: $WORK/a dir" config.out || fail "run.dir with a space lost: $(head -3 config.out)"
grep -q "lr: 0.25" config.out || fail "train.lr lost"
expect_fail 2 "unknown key 'train.lrr'" retort info "$TINY" --set train.lrr=1

# Under mpirun (each rank re-executes before MPI_Init): rank 0 reports the kernels of one process.
mpirun --allow-run-as-root --oversubscribe -np 2 "$RETORT_BIN" bench "$TINY" --set parallel.dp=2 \
  --set bench.steps=1 --set bench.warmup=0 --set bench.ceiling_n=64 > bench.json
one=$(kernels retort info "$TINY")
[ "$(json bench.json 'j["blas_kernels"]')" = "$one" ] || fail "rank 0 of mpirun runs other kernels than one process"
echo "blas_kernels: ok"
