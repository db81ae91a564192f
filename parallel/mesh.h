// The process mesh: named axes dp × fsdp × tp (tp innermost in rank order) over MPI.
// This issue runs one process; the axes are validated so that a launch that asks for a
// mesh this build cannot run yet fails with a clear message instead of training wrongly.
#pragma once
#include <string>

#include "core/config.h"

namespace retort {

struct Mesh {
  int world_size = 1;
  int rank = 0;
  int dp = 1, fsdp = 1, tp = 1;
  bool sp = false;
  bool is_root() const { return rank == 0; }
};

// Initialise MPI (once; safe without mpirun) and build the mesh from `parallel.*`.
Mesh make_mesh(const Config& config);
// Finalise MPI if make_mesh initialised it.
void shutdown_mesh();
// Abort every rank of the job (used when one rank fails).
[[noreturn]] void abort_job(int exit_code);

}  // namespace retort
