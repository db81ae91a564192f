// The process mesh: named axes dp × fsdp × tp over MPI, tp innermost in rank order:
//   world rank = (dp_index · fsdp + fsdp_index) · tp + tp_index
// One communicator per axis (MPI_Comm_split), plus the world. Ranks that differ only in
// dp or fsdp index read different data ("data ranks": dp·fsdp of them).
#pragma once
#include <memory>
#include <string>

#include "core/config.h"
#include "models/tensor_parallel_regions.h"
#include "parallel/communicator.h"

namespace retort {

struct Mesh {
  int world_size = 1;
  int rank = 0;
  int dp = 1, fsdp = 1, tp = 1;
  bool sp = false;
  Device device = Device::CPU;  // CUDA after attach_gpus (parallel/gpu_mesh.h)
  int dp_index = 0, fsdp_index = 0, tp_index = 0;
  std::shared_ptr<Communicator> world, dp_comm, fsdp_comm, tp_comm;

  bool is_root() const { return rank == 0; }
  int data_ranks() const { return dp * fsdp; }
  int data_rank() const { return dp_index * fsdp + fsdp_index; }
  // The model slice this rank holds (models/transformer.h).
  TpLayout tp_layout() const { return TpLayout{tp, tp_index, sp && tp > 1}; }
};

// Initialise MPI (once; works without mpirun) and build the mesh from `parallel.*`.
// ConfigError when dp·fsdp·tp differs from the number of launched ranks.
Mesh make_mesh(const Config& config);
// Number of launched ranks (initialises MPI like make_mesh): for jobs whose only axis is
// data parallelism over the whole world (retort generate sets parallel.dp to this).
int launched_world_size();
// Finalise MPI if make_mesh initialised it (after a barrier under the collective watchdog).
void shutdown_mesh();
// End every rank of the job (used when one rank fails).
[[noreturn]] void abort_job(int exit_code);
// This process's rank in MPI_COMM_WORLD, or -1 outside an MPI job of more than one rank.
int world_rank_for_messages();

}  // namespace retort
