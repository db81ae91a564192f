// Optional per-kernel GPU time of a run, for finding where a training step's time goes:
// RETORT_OP_PROFILE=1 records a CUDA event on the compute stream before and after every kernel
// that core/ops launches and adds the GPU time between the two to that kernel's total. The
// events are read every 4096 kernels (the one synchronisation) and at the end, so the totals
// add up to at most the step; the cost is two event records per kernel.
// `retort bench` prints the totals per step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace retort::op_profile {

// Profiling is on: RETORT_OP_PROFILE set to something other than "" or "0" (read once), or
// set_enabled(true).
bool enabled();
void set_enabled(bool on);

// Times the kernels launched in its lifetime (on the GPU only; nothing when profiling is off
// or the name is empty). `flops` (0: not a matmul) lets the totals give the achieved FLOP/s,
// `bytes` (what the kernel reads and writes; 0: not counted) the achieved bandwidth.
class Scope {
 public:
  Scope(const char* name, Device device, double flops = 0, double bytes = 0);
  Scope(std::string name, Device device, double flops = 0, double bytes = 0);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  std::string name_;  // empty: not timing
  double flops_ = 0, bytes_ = 0;
  void* start_ = nullptr;  // device::gpu_timing_mark()
};

struct Total {
  std::string name;
  int64_t calls = 0;
  double seconds = 0, flops = 0, bytes = 0;
};
// The name of one product shape (each timed apart, with its FLOP/s): "matmul MxNxK TN" with the
// transposes (N: as stored, T: transposed).
std::string product_name(int64_t M, int64_t N, int64_t K, bool ta, bool tb);

// The totals since the last reset (waits for the GPU), the largest time first.
std::vector<Total> totals();
void reset();

}  // namespace retort::op_profile
