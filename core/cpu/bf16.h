// bfloat16 rounding for CPU kernels that write bf16 outputs (an activation rounded where it is
// produced, as core/cuda/common.cuh's store does on the GPU): round to nearest even; NaN stays
// NaN (quiet bit set). Bitwise retort::f32_to_bf16.
#pragma once
#include <cstdint>
#include <cstring>

namespace retort::cpu {

inline uint16_t round_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// *p = v in the output's precision.
inline void store(float* p, float v) { *p = v; }
inline void store(uint16_t* p, float v) { *p = round_to_bf16(v); }

}  // namespace retort::cpu
