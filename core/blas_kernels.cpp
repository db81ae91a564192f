#include "core/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace retort {

namespace {

// Set across the re-execution: what OpenBLAS picked on its own.
constexpr const char* kDetectedVar = "RETORT_OPENBLAS_DETECTED";

// The best kernels of OpenBLAS's x86-64 set that this CPU and its OS can run (libgcc's
// __builtin_cpu_supports checks the OS saves the AVX / AVX-512 registers), or nullptr.
const char* best_core_for_this_cpu() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

}  // namespace

void choose_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice (or ours, re-executed)
  const char* picked = openblas_get_corename();
  if (!picked || std::strcmp(picked, "Prescott") != 0) return;
  const char* best = best_core_for_this_cpu();
  if (!best) return;
  setenv(kDetectedVar, picked, 1);
  setenv("OPENBLAS_CORETYPE", best, 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr,
               "retort: warning: OpenBLAS runs its generic %s kernels on this CPU and re-running "
               "with OPENBLAS_CORETYPE=%s failed (%s); set it yourself for ~4x faster matmuls\n",
               picked, best, std::strerror(errno));
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kDetectedVar);
}

std::string blas_kernels() {
  const char* name = openblas_get_corename();
  std::string s = name ? name : "?";
  if (const char* detected = std::getenv(kDetectedVar))
    s += std::string(" (chosen by retort: OpenBLAS picked ") + detected + " for this CPU)";
  return s;
}

}  // namespace retort
