// Collective watchdog: no rank waits forever in a collective (`parallel.timeout_s`).
//
// Every MPI collective is started non-blocking and completed here: MPI_Test in a tight loop for
// the first milliseconds (fast collectives cost what they did), then with short sleeps. When a
// wait passes the timeout, the waiting rank asks every rank what it is doing, over a private
// duplicate of MPI_COMM_WORLD: ranks that wait in a collective answer from their poll loop with
// (collective, axis, number); ranks that do not answer within a few seconds are stopped, stuck
// outside MPI (I/O, a hung kernel) or dead. It prints one line naming them, e.g.
//   retort: error (rank 0): collective all_reduce #1234 on axis dp has waited 10 s;
//           rank 1 does not respond (stopped, stuck in I/O or dead)
// and ends the job with MPI_Abort(kCollectiveTimeoutExitCode); mpirun then kills every rank,
// the stalled one included (SIGKILL also ends a stopped process).
#pragma once
#include <mpi.h>

#include <cstdint>
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
  CollectiveKind kind;
  std::string axis;  // "world", "dp", "fsdp", "tp" (at most 7 characters travel in reports)
  int64_t seq;       // 1, 2, ... per communicator
  std::shared_ptr<const std::vector<int>> members;
};

// The longest any collective may wait, process-wide (make_mesh sets it from the config);
// 0 = wait forever (plain MPI_Wait). Starts at kDefaultCollectiveTimeoutS.
void set_collective_timeout(double seconds);
double collective_timeout();

// Sets the limit for one scope and restores it after, for a wait that is long by design.
class ScopedCollectiveTimeout {
 public:
  explicit ScopedCollectiveTimeout(double seconds) : saved_(collective_timeout()) {
    set_collective_timeout(seconds);
  }
  ~ScopedCollectiveTimeout() { set_collective_timeout(saved_); }
  ScopedCollectiveTimeout(const ScopedCollectiveTimeout&) = delete;
  ScopedCollectiveTimeout& operator=(const ScopedCollectiveTimeout&) = delete;

 private:
  double saved_;
};

// Creates the watchdog's channel (MPI_Comm_dup of the world) on first use. Collective over
// MPI_COMM_WORLD: every rank calls it at the same point (MpiCommunicator's constructor does;
// communicators are created on all ranks together).
void attach_collective_watchdog();

// Completes `req`, a non-blocking collective started for `call`, within the timeout or ends the
// job as described above (never returns then). MPI errors throw retort::Error naming `call`.
void watchdog_wait(MPI_Request* req, const CollectiveCall& call);

// Error("collective all_reduce #12 on axis dp: MPI_Iallreduce failed: <MPI's message>") unless
// rc is MPI_SUCCESS.
void check_collective(int rc, const CollectiveCall& call, const char* mpi_function);

// What a rank answers to a ping (raw bytes between ranks of the same binary).
struct WaitReport {
  int32_t round = 0;      // the ping's round, to drop stale answers
  int32_t diagnosing = 0; // 1: this rank has timed out too and is asking around
  int32_t kind = 0;       // CollectiveKind waited on
  char axis[8] = {};
  int64_t seq = 0;
  double waited_s = 0;
};

// The diagnosis after `waited_s` in `call` on world rank `me`: `reports[r]` is world rank r's
// answer, or nullopt when it did not answer. Pure (unit tested); e.g.
//   "collective all_reduce #7 on axis dp has waited 10 s; rank 1 does not respond (stopped,
//    stuck in I/O or dead); rank 2 has not arrived (waits in all_gather #3 on axis fsdp)"
std::string describe_stall(const CollectiveCall& call, double waited_s, int me,
                           const std::vector<std::optional<WaitReport>>& reports);

}  // namespace retort
