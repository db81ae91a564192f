// Communicator collectives and mesh layout, run under mpirun (4 ranks): each collective against
// the value every rank can compute locally from the seeded inputs of all ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>

#include "core/ops.h"
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

// ---- bfloat16 sums (parallel.grad_reduce: bf16) ----------------------------------------------
//
// Reference: the exact sum S of the ranks' contributions rounded to bf16, c_r = bf16(x_r). The
// collective adds them in bf16, p − 1 additions in an order MPI chooses, each rounding its
// partial sum to nearest with relative error ≤ u = 2^-8 (8 significant bits). Every partial sum
// is at most A = Σ_r |c_r| in magnitude, so |result − S| ≤ (p − 1)·u·A to first order; the
// tests allow 1.01 times that. An fp32 sum would land far inside this bound, so the tests also
// check that the result is not the fp32 sum (bf16 must not be silently ignored).

namespace {

// Element i of rank r's gradient: normal, scaled by 2^-6 .. 2^6 so the sums span exponents.
float grad_value(int r, int64_t i) { return std::ldexp(value(r, i), int(i % 13) - 6); }

Tensor grads_of(int r, int64_t n) {
  Tensor t = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) t.host<float>()[i] = grad_value(r, i);
  return t;
}

Tensor to_bf16(const Tensor& x) {
  Tensor b = Tensor::empty({x.numel()}, DType::BF16);
  for (int64_t i = 0; i < x.numel(); ++i) b.host<uint16_t>()[i] = f32_to_bf16(x.host<float>()[i]);
  return b;
}

float rounded(int r, int64_t i) { return bf16_to_f32(f32_to_bf16(grad_value(r, i))); }

// Checks got[i] (i < n) against Σ_r bf16(grad_value(r, first + i)) within the bound above;
// returns how many elements differ from the fp32 sum `f32` (which may be undefined: not checked).
int64_t check_bf16_sum(const std::vector<float>& got, int p, int64_t first, const Tensor& f32) {
  int64_t differ = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double S = 0, A = 0;
    for (int r = 0; r < p; ++r) S += rounded(r, first + i), A += std::fabs(rounded(r, first + i));
    const double bound = 1.01 * (p - 1) * std::ldexp(A, -8);
    EXPECT_LE(std::fabs(got[i] - S), bound) << "element " << first + i << ": " << got[i] << " vs " << S;
    if (f32.defined() && got[i] != f32.host<float>()[i]) ++differ;
  }
  return differ;
}

std::vector<float> from_bf16(const Tensor& b) {
  std::vector<float> out(b.numel());
  for (int64_t i = 0; i < b.numel(); ++i) out[i] = bf16_to_f32(b.host<uint16_t>()[i]);
  return out;
}

// Every low half-word is 0: the fp32 values came from bf16.
bool bf16_representable(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint32_t u;
    std::memcpy(&u, &t.host<float>()[i], 4);
    if (u & 0xffffu) return false;
  }
  return true;
}

}  // namespace

TEST(Communicator, Bf16AllReduceSumsInBf16) {
  auto& c = world();
  const int p = c.size();
  const int64_t n = 4099;
  Tensor f32 = grads_of(c.rank(), n);
  c.all_reduce(f32);  // the fp32 sum, for contrast
  Tensor x = to_bf16(grads_of(c.rank(), n));
  c.all_reduce(x);
  const int64_t differ = check_bf16_sum(from_bf16(x), p, 0, f32);
  EXPECT_GT(differ, n / 2) << "the bf16 sum equals the fp32 sum almost everywhere";

  // Non-blocking (another MPI algorithm): the same bound; repeated: the same bits.
  Tensor a1 = to_bf16(grads_of(c.rank(), n)), a2 = to_bf16(grads_of(c.rank(), n));
  c.all_reduce_async(a1)->wait();
  c.all_reduce_async(a2)->wait();
  check_bf16_sum(from_bf16(a1), p, 0, Tensor());
  EXPECT_EQ(std::memcmp(a1.raw(), a2.raw(), a1.nbytes()), 0) << "bf16 all-reduce is not repeatable";

  // Every rank holds the same bits (gathered as bf16: all_gather moves the 2-byte type too).
  Tensor all = Tensor::empty({n * p}, DType::BF16);
  c.all_gather(all, a1);
  for (int r = 0; r < p; ++r)
    EXPECT_EQ(std::memcmp(all.host<uint16_t>() + r * n, a1.raw(), a1.nbytes()), 0) << "rank " << r;

  // Small integers are exact in bf16 whatever the order: Σ_r (r + 1 + i mod 5).
  Tensor ints = Tensor::empty({64}, DType::BF16);
  for (int64_t i = 0; i < 64; ++i) ints.host<uint16_t>()[i] = f32_to_bf16(float(c.rank() + 1 + i % 5));
  c.all_reduce(ints);
  for (int64_t i = 0; i < 64; ++i)
    EXPECT_EQ(bf16_to_f32(ints.host<uint16_t>()[i]), float(p * (p + 1) / 2 + p * (i % 5)));

  EXPECT_THROW(c.all_reduce(x, ReduceOp::Max), Error);
}

TEST(Communicator, Bf16ReduceScatterSumsInBf16) {
  auto& c = world();
  const int p = c.size();
  const int64_t n = 1031;  // per rank
  Tensor f32_out = Tensor::empty({n});
  c.reduce_scatter(f32_out, grads_of(c.rank(), n * p));
  Tensor in = to_bf16(grads_of(c.rank(), n * p));
  Tensor out = Tensor::empty({n}, DType::BF16), out_async = Tensor::empty({n}, DType::BF16);
  c.reduce_scatter(out, in);
  c.reduce_scatter_async(out_async, in)->wait();
  EXPECT_GT(check_bf16_sum(from_bf16(out), p, c.rank() * n, f32_out), n / 2);
  check_bf16_sum(from_bf16(out_async), p, c.rank() * n, Tensor());
}

TEST(Communicator, GradientSumsInEitherPrecision) {
  auto& c = world();
  const int p = c.size();
  const int64_t n = 777;
  // fp32: exactly the communicator's own fp32 collectives.
  Tensor g = grads_of(c.rank(), n), plain = grads_of(c.rank(), n);
  all_reduce_grads_async(c, g, GradReduce::F32)->wait();
  c.all_reduce_async(plain)->wait();
  EXPECT_EQ(std::memcmp(g.raw(), plain.raw(), g.nbytes()), 0);

  // bf16: fp32 in, fp32 out, bf16 on the wire; equal to converting by hand around the bf16
  // collective (round to nearest even, then back).
  Tensor b = grads_of(c.rank(), n), wire = to_bf16(grads_of(c.rank(), n));
  all_reduce_grads_async(c, b, GradReduce::BF16)->wait();
  c.all_reduce_async(wire)->wait();
  EXPECT_EQ(b.dtype(), DType::F32);
  EXPECT_EQ(std::vector<float>(b.host<float>(), b.host<float>() + n), from_bf16(wire));
  EXPECT_TRUE(bf16_representable(b));
  EXPECT_GT(check_bf16_sum(std::vector<float>(b.host<float>(), b.host<float>() + n), p, 0, plain), n / 2);
  // Blocking: the blocking bf16 collective, converted back.
  Tensor bb = grads_of(c.rank(), n), wire_b = to_bf16(grads_of(c.rank(), n));
  all_reduce_grads(c, bb, GradReduce::BF16);
  c.all_reduce(wire_b);
  EXPECT_EQ(std::vector<float>(bb.host<float>(), bb.host<float>() + n), from_bf16(wire_b));

  Tensor big = grads_of(c.rank(), n * p), out = Tensor::empty({n}), out32 = Tensor::empty({n});
  auto req = reduce_scatter_grads_async(c, out, big, GradReduce::BF16);
  ops::fill(big, 0.0f);  // the input may be reused once the bf16 copy is made
  req->wait();
  reduce_scatter_grads_async(c, out32, grads_of(c.rank(), n * p), GradReduce::F32)->wait();
  EXPECT_TRUE(bf16_representable(out));
  EXPECT_GT(check_bf16_sum(std::vector<float>(out.host<float>(), out.host<float>() + n), p, c.rank() * n, out32),
            n / 2);
}

TEST(DataParallel, Bf16BucketsSumInBf16) {
  auto& c = world();
  auto comm = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
  const int64_t n = 1000;
  Tensor grads = grads_of(c.rank(), n), f32 = grads_of(c.rank(), n);
  c.all_reduce(f32);
  DataParallel dp(comm, grads, 64, GradReduce::BF16);
  dp.begin_final_backward();
  dp.grads_ready(600, 1000);
  dp.grads_ready(0, 600);
  dp.finish();
  EXPECT_GE(dp.buckets_launched(), 2);
  EXPECT_TRUE(bf16_representable(grads));
  const int64_t differ =
      check_bf16_sum(std::vector<float>(grads.host<float>(), grads.host<float>() + n), c.size(), 0, f32);
  EXPECT_GT(differ, n / 2);
}
