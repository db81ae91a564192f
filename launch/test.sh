#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite with ctest.
# Exit code 0 only if every test passed. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install-deps.sh
launch/build.sh
cd build
# One thread per process: tests start several ranks / processes on few cores.
OMP_NUM_THREADS=1 ctest --output-on-failure --timeout 600 -j "${CTEST_JOBS:-2}" "$@"
