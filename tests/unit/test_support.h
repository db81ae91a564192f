// Helpers shared by the unit tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/random.h"
#include "core/tensor.h"

namespace retort::test {

// An empty directory $TMPDIR/retort_<prefix>_<name>_<pid> (whatever was there is removed).
inline std::string fresh_temp_dir(const std::string& prefix, const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("retort_" + prefix + "_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// Tokens and targets [B, T] I32, uniform over [0, V), a pure function of the seed.
struct Batch {
  Tensor tokens, targets;
};
inline Batch random_batch(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Batch b{Tensor::empty({B, T}, DType::I32), Tensor::empty({B, T}, DType::I32)};
  for (int64_t i = 0; i < B * T; ++i) {
    b.tokens.host<int32_t>()[i] = int32_t(rng::uniform(seed, 1, i) * V);
    b.targets.host<int32_t>()[i] = int32_t(rng::uniform(seed, 2, i) * V);
  }
  return b;
}

// The message of the exception f throws, or "<no error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no error>";
}

// A teacher's top-k at temperature τ from its logits [R, V]: ids [R, k] I32 by descending
// logit, log-probs [R, k] = log-softmax(logits/τ) over the whole vocabulary.
struct TopK {
  Tensor ids, logp;
};
inline TopK teacher_topk(const Tensor& teacher, double tau, int64_t k) {
  const int64_t R = teacher.dim(0), V = teacher.dim(1);
  TopK out{Tensor::empty({R, k}, DType::I32), Tensor::empty({R, k})};
  const float* x = teacher.data<float>();
  std::vector<int> order(V);
  for (int64_t r = 0; r < R; ++r) {
    double m = -1e300, s = 0;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, x[r * V + v] / tau);
    for (int64_t v = 0; v < V; ++v) s += std::exp(x[r * V + v] / tau - m);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return x[r * V + a] > x[r * V + b]; });
    for (int64_t i = 0; i < k; ++i) {
      out.ids.data<int32_t>()[r * k + i] = order[i];
      out.logp.data<float>()[r * k + i] = float(x[r * V + order[i]] / tau - m - std::log(s));
    }
  }
  return out;
}

}  // namespace retort::test
