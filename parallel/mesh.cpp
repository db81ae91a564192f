#include "parallel/mesh.h"

#include <mpi.h>

#include <cmath>
#include <cstdlib>

#include "parallel/mpi_communicator.h"

namespace retort {

namespace {

bool g_we_initialised = false;

// Collectives come from the main thread only; the collective watchdog's thread asks other ranks
// over MPI at the same time, hence MULTIPLE (without it the watchdog cannot name ranks). With
// the watchdog off (parallel.timeout_s: 0), FUNNELED and no watchdog thread, as before it.
void ensure_mpi(bool watchdog = true) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) return;
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, watchdog ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED, &provided);
  g_we_initialised = true;
}

std::shared_ptr<Communicator> split(int color, int key, const char* axis) {
  MPI_Comm comm;
  MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm);
  return std::make_shared<MpiCommunicator>(comm, axis);
}

// `parallel.timeout_s`: the longest any collective may wait (parallel/collective_watchdog.h).
void set_timeout_from(const Config& config) {
  const double t = config.get_float("parallel.timeout_s");
  if (!std::isfinite(t) || t < 0)
    config.fail("parallel.timeout_s",
                "must be a number of seconds >= 0 (the longest a collective may wait; 0 = no limit)");
  set_collective_timeout(t);
}

}  // namespace

Mesh make_mesh(const Config& config) {
  ensure_mpi(config.get_float("parallel.timeout_s") != 0);
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
  set_timeout_from(config);
  if (static_cast<int64_t>(mesh.dp) * mesh.fsdp * mesh.tp != mesh.world_size)
    config.fail("parallel", str_cat("dp*fsdp*tp = ", mesh.dp * mesh.fsdp * mesh.tp,
                                    " does not match the ", mesh.world_size, " launched ranks"));
  mesh.tp_index = mesh.rank % mesh.tp;
  mesh.fsdp_index = (mesh.rank / mesh.tp) % mesh.fsdp;
  mesh.dp_index = mesh.rank / (mesh.tp * mesh.fsdp);
  mesh.world = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world");
  mesh.tp_comm = split(mesh.dp_index * mesh.fsdp + mesh.fsdp_index, mesh.tp_index, "tp");
  mesh.fsdp_comm = split(mesh.dp_index * mesh.tp + mesh.tp_index, mesh.fsdp_index, "fsdp");
  mesh.dp_comm = split(mesh.fsdp_index * mesh.tp + mesh.tp_index, mesh.dp_index, "dp");
  return mesh;
}

int launched_world_size() {
  ensure_mpi();
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

void shutdown_mesh() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!g_we_initialised || finalised) return;
  // MPI_Finalize waits for every rank without a limit: meet in a watched barrier first, so that
  // a rank stalling at the very end is named too.
  if (launched_world_size() > 1) MpiCommunicator(MPI_COMM_WORLD, "exit").barrier();
  MPI_Finalize();
}

int world_rank_for_messages() {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (!initialised || finalised) return -1;
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return size > 1 ? rank : -1;
}

void abort_job(int exit_code) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  int size = 1;
  if (initialised && !finalised) MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}

}  // namespace retort
