#!/usr/bin/env bash
# pack.sh — runs HERE (the development machine, Debian 12, with nvcc), never on the GPU machine.
# Builds retort's CUDA backend portably and packs everything the GPU checks need into one
# archive for a lent GPU machine that cannot build retort (no HDF5, yaml-cpp, Open MPI,
# OpenBLAS, sentencepiece there; docs/GPU.md "On a lent GPU machine"):
#
#   tests/gpu/device/pack.sh [--build-dir DIR] [--no-build] [--out FILE]
#
#   --build-dir DIR  the build to pack (default build-device: configured here with
#                    -DRETORT_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DRETORT_CUDA=ON, so
#                    that it runs on any AVX2 CPU; `build` would reuse launch/build.sh's build,
#                    which is -march=native and may not run on the GPU machine's CPU)
#   --no-build       pack DIR as it is (it must hold retort, test_cuda_kernels, test_cuda_model)
#   --out FILE       the archive (default .device/pack.tar.xz; .device/ is git-ignored)
#
# The archive (retort-device/ inside) holds: bin/ (wrappers: retort, test_cuda_kernels,
# test_cuda_model, mpirun, mpiexec, orterun, ompi_info), libexec/ (the real binaries), lib/
# (every shared library they, Open MPI's programs and plugins and PMIx need, except the CUDA
# libraries — libcuda, cudart, cuBLAS(Lt), cuDNN, NCCL, NVRTC — and glibc's, which the GPU
# machine has; the GCC runtime apart in lib/compat), ompi/ (Open MPI 4.1's orterun, orted,
# ompi_info, plugins, help files, mca-params: relocated with OPAL_* variables), pmix/ (PMIx's
# plugins and help files), src/ (configs/, tests/e2e/, tests/reference/, bench/ scripts, as in
# this working tree), setup.sh, MANIFEST.txt. tests/gpu/device/check.sh uses it there;
# tests/gpu/device/pack_selftest.sh tests it here.
# Needs: cmake, nvcc (/usr/local/cuda), the Debian packages of launch/install-deps.sh, xz,
# git. Builds with JOBS (default 2) jobs, through ccache when it is installed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
BUILD=build-device BUILD_IT=1 OUTFILE=.device/pack.tar.xz
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD=${2%/}; shift 2 ;;
    --no-build) BUILD_IT=0; shift ;;
    --out) OUTFILE=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "pack.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "pack.sh: $*" >&2; exit 1; }
JOBS=${JOBS:-2}
TARGETS=(retort test_cuda_kernels test_cuda_model)

# ---- build ---------------------------------------------------------------------------------
if [ "$BUILD_IT" = 1 ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    [ "$BUILD" = build-device ] ||
      die "$BUILD is not configured: run launch/build.sh first (or use the default --build-dir build-device)"
    launcher=()
    if command -v ccache >/dev/null; then
      launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
    fi
    echo "== configuring $BUILD (portable: -march=x86-64-v3, CUDA on)" >&2
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRETORT_NATIVE=OFF \
      -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DRETORT_CUDA=ON "${launcher[@]}" >/dev/null ||
      die "cmake could not configure $BUILD (is nvcc at /usr/local/cuda/bin?)"
  fi
  echo "== building ${TARGETS[*]} in $BUILD (-j$JOBS)" >&2
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$ROOT")}
  cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >&2 ||
    die "the build in $BUILD failed (above); if another file is being edited in this tree, retry later"
fi
BIN_RETORT=$BUILD/retort
[ -x "$BIN_RETORT" ] || die "$BIN_RETORT missing: run launch/build.sh first (or drop --no-build)"
for t in test_cuda_kernels test_cuda_model; do
  [ -x "$BUILD/tests/$t" ] || die "$BUILD/tests/$t missing: cmake --build $BUILD --target $t"
done
"$BIN_RETORT" info configs/tiny.yaml | grep -q "cuda backend built" ||
  die "$BIN_RETORT has no real CUDA backend (configure with -DRETORT_CUDA=ON, not SIM or OFF)"
cache() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"; }
if [ "$(cache RETORT_NATIVE)" != OFF ]; then
  echo "pack.sh: warning: $BUILD is built with -march=native for $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); it may die with an illegal instruction on the GPU machine's CPU" >&2
fi
case ";$(cache RETORT_CUDA_ARCHITECTURES);" in
  *";90;"*|*";90-real;"*|*";90a;"*) ;;
  *) echo "pack.sh: warning: RETORT_CUDA_ARCHITECTURES=$(cache RETORT_CUDA_ARCHITECTURES) has no sm_90 code for the H200" >&2 ;;
esac

# ---- stage ---------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/retort-pack.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
S=$TMP/retort-device
mkdir -p "$S"/{bin,libexec,lib/compat,ompi/bin,ompi/lib/openmpi3,ompi/share/openmpi,ompi/etc,pmix/lib/pmix,pmix/share,src}
cp "$BIN_RETORT" "$S/libexec/retort"
cp "$BUILD/tests/test_cuda_kernels" "$BUILD/tests/test_cuda_model" "$S/libexec/"

# Open MPI 4.1 (Debian: libopenmpi3, openmpi-bin, openmpi-common) and PMIx (libpmix2).
OMPI_PKGLIB=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
PMIX_ROOT=/usr/lib/x86_64-linux-gnu/pmix2
[ -d "$OMPI_PKGLIB" ] || die "$OMPI_PKGLIB missing: apt-get install libopenmpi3 openmpi-bin (launch/install-deps.sh)"
for p in orterun orted ompi_info; do
  f=$(command -v "$p") || die "$p missing: apt-get install openmpi-bin"
  cp "$(readlink -f "$f")" "$S/ompi/bin/$p"
done
ln -s orterun "$S/ompi/bin/mpirun"
ln -s orterun "$S/ompi/bin/mpiexec"
# Plugins that need a network fabric (UCX, libfabric, PSM, verbs) or OpenSHMEM are left out:
# one node needs self, vader (shared memory) and tcp; a plugin that cannot load would only warn.
BLOCKED='lib(ucp|ucs|uct|fabric|psm_infinipath|psm2|ibverbs|rdmacm|oshmem|mca_common_(ucx|ofi|verbs))\.so'
dropped=()
for f in "$OMPI_PKGLIB"/*.so; do
  if ldd "$f" | grep -qE "$BLOCKED"; then dropped+=("$(basename "$f" .so)"); continue; fi
  cp "$f" "$S/ompi/lib/openmpi3/"
done
cp /usr/share/openmpi/help-*.txt "$S/ompi/share/openmpi/"
cp -r /usr/share/openmpi/amca-param-sets "$S/ompi/share/openmpi/" 2>/dev/null || true
cp /etc/openmpi/openmpi-mca-params.conf /etc/openmpi/openmpi-default-hostfile "$S/ompi/etc/"
cp "$PMIX_ROOT"/lib/pmix/*.so "$S/pmix/lib/pmix/"
cp -r "$PMIX_ROOT"/share/. "$S/pmix/share/"

# Shared libraries: everything ldd resolves for the binaries, Open MPI's programs and plugins and
# PMIx's plugins, except the CUDA libraries and glibc (both on the GPU machine).
GLIBC=" $(dpkg -L libc6 2>/dev/null | grep -E '/lib[^/]*\.so[.0-9]*$|/ld-linux' | xargs -n1 basename | sort -u | tr '\n' ' ') "
[ "$GLIBC" != "  " ] || GLIBC=" ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libresolv.so.2 libutil.so.1 libanl.so.1 libmvec.so.1 "
CUDA_RE='^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nccl|nvrtc[-a-z]*|nvJitLink|nvidia-[a-z]+|cupti)\.so'
COMPAT=" libstdc++.so.6 libgcc_s.so.1 libgomp.so.1 "
elfs() { find "$S/libexec" "$S/ompi/bin" "$S/ompi/lib" "$S/pmix/lib" "$S/lib" -type f \( -name '*.so*' -o -perm -u+x \) | sort; }
declare -A seen=()
for _ in 1 2; do  # twice: ldd is transitive already; the second pass only confirms
  while read -r f; do
    while read -r name arrow path _; do
      [ "$arrow" = "=>" ] || continue
      [ "$path" != "not" ] || die "ldd: $name not found for $f"
      [[ " $GLIBC " != *" $name "* ]] || continue
      [[ ! "$name" =~ $CUDA_RE ]] || continue
      [ -z "${seen[$name]:-}" ] || continue
      seen[$name]=$path
      if [[ "$COMPAT" == *" $name "* ]]; then cp -L "$path" "$S/lib/compat/$name"
      else cp -L "$path" "$S/lib/$name"; fi
    done < <(ldd "$f" 2>/dev/null || true)
  done < <(elfs)
done

# Nothing may resolve outside the pack but glibc and CUDA.
while read -r f; do
  LD_LIBRARY_PATH="$S/lib/compat:$S/lib" ldd "$f" 2>/dev/null | while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    case $path in "$S"/*) continue ;; esac
    [[ " $GLIBC " == *" $name "* || "$name" =~ $CUDA_RE ]] || die "${f#$S/} needs $name from $path, not in the pack"
  done
done < <(elfs)

# What the e2e scripts and the benchmark read from the repository (this working tree).
cp -r --parents configs tests/e2e tests/reference/torch_reference.py bench/pytorch_bench.py \
  bench/pytorch_model.py bench/attention_peer.py bench/gpu.sh bench/generate.sh "$S/src/"
find "$S/src" -name __pycache__ -prune -exec rm -rf {} +
cp tests/gpu/device/setup.sh "$S/setup.sh"
for w in retort test_cuda_kernels test_cuda_model mpirun mpiexec orterun ompi_info; do
  cp tests/gpu/device/wrapper.sh "$S/bin/$w"
done
chmod +x "$S/setup.sh" "$S"/bin/*

{
  echo "retort device pack, made $(date -u +%FT%TZ) on $(hostname) ($(. /etc/os-release; echo "$PRETTY_NAME"), glibc $(ldd --version | head -1 | awk '{print $NF}'))"
  echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- core models parallel launch data scaling tests CMakeLists.txt || echo ' + uncommitted changes:')"
  git status --porcelain -- core models parallel launch data scaling tests CMakeLists.txt | sed 's/^/  /'
  echo "build $BUILD: RETORT_NATIVE=$(cache RETORT_NATIVE) CMAKE_CXX_FLAGS=$(cache CMAKE_CXX_FLAGS) RETORT_CUDA_ARCHITECTURES=$(cache RETORT_CUDA_ARCHITECTURES)"
  echo "built against: $(/usr/local/cuda/bin/nvcc --version | tail -1), cuDNN $(awk '/define CUDNN_(MAJOR|MINOR|PATCHLEVEL)/{printf "%s%s", s, $3; s="."}' /usr/local/cuda/include/cudnn_version.h 2>/dev/null), NCCL $(awk '/define NCCL_(MAJOR|MINOR|PATCH) /{printf "%s%s", s, $3; s="."}' /usr/local/cuda/include/nccl.h 2>/dev/null)"
  echo "Open MPI $(dpkg-query -W -f '${Version}' libopenmpi3), PMIx $(dpkg-query -W -f '${Version}' libpmix2); plugins left out: ${dropped[*]}"
  echo "needs from the machine: glibc >= $(objdump -T "$S"/libexec/* "$S"/lib/*.so* "$S"/lib/compat/* "$S"/ompi/bin/* 2>/dev/null | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1), and these CUDA libraries:"
  for f in "$S"/libexec/*; do ldd "$f"; done | awk '{print $1}' | grep -E "$CUDA_RE" | sort -u | sed 's/^/  /'
  echo "files:"
  (cd "$TMP" && find retort-device -type f -printf '  %9s %p\n' | sort -k2)
} > "$S/MANIFEST.txt"

# ---- archive -------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUTFILE")"
echo "== compressing $(du -sh "$S" | cut -f1) into $OUTFILE" >&2
tar --owner=0 --group=0 -C "$TMP" -cf - retort-device | xz -T "$JOBS" -6 > "$OUTFILE.tmp"
mv "$OUTFILE.tmp" "$OUTFILE"
size=$(stat -c %s "$OUTFILE")
repo=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((size + repo + ${untracked:-0}))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "pack.sh: $OUTFILE: $(mib "$size") ($size bytes); with the working tree ($(mib "$repo") tracked, $(mib "${untracked:-0}") untracked) $(mib "$total") of the 64 MiB a device call carries"
[ "$size" -lt $((60 * 1048576)) ] || die "$OUTFILE is $(mib "$size"), over 60 MiB"
[ "$total" -lt $((64 * 1048576)) ] || die "the working tree and the pack together are $(mib "$total"), over 64 MiB"
