// Communicator collectives and mesh layout, run under mpirun (4 ranks): each collective against
// the value every rank can compute locally from the seeded inputs of all ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include "core/random.h"
#include "parallel/data_parallel.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"

using namespace retort;

namespace {

// Element i of rank r's input: a pure function of (r, i).
float value(int r, int64_t i) { return static_cast<float>(rng::normal(42, r, i)); }

Tensor input_of(int r, int64_t n) {
  Tensor t = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) t.host<float>()[i] = value(r, i);
  return t;
}

MpiCommunicator& world() {
  static MpiCommunicator comm(MPI_COMM_WORLD);
  return comm;
}

}  // namespace

TEST(Communicator, AllReduceSumAndMax) {
  auto& c = world();
  const int64_t n = 1001;
  Tensor x = input_of(c.rank(), n), y = input_of(c.rank(), n);
  c.all_reduce(x);
  c.all_reduce(y, ReduceOp::Max);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0, mx = -1e30;
    for (int r = 0; r < c.size(); ++r) sum += value(r, i), mx = std::max<double>(mx, value(r, i));
    EXPECT_NEAR(x.host<float>()[i], sum, 1e-5);
    EXPECT_EQ(y.host<float>()[i], static_cast<float>(mx));
  }
}

TEST(Communicator, AllGatherAndReduceScatter) {
  auto& c = world();
  const int64_t n = 37;
  Tensor mine = input_of(c.rank(), n);
  Tensor all = Tensor::empty({n * c.size()});
  c.all_gather(all, mine);
  for (int r = 0; r < c.size(); ++r)
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(all.host<float>()[r * n + i], value(r, i));

  Tensor big = input_of(c.rank(), n * c.size()), out = Tensor::empty({n});
  c.reduce_scatter(out, big);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int r = 0; r < c.size(); ++r) sum += value(r, c.rank() * n + i);
    EXPECT_NEAR(out.host<float>()[i], sum, 1e-5);
  }
}

TEST(Communicator, BroadcastAndAsync) {
  auto& c = world();
  Tensor x = input_of(c.rank(), 16);
  c.broadcast(x, 1);
  for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(x.host<float>()[i], value(1, i));

  Tensor a = input_of(c.rank(), 64), g = Tensor::empty({64 * c.size()}), s = Tensor::empty({64 / c.size()});
  Tensor mine = input_of(c.rank(), 64);
  auto r1 = c.all_reduce_async(a);
  auto r2 = c.all_gather_async(g, mine);
  auto r3 = c.reduce_scatter_async(s, mine);
  r1->wait();
  r2->wait();
  r3->wait();
  double sum0 = 0;
  for (int r = 0; r < c.size(); ++r) sum0 += value(r, 0);
  EXPECT_NEAR(a.host<float>()[0], sum0, 1e-5);
  EXPECT_EQ(g.host<float>()[64 * (c.size() - 1)], value(c.size() - 1, 0));
}

TEST(Mesh, AxesFollowRankOrderWithTpInnermost) {
  auto& c = world();
  if (c.size() != 4) GTEST_SKIP() << "needs 4 ranks";
  Config cfg = Config::from_yaml("parallel:\n  dp: 2\n  tp: 2\n", "mesh-test");
  Mesh m = make_mesh(cfg);
  EXPECT_EQ(m.tp_index, c.rank() % 2);
  EXPECT_EQ(m.dp_index, c.rank() / 2);
  EXPECT_EQ(m.tp_comm->size(), 2);
  EXPECT_EQ(m.dp_comm->size(), 2);
  EXPECT_EQ(m.fsdp_comm->size(), 1);
  // The tp group of rank r is {2·(r/2), 2·(r/2)+1}: gather world ranks over it.
  Tensor mine = Tensor::empty({1}, DType::I32), both = Tensor::empty({2}, DType::I32);
  mine.host<int32_t>()[0] = c.rank();
  m.tp_comm->all_gather(both, mine);
  EXPECT_EQ(both.host<int32_t>()[0], 2 * (c.rank() / 2));
  EXPECT_EQ(both.host<int32_t>()[1], 2 * (c.rank() / 2) + 1);
  Config bad = Config::from_yaml("parallel:\n  dp: 3\n", "mesh-test");
  EXPECT_THROW(make_mesh(bad), ConfigError);
}

TEST(DataParallel, BucketsInAnyOrderSumEveryElement) {
  auto& c = world();
  auto comm = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  const int64_t n = 1000;
  Tensor grads = input_of(c.rank(), n);
  DataParallel dp(comm, grads, 64);
  dp.begin_final_backward();
  // Ranges as a model reports them: the head at the end, layers downwards, embedding first;
  // one range (300..400) never reported, so finish() must reduce it too.
  dp.grads_ready(900, 1000);
  dp.grads_ready(800, 900);
  dp.grads_ready(700, 800);
  dp.grads_ready(400, 700);
  dp.grads_ready(0, 300);
  dp.finish();
  EXPECT_GE(dp.buckets_launched(), 3);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int r = 0; r < c.size(); ++r) sum += value(r, i);
    ASSERT_NEAR(grads.host<float>()[i], sum, 1e-5) << "element " << i;
  }
}
