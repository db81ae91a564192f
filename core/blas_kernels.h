// Which of OpenBLAS's CPU kernels the CPU backend's sgemm runs.
//
// OpenBLAS picks its kernels when the library loads, from the CPU model. Releases before 0.3.25
// (Debian 12 ships 0.3.21) fall back to their generic Prescott (SSE3) kernels on Intel CPUs
// newer than the release — Sapphire and Emerald Rapids Xeons among them (OpenBLAS issue
// #4267) — which multiply ~4× slower than the AVX-512 ones the same library holds.
#pragma once
#include <string>

namespace retort {

// Called first in main, before MPI or threads start. When OpenBLAS chose Prescott, the user has
// not set OPENBLAS_CORETYPE, and the CPU and OS support AVX-512 (SkylakeX kernels) or AVX2 and
// FMA (Haswell): sets OPENBLAS_CORETYPE and executes this program again with the same argv
// (only at load does OpenBLAS read it). Returns without doing anything otherwise, or with a
// warning on stderr when the re-execution fails.
void choose_blas_kernels(char** argv);

// "SkylakeX", or "SkylakeX (chosen by retort: OpenBLAS picked Prescott for this CPU)".
std::string blas_kernels();

}  // namespace retort
