// main() of the GPU tests (label `gpu`): exits 77 — reported by ctest as skipped, not passed —
// when no GPU is visible, as on CI and on CPU-only machines.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/device.h"

int main(int argc, char** argv) {
  if (retort::device::cuda_device_count() == 0) {
    std::printf("no GPU visible: skipped\n");
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
