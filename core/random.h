// Counter-based randomness: every random number is a pure function of (seed, stream, index),
// so results never depend on call order, thread count or how a tensor is sharded.
#pragma once
#include <cmath>
#include <cstdint>
#include <string_view>

// mix64, hash and uniform also compile for the device (a GPU kernel draws the same numbers).
#if defined(__CUDACC__)
#define RETORT_HOST_DEVICE __host__ __device__
#else
#define RETORT_HOST_DEVICE
#endif

namespace retort::rng {

// SplitMix64 finaliser: a strong 64-bit mixing function.
RETORT_HOST_DEVICE inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

RETORT_HOST_DEVICE inline uint64_t hash(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }
RETORT_HOST_DEVICE inline uint64_t hash(uint64_t a, uint64_t b, uint64_t c) {
  return hash(hash(a, b), c);
}

// FNV-1a of a string, mixed: stream ids from names (e.g. parameter names).
inline uint64_t hash_string(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return mix64(h);
}

// Uniform in [0, 1) with 53 random bits.
RETORT_HOST_DEVICE inline double uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return (hash(seed, stream, index) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal via Box-Muller on two independent uniforms of element `index`.
inline double normal(uint64_t seed, uint64_t stream, uint64_t index) {
  double u1 = uniform(seed, stream, 2 * index);
  double u2 = uniform(seed, stream, 2 * index + 1);
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace retort::rng
