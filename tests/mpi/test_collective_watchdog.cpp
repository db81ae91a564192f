// The collective watchdog under mpirun (4 ranks): waits shorter than the timeout pass, and a
// patient wait outlasts it while the late rank is alive and working. (A timeout ending the job
// is tested end to end: tests/e2e/stalled_rank.sh.)
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <thread>

#include "parallel/collective_watchdog.h"
#include "parallel/mpi_communicator.h"

using namespace retort;

namespace {

MpiCommunicator& world() {
  static MpiCommunicator comm(MPI_COMM_WORLD);
  return comm;
}

// Sets the timeout for one test.
struct TimeoutFor {
  explicit TimeoutFor(double s) { set_collective_timeout(s); }
  ~TimeoutFor() { set_collective_timeout(kDefaultCollectiveTimeoutS); }
};

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

}  // namespace

TEST(CollectiveWatchdog, AWaitWithinTheTimeoutPasses) {
  auto& c = world();
  TimeoutFor limit(2.0);
  if (c.rank() == 1) sleep_s(0.5);
  Tensor x = Tensor::empty({1});
  x.host<float>()[0] = 1;
  c.all_reduce(x);
  EXPECT_EQ(x.host<float>()[0], float(c.size()));
}

TEST(CollectiveWatchdog, APatientWaitOutlastsTheTimeoutWhileTheLateRankWorks) {
  auto& c = world();
  TimeoutFor limit(1.0);
  {
    PatientCollectives patient;
    if (c.rank() == c.size() - 1) sleep_s(3.5);  // alive, outside collectives: asked, answers
    c.barrier();
  }
  SUCCEED();
}
