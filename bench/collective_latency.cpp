// collective_latency: what the collective watchdog costs. Each MpiCommunicator collective
// (the blocking MPI call inside a WatchedWait, parallel/collective_watchdog.h) against the bare
// MPI call, at sizes from 4 bytes to 4 MB, in the same process and interleaved round by round
// (the order alternates), so that load from other processes hits both alike. Rank 0 prints a
// Markdown table: per (collective, bytes) the median over rounds of the time per call (mean of
// `reps` back-to-back calls) and the median of the per-round ratios. MPI starts with
// MPI_THREAD_MULTIPLE as in retort; "funneled" starts it as before the watchdog (compare the
// bare-MPI columns of two runs for what the thread level costs).
//
//   mpirun -np 2 build/collective_latency [rounds=15] [funneled]
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "parallel/mpi_communicator.h"

using namespace retort;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Microseconds per call of `op`, over `reps` calls started together on every rank.
double time_per_call(const std::function<void()>& op, int reps) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double t = MPI_Wtime();
  for (int i = 0; i < reps; ++i) op();
  return (MPI_Wtime() - t) / reps * 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
  // As retort (parallel/mesh.cpp), or as before the watchdog with "funneled".
  const bool funneled = argc > 2 && std::string(argv[2]) == "funneled";
  int provided = 0;
  MPI_Init_thread(&argc, &argv, funneled ? MPI_THREAD_FUNNELED : MPI_THREAD_MULTIPLE, &provided);
  {
    MpiCommunicator comm(MPI_COMM_WORLD);
    const MPI_Comm c = comm.comm();
    const int p = comm.size();
    if (comm.rank() == 0) {
      std::printf("| collective (%d ranks, %s) | bytes | bare MPI µs | communicator µs | ratio |\n", p,
                  funneled ? "FUNNELED" : "MULTIPLE");
      std::printf("| --- | ---: | ---: | ---: | ---: |\n");
    }
    for (int64_t n : {int64_t(1), int64_t(256), int64_t(16384), int64_t(262144), int64_t(1048576)}) {
      Tensor x = Tensor::empty({n * p}), y = Tensor::empty({n * p}), chunk = Tensor::empty({n});
      for (int64_t i = 0; i < n * p; ++i) x.host<float>()[i] = y.host<float>()[i] = 1e-3f * float(i % 97);
      for (int64_t i = 0; i < n; ++i) chunk.host<float>()[i] = 1e-3f * float(i % 89);
      Tensor head = x.flat(0, n);
      const int in = static_cast<int>(n);
      struct Op {
        const char* name;
        std::function<void()> blocking, watched;
      };
      const std::vector<Op> ops = {
          {"all_reduce",
           [&] { MPI_Allreduce(MPI_IN_PLACE, head.raw(), in, MPI_FLOAT, MPI_SUM, c); },
           [&] { comm.all_reduce(head); }},
          {"all_gather",
           [&] { MPI_Allgather(chunk.raw(), in, MPI_FLOAT, x.raw(), in, MPI_FLOAT, c); },
           [&] { comm.all_gather(x, chunk); }},
          {"reduce_scatter",
           [&] { MPI_Reduce_scatter_block(y.raw(), chunk.raw(), in, MPI_FLOAT, MPI_SUM, c); },
           [&] { comm.reduce_scatter(chunk, y); }},
          {"broadcast", [&] { MPI_Bcast(head.raw(), in, MPI_FLOAT, 0, c); },
           [&] { comm.broadcast(head, 0); }},
          {"barrier", [&] { MPI_Barrier(c); }, [&] { comm.barrier(); }},
      };
      const int reps = n <= 256 ? 200 : n <= 16384 ? 50 : 10;
      for (const Op& op : ops) {
        if (n > 1 && std::string(op.name) == "barrier") continue;
        for (int i = 0; i < 3; ++i) op.blocking(), op.watched();  // warm up
        std::vector<double> before, after, ratio;
        for (int r = 0; r < rounds; ++r) {
          double b, a;
          if (r % 2 == 0) b = time_per_call(op.blocking, reps), a = time_per_call(op.watched, reps);
          else a = time_per_call(op.watched, reps), b = time_per_call(op.blocking, reps);
          before.push_back(b), after.push_back(a), ratio.push_back(a / b);
        }
        if (comm.rank() == 0)
          std::printf("| %s | %lld | %.1f | %.1f | %.2f |\n", op.name, static_cast<long long>(n * 4),
                      median(before), median(after), median(ratio));
      }
    }
  }
  MPI_Finalize();
  return 0;
}
