// Windows of heads (ops::Heads: q, k, v inside the packed q|k|v product) on the CPU: RoPE,
// qk-norm + RoPE and attention on windows are bitwise the same ops on contiguous copies and
// write nothing outside their windows (tests/unit/head_windows_check.h; the CUDA kernels and
// cuDNN run the same checks in tests/gpu/test_cuda_kernels.cpp).
#include <gtest/gtest.h>
#include <omp.h>

#include "core/ops.h"
#include "tests/unit/head_windows_check.h"
#include "tests/unit/test_support.h"

namespace retort {
namespace {

TEST(HeadWindows, OpsOnFp32WindowsAreBitwiseTheOpsOnCopies) {
  test::check_head_windows(Device::CPU, DType::F32);
}

TEST(HeadWindows, OpsOnBf16WindowsAreBitwiseTheOpsOnCopies) {
  test::check_head_windows(Device::CPU, DType::BF16);
}

// The attention backward's other schedule (two passes, chosen when (b, kv head) pairs are
// fewer than twice the threads) on windows too.
TEST(HeadWindows, TwoPassAttentionBackwardOnWindowsIsBitwiseTheOpOnCopies) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(8);  // B·Hkv = 4 < 16
  test::check_head_windows(Device::CPU, DType::F32);
  omp_set_num_threads(threads);
}

TEST(HeadWindows, BadWindowsAreErrors) {
  const int64_t B = 1, T = 4, hd = 8;
  Tensor packed = test::random_in({B, T, 4, hd}, DType::F32, 7);
  const Tensor table = ops::rope_table(T, hd, 10000.0);
  std::string msg = test::error_of([&] { ops::rope_forward(ops::Heads(packed, 3, 2), table); });
  EXPECT_NE(msg.find("heads [3, 5) lie outside [1, 4, 4, 8]"), std::string::npos) << msg;
  // Gradients in overlapping windows of one tensor, and a window of an input's own tensor.
  Tensor out = Tensor::empty({B, T, 2, hd}), lse = Tensor::empty({B, 2, T});
  const ops::Heads q(packed, 0, 2), k(packed, 2, 1), v(packed, 3, 1);
  ops::attention_forward(out, lse, q, k, v);
  Tensor grad = Tensor::empty({B, T, 4, hd});
  msg = test::error_of([&] {
    ops::attention_backward(ops::Heads(grad, 0, 2), ops::Heads(grad, 1, 1), ops::Heads(grad, 3, 1),
                            out, q, k, v, out, lse);
  });
  EXPECT_NE(msg.find("must not alias each other"), std::string::npos) << msg;
  msg = test::error_of([&] {
    ops::attention_backward(ops::Heads(grad, 0, 2), ops::Heads(grad, 2, 1),
                            ops::Heads(packed, 3, 1), out, q, k, v, out, lse);
  });
  EXPECT_NE(msg.find("must not alias inputs"), std::string::npos) << msg;
}

}  // namespace
}  // namespace retort
