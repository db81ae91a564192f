// The simulator's own promises (RETORT_CUDA=SIM builds only, label gpu): what it reports as a
// fault a GPU would fault on too (or would compute garbage from), cuBLASLt's layout checks,
// stream ordering by events, and the cuDNN graph interpreter against plain loops.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
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

#if defined(__SANITIZE_ADDRESS__)
// Kernels as gen.py translates them, built with the sanitizers as core/cuda's are
// (RETORT_SIM_SANITIZE): each thread copies the element after its own, so the last one reads
// past x; and one 16-byte vector load from wherever x points.
void copy_next(const float* x, float* y) { y[threadIdx.x] = x[threadIdx.x + 1]; }
void copy_vector(const float* x, float* y) {
  *reinterpret_cast<float4*>(y) = *reinterpret_cast<const float4*>(x);
}

// What a GPU faults on ("illegal address", "misaligned address") ends the process here too.
// The death tests run in a fresh process ("threadsafe"): a forked child has no stream threads.
TEST(SimulatorDeathTest, KernelReadingPastAnAllocationOrMisalignedFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  float* x = device_floats(32);
  float* y = device_floats(32);
  auto run = [](auto kernel, const float* in, float* out) {
    sim::launch(kernel, dim3(1), dim3(32))(in, out);
    cudaStreamSynchronize(nullptr);
  };
  run(copy_vector, x + 4, y);  // 16-byte aligned: fine
  EXPECT_DEATH(run(copy_next, x, y), "AddressSanitizer: use-after-poison");
  EXPECT_DEATH(run(copy_vector, x + 1, y), "misaligned address");
  cudaFree(x);
  cudaFree(y);
}
#endif

#if defined(__SANITIZE_THREAD__)
// Kernels as gen.py translates them (`__shared__ float slot;` is a reference to the running
// block's copy of a static), built with ThreadSanitizer as core/cuda's are under
// RETORT_SIM_SANITIZE=thread. Thread 0 writes the block's slot and every thread reads it, after
// a barrier or without one.
void broadcast(float* y, int with_barrier) {
  static thread_local float slot_sim_copies[2]; auto& slot = slot_sim_copies[sim::block_copy];
  if (threadIdx.x == 0) slot = 1.0f + blockIdx.x;
  if (with_barrier) __syncthreads();
  y[blockIdx.x * blockDim.x + threadIdx.x] = slot;
}
// After a barrier the last thread writes the slot that thread 0 reads, with no barrier between:
// in the default schedule the last thread has already reached the next barrier when thread 0
// leaves the first, and that must not order its write before thread 0's read.
void write_after_barrier(float* y) {
  static thread_local float slot_sim_copies[2]; auto& slot = slot_sim_copies[sim::block_copy];
  __syncthreads();
  if (threadIdx.x == blockDim.x - 1) slot = 2;
  if (threadIdx.x == 0) y[0] = slot;
  __syncthreads();
}
// Between blocks: each block's thread 0 reads what the block before wrote (right only when the
// blocks run in order, as the simulator's do); every block's threads count into one word with
// atomicAdd, and add 1 to their own element, after block 1 has zeroed them all (no race: CUDA
// orders a launch after the one before on its stream).
void chain(float* y) {
  if (threadIdx.x == 0) y[blockIdx.x] = blockIdx.x ? y[blockIdx.x - 1] + 1 : 0;
}
void zero(float* y) {
  if (blockIdx.x == 1) y[threadIdx.x] = 0;
}
void count(unsigned* n, float* y) {
  atomicAdd(n, 1u);
  y[blockIdx.x * blockDim.x + threadIdx.x] += 1;
}

// Two threads of a block touching one address between barriers, one writing, end the process
// with ThreadSanitizer's report whatever the schedule (here the default one, where the results
// come out right); a block's threads ordered by a barrier, and blocks that share a memory copy
// (each writes its static slot again) are no race.
TEST(SimulatorDeathTest, ThreadsOfABlockRacingBetweenBarriersAreReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  float* y = device_floats(64);
  auto run = [](auto kernel, auto... args) {
    sim::launch(kernel, dim3(2), dim3(32))(args...);
    cudaStreamSynchronize(nullptr);
  };
  run(broadcast, y, 1);
  std::vector<float> h(64);
  cudaMemcpy(h.data(), y, 256, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(h[i], 1 + i / 32);
  EXPECT_DEATH(run(broadcast, y, 0), "ThreadSanitizer: data race");
  EXPECT_DEATH(run(write_after_barrier, y), "ThreadSanitizer: data race");
  cudaFree(y);
}

// Across streams: a kernel writes x on one stream, and a kernel or a copy reads it on another.
void fill(float* x, float v) { x[threadIdx.x] = v; }
void copy(float* y, const float* x) { y[threadIdx.x] = x[threadIdx.x]; }

// Two streams are ordered only as CUDA orders them: by an event recorded on one and waited for
// on the other, or by the host synchronising with the first before it queues on the second.
// Without either, the reader is reported whichever stream's thread happened to run first (the
// simulator serialises kernels, under a lock hidden from ThreadSanitizer).
TEST(SimulatorDeathTest, StreamsOrderedOnlyByEventsAndSynchronisationAreRaces) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  cudaStream_t a, b;
  cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
  cudaEvent_t written;
  cudaEventCreateWithFlags(&written, 0);
  float* x = device_floats(32);
  float* y = device_floats(32);
  std::vector<float> h(32);
  sim::launch(fill, dim3(1), dim3(32), 0, a)(x, 1.0f);
  cudaEventRecord(written, a);
  cudaStreamWaitEvent(b, written, 0);
  sim::launch(copy, dim3(1), dim3(32), 0, b)(y, x);
  cudaMemcpy(h.data(), y, 128, cudaMemcpyDeviceToHost);
  EXPECT_EQ(h[31], 1.0f);
  sim::launch(fill, dim3(1), dim3(32), 0, a)(x, 2.0f);
  cudaStreamSynchronize(a);
  cudaMemcpyAsync(y, x, 128, cudaMemcpyDeviceToDevice, b);
  cudaMemcpy(h.data(), y, 128, cudaMemcpyDeviceToHost);
  EXPECT_EQ(h[0], 2.0f);
  EXPECT_DEATH(
      {
        sim::launch(fill, dim3(1), dim3(32), 0, a)(x, 3.0f);
        sim::launch(copy, dim3(1), dim3(32), 0, b)(y, x);
        cudaStreamSynchronize(nullptr);
      },
      "ThreadSanitizer: data race");
  EXPECT_DEATH(
      {
        sim::launch(fill, dim3(1), dim3(32), 0, a)(x, 4.0f);
        cudaMemcpyAsync(y, x, 128, cudaMemcpyDeviceToDevice, b);
        cudaStreamSynchronize(nullptr);
      },
      "ThreadSanitizer: data race");
  cudaFree(x);
  cudaFree(y);
}

// Neighbouring blocks are unordered: one reading what the other wrote is reported although the
// simulator runs them in order and the result comes out right; atomics and the launch before
// order what they should.
TEST(SimulatorDeathTest, BlocksOfAGridTouchingOneAddressAreReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  float* y = device_floats(128);
  unsigned* n = nullptr;
  cudaMalloc(&n, sizeof(unsigned));
  cudaMemsetAsync(n, 0, sizeof(unsigned), nullptr);
  sim::launch(zero, dim3(4), dim3(128))(y);
  sim::launch(count, dim3(4), dim3(32))(n, y);
  unsigned hn = 0;
  std::vector<float> h(128);
  cudaMemcpy(&hn, n, sizeof hn, cudaMemcpyDeviceToHost);
  cudaMemcpy(h.data(), y, 512, cudaMemcpyDeviceToHost);
  EXPECT_EQ(hn, 128u);
  for (float v : h) EXPECT_EQ(v, 1);
  EXPECT_DEATH(
      {
        sim::launch(chain, dim3(4), dim3(32))(y);
        cudaStreamSynchronize(nullptr);
      },
      "ThreadSanitizer: data race");
  cudaFree(n);
  cudaFree(y);
}
#endif

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
  // fp32 operands with a bf16 output: not in cuBLASLt's type table.
  cublasLtMatrixLayout_t c16;
  cublasLtMatrixLayoutCreate(&c16, CUDA_R_16BF, 2, 2, 2);
  EXPECT_EQ(cublasLtMatmul(h, desc, &alpha, da, a, db, b, &beta, dc, c16, dc, c16, nullptr,
                           nullptr, 0, nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

// Allocations are 256-byte aligned; the heuristic's algorithms need the alignment the
// preference allows (default 256): one made for defaults refuses an operand 4 bytes in, one
// made for 4-byte alignment runs it.
TEST(Simulator, CublasLtAlgorithmsNeedTheAlignmentTheirPreferenceAllowed) {
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  cublasLtMatmulDesc_t desc;
  cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatrixLayout_t l;  // 1×1 · 1×1
  cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 1, 1, 1);
  float* d = device_floats(4);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(d) % 256, 0u);
  const float one = 1, two = 2, alpha = 1, beta = 0;
  cudaMemcpy(d, &one, 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d + 1, &two, 4, cudaMemcpyHostToDevice);
  const auto algorithm = [&](uint32_t align_b) {
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    EXPECT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                   &align_b, sizeof align_b),
              CUBLAS_STATUS_SUCCESS);
    cublasLtMatmulHeuristicResult_t r{};
    int found = 0;
    EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(h, desc, l, l, l, l, pref, 1, &r, &found),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(found, 1);
    cublasLtMatmulPreferenceDestroy(pref);
    return r.algo;
  };
  const cublasLtMatmulAlgo_t aligned = algorithm(256), any = algorithm(4);
  EXPECT_EQ(cublasLtMatmul(h, desc, &alpha, d, l, d + 1, l, &beta, d + 2, l, d + 2, l, &aligned,
                           nullptr, 0, nullptr),
            CUBLAS_STATUS_NOT_SUPPORTED);  // B (and C, D) 4 or 8 bytes in: not for this one
  EXPECT_EQ(cublasLtMatmul(h, desc, &alpha, d, l, d + 1, l, &beta, d, l, d, l, &any, nullptr, 0,
                           nullptr),
            CUBLAS_STATUS_SUCCESS);
  float got = 0;
  cudaMemcpy(&got, d, 4, cudaMemcpyDeviceToHost);
  EXPECT_EQ(got, 2);  // 1 · 2
  cudaFree(d);
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

// A library call reads its operands when its stream gets there: one freed before that by
// another stream (cudaFreeAsync not ordered after the call) ends the process, where a GPU's
// pool would have handed the block to someone else. Stream s1 is held while s2 frees B.
void matmul_on_memory_freed_by_another_stream() {
  cudaStream_t s1, s2;
  cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking);
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  cublasLtMatmulDesc_t desc;
  cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatrixLayout_t l;
  cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 2, 2, 2);
  float *da = device_floats(4), *db = device_floats(4), *dc = device_floats(4);
  std::atomic<bool> release{false};
  sim::enqueue(s1, [&] {
    while (!release) std::this_thread::yield();
  });
  const float alpha = 1, beta = 0;
  cublasLtMatmul(h, desc, &alpha, da, l, db, l, &beta, dc, l, dc, l, nullptr, nullptr, 0, s1);
  cudaFreeAsync(db, s2);
  cudaStreamSynchronize(s2);
  release = true;
  cudaStreamSynchronize(s1);
}

TEST(SimulatorDeathTest, LibraryCallOnMemoryAnotherStreamFreedFaults) {
  if (sim::eager_streams()) GTEST_SKIP() << "SIM_STREAMS=eager runs work at once";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(matmul_on_memory_freed_by_another_stream(),
               "cublasLtMatmul: an operand was freed before the call ran on its stream");
}

// ---- cuDNN's graph API ---------------------------------------------------------------------

// Builds backend descriptors and destroys them at the end of the test.
struct CudnnGraph {
  std::vector<cudnnBackendDescriptor_t> owned;
  cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
  ~CudnnGraph() {
    for (auto d = owned.rbegin(); d != owned.rend(); ++d) cudnnBackendDestroyDescriptor(*d);
  }
  cudnnBackendDescriptor_t create(cudnnBackendDescriptorType_t t) {
    cudnnBackendDescriptor_t d = nullptr;
    EXPECT_EQ(cudnnBackendCreateDescriptor(t, &d), CUDNN_STATUS_SUCCESS);
    owned.push_back(d);
    return d;
  }
  template <class T>
  void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
           const T& v) {
    EXPECT_EQ(cudnnBackendSetAttribute(d, a, t, 1, &v), CUDNN_STATUS_SUCCESS) << "attribute " << a;
  }
  cudnnStatus_t finalize(cudnnBackendDescriptor_t d) { return last = cudnnBackendFinalize(d); }

  // Dims and strides in elements; dense row-major strides when none are given.
  cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t type, std::vector<int64_t> dims,
                                  std::vector<int64_t> strides = {}, bool is_virtual = false,
                                  bool by_value = false) {
    if (strides.empty()) {
      strides.assign(dims.size(), 1);
      for (size_t d = dims.size(); d-- > 1;) strides[d - 1] = strides[d] * dims[d];
    }
    auto t = create(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t align = 16;
    set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, uid);
    set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, type);
    set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, align);
    EXPECT_EQ(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64,
                                       int64_t(dims.size()), dims.data()),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64,
                                       int64_t(strides.size()), strides.data()),
              CUDNN_STATUS_SUCCESS);
    set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, is_virtual);
    set(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, by_value);
    EXPECT_EQ(finalize(t), CUDNN_STATUS_SUCCESS);
    return t;
  }
  cudnnBackendDescriptor_t virt(int64_t uid, cudnnDataType_t type, std::vector<int64_t> dims) {
    return tensor(uid, type, std::move(dims), {}, true);
  }
  // y = mode(x[, b[, t]]); GEN_INDEX takes axis.
  cudnnBackendDescriptor_t pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x,
                                     cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                                     cudnnBackendDescriptor_t y, int64_t axis = -1) {
    auto pw = create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode);
    set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
    if (axis >= 0) set(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, axis);
    EXPECT_EQ(finalize(pw), CUDNN_STATUS_SUCCESS);
    auto op = create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, pw);
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x);
    if (b) set(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b);
    if (t) set(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, t);
    set(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y);
    finalize(op);
    return op;
  }
  cudnnBackendDescriptor_t matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                                  cudnnBackendDescriptor_t c) {
    auto mm = create(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
    EXPECT_EQ(finalize(mm), CUDNN_STATUS_SUCCESS);
    auto op = create(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    set(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, a);
    set(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b);
    set(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, c);
    set(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, mm);
    EXPECT_EQ(finalize(op), CUDNN_STATUS_SUCCESS);
    return op;
  }
  cudnnBackendDescriptor_t reduction(cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                                     cudnnBackendDescriptor_t y) {
    auto red = create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    set(red, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, mode);
    set(red, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
    EXPECT_EQ(finalize(red), CUDNN_STATUS_SUCCESS);
    auto op = create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x);
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y);
    set(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, red);
    EXPECT_EQ(finalize(op), CUDNN_STATUS_SUCCESS);
    return op;
  }
  // Operation graph → heuristics → engine config → plan, as a caller of the real API does.
  // Returns the first failing status; *results gets the heuristics' result count.
  cudnnStatus_t plan(cudnnHandle_t h, std::vector<cudnnBackendDescriptor_t> ops,
                     cudnnBackendDescriptor_t* plan_out, int64_t* results = nullptr) {
    auto graph = create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, h);
    EXPECT_EQ(
        cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops.size()), ops.data()),
        CUDNN_STATUS_SUCCESS);
    if (finalize(graph)) return last;
    auto heur = create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, graph);
    set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, CUDNN_HEUR_MODE_INSTANT);
    if (finalize(heur)) return last;
    auto cfg = create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    int64_t n = -1;
    if ((last = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &cfg)))
      return last;
    if (results) *results = n;
    if (n < 1) return CUDNN_STATUS_NOT_SUPPORTED;
    auto plan = create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, h);
    set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, cfg);
    if (finalize(plan)) return last;
    *plan_out = plan;
    return CUDNN_STATUS_SUCCESS;
  }
  // The plan's workspace, allocated here; the variant pack binds (uid, pointer) pairs.
  cudnnStatus_t execute(cudnnHandle_t h, cudnnBackendDescriptor_t plan,
                        std::vector<std::pair<int64_t, void*>> bound) {
    int64_t ws_bytes = -1, n = 0;
    EXPECT_EQ(cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                       CUDNN_TYPE_INT64, 1, &n, &ws_bytes),
              CUDNN_STATUS_SUCCESS);
    void* ws = nullptr;
    if (ws_bytes > 0) cudaMalloc(&ws, size_t(ws_bytes));
    std::vector<int64_t> uids;
    std::vector<void*> ptrs;
    for (auto& [u, p] : bound) uids.push_back(u), ptrs.push_back(p);
    auto pack = create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                             int64_t(uids.size()), uids.data());
    cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                             int64_t(ptrs.size()), ptrs.data());
    set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, ws);
    EXPECT_EQ(finalize(pack), CUDNN_STATUS_SUCCESS);
    const cudnnStatus_t s = cudnnBackendExecute(h, plan, pack);
    cudaStream_t stream;
    cudnnGetStream(h, &stream);
    cudaStreamSynchronize(stream);
    if (ws) cudaFree(ws);
    return s;
  }
};

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}
float* to_device(const std::vector<float>& h) {
  float* d = device_floats(h.size());
  cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
  return d;
}
std::vector<float> to_host(const float* d, size_t n) {
  std::vector<float> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
  return h;
}
float bf16(float f) {  // round to nearest even, as the GPU stores bf16
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&f, &u, 4);
  return f;
}
std::string last_cudnn_error() {
  char msg[512];
  cudnnGetLastErrorString(msg, sizeof msg);
  return msg;
}

struct CudnnHandle {
  cudnnHandle_t h = nullptr;
  cudaStream_t s = nullptr;
  CudnnHandle() {
    cudnnCreate(&h);
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudnnSetStream(h, s);
  }
  ~CudnnHandle() { cudnnDestroy(h); }
};

// C1 = A · Bᵀ with B stored [1, H, N, K] (a transpose given by strides, the batch dim
// broadcast) and C2 = A · G with G [B, H/2, K, N] (grouped: head h reads head h / 2).
TEST(Simulator, CudnnMatmulBroadcastsBatchesAndReadsStrides) {
  const int64_t B = 2, H = 4, M = 5, K = 6, N = 3, G = H / 2;
  CudnnHandle ch;
  CudnnGraph g;
  auto a = g.tensor(1, CUDNN_DATA_FLOAT, {B, H, M, K});
  auto bt =
      g.tensor(2, CUDNN_DATA_FLOAT, {1, H, K, N}, {H * N * K, N * K, 1, K});  // stored [H][N][K]
  auto gk = g.tensor(3, CUDNN_DATA_FLOAT, {B, G, K, N});
  auto c1 = g.tensor(4, CUDNN_DATA_FLOAT, {B, H, M, N});
  auto c2 = g.tensor(5, CUDNN_DATA_FLOAT, {B, H, M, N});
  cudnnBackendDescriptor_t plan = nullptr;
  ASSERT_EQ(g.plan(ch.h, {g.matmul(a, gk, c2), g.matmul(a, bt, c1)}, &plan), CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto ha = random_floats(B * H * M * K, 1), hb = random_floats(H * N * K, 2),
             hg = random_floats(B * G * K * N, 3);
  float *da = to_device(ha), *db = to_device(hb), *dg = to_device(hg),
        *dc1 = device_floats(B * H * M * N), *dc2 = device_floats(B * H * M * N);
  ASSERT_EQ(g.execute(ch.h, plan, {{1, da}, {2, db}, {3, dg}, {4, dc1}, {5, dc2}}),
            CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto r1 = to_host(dc1, B * H * M * N), r2 = to_host(dc2, B * H * M * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s1 = 0, s2 = 0;
          for (int64_t p = 0; p < K; ++p) {
            const double x = ha[((b * H + h) * M + i) * K + p];
            s1 += x * hb[(h * N + j) * K + p];
            s2 += x * hg[((b * G + h / (H / G)) * K + p) * N + j];
          }
          const int64_t o = ((b * H + h) * M + i) * N + j;
          EXPECT_NEAR(r1[o], s1, 1e-5);
          EXPECT_NEAR(r2[o], s2, 1e-5);
        }
  for (float* p : {da, db, dg, dc1, dc2}) cudaFree(p);
}

// Y = (row >= col) ? S · scale + bias : fill, the causal-mask pattern of cudnn-frontend's SDPA
// graphs: GEN_INDEX rows and cols, CMP_GE, BINARY_SELECT (true → X), by-value scale and fill,
// a bias broadcast over batch and rows. The ops are listed out of dependency order.
TEST(Simulator, CudnnPointwiseMasksBroadcastsAndRunsInDependencyOrder) {
  const int64_t B = 2, H = 2, T = 8;
  CudnnHandle ch;
  CudnnGraph g;
  const std::vector<int64_t> dims = {B, H, T, T}, one = {1, 1, 1, 1};
  auto s = g.tensor(1, CUDNN_DATA_FLOAT, dims);
  auto scale = g.tensor(2, CUDNN_DATA_FLOAT, one, {}, false, true);
  auto bias = g.tensor(3, CUDNN_DATA_FLOAT, {1, H, 1, T});
  auto fill = g.tensor(4, CUDNN_DATA_FLOAT, one, {}, false, true);
  auto y = g.tensor(5, CUDNN_DATA_FLOAT, dims);
  auto scaled = g.virt(10, CUDNN_DATA_FLOAT, dims), biased = g.virt(11, CUDNN_DATA_FLOAT, dims);
  auto row = g.virt(12, CUDNN_DATA_INT32, dims), col = g.virt(13, CUDNN_DATA_INT32, dims);
  auto keep = g.virt(14, CUDNN_DATA_BOOLEAN, dims);
  std::vector<cudnnBackendDescriptor_t> ops = {
      g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, biased, fill, keep, y),
      g.pointwise(CUDNN_POINTWISE_CMP_GE, row, col, nullptr, keep),
      g.pointwise(CUDNN_POINTWISE_ADD, scaled, bias, nullptr, biased),
      g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, nullptr, col, 3),
      g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scaled, nullptr, nullptr, row, 2),
      g.pointwise(CUDNN_POINTWISE_MUL, s, scale, nullptr, scaled)};
  cudnnBackendDescriptor_t plan = nullptr;
  ASSERT_EQ(g.plan(ch.h, ops, &plan), CUDNN_STATUS_SUCCESS) << last_cudnn_error();
  const auto hs = random_floats(B * H * T * T, 4), hbias = random_floats(H * T, 5);
  float *ds = to_device(hs), *dbias = to_device(hbias), *dy = device_floats(B * H * T * T);
  float scale_value = 0.25f, fill_value = -1e9f;  // host scalars
  ASSERT_EQ(
      g.execute(ch.h, plan, {{1, ds}, {2, &scale_value}, {3, dbias}, {4, &fill_value}, {5, dy}}),
      CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto ry = to_host(dy, B * H * T * T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) {
          const int64_t o = ((b * H + h) * T + i) * T + j;
          const float want = i >= j ? hs[o] * 0.25f + hbias[h * T + j] : -1e9f;
          EXPECT_NEAR(ry[o], want, 1e-6f) << b << h << i << j;
        }
  for (float* p : {ds, dbias, dy}) cudaFree(p);
}

// softmax(x) over the last dim from reduction MAX, SUB, EXP (stored as a virtual bf16, so
// rounded as on the GPU), reduction ADD and DIV; and a grouped ADD fold [B, 4, D] → [B, 2, D].
TEST(Simulator, CudnnSoftmaxRoundsVirtualBf16AndReductionsFoldGroups) {
  const int64_t B = 2, R = 4, C = 16;
  CudnnHandle ch;
  CudnnGraph g;
  auto x = g.tensor(1, CUDNN_DATA_FLOAT, {B, R, C});
  auto y = g.tensor(2, CUDNN_DATA_FLOAT, {B, R, C});
  auto fold = g.tensor(3, CUDNN_DATA_FLOAT, {B, R / 2, C});
  auto mx = g.virt(10, CUDNN_DATA_FLOAT, {B, R, 1}), sum = g.virt(11, CUDNN_DATA_FLOAT, {B, R, 1});
  auto d = g.virt(12, CUDNN_DATA_FLOAT, {B, R, C}), e = g.virt(13, CUDNN_DATA_BFLOAT16, {B, R, C});
  cudnnBackendDescriptor_t plan = nullptr;
  ASSERT_EQ(g.plan(ch.h,
                   {g.reduction(CUDNN_REDUCE_TENSOR_MAX, x, mx),
                    g.pointwise(CUDNN_POINTWISE_SUB, x, mx, nullptr, d),
                    g.pointwise(CUDNN_POINTWISE_EXP, d, nullptr, nullptr, e),
                    g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum),
                    g.pointwise(CUDNN_POINTWISE_DIV, e, sum, nullptr, y),
                    g.reduction(CUDNN_REDUCE_TENSOR_ADD, x, fold)},
                   &plan),
            CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto hx = random_floats(B * R * C, 6);
  float *dx = to_device(hx), *dy = device_floats(B * R * C), *dfold = device_floats(B * R / 2 * C);
  ASSERT_EQ(g.execute(ch.h, plan, {{1, dx}, {2, dy}, {3, dfold}}), CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto ry = to_host(dy, B * R * C), rf = to_host(dfold, B * R / 2 * C);
  double off_unrounded = 0;
  for (int64_t r = 0; r < B * R; ++r) {
    float m = -INFINITY;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, hx[r * C + c]);
    std::vector<float> ev(C), eu(C);
    double s = 0, su = 0;
    for (int64_t c = 0; c < C; ++c) {
      eu[c] = std::exp(hx[r * C + c] - m);
      ev[c] = bf16(eu[c]);
      s += ev[c];
      su += eu[c];
    }
    for (int64_t c = 0; c < C; ++c) {
      EXPECT_NEAR(ry[r * C + c], ev[c] / float(s), 1e-6f);
      off_unrounded = std::max(off_unrounded, std::fabs(ry[r * C + c] - eu[c] / su));
    }
  }
  EXPECT_GT(off_unrounded, 1e-4);  // the bf16 rounding of the virtual tensor is visible
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < R / 2; ++h)
      for (int64_t c = 0; c < C; ++c)
        EXPECT_NEAR(rf[(b * R / 2 + h) * C + c],
                    hx[(b * R + 2 * h) * C + c] + hx[(b * R + 2 * h + 1) * C + c], 1e-6f);
  for (float* p : {dx, dy, dfold}) cudaFree(p);
}

// C = Pᵀ · V with Pᵀ a reshape of the virtual P = exp(X) [B, H, S, T] into a bf16 view
// [B, H, T, S] at transposed strides (cudnn-frontend's dV = Pᵀ dO).
TEST(Simulator, CudnnReshapeTransposesAVirtualTensorThroughStrides) {
  const int64_t B = 2, H = 2, S = 5, T = 4, D = 3;
  CudnnHandle ch;
  CudnnGraph g;
  auto x = g.tensor(1, CUDNN_DATA_FLOAT, {B, H, S, T});
  auto v = g.tensor(2, CUDNN_DATA_FLOAT, {B, H, S, D});
  auto c = g.tensor(3, CUDNN_DATA_FLOAT, {B, H, T, D});
  auto p = g.virt(10, CUDNN_DATA_FLOAT, {B, H, S, T});
  auto pt = g.tensor(11, CUDNN_DATA_BFLOAT16, {B, H, T, S}, {H * S * T, S * T, 1, T}, true);
  cudnnBackendDescriptor_t reshape = g.create(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  g.set(reshape, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, p);
  g.set(reshape, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, pt);
  ASSERT_EQ(g.finalize(reshape), CUDNN_STATUS_SUCCESS);
  cudnnBackendDescriptor_t plan = nullptr;
  ASSERT_EQ(g.plan(ch.h,
                   {g.matmul(pt, v, c), reshape,
                    g.pointwise(CUDNN_POINTWISE_EXP, x, nullptr, nullptr, p)},
                   &plan),
            CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto hx = random_floats(B * H * S * T, 7), hv = random_floats(B * H * S * D, 8);
  float *dx = to_device(hx), *dv = to_device(hv), *dc = device_floats(B * H * T * D);
  ASSERT_EQ(g.execute(ch.h, plan, {{1, dx}, {2, dv}, {3, dc}}), CUDNN_STATUS_SUCCESS)
      << last_cudnn_error();
  const auto rc = to_host(dc, B * H * T * D);
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        double want = 0;
        for (int64_t s = 0; s < S; ++s)
          want += double(bf16(std::exp(hx[(bh * S + s) * T + t]))) * hv[(bh * S + s) * D + d];
        EXPECT_NEAR(rc[(bh * T + t) * D + d], want, 1e-5);
      }
  for (float* q : {dx, dv, dc}) cudaFree(q);
}

TEST(Simulator, CudnnRejectsMissingBindingsDuplicateUidsAndOffersNoEngineOnRequest) {
  CudnnHandle ch;
  const std::vector<int64_t> dims = {2, 3};
  {  // a tensor of the graph missing from the variant pack: BAD_PARAM at execute
    CudnnGraph g;
    auto x = g.tensor(1, CUDNN_DATA_FLOAT, dims), y = g.tensor(2, CUDNN_DATA_FLOAT, dims);
    cudnnBackendDescriptor_t plan = nullptr;
    ASSERT_EQ(g.plan(ch.h, {g.pointwise(CUDNN_POINTWISE_NEG, x, nullptr, nullptr, y)}, &plan),
              CUDNN_STATUS_SUCCESS);
    float* dx = device_floats(6);
    EXPECT_EQ(g.execute(ch.h, plan, {{1, dx}}), CUDNN_STATUS_BAD_PARAM);
    EXPECT_NE(last_cudnn_error().find("uid 2"), std::string::npos);
    cudaFree(dx);
  }
  {  // two different tensors with one UNIQUE_ID: BAD_PARAM at graph finalize
    CudnnGraph g;
    auto x = g.tensor(1, CUDNN_DATA_FLOAT, dims), y = g.tensor(1, CUDNN_DATA_FLOAT, dims, {1, 2});
    cudnnBackendDescriptor_t plan = nullptr;
    auto op = g.pointwise(CUDNN_POINTWISE_NEG, x, nullptr, nullptr, y);
    ASSERT_EQ(g.last, CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(g.plan(ch.h, {op}, &plan), CUDNN_STATUS_BAD_PARAM);
    EXPECT_NE(last_cudnn_error().find("UNIQUE_ID 1"), std::string::npos);
  }
  {  // a virtual tensor that no op writes, and BINARY_SELECT without its mask
    CudnnGraph g;
    auto v = g.virt(1, CUDNN_DATA_FLOAT, dims), y = g.tensor(2, CUDNN_DATA_FLOAT, dims);
    cudnnBackendDescriptor_t plan = nullptr;
    auto op = g.pointwise(CUDNN_POINTWISE_EXP, v, nullptr, nullptr, y);
    ASSERT_EQ(g.last, CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(g.plan(ch.h, {op}, &plan), CUDNN_STATUS_BAD_PARAM);
    EXPECT_NE(last_cudnn_error().find("no op writes"), std::string::npos);
    auto x = g.tensor(3, CUDNN_DATA_FLOAT, dims);
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, x, nullptr, y);
    EXPECT_EQ(g.last, CUDNN_STATUS_BAD_PARAM);
  }
  {  // SIM_CUDNN_NO_ENGINE=1: no heuristic result, and engine 0 does not finalize
    CudnnGraph g;
    auto x = g.tensor(1, CUDNN_DATA_FLOAT, dims), y = g.tensor(2, CUDNN_DATA_FLOAT, dims);
    auto op = g.pointwise(CUDNN_POINTWISE_NEG, x, nullptr, nullptr, y);
    setenv("SIM_CUDNN_NO_ENGINE", "1", 1);
    cudnnBackendDescriptor_t plan = nullptr;
    int64_t results = -1;
    EXPECT_EQ(g.plan(ch.h, {op}, &plan, &results), CUDNN_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(results, 0);
    auto graph = g.owned[g.owned.size() - 3];  // plan() made the graph, heuristics, config
    auto engine = g.create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    g.set(engine, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, graph);
    g.set(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, int64_t(0));
    EXPECT_EQ(cudnnBackendFinalize(engine), CUDNN_STATUS_NOT_SUPPORTED);
    unsetenv("SIM_CUDNN_NO_ENGINE");
  }
}

TEST(SimulatorDeathTest, CudnnHostPointerInVariantPackFaults) {
  CudnnHandle ch;
  CudnnGraph g;
  auto x = g.tensor(1, CUDNN_DATA_FLOAT, {4}), y = g.tensor(2, CUDNN_DATA_FLOAT, {4});
  cudnnBackendDescriptor_t plan = nullptr;
  ASSERT_EQ(g.plan(ch.h, {g.pointwise(CUDNN_POINTWISE_NEG, x, nullptr, nullptr, y)}, &plan),
            CUDNN_STATUS_SUCCESS);
  std::vector<float> host(4);
  float* dy = device_floats(4);
  EXPECT_DEATH(g.execute(ch.h, plan, {{1, host.data()}, {2, dy}}), "not \\(all\\) device memory");
  cudaFree(dy);
}

}  // namespace
