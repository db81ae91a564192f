#!/usr/bin/env bash
# setup.sh — shipped inside the device pack as retort-device/setup.sh (tests/gpu/device/pack.sh
# copies it there). Run it once after unpacking, on the machine that will run the pack:
#
#   retort-device/setup.sh [LIB_DIR...]
#
# It writes retort-device/env.local, which every wrapper in retort-device/bin sources before it
# runs the real program: LD_LIBRARY_PATH = the pack's libraries, then each LIB_DIR (the
# machine's CUDA, cuDNN and NCCL libraries, which the pack does not carry), then the
# LD_LIBRARY_PATH in force now (the driver's libcuda may be found through it); the relocated
# Open MPI (OPAL_*) and PMIx (PMIX_*) directories; Open MPI settings for one node, as root.
# Needs: bash, coreutils, grep. Nothing else from the machine but glibc and the CUDA libraries.
#
# The GCC runtime (libstdc++, libgcc_s, libgomp) is in lib/compat and used only where the
# machine's own copy is missing or older (it lacks a symbol version the pack's copy defines):
# a newer system libstdc++ must win, or the machine's cuDNN/NCCL, built against it, could
# fail to load. RETORT_PACK_COMPAT=pack|system forces the choice (default auto).
set -euo pipefail
PACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
[ -d "$PACK/lib" ] && [ -d "$PACK/ompi" ] || { echo "setup.sh: $PACK is not an unpacked retort device pack" >&2; exit 1; }

versions() { grep -aoE '(GLIBCXX|CXXABI|GCC|GOMP|OMP|OACC)_[0-9][0-9.]*[0-9]' "$1" | sort -u; }
rm -rf "$PACK/lib/chosen" && mkdir -p "$PACK/lib/chosen"
mode=${RETORT_PACK_COMPAT:-auto}
for lib in "$PACK"/lib/compat/*; do
  name=${lib##*/} sys=""
  for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /lib64 /usr/lib /lib; do
    if [ -e "$d/$name" ]; then sys=$d/$name; break; fi
  done
  use=pack why=""
  case $mode in
    pack) why="forced (RETORT_PACK_COMPAT=pack)" ;;
    system) use=system why="forced (RETORT_PACK_COMPAT=system)" ;;
    *)
      if [ -z "$sys" ]; then
        why="none on this machine"
      else
        missing=$(comm -23 <(versions "$lib") <(versions "$sys") | tr '\n' ' ')
        if [ -z "$missing" ]; then use=system why="$sys is as new"
        else why="$sys lacks ${missing% }"; fi
      fi ;;
  esac
  if [ "$use" = pack ]; then ln -s "../compat/$name" "$PACK/lib/chosen/$name"; fi
  echo "setup.sh: $name: the $use's ($why)"
done

ld="$PACK/lib/chosen:$PACK/lib"
for d in "$@"; do [ -d "$d" ] && ld="$ld:$d"; done
[ -z "${LD_LIBRARY_PATH:-}" ] || ld="$ld:$LD_LIBRARY_PATH"

O=$PACK/ompi P=$PACK/pmix
cat > "$PACK/env.local.tmp" <<EOF
# Written by setup.sh on $(hostname 2>/dev/null || echo this machine), $(date -u +%FT%TZ). Sourced by bin/*.
export RETORT_PACK='$PACK'
export LD_LIBRARY_PATH='$ld'
export OPAL_PREFIX='$O' OPAL_EXEC_PREFIX='$O' OPAL_BINDIR='$O/bin' OPAL_SBINDIR='$O/bin'
export OPAL_LIBDIR='$PACK/lib' OPAL_LIBEXECDIR='$O/bin' OPAL_PKGLIBDIR='$O/lib/openmpi3'
export OPAL_DATAROOTDIR='$O/share' OPAL_DATADIR='$O/share' OPAL_PKGDATADIR='$O/share/openmpi'
export OPAL_SYSCONFDIR='$O/etc' OPAL_INCLUDEDIR='$O/include' OPAL_PKGINCLUDEDIR='$O/include'
export PMIX_PREFIX='$P' PMIX_EXEC_PREFIX='$P' PMIX_BINDIR='$P/bin' PMIX_LIBDIR='$PACK/lib'
export PMIX_PKGLIBDIR='$P/lib/pmix' PMIX_DATAROOTDIR='$P/share' PMIX_DATADIR='$P/share'
export PMIX_PKGDATADIR='$P/share/pmix' PMIX_SYSCONFDIR='$P/share'
# One node, as root, maybe in a VM: shared memory without CMA, no ssh, no network fabrics.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm=isolated OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
export PMIX_MCA_gds=hash
EOF
mv "$PACK/env.local.tmp" "$PACK/env.local"
echo "setup.sh: wrote $PACK/env.local (LD_LIBRARY_PATH=$ld)"
