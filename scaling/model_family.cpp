#include "scaling/model_family.h"

#include <cstdio>

#include "core/check.h"

namespace retort {

std::string ModelFamily::problem(int64_t L) const {
  if (L < 1) return str_cat("size ", L, " must be >= 1 (sizes are n_layers)");
  const int64_t d = aspect * L;
  if (d % head_dim != 0)
    return str_cat("d_model = family.aspect·L = ", aspect, "·", L, " = ", d,
                   " is not a multiple of family.head_dim (", head_dim, ")");
  const int64_t heads = d / head_dim;
  if (heads % gqa_group != 0)
    return str_cat("n_heads = ", heads, " (at L = ", L, ") is not a multiple of family.gqa_group (",
                   gqa_group, ")");
  return "";
}

ModelConfig ModelFamily::shape(int64_t L) const {
  std::string why = problem(L);
  if (!why.empty()) throw ConfigError(why);
  ModelConfig m = base;
  m.n_layers = L;
  m.d_model = aspect * L;
  m.head_dim = head_dim;
  m.n_heads = m.d_model / head_dim;
  m.n_kv_heads = m.n_heads / gqa_group;
  m.d_ff = 0;  // SPEC default: 8/3·d rounded up to a multiple of 64
  m.resolve();
  return m;
}

double train_flops_per_token(const ModelConfig& m, FlopsMode mode) {
  return static_cast<double>(mode == FlopsMode::Exact ? m.flops_per_token_exact()
                                                      : m.flops_per_token_6N());
}

double forward_flops_per_token(const ModelConfig& m, FlopsMode mode) {
  return train_flops_per_token(m, mode) / 3.0;
}

const char* flops_mode_name(FlopsMode mode) { return mode == FlopsMode::Exact ? "exact" : "6N"; }

std::string family_shapes_table(const ModelFamily& f, const std::vector<int64_t>& sizes) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%4s %6s %4s %4s %4s %6s %12s %12s %12s %12s\n", "L", "d", "H",
                "Hkv", "hd", "F", "N", "N_nonemb", "6N/token", "exact/token");
  out += line;
  for (int64_t L : sizes) {
    const ModelConfig m = f.shape(L);
    std::snprintf(line, sizeof line, "%4lld %6lld %4lld %4lld %4lld %6lld %12lld %12lld %12lld %12lld\n",
                  (long long)L, (long long)m.d_model, (long long)m.n_heads,
                  (long long)m.n_kv_heads, (long long)m.head_dim, (long long)m.d_ff,
                  (long long)m.n_params(), (long long)m.n_params_nonemb(),
                  (long long)m.flops_per_token_6N(), (long long)m.flops_per_token_exact());
    out += line;
  }
  return out;
}

}  // namespace retort
