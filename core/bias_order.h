// The summation order of a bias gradient db[j] = Σ_r dy[r, j], shared by the CPU and CUDA
// kernels (core/cpu/bias.cpp, core/cuda/bias.cu) so that both give the same bits:
// kBiasGroups fp32 partial sums per column, group g adding rows g, g + kBiasGroups, … in
// order; then partial 0 + partial 1 + … in group order; then added to db[j].
#pragma once

namespace retort {

constexpr int kBiasGroups = 16;

}  // namespace retort
