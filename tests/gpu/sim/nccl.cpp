// NCCL on MPI for the simulator build (include/nccl.h). A communicator is an MPI communicator
// split from MPI_COMM_WORLD by the world rank that created the group's unique id; buffers
// must be simulated device memory. bf16 sums go through a user-defined MPI operation that
// adds in float and rounds to nearest even, as a GPU's bf16 reduction does per step.
#include <nccl.h>
#include <mpi.h>

#include <cstdint>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct ncclComm {
  MPI_Comm mpi;
  int size, rank;
};

namespace {

struct IdContents {
  uint32_t magic;
  int32_t creator;  // MPI_COMM_WORLD rank of the process that made the id
};
constexpr uint32_t kMagic = 0x51DC;

float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = float_to_bf16(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}
void bf16_max(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    if (bf16_to_float(a[i]) > bf16_to_float(b[i])) b[i] = a[i];
}

MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclInt32: return MPI_INT32_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclBfloat16: return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}
size_t type_bytes(ncclDataType_t t) { return t == ncclBfloat16 ? 2 : 4; }

MPI_Op mpi_op(ncclDataType_t t, ncclRedOp_t op) {
  if (t != ncclBfloat16) return op == ncclSum ? MPI_SUM : MPI_MAX;
  static MPI_Op sum = MPI_OP_NULL, max = MPI_OP_NULL;
  if (sum == MPI_OP_NULL) {
    MPI_Op_create(&bf16_sum, 1, &sum);
    MPI_Op_create(&bf16_max, 1, &max);
  }
  return op == ncclSum ? sum : max;
}

bool valid(ncclComm_t comm, ncclDataType_t t, const void* buf, size_t bytes) {
  if (!comm || mpi_type(t) == MPI_DATATYPE_NULL) return false;
  if (bytes && !sim::is_device_pointer(buf, bytes))
    sim::fault("NCCL collective on a buffer that is not device memory");
  return true;
}

const char* last_error = "";

// Queues a collective on its stream, after a pause (SIM_NCCL_DELAY_US, default 2000): slow
// collectives make a compute stream that does not wait for them read stale data. Its buffers
// must still be allocated when it runs and when it ends. For ThreadSanitizer (race.cpp) it reads
// its send buffer and writes its receive buffer, and MPI inside it is hidden.
void enqueue_collective(cudaStream_t stream, std::vector<sim::Span> buffers,
                        std::function<void()> op) {
  static const int delay_us = [] {
    const char* v = std::getenv("SIM_NCCL_DELAY_US");
    return v ? std::atoi(v) : 2000;
  }();
  sim::enqueue(stream, [buffers = std::move(buffers), op = std::move(op)] {
    if (!sim::eager_streams()) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    sim::require_still_allocated(buffers, "NCCL collective");
    sim::race_access(buffers);
    {
      sim::RaceHidden hidden;
      op();
    }
    sim::require_still_allocated(buffers, "NCCL collective");
  });
}

}  // namespace

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof *id);
  IdContents c{kMagic, 0};
  MPI_Comm_rank(MPI_COMM_WORLD, &c.creator);
  std::memcpy(id->internal, &c, sizeof c);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  int level = 0;
  MPI_Query_thread(&level);
  if (!sim::eager_streams() && level < MPI_THREAD_MULTIPLE)
    sim::fault("NCCL on a stream thread needs MPI_THREAD_MULTIPLE (retort: parallel.timeout_s > 0), "
               "or run with SIM_STREAMS=eager");
  IdContents c;
  std::memcpy(&c, id.internal, sizeof c);
  if (c.magic != kMagic || nranks < 1 || rank < 0 || rank >= nranks) {
    last_error = "ncclCommInitRank: invalid unique id, rank or size";
    return ncclInvalidArgument;
  }
  MPI_Comm split;
  MPI_Comm_split(MPI_COMM_WORLD, c.creator, rank, &split);
  int size = 0, me = 0;
  MPI_Comm_size(split, &size);
  MPI_Comm_rank(split, &me);
  if (size != nranks || me != rank)
    sim::fault("ncclCommInitRank: the ranks sharing this id do not match nranks/rank (the "
               "simulator needs every world rank to create its communicators in the same order)");
  *comm = new ncclComm{split, size, me};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  cudaStreamSynchronize(nullptr);  // its queued collectives first
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm->mpi);
  delete comm;
  return ncclSuccess;
}

// Nothing to tear down that MPI_Abort would not; the line lets tests see that retort called it.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  std::fprintf(stderr, "nccl simulator: ncclCommAbort (rank %d of %d)\n", comm->rank, comm->size);
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
  return r == ncclSuccess ? "no error" : "error in the NCCL simulator";
}
const char* ncclGetLastError(ncclComm_t) { return last_error; }

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * type_bytes(type);
  if (!valid(comm, type, send, bytes) || !valid(comm, type, recv, bytes)) return ncclInvalidArgument;
  enqueue_collective(stream, {{send, bytes}, {recv, bytes, true}}, [=] {
    MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, int(count), mpi_type(type),
                  mpi_op(type, op), comm->mpi);
  });
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = send_count * type_bytes(type);
  if (!valid(comm, type, send, bytes) || !valid(comm, type, recv, bytes * comm->size))
    return ncclInvalidArgument;
  const bool in_place = send == static_cast<char*>(recv) + comm->rank * bytes;
  enqueue_collective(stream, {{send, bytes}, {recv, bytes * comm->size, true}}, [=] {
    MPI_Allgather(in_place ? MPI_IN_PLACE : send, int(send_count), mpi_type(type), recv,
                  int(send_count), mpi_type(type), comm->mpi);
  });
  return ncclSuccess;
}

ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recv_count,
                               ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream) {
  const size_t bytes = recv_count * type_bytes(type);
  if (!valid(comm, type, send, bytes * comm->size) || !valid(comm, type, recv, bytes))
    return ncclInvalidArgument;
  // NCCL allows recv == send + rank·count (in place); MPI needs MPI_IN_PLACE and the whole
  // buffer in recv, so go through a copy.
  const bool in_place = recv == static_cast<const char*>(send) + comm->rank * bytes;
  enqueue_collective(stream, {{send, bytes * comm->size}, {recv, bytes, true}}, [=] {
    std::vector<char> tmp(in_place ? bytes : 0);
    MPI_Reduce_scatter_block(send, in_place ? tmp.data() : recv, int(recv_count), mpi_type(type),
                             mpi_op(type, op), comm->mpi);
    if (in_place) std::memcpy(recv, tmp.data(), bytes);
  });
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * type_bytes(type);
  if (!valid(comm, type, recv, bytes) || root < 0 || root >= comm->size) return ncclInvalidArgument;
  if (comm->rank == root && !valid(comm, type, send, bytes)) return ncclInvalidArgument;
  const sim::Span sent{send, comm->rank == root ? bytes : 0};
  enqueue_collective(stream, {sent, {recv, bytes, true}}, [=] {
    if (comm->rank == root && send != recv) std::memmove(recv, send, bytes);
    MPI_Bcast(recv, int(count), mpi_type(type), root, comm->mpi);
  });
  return ncclSuccess;
}
