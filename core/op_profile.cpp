#include "core/op_profile.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <utility>

#include "core/device.h"

namespace retort::op_profile {

namespace {

struct Pending {  // a timed kernel whose events have not been read yet
  std::string name;
  double flops, bytes;
  void *start, *end;
};

struct Table {
  std::map<std::string, Total> totals;
  std::vector<Pending> pending;
};
Table& table() {
  static Table t;
  return t;
}

// Reads the pending events into the totals. An event is read only once the GPU has passed
// it (cudaEventElapsedTime does not wait), so the queue is drained first.
void fold() {
  if (table().pending.empty()) return;
  device::synchronize();
  std::vector<Pending> pending;
  pending.swap(table().pending);  // each read once, even if a read throws
  for (const Pending& p : pending) {
    Total& t = table().totals[p.name];
    t.name = p.name;
    t.calls += 1;
    t.seconds += device::gpu_elapsed_s(p.start, p.end);
    t.flops += p.flops;
    t.bytes += p.bytes;
    device::gpu_timing_release(p.start);
    device::gpu_timing_release(p.end);
  }
}

constexpr size_t kMaxPending = 4096;  // events held before they are read

bool& enabled_flag() {
  static bool on = [] {
    const char* v = std::getenv("RETORT_OP_PROFILE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

}  // namespace

bool enabled() { return enabled_flag(); }
void set_enabled(bool on) { enabled_flag() = on; }

Scope::Scope(const char* name, Device device, double flops, double bytes)
    : Scope(device == Device::CUDA && enabled() ? std::string(name) : std::string(), device,
            flops, bytes) {}

Scope::Scope(std::string name, Device device, double flops, double bytes) {
  if (device != Device::CUDA || !enabled() || name.empty()) return;
  name_ = std::move(name);
  flops_ = flops;
  bytes_ = bytes;
  start_ = device::gpu_timing_mark();
}

Scope::~Scope() {
  if (name_.empty()) return;
  try {
    table().pending.push_back({name_, flops_, bytes_, start_, device::gpu_timing_mark()});
    if (table().pending.size() >= kMaxPending) fold();
  } catch (...) {  // a failed kernel: its error is raised by the next synchronising call
  }
}

std::vector<Total> totals() {
  fold();
  std::vector<Total> v;
  for (const auto& [name, t] : table().totals) v.push_back(t);
  std::sort(v.begin(), v.end(), [](const Total& a, const Total& b) { return a.seconds > b.seconds; });
  return v;
}

void reset() {
  fold();
  table().totals.clear();
}

std::string product_name(int64_t M, int64_t N, int64_t K, bool ta, bool tb) {
  return str_cat("matmul ", M, "x", N, "x", K, " ", ta ? "T" : "N", tb ? "T" : "N");
}

}  // namespace retort::op_profile
