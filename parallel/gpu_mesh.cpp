#include "parallel/gpu_mesh.h"

#include <mpi.h>

#include "core/device.h"
#if RETORT_HAVE_CUDA
#include "parallel/nccl_communicator.h"
#endif

namespace retort {

int node_local_rank() {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 0;
  MPI_Comm_rank(node, &local);
  MPI_Comm_free(&node);
  return local;
}

void place_mesh(Mesh& mesh, const Config& config) {
  const Device dev = device::parse(config.get_string("parallel.device"), "parallel.device");
  if (dev == Device::CPU) return;
  device::use_gpu_of_local_rank(node_local_rank());
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
