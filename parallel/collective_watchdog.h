// Collective watchdog: no rank waits forever in a collective (`parallel.timeout_s`).
//
// Collectives stay the blocking MPI calls they were (same algorithms, same cost); around each
// one the calling thread records what it waits in (WatchedWait). A watchdog thread per rank
// (MPI_THREAD_MULTIPLE) checks that record every kTick and answers "what are you doing?" pings
// from other ranks over a private duplicate of MPI_COMM_WORLD. When a wait passes the timeout,
// its watchdog pings every rank and waits a few seconds for the answers:
//   - no answer: the process is stopped (SIGSTOP), dead, or its node hangs;
//   - "outside collectives for S s": it is late: stuck in I/O or in a long computation;
//   - "waits in all_gather #12 on axis fsdp": it waits elsewhere (held up by another rank).
// It prints one line, e.g.
//   retort: error (rank 0): collective all_reduce #1234 on axis dp has waited 10 s;
//           rank 1 does not respond (stopped, dead or its node hangs)
// runs the job-end hooks (ncclCommAbort) and ends the job with
// MPI_Abort(kCollectiveTimeoutExitCode); mpirun then kills every rank, the stalled one
// included (SIGKILL also ends a stopped process).
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace retort {

constexpr int kCollectiveTimeoutExitCode = 124;  // as timeout(1): "a collective timed out"
constexpr double kDefaultCollectiveTimeoutS = 600;

enum class CollectiveKind : int32_t { AllReduce, AllGather, ReduceScatter, Broadcast, Barrier };
const char* collective_name(CollectiveKind kind);

// One collective call: "all_reduce #1234 on axis dp". `members` are the world ranks of the
// communicator, in its rank order.
struct CollectiveCall {
  CollectiveKind kind = CollectiveKind::Barrier;
  std::string axis;  // "world", "dp", "fsdp", "tp" (at most 7 characters travel in reports)
  int64_t seq = 0;   // 1, 2, ... per communicator
  std::shared_ptr<const std::vector<int>> members;
};

// The longest any collective may wait, process-wide (make_mesh sets it from the config);
// 0 = no limit. Starts at kDefaultCollectiveTimeoutS.
void set_collective_timeout(double seconds);
double collective_timeout();

// Starts the watchdog (its thread and its channel, an MPI_Comm_dup of the world) on first use.
// Collective over MPI_COMM_WORLD: every rank calls it at the same point (MpiCommunicator's
// constructor does; communicators are created on all ranks together). Without
// MPI_THREAD_MULTIPLE the timeout still ends the job, but no rank can be asked or named; with
// neither it nor a timeout, there is no watchdog thread.
void attach_collective_watchdog();

// Marks the calling thread as waiting in `call` for its lifetime (one blocking MPI call).
class WatchedWait {
 public:
  explicit WatchedWait(const CollectiveCall& call);
  ~WatchedWait();
  WatchedWait(const WatchedWait&) = delete;
  WatchedWait& operator=(const WatchedWait&) = delete;
};

// A collective queued on a device stream (NCCL): the host does not wait in it, its stream does.
// Registered when queued; `done` (called from the watchdog thread, e.g. cudaEventQuery) says
// whether it has completed. Until then the oldest one counts as what this rank waits in (when
// it is older than the calling thread's own wait), so a peer that stalls a GPU collective ends
// the job like a blocking one. False and nothing registered when no watchdog thread runs.
bool watch_queued_collective(const CollectiveCall& call, std::function<bool()> done);
bool collective_watchdog_running();

// Called on the watchdog thread when it ends the job, after its line and before MPI_Abort:
// NcclCommunicator registers ncclCommAbort of its communicator, so that the device
// collectives a stalled peer never joins are torn down rather than left spinning on the GPU.
// The returned id unregisters it (the communicator's destructor).
int add_job_end_hook(std::function<void()> hook);
void remove_job_end_hook(int id);

// Within this scope a wait past the timeout ends the job only when some rank does not respond
// or waits elsewhere; ranks that are alive and still working are waited for (uneven work by
// design, e.g. retort generate's shards).
class PatientCollectives {
 public:
  PatientCollectives();
  ~PatientCollectives();
  PatientCollectives(const PatientCollectives&) = delete;
  PatientCollectives& operator=(const PatientCollectives&) = delete;
};

// Error("collective all_reduce #12 on axis dp: MPI_Allreduce failed: <MPI's message>") unless
// rc is MPI_SUCCESS.
void check_collective(int rc, const CollectiveCall& call, const char* mpi_function);

// What a rank answers to a ping (raw bytes between ranks of the same binary).
struct WaitReport {
  int32_t round = 0;       // the ping's round, to drop stale answers
  int32_t waiting = 0;     // 1: waits in the collective below; 0: outside collectives since it
  int32_t diagnosing = 0;  // 1: this rank has timed out too and is asking around
  int32_t kind = 0;        // CollectiveKind
  char axis[8] = {};
  int64_t seq = 0;         // 0: no collective yet
  double seconds = 0;      // how long it has waited, or been outside collectives
};

// The diagnosis after `waited_s` in `call` on world rank `me`: `reports[r]` is world rank r's
// answer, or nullopt when it did not answer. Pure (unit tested); e.g.
//   "collective all_reduce #7 on axis dp has waited 10 s; rank 3 does not respond (stopped,
//    dead or its node hangs); rank 2 has not arrived (waits in all_gather #3 on axis fsdp)"
std::string describe_stall(const CollectiveCall& call, double waited_s, int me,
                           const std::vector<std::optional<WaitReport>>& reports);

}  // namespace retort
