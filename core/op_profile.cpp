#include "core/op_profile.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>

#include "core/device.h"

namespace retort::op_profile {

namespace {

std::map<std::string, Total>& table() {
  static std::map<std::string, Total> t;
  return t;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("RETORT_OP_PROFILE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

Scope::Scope(const char* name, Device device, double flops) {
  if (device != Device::CUDA || !enabled()) return;
  device::synchronize();  // the queue drained: the time below is this kernel's alone
  name_ = name;
  flops_ = flops;
  start_s_ = now_s();
}

Scope::~Scope() {
  if (!name_) return;
  try {
    device::synchronize();
  } catch (...) {  // a failed kernel: its error is raised by the next synchronising call
    return;
  }
  Total& t = table()[name_];
  t.name = name_;
  t.calls += 1;
  t.seconds += now_s() - start_s_;
  t.flops += flops_;
}

std::vector<Total> totals() {
  std::vector<Total> v;
  for (const auto& [name, t] : table()) v.push_back(t);
  std::sort(v.begin(), v.end(), [](const Total& a, const Total& b) { return a.seconds > b.seconds; });
  return v;
}

void reset() { table().clear(); }

}  // namespace retort::op_profile
