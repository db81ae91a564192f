// Optional per-op time of a GPU run, for finding where a training step's time goes:
// RETORT_OP_PROFILE=1 synchronises the device before and after every kernel that core/ops
// launches and adds the wall time in between to that kernel's total. It serialises the
// streams, so the totals add up to the step only roughly, and a profiled run is slower: never
// time a run for its throughput with it on. `retort bench` prints the totals per step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace retort::op_profile {

// RETORT_OP_PROFILE is set to something other than "" or "0" (read once).
bool enabled();

// Times the kernel launched in its lifetime (on the GPU only; nothing when profiling is off).
// `flops` (0: not a matmul) lets the totals give the achieved FLOP/s.
class Scope {
 public:
  Scope(const char* name, Device device, double flops = 0);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_ = nullptr;  // null: not timing
  double flops_ = 0, start_s_ = 0;
};

struct Total {
  std::string name;
  int64_t calls = 0;
  double seconds = 0, flops = 0;
};
// The totals since the last reset, the largest time first.
std::vector<Total> totals();
void reset();

}  // namespace retort::op_profile
