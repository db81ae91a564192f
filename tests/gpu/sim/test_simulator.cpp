// The simulator's own promises (RETORT_CUDA=SIM builds only, label gpu): what it reports as a
// fault a GPU would fault on too, cuBLASLt's layout checks, and stream ordering by events.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <chrono>
#include <thread>
#include <vector>

namespace {

float* device_floats(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
  return static_cast<float*>(p);
}

TEST(Simulator, NewDeviceMemoryIsNaN) {
  float* d = device_floats(4);
  float h[4];
  cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  for (float v : h) EXPECT_TRUE(std::isnan(v));
  cudaFree(d);
}

TEST(SimulatorDeathTest, HostPointerUsedAsDeviceMemoryFaults) {
  std::vector<float> host(4), other(4);
  EXPECT_DEATH(cudaMemcpy(other.data(), host.data(), 16, cudaMemcpyDeviceToHost),
               "source is not device memory");
  float* d = device_floats(4);
  EXPECT_DEATH(cudaMemcpy(d, host.data(), 16, cudaMemcpyDeviceToHost),
               "destination is device memory");
  EXPECT_DEATH(cudaMemsetAsync(host.data(), 0, 16, nullptr), "not device memory");
  cudaFree(d);
}

// Column-major 2×3 · 3×2 with a transposed B, and a B layout that does not fit the shape.
TEST(Simulator, CublasLtComputesAndChecksLayouts) {
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  cublasLtMatmulDesc_t desc;
  cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const int32_t t = CUBLAS_OP_T;
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &t, sizeof t);
  cublasLtMatrixLayout_t a, b, bad, c;
  cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, 2, 3, 2);    // A: 2×3
  cublasLtMatrixLayoutCreate(&b, CUDA_R_32F, 2, 3, 2);    // B stored 2×3, op(B) = Bᵀ: 3×2
  cublasLtMatrixLayoutCreate(&bad, CUDA_R_32F, 3, 2, 3);  // stored 3×2: op(B) would be 2×3
  cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, 2, 2, 2);
  const std::vector<float> ha = {1, 2, 3, 4, 5, 6}, hb = {1, 0, 0, 1, 1, 1};
  float *da = device_floats(6), *db = device_floats(6), *dc = device_floats(4);
  cudaMemcpy(da, ha.data(), 24, cudaMemcpyHostToDevice);
  cudaMemcpy(db, hb.data(), 24, cudaMemcpyHostToDevice);
  const float alpha = 1, beta = 0;
  ASSERT_EQ(cublasLtMatmul(h, desc, &alpha, da, a, db, b, &beta, dc, c, dc, c, nullptr, nullptr, 0,
                           nullptr),
            CUBLAS_STATUS_SUCCESS);
  float hc[4];
  cudaMemcpy(hc, dc, 16, cudaMemcpyDeviceToHost);
  // C[i][j] = Σ_p A[i][p] B[j][p]; A = [[1,3,5],[2,4,6]], B = [[1,0,1],[0,1,1]] (row i of B
  // is column-major row i of the stored 2×3).
  EXPECT_EQ(hc[0], 6);   // (0,0): 1 + 5
  EXPECT_EQ(hc[1], 8);   // (1,0): 2 + 6
  EXPECT_EQ(hc[2], 8);   // (0,1): 3 + 5
  EXPECT_EQ(hc[3], 10);  // (1,1): 4 + 6
  EXPECT_EQ(cublasLtMatmul(h, desc, &alpha, da, a, db, bad, &beta, dc, c, dc, c, nullptr, nullptr,
                           0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

// Work queued on a stream runs after the host moves on; an event orders another stream after
// it; a stream-ordered free happens only when the stream gets there.
TEST(Simulator, StreamsRunAsynchronouslyAndEventsOrderThem) {
  if (sim::eager_streams()) GTEST_SKIP() << "SIM_STREAMS=eager runs work at once";
  cudaStream_t s1, s2;
  cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking);
  std::atomic<bool> release{false};
  std::atomic<int> order{0}, first{0}, second{0};
  sim::enqueue(s1, [&] {
    while (!release) std::this_thread::yield();
    first = ++order;
  });
  cudaEvent_t e;
  cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  cudaEventRecord(e, s1);
  EXPECT_EQ(cudaEventQuery(e), cudaErrorNotReady);  // s1 is held: the host did not wait
  cudaStreamWaitEvent(s2, e, 0);
  sim::enqueue(s2, [&] { second = ++order; });
  float* d = device_floats(1);
  cudaFreeAsync(d, s2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(second.load(), 0);              // s2 waits for the event
  EXPECT_TRUE(sim::is_device_pointer(d));   // not freed before s2 gets there
  release = true;
  cudaStreamSynchronize(s2);
  EXPECT_EQ(first.load(), 1);
  EXPECT_EQ(second.load(), 2);
  EXPECT_EQ(cudaEventQuery(e), cudaSuccess);
  EXPECT_FALSE(sim::is_device_pointer(d));
  cudaEventDestroy(e);
}

}  // namespace
