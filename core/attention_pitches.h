// Where attention's q, k, v and their gradients lie: each operand's token pitch, the elements
// from one token's heads to the next's — heads·hd for a tensor of its own, (H + 2·Hkv)·hd for
// a window of the packed q|k|v product's row. out and dout are always whole [B, T, H, hd].
// Shared by the CPU, plain CUDA and cuDNN attention kernels.
#pragma once
#include <cstdint>

namespace retort {

struct AttentionPitches {
  int64_t q = 0, k = 0, v = 0, dq = 0, dk = 0, dv = 0;  // the gradients' for the backward only

  // Every operand a tensor of its own: q, dq [B, T, H, hd]; k, v, dk, dv [B, T, Hkv, hd].
  static AttentionPitches contiguous(int64_t H, int64_t Hkv, int64_t hd) {
    return {H * hd, Hkv * hd, Hkv * hd, H * hd, Hkv * hd, Hkv * hd};
  }
};

}  // namespace retort
