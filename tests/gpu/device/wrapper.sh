#!/bin/bash
# wrapper.sh — shipped inside the device pack as each of retort-device/bin/{retort,
# test_cuda_kernels, test_cuda_model, mpirun, mpiexec, orterun, ompi_info} (tests/gpu/device/
# pack.sh copies it there). Runs the pack's program of the same name with the pack's libraries
# and Open MPI (env.local, written by setup.sh), so that only the programs of the pack see
# them: python3 and the shell of the caller keep their own environment.
# Pure bash on purpose (no dirname, no env): pack_selftest.sh runs it where every library but
# glibc's and bash's own is hidden.
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
pack=$(cd "$here/.." && pwd -P)
if [ ! -f "$pack/env.local" ]; then
  echo "${0##*/}: $pack/env.local missing: run $pack/setup.sh first" >&2
  exit 127
fi
. "$pack/env.local"
case ${0##*/} in
  mpirun|mpiexec|orterun) exec "$pack/ompi/bin/orterun" "$@" ;;
  ompi_info) exec "$pack/ompi/bin/ompi_info" "$@" ;;
  *) exec "$pack/libexec/${0##*/}" "$@" ;;
esac
