// collective_latency: time per call of each MpiCommunicator collective at sizes from 4 bytes to
// 4 MB, under mpirun. Rank 0 prints one line per (collective, bytes): the median over `rounds`
// of the mean of `reps` back-to-back calls, in microseconds. Uses only the Communicator
// interface, so two builds (before/after a change) can be compared: bench/collective_latency.sh.
//
//   mpirun -np 2 build/collective_latency [rounds=7]
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "parallel/mpi_communicator.h"

using namespace retort;

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  {
    MpiCommunicator comm(MPI_COMM_WORLD);
    const int p = comm.size();
    for (int64_t n : {int64_t(1), int64_t(256), int64_t(16384), int64_t(262144), int64_t(1048576)}) {
      Tensor x = Tensor::empty({n * p}), y = Tensor::empty({n * p}), chunk = Tensor::empty({n});
      for (int64_t i = 0; i < n * p; ++i) x.host<float>()[i] = y.host<float>()[i] = 1e-3f * float(i % 97);
      for (int64_t i = 0; i < n; ++i) chunk.host<float>()[i] = 1e-3f * float(i % 89);
      Tensor head = x.flat(0, n);
      const std::vector<std::pair<const char*, std::function<void()>>> ops = {
          {"all_reduce", [&] { comm.all_reduce(head); }},
          {"all_gather", [&] { comm.all_gather(x, chunk); }},
          {"reduce_scatter", [&] { comm.reduce_scatter(chunk, y); }},
          {"broadcast", [&] { comm.broadcast(head, 0); }},
          {"barrier", [&] { comm.barrier(); }},
      };
      const int reps = n <= 256 ? 200 : n <= 16384 ? 50 : 10;
      for (const auto& [name, op] : ops) {
        if (n > 1 && std::string(name) == "barrier") continue;
        for (int i = 0; i < 3; ++i) op();  // warm up
        std::vector<double> us;
        for (int r = 0; r < rounds; ++r) {
          MPI_Barrier(MPI_COMM_WORLD);
          const double t = MPI_Wtime();
          for (int i = 0; i < reps; ++i) op();
          us.push_back((MPI_Wtime() - t) / reps * 1e6);
        }
        std::sort(us.begin(), us.end());
        if (comm.rank() == 0)
          std::printf("%s %lld %.2f\n", name, static_cast<long long>(n * 4), us[us.size() / 2]);
      }
    }
  }
  MPI_Finalize();
  return 0;
}
