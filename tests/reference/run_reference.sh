#!/bin/sh
# run_reference.sh DUMP_MODEL_BIN OUTDIR [key=value ...]
# Dumps a model + one forward/backward from retort, then checks it against the independent
# float64 PyTorch implementation (Debian python3-torch: /usr/bin/python3, not the PATH one).
set -eu
bin=$1; out=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$bin" "$out" "$@"
exec /usr/bin/python3 "$here/torch_reference.py" "$out/model.h5" "$out/grads.h5"
