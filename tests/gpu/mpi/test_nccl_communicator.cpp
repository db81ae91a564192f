// NcclCommunicator (parallel/nccl_communicator.h) against MpiCommunicator on the same data,
// under mpirun with one GPU per rank (label gpu; exits 77, skipped, with fewer GPUs than
// ranks): every collective, blocking and asynchronous, on fp32, bf16 and int32 device tensors;
// ordering against the compute stream (data written just before a collective is what it
// sends, a result read after wait() is the reduced one); the bf16 gradient sums; host tensors
// handed to MPI. Element i of rank r's input is a pure function of (r, i), as in
// tests/mpi/test_communicator.cpp, so every rank can compute the reference bound.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "core/device.h"
#include "core/ops.h"
#include "core/random.h"
#include "parallel/gpu_mesh.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"

using namespace retort;

namespace {

std::unique_ptr<NcclCommunicator> g_nccl;  // made in main (after MPI), destroyed before MPI ends

MpiCommunicator& mpi() {
  static MpiCommunicator comm(MPI_COMM_WORLD);
  return comm;
}
NcclCommunicator& nccl() { return *g_nccl; }

// Normal, scaled by 2^-6 .. 2^6 so sums span exponents.
float value(int r, int64_t i) { return std::ldexp(float(rng::normal(7, r, i)), int(i % 13) - 6); }

// Rank r's input of n elements from element `first` on, on the host, in `dtype`.
Tensor input(int r, int64_t n, DType dtype, int64_t first = 0) {
  Tensor t = Tensor::empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) {
    const float v = value(r, first + i);
    if (dtype == DType::F32) t.host<float>()[i] = v;
    if (dtype == DType::BF16) t.host<uint16_t>()[i] = f32_to_bf16(v);
    if (dtype == DType::I32) t.host<int32_t>()[i] = int32_t(std::lround(v * 64));
  }
  return t;
}

std::vector<double> values(const Tensor& t) {
  const Tensor h = t.to(Device::CPU);
  std::vector<double> out(size_t(h.numel()));
  for (int64_t i = 0; i < h.numel(); ++i)
    out[size_t(i)] = h.dtype() == DType::F32    ? h.host<float>()[i]
                     : h.dtype() == DType::BF16 ? bf16_to_f32(h.host<uint16_t>()[i])
                                                : h.host<int32_t>()[i];
  return out;
}

void expect_equal(const Tensor& got, const Tensor& want, const char* what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const std::vector<double> g = values(got), w = values(want);
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i]) << what << ": element " << i;
}

// A sum over p ranks, added in `summed` (fp32 or bf16), against the MPI communicator's: each
// adds p − 1 terms in its own order, rounding each partial sum (relative error u: 2^-24 fp32,
// 2^-8 bf16), every partial sum at most A = Σ_r |x_r|, so the two differ by at most
// 2(p − 1)·u·A. `first`: the index of element 0 in the ranks' inputs.
void expect_sum(const Tensor& got, const Tensor& want, int64_t first, const char* what,
                DType summed) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const int p = mpi().size();
  const bool bf16 = summed == DType::BF16;
  const double u = std::ldexp(1.0, bf16 ? -8 : -24);
  const std::vector<double> g = values(got), w = values(want);
  for (size_t i = 0; i < g.size(); ++i) {
    double A = 0;
    for (int r = 0; r < p; ++r) {
      const float x = value(r, first + int64_t(i));
      A += std::fabs(bf16 ? bf16_to_f32(f32_to_bf16(x)) : x);
    }
    ASSERT_LE(std::fabs(g[i] - w[i]), 2.0 * (p - 1) * u * A * 1.01)
        << what << ": element " << i << ": " << g[i] << " vs " << w[i];
  }
}

TEST(NcclCommunicator, BlockingCollectivesMatchMpi) {
  const int p = mpi().size(), me = mpi().rank();
  const int64_t n = 1031;  // odd: no collective sees a round size
  for (DType dtype : {DType::F32, DType::BF16, DType::I32}) {
    SCOPED_TRACE(dtype_name(dtype));
    // all-reduce (sum; max in fp32 only, as retort uses it)
    Tensor want = input(me, n, dtype), got = want.to(Device::CUDA);
    mpi().all_reduce(want);
    nccl().all_reduce(got);
    if (dtype == DType::I32) expect_equal(got, want, "all_reduce");
    else expect_sum(got, want, 0, "all_reduce", dtype);
    if (dtype == DType::F32) {
      Tensor want_max = input(me, n, dtype), got_max = want_max.to(Device::CUDA);
      mpi().all_reduce(want_max, ReduceOp::Max);
      nccl().all_reduce(got_max, ReduceOp::Max);
      expect_equal(got_max, want_max, "all_reduce max");
    }
    // all-gather: rank r's n elements at [r·n, (r + 1)·n)
    const Tensor mine = input(me, n, dtype);
    Tensor all_want = Tensor::empty({n * p}, dtype), all_got = Tensor::empty({n * p}, dtype, Device::CUDA);
    mpi().all_gather(all_want, mine);
    nccl().all_gather(all_got, mine.to(Device::CUDA));
    expect_equal(all_got, all_want, "all_gather");
    // reduce-scatter: rank r gets Σ over ranks of elements [r·n, (r + 1)·n)
    const Tensor big = input(me, n * p, dtype);
    Tensor part_want = Tensor::empty({n}, dtype), part_got = Tensor::empty({n}, dtype, Device::CUDA);
    mpi().reduce_scatter(part_want, big);
    nccl().reduce_scatter(part_got, big.to(Device::CUDA));
    if (dtype == DType::I32) expect_equal(part_got, part_want, "reduce_scatter");
    else expect_sum(part_got, part_want, int64_t(me) * n, "reduce_scatter", dtype);
    // broadcast from the last rank
    Tensor b_want = input(me, n, dtype), b_got = b_want.to(Device::CUDA);
    mpi().broadcast(b_want, p - 1);
    nccl().broadcast(b_got, p - 1);
    expect_equal(b_got, b_want, "broadcast");
  }
}

// The asynchronous collectives, each with its input written on the compute stream just before
// and its result read on it after wait(): what fsdp's gathers and scatters and dp's buckets rely
// on. On the simulator a collective that did not wait for the compute stream runs while the
// products queued before the write still hold that stream; a result read without the compute
// stream waiting for the collective is read during its pause (SIM_NCCL_DELAY_US).
TEST(NcclCommunicator, AsyncCollectivesOrderTheComputeStream) {
  const int p = mpi().size(), me = mpi().rank();
  const int64_t n = 4099, m = 512;
  Tensor a = Tensor::empty({m, m}, DType::F32, Device::CUDA), b = Tensor::empty({m, m}, DType::F32, Device::CUDA);
  ops::fill(a, 1.0f);
  // Two products on the compute stream (and no host copy until the result: it would wait for
  // them), so that the stream is still behind when the collective is queued.
  auto busy = [&] {
    for (int i = 0; i < 2; ++i) ops::matmul(b, a, false, a, false);
  };

  Tensor x = Tensor::empty({n}, DType::F32, Device::CUDA);  // in place: Σ_r (r + 1) = p(p + 1)/2
  busy();
  ops::fill(x, float(me + 1));
  nccl().all_reduce_async(x)->wait();
  const std::vector<double> sums = values(x);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sums[size_t(i)], p * (p + 1) / 2) << "all_reduce_async " << i;

  Tensor mine = input(me, n, DType::F32).to(Device::CUDA), all = Tensor::empty({n * p}, DType::F32, Device::CUDA);
  busy();
  ops::scale_inplace(mine, 2.0f);
  nccl().all_gather_async(all, mine)->wait();
  const std::vector<double> gathered = values(all);
  for (int r = 0; r < p; ++r)
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(gathered[size_t(r * n + i)], 2.0 * value(r, i)) << "all_gather_async " << r << ", " << i;

  Tensor big = input(me, n * p, DType::F32).to(Device::CUDA), part = Tensor::empty({n}, DType::F32, Device::CUDA);
  busy();
  ops::scale_inplace(big, -1.0f);
  auto req = nccl().reduce_scatter_async(part, big);
  req->wait();
  Tensor part_want = Tensor::empty({n}), big_want = input(me, n * p, DType::F32);
  ops::scale_inplace(big_want, -1.0f);
  mpi().reduce_scatter(part_want, big_want);
  expect_sum(part, part_want, int64_t(me) * n, "reduce_scatter_async", DType::F32);
  EXPECT_TRUE(req->test());  // the compute stream, synchronised by the read, waited for it
}

// parallel.grad_reduce: bf16 on the wire, fp32 in and out: blocking and asynchronous
// all-reduces and the asynchronous reduce-scatter, against the same functions over MPI.
TEST(NcclCommunicator, Bf16GradientSumsMatchMpi) {
  const int p = mpi().size(), me = mpi().rank();
  const int64_t n = 777;
  Tensor want = input(me, n, DType::F32), got = want.to(Device::CUDA);
  all_reduce_grads(mpi(), want, GradReduce::BF16);
  all_reduce_grads(nccl(), got, GradReduce::BF16);
  expect_sum(got, want, 0, "all_reduce_grads", DType::BF16);
  Tensor a_want = input(me, n, DType::F32), a_got = a_want.to(Device::CUDA);
  all_reduce_grads_async(mpi(), a_want, GradReduce::BF16)->wait();
  all_reduce_grads_async(nccl(), a_got, GradReduce::BF16)->wait();
  expect_equal(a_got, got, "all_reduce_grads_async against all_reduce_grads");

  Tensor big_want = input(me, n * p, DType::F32), big_got = big_want.to(Device::CUDA);
  Tensor out_want = Tensor::empty({n}), out_got = Tensor::empty({n}, DType::F32, Device::CUDA);
  reduce_scatter_grads_async(mpi(), out_want, big_want, GradReduce::BF16)->wait();
  auto req = reduce_scatter_grads_async(nccl(), out_got, big_got, GradReduce::BF16);
  ops::fill(big_got, 0.0f);  // the input may be reused once its bf16 copy is made
  req->wait();
  expect_sum(out_got, out_want, int64_t(me) * n, "reduce_scatter_grads_async", DType::BF16);
}

// Host tensors go through the MPI communicator underneath; mixed placements are refused.
TEST(NcclCommunicator, HostTensorsGoThroughMpiAndMixedPlacementIsRefused) {
  const int p = mpi().size(), me = mpi().rank();
  Tensor x = input(me, 64, DType::F32), want = input(me, 64, DType::F32);
  nccl().all_reduce(x);
  mpi().all_reduce(want);
  expect_equal(x, want, "host all_reduce");
  Tensor y = input(me, 64, DType::F32);
  auto req = nccl().all_reduce_async(y);
  EXPECT_TRUE(req->test());  // done at once
  req->wait();
  expect_equal(y, want, "host all_reduce_async");
  Tensor all_host = Tensor::empty({64 * p});
  EXPECT_THROW(nccl().all_gather(all_host, input(me, 64, DType::F32).to(Device::CUDA)), Error);
  Tensor part_host = Tensor::empty({64});
  EXPECT_THROW(nccl().reduce_scatter(part_host, input(me, 64 * p, DType::F32).to(Device::CUDA)), Error);
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int gpus = device::cuda_device_count();
  if (gpus < size) {  // every rank sees the same count: all skip together
    if (rank == 0) std::printf("%d GPU(s) visible for %d ranks: skipped\n", gpus, size);
    MPI_Finalize();
    return 77;
  }
  device::use_gpu_of_local_rank(node_local_rank());
  g_nccl = std::make_unique<NcclCommunicator>(std::make_shared<MpiCommunicator>(MPI_COMM_WORLD));
  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) ::testing::GTEST_FLAG(brief) = true;
  const int rc = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  g_nccl.reset();
  MPI_Finalize();
  return worst;
}
