#!/usr/bin/env bash
# Configures and builds retort (Release) into build/. Extra args go to cmake configure,
# e.g. launch/build.sh -DRETORT_NATIVE=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$JOBS"
