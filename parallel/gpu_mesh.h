// Where a mesh computes (`parallel.device`): on the CPU, or one rank per GPU, the GPU chosen
// by the rank's index among the ranks of its node (MPI_COMM_TYPE_SHARED), with every mesh axis
// communicating through NCCL (parallel/nccl_communicator.h; host tensors keep using MPI).
#pragma once
#include "core/config.h"
#include "parallel/mesh.h"

namespace retort {

// This rank's index among the ranks on its node.
int node_local_rank();
// Reads parallel.device. For cuda: ConfigError when the build has no CUDA backend, no GPU is
// visible, or the node runs more ranks than it has visible GPUs; else selects this rank's GPU
// (its node-local index), replaces the world, dp, fsdp and tp communicators by NCCL ones and
// sets mesh.device.
void place_mesh(Mesh& mesh, const Config& config);

}  // namespace retort
