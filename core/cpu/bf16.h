// bfloat16 for CPU kernels that read or write bf16 activations (rounded where they are produced,
// as core/cuda/common.cuh's store does on the GPU): round to nearest even; NaN stays NaN (quiet
// bit set). retort::f32_to_bf16 / bf16_to_f32 (core/tensor.h) are these.
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

// *p = v in the output's precision; an input of either precision as float.
inline void store(float* p, float v) { *p = v; }
inline void store(uint16_t* p, float v) { *p = round_to_bf16(v); }
inline float load(const float* p) { return *p; }
inline float load(const uint16_t* p) {
  const uint32_t u = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace retort::cpu
