#include "parallel/mesh.h"

#include <mpi.h>

#include <cstdlib>

namespace retort {

namespace {
bool g_we_initialised = false;
}

Mesh make_mesh(const Config& config) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    g_we_initialised = true;
  }
  Mesh mesh;
  MPI_Comm_size(MPI_COMM_WORLD, &mesh.world_size);
  MPI_Comm_rank(MPI_COMM_WORLD, &mesh.rank);
  auto axis = [&](const char* key) {
    int64_t v = config.get_int(key);
    if (v < 1) config.fail(key, "must be >= 1");
    return static_cast<int>(v);
  };
  mesh.dp = axis("parallel.dp");
  mesh.fsdp = axis("parallel.fsdp");
  mesh.tp = axis("parallel.tp");
  mesh.sp = config.get_bool("parallel.sp");
  if (static_cast<int64_t>(mesh.dp) * mesh.fsdp * mesh.tp != mesh.world_size)
    config.fail("parallel", str_cat("dp*fsdp*tp = ", mesh.dp * mesh.fsdp * mesh.tp,
                                    " does not match the ", mesh.world_size, " launched ranks"));
  if (mesh.world_size > 1)
    config.fail("parallel", "multi-process meshes are not available in this build yet; run one process");
  return mesh;
}

void shutdown_mesh() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (g_we_initialised && !finalised) MPI_Finalize();
}

void abort_job(int exit_code) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  int size = 1;
  if (initialised) MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (initialised && size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}

}  // namespace retort
