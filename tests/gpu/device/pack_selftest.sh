#!/usr/bin/env bash
# pack_selftest.sh — runs HERE, as root (no GPU needed; about a minute). Checks that the device
# pack made by tests/gpu/device/pack.sh is self-contained, as far as this machine can show it:
#
#   tests/gpu/device/pack_selftest.sh [ARCHIVE]      (default .device/pack.tar.xz)
#
# It unpacks the archive into a temporary directory and runs the pack's programs in a private
# mount namespace (unshare -m) where /usr/lib/x86_64-linux-gnu (= /lib/x86_64-linux-gnu) holds
# only glibc's libraries and bash's libtinfo — Open MPI, PMIx, HDF5, yaml-cpp, OpenBLAS,
# sentencepiece, libstdc++ and every other library of this machine are gone — and
# /etc/openmpi and /usr/share/openmpi are empty. /usr/local/cuda stays (the GPU machine has
# CUDA; it has cuDNN and NCCL elsewhere). What runs there:
#   retort info (expects "cuda backend built, 0 GPU(s) visible"); test_cuda_kernels and
#   test_cuda_model (they load cudart, cuBLASLt, cuDNN and exit 77: no GPU); retort tokenize
#   (sentencepiece, HDF5); retort train, 4 steps (MPI_Init as a singleton, OpenBLAS, OpenMP,
#   checkpoints); mpirun -np 2 retort info; mpirun -np 2 retort train with parallel.dp=2 (two
#   ranks exchanging gradients over Open MPI's shared memory); ompi_info (paths inside the
#   pack, the btl plugins); with LD_DEBUG=libs, the list of every object the two trains loaded
#   from outside the pack.
# Then once more with the GCC runtime visible and setup.sh choosing (auto): info and mpirun -np 2.
# Exit 0 when all pass, 1 otherwise, 77 when it cannot run here (not root, no unshare).
# Not a ctest test: it needs root and the pack, and tests the packaging, not retort.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
ARCHIVE=$(readlink -f "${1:-.device/pack.tar.xz}")
[ -f "$ARCHIVE" ] || { echo "pack_selftest.sh: $ARCHIVE missing: run tests/gpu/device/pack.sh first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "pack_selftest.sh: needs root (mount namespaces): skipped"; exit 77; }
unshare -m true 2>/dev/null || { echo "pack_selftest.sh: unshare -m is not allowed here: skipped"; exit 77; }

T=$(mktemp -d /tmp/retort-selftest.XXXXXX)
trap 'rm -rf "$T"' EXIT
P=$T/retort-device
tar -C "$T" -xJf "$ARCHIVE"
mkdir -p "$T/empty" "$T/out" "$T/ld"
python3 "$P/src/tests/e2e/make_corpus.py" "$T/corpus" 40 >/dev/null

# The libraries left visible: glibc's (the Debian package libc6) and what bash needs.
syslib() {  # syslib DIR [EXTRA...]
  mkdir -p "$1"
  local f
  for f in $(dpkg -L libc6 | grep -E '^/(usr/)?lib/x86_64-linux-gnu/[^/]*\.so[.0-9]*$') \
           $(ldd /bin/bash | awk '$2 == "=>" {print $3}') "${@:2}"; do
    cp -L "$f" "$1/" 2>/dev/null || true
  done
  ls "$1" > "$1.list"
}
syslib "$T/sys-strict"
syslib "$T/sys-gcc" /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /lib/x86_64-linux-gnu/libgcc_s.so.1 \
  /usr/lib/x86_64-linux-gnu/libgomp.so.1

# The commands run in the namespace: nothing but bash builtins and the pack's programs.
TINY=$P/src/configs/tiny.yaml
DATA=(--set "data.train=$T/tok/train.h5" --set "data.val=$T/tok/val.h5" --set train.steps=4
      --set checkpoint.every=2 --set eval.every=2 --set eval.max_windows=2)
MPIRUN=("$P/bin/mpirun" --allow-run-as-root --oversubscribe -np 2)
cat > "$T/inner.sh" <<EOF
set -u
mount --bind "$T/empty" /etc/openmpi
mount --bind "$T/empty" /usr/share/openmpi
mount --bind "\$1" /usr/lib/x86_64-linux-gnu   # last: after it, /bin/mount cannot load
step() { local n=\$1; shift; "\$@" > "$T/out/\$n.out" 2>&1; echo \$? > "$T/out/\$n.rc"; }
if [ "\$2" = strict ]; then
  step info $P/bin/retort info "$TINY"
  step kernels $P/bin/test_cuda_kernels
  step model $P/bin/test_cuda_model
  step tokenize $P/bin/retort tokenize "$TINY" --set "tokenize.inputs=[$T/corpus]" --set "tokenize.out=$T/tok"
  step train env LD_DEBUG=libs LD_DEBUG_OUTPUT=$T/ld/train $P/bin/retort train "$TINY" ${DATA[*]} --set "run.dir=$T/run1"
  step mpi_info ${MPIRUN[*]} $P/bin/retort info "$TINY"
  step mpi_train env LD_DEBUG=libs LD_DEBUG_OUTPUT=$T/ld/mpi ${MPIRUN[*]} $P/bin/retort train "$TINY" ${DATA[*]} --set parallel.dp=2 --set "run.dir=$T/run2"
  step ompi_path $P/bin/ompi_info --path all
  step ompi_btl $P/bin/ompi_info --parsable
else
  step gcc_info $P/bin/retort info "$TINY"
  step gcc_mpi_info ${MPIRUN[*]} $P/bin/retort info "$TINY"
fi
EOF

# Any CUDA library dir of this machine goes in, as check.sh adds the GPU machine's.
CUDA_LIB=$(readlink -f /usr/local/cuda/lib64)
echo "== strict: glibc and bash's libraries only (hidden: $(find /usr/lib/x86_64-linux-gnu -maxdepth 1 -name '*.so*' | wc -l) others)"
RETORT_PACK_COMPAT=pack "$P/setup.sh" "$CUDA_LIB" | sed 's/^/   /'
unshare -m --propagation private bash "$T/inner.sh" "$T/sys-strict" strict
echo "== the GCC runtime visible, setup.sh choosing"
"$P/setup.sh" "$CUDA_LIB" | sed 's/^/   /'
unshare -m --propagation private bash "$T/inner.sh" "$T/sys-gcc" gcc

# ---- verdicts (outside the namespace) ------------------------------------------------------
fails=0
check() {  # check STEP RC PATTERN WHAT
  local rc out
  rc=$(cat "$T/out/$1.rc" 2>/dev/null || echo none)
  out=$T/out/$1.out
  if [ "$rc" = "$2" ] && { [ -z "$3" ] || grep -qE -- "$3" "$out"; }; then
    echo "PASS  $1: $4"
  else
    echo "FAIL  $1: $4 (exit $rc, expected $2; /$3/)"; sed 's/^/      /' "$out" | tail -n 12
    fails=$((fails + 1))
  fi
}
check info 0 "cuda backend built, 0 GPU\(s\) visible" "retort info starts (cudart, cuBLASLt, cuDNN, NCCL, MPI, HDF5, yaml-cpp, OpenBLAS, sentencepiece load)"
check kernels 77 "no GPU visible" "test_cuda_kernels loads and skips"
check model 77 "no GPU visible" "test_cuda_model loads and skips"
check tokenize 0 "" "retort tokenize (sentencepiece trains, HDF5 writes)"
check train 0 "" "retort train, 4 steps: MPI_Init as a singleton, checkpoints"
[ -f "$T/run1/summary.json" ] || { echo "FAIL  train: no summary.json"; fails=$((fails + 1)); }
check mpi_info 0 "cuda backend built" "mpirun -np 2 retort info"
[ "$(grep -c 'cuda backend built' "$T/out/mpi_info.out")" = 2 ] || { echo "FAIL  mpi_info: not two ranks"; fails=$((fails + 1)); }
check mpi_train 0 "" "mpirun -np 2 retort train, parallel.dp=2"
[ -f "$T/run2/summary.json" ] || { echo "FAIL  mpi_train: no summary.json"; fails=$((fails + 1)); }
check ompi_path 0 "Pkglibdir: $P/ompi/lib/openmpi3" "ompi_info: Open MPI's directories are the pack's"
check ompi_btl 0 "mca:btl:vader:" "ompi_info: the vader (shared memory) btl loads from the pack"
check gcc_info 0 "cuda backend built, 0 GPU\(s\) visible" "with the system's GCC runtime: retort info"
check gcc_mpi_info 0 "cuda backend built" "with the system's GCC runtime: mpirun -np 2 retort info"

# Every object loaded by the two trains (LD_DEBUG=libs), by where it came from.
loaded=$(cat "$T"/ld/* 2>/dev/null | sed -n 's/.*calling init: //p' | sort -u)
n_pack=$(grep -c "^$P/" <<<"$loaded" || true)
outside=$(grep -v "^$P/" <<<"$loaded" | sort -u | tr '\n' ' ')
echo "      loaded by the trains (singleton and 2 ranks): $n_pack objects from the pack; from outside it: ${outside:-none}"
stray=$(grep -v "^$P/" <<<"$loaded" | grep -vE '^/usr/local/cuda|/(ld-linux-x86-64\.so\.2|lib(c|m|dl|pthread|rt|resolv|mvec|util|anl|tinfo)\.so\.[0-9]+)$' || true)
if [ -n "$stray" ]; then echo "FAIL  loaded from outside the pack, not glibc or CUDA: $stray"; fails=$((fails + 1))
else echo "PASS  nothing loaded from outside the pack but glibc, CUDA and the wrappers' bash (libtinfo)"; fi

echo "pack_selftest.sh: $fails failure(s) ($(du -h "$ARCHIVE" | cut -f1) $ARCHIVE)"
[ "$fails" = 0 ]
