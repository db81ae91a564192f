#include "parallel/gpu_mesh.h"

#include <mpi.h>

#include <utility>

#include "core/device.h"
#if RETORT_HAVE_CUDA
#include "parallel/nccl_communicator.h"
#endif

namespace retort {

namespace {
// This rank's index among the ranks of its node, and their number.
std::pair<int, int> node_position() {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 0, size = 1;
  MPI_Comm_rank(node, &local);
  MPI_Comm_size(node, &size);
  MPI_Comm_free(&node);
  return {local, size};
}
}  // namespace

int node_local_rank() { return node_position().first; }

void place_mesh(Mesh& mesh, const Config& config) {
  const Device dev = device::parse(config.get_string("parallel.device"), "parallel.device");
  if (dev == Device::CPU) return;
  // NCCL refuses two ranks of a communicator on one GPU; say so before it does.
  const auto [local, per_node] = node_position();
  const int gpus = device::cuda_device_count();
  if (per_node > gpus)
    config.fail("parallel.device", str_cat("cuda runs one rank per GPU, but ", per_node,
                                           " ranks share this node and ", gpus,
                                           " GPU(s) are visible: launch at most ", gpus,
                                           " ranks per node (mpirun -np, Slurm --ntasks-per-node)"));
  device::use_gpu_of_local_rank(local);
#if RETORT_HAVE_CUDA
  // One NCCL communicator per axis, created in the same order on every rank.
  mesh.world = std::make_shared<NcclCommunicator>(mesh.world);
  mesh.dp_comm = std::make_shared<NcclCommunicator>(mesh.dp_comm);
  mesh.fsdp_comm = std::make_shared<NcclCommunicator>(mesh.fsdp_comm);
  mesh.tp_comm = std::make_shared<NcclCommunicator>(mesh.tp_comm);
#endif
  mesh.device = dev;
}

}  // namespace retort
