// models/: ModelConfig (keys, defaults, validation messages, counting formulas) and Transformer
// (layout, init, whole-model gradient vs central finite differences, recompute bitwise equal,
// determinism, evaluate, error paths).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/adamw.h"
#include "core/config.h"
#include "core/ops.h"
#include "core/random.h"
#include "models/distill_loss.h"
#include "models/model_config.h"
#include "models/transformer.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::Batch;
using retort::test::random_batch;

namespace {

std::string config_error(const std::vector<std::string>& overrides) {
  try {
    ModelConfig::from_config(Config::from_yaml("", "test.yaml", overrides));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

ModelConfig tiny(bool tied, int64_t H = 4, int64_t Hkv = 2, bool qk_norm = true,
                 bool qkv_bias = false) {
  ModelConfig m;
  m.vocab_size = 64;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = H;
  m.n_kv_heads = Hkv;
  m.seq_len = 8;
  m.tie_embeddings = tied;
  m.qk_norm = qk_norm;
  m.qkv_bias = qkv_bias;
  m.init_std = 0.1;
  m.resolve();
  return m;
}

// Init, then move the norm gains away from 1 (and the biases from 0) so that a misused one
// shows in the gradients.
void init_perturbed(Transformer& m, uint64_t seed) {
  m.init(seed);
  for (const Parameter& p : m.parameters())
    if (p.value.ndim() == 1)
      for (int64_t i = 0; i < p.value.numel(); ++i)
        p.value.host<float>()[i] = float(1.0 + 0.2 * rng::normal(seed, 99, p.offset + i));
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

std::vector<float> to_vec(const Tensor& t) {
  const float* p = t.host<float>();
  return std::vector<float>(p, p + t.numel());
}

}  // namespace

// ---- ModelConfig --------------------------------------------------------------------------

TEST(ModelConfig, ReadsKeysAndResolvesDefaults) {
  ModelConfig m = ModelConfig::from_config(Config::from_yaml(
      "model:\n  vocab_size: 100\n  d_model: 96\n  n_layers: 3\n  n_heads: 6\n  seq_len: 32\n"
      "  qk_norm: false\n  tie_embeddings: false\n  rope_theta: 10000\n  norm_eps: 1e-6\n"
      "  init: mup_simple\n  init_std: 0.05\n",
      "m.yaml"));
  EXPECT_EQ(m.vocab_size, 100);
  EXPECT_EQ(m.n_kv_heads, 6);      // 0 -> n_heads
  EXPECT_EQ(m.head_dim, 16);       // 0 -> d / H
  EXPECT_EQ(m.d_ff, 256);          // 8/3·96 = 256 exactly
  EXPECT_EQ(m.seq_len, 32);
  EXPECT_FALSE(m.qk_norm);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_DOUBLE_EQ(m.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(m.norm_eps, 1e-6);
  EXPECT_EQ(m.init, "mup_simple");
  EXPECT_DOUBLE_EQ(m.init_std, 0.05);

  ModelConfig e = ModelConfig::from_config(Config::from_yaml("", "d.yaml", {"model.head_dim=10",
                                                                             "model.n_kv_heads=2",
                                                                             "model.d_ff=100"}));
  EXPECT_EQ(e.head_dim, 10);  // explicit head_dim: d % H not required
  EXPECT_EQ(e.n_kv_heads, 2);
  EXPECT_EQ(e.d_ff, 100);
}

TEST(ModelConfig, DefaultFeedForwardRoundsUpTo64) {
  EXPECT_EQ(ModelConfig::default_d_ff(32), 128);    // 85.3 -> 128
  EXPECT_EQ(ModelConfig::default_d_ff(768), 2048);  // exact
  EXPECT_EQ(ModelConfig::default_d_ff(100), 320);   // 266.7 -> 320
  EXPECT_EQ(ModelConfig::default_d_ff(24), 64);     // 64 exactly
  EXPECT_EQ(ModelConfig::default_d_ff(25), 128);    // 66.7 -> 128
}

TEST(ModelConfig, EachValidationErrorNamesItsKey) {
  struct Case {
    std::vector<std::string> overrides;
    std::string key, fragment;
  };
  const std::vector<Case> cases = {
      {{"model.vocab_size=0"}, "model.vocab_size", "positive"},
      {{"model.d_model=-4"}, "model.d_model", "positive"},
      {{"model.n_layers=0"}, "model.n_layers", "positive"},
      {{"model.n_heads=0"}, "model.n_heads", "positive"},
      {{"model.seq_len=0"}, "model.seq_len", "positive"},
      {{"model.n_heads=3"}, "model.n_heads", "divisible"},        // d = 256
      {{"model.n_kv_heads=3"}, "model.n_kv_heads", "multiple"},   // H = 4
      {{"model.n_kv_heads=-1"}, "model.n_kv_heads", ">= 0"},
      {{"model.head_dim=7"}, "model.head_dim", "even"},
      {{"model.head_dim=-2"}, "model.head_dim", ">= 0"},
      {{"model.d_ff=-1"}, "model.d_ff", ">= 0"},
      {{"model.rope_theta=0"}, "model.rope_theta", "> 0"},
      {{"model.norm_eps=0"}, "model.norm_eps", "> 0"},
      {{"model.init=xavier"}, "model.init", "normal"},
      {{"model.init_std=0"}, "model.init_std", "> 0"},
      {{"model.mup_base_width=-1"}, "model.mup_base_width", ">= 0"},
      {{"model.mup_base_width=64"}, "model.mup_base_width", "model.init: mup"},
      {{"model.mup_base_width=64", "model.init=mup_simple"}, "model.mup_base_width", "model.init: mup"},
      {{"model.init=mup"}, "model.init", "model.mup_base_width"},
      {{"model.mup_base_width=64", "model.init=mup"}, "model.mup_base_width", "tie_embeddings: false"},
  };
  for (const Case& c : cases) {
    std::string msg = config_error(c.overrides);
    EXPECT_NE(msg.find("test.yaml"), std::string::npos) << c.overrides[0] << ": " << msg;
    EXPECT_NE(msg.find("'" + c.key + "'"), std::string::npos) << c.overrides[0] << ": " << msg;
    EXPECT_NE(msg.find(c.fragment), std::string::npos) << c.overrides[0] << ": " << msg;
  }
  EXPECT_EQ(config_error({"model.n_heads=128", "model.n_kv_heads=0"}), "");
  // d = 256, H = 256 -> head_dim 1 (odd)
  EXPECT_NE(config_error({"model.n_heads=256"}).find("'model.head_dim'"), std::string::npos);

  // resolve() (configs built in code) gives the same key names.
  ModelConfig m = tiny(true);
  m.n_kv_heads = 3;
  try {
    m.resolve();
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'model.n_kv_heads'"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, CountingFormulasOnAHandComputedConfig) {
  // V=10 d=8 L=2 H=2 Hkv=1 hd=4 F=16 T=6, qk_norm, tied.
  ModelConfig m;
  m.vocab_size = 10, m.d_model = 8, m.n_layers = 2, m.n_heads = 2, m.n_kv_heads = 1;
  m.d_ff = 16, m.seq_len = 6;
  m.resolve();
  ASSERT_EQ(m.head_dim, 4);
  // per layer: ln 8 + q 2·4·8=64 + k,v 2·1·4·8=64 + o 8·8=64 + q/k norm 8 + ln 8 + mlp 3·16·8=384
  EXPECT_EQ(m.params_per_layer(), 600);
  EXPECT_EQ(m.n_params(), 80 + 2 * 600 + 8);  // 1288
  EXPECT_EQ(m.n_params_nonemb(), 1208);
  EXPECT_EQ(m.flops_per_token_6N(), 7248);
  // forward: L·(2·(64+64+64+384) + 2·2·6·2·4/2) + 2·10·8 = 2·(1152+96) + 160 = 2656
  EXPECT_EQ(m.flops_per_token_exact(), 3 * 2656);
  // 6·(1208 + 80) + 12·2·2·4·6
  EXPECT_EQ(m.flops_per_token_mfu(), 7728 + 1152);

  m.tie_embeddings = false;
  EXPECT_EQ(m.n_params(), 1288 + 80);
  EXPECT_EQ(m.n_params_nonemb(), 1208);
  EXPECT_EQ(m.flops_per_token_exact(), 3 * 2656);
  m.qk_norm = false;
  EXPECT_EQ(m.params_per_layer(), 592);
  EXPECT_EQ(Transformer(m).num_params(), m.n_params());
  m.qkv_bias = true;  // + q 2·4 + k, v 1·4 each = 16; the products' FLOPs are unchanged
  EXPECT_EQ(m.params_per_layer(), 608);
  EXPECT_EQ(m.flops_per_token_exact(), 3 * 2656);
  EXPECT_EQ(Transformer(m).num_params(), m.n_params());
  // A sliding window W = 2 of T = 6: K = W − W²/(2T) = 5/3 keys per query, so attention
  // 2·2·H·hd·K = 53.3 → 53 per layer: forward 2·(1152 + 53) + 160 = 2570; MFU's T becomes W.
  m.sliding_window = 2;
  EXPECT_EQ(m.params_per_layer(), 608);
  EXPECT_EQ(m.flops_per_token_exact(), 3 * 2570);
  EXPECT_EQ(m.n_params_nonemb(), 1224);  // 1208 − 2·8 (no q/k norms) + 2·16 (biases)
  EXPECT_EQ(m.flops_per_token_mfu(), 6 * (1224 + 80) + 12 * 2 * 2 * 4 * 2);
  m.sliding_window = 6;  // as long as T: no window
  EXPECT_EQ(m.flops_per_token_exact(), 3 * 2656);
}

// ---- Transformer: layout and init -----------------------------------------------------------

TEST(Transformer, ParameterLayoutIsFlatOrderedAndNamedPerSpec) {
  for (bool tied : {true, false}) {
    ModelConfig mc = tiny(tied);
    Transformer m(mc);
    const auto& ps = m.parameters();
    ASSERT_EQ(ps.size(), size_t(1 + 2 * 11 + 1 + (tied ? 0 : 1)));
    EXPECT_EQ(ps.front().name, "model.embed_tokens.weight");
    EXPECT_EQ(ps[1].name, "model.layers.0.input_layernorm.weight");
    EXPECT_EQ(ps[2].name, "model.layers.0.self_attn.q_proj.weight");
    EXPECT_EQ(ps[6].name, "model.layers.0.self_attn.q_norm.weight");
    EXPECT_EQ(ps[11].name, "model.layers.0.mlp.down_proj.weight");
    EXPECT_EQ(ps[12].name, "model.layers.1.input_layernorm.weight");
    EXPECT_EQ(ps[23].name, "model.norm.weight");
    if (!tied) {
      EXPECT_EQ(ps[24].name, "lm_head.weight");
    }
    int64_t off = 0;
    for (const Parameter& p : ps) {
      EXPECT_EQ(p.offset, off) << p.name;
      EXPECT_EQ(p.value.shape(), p.grad.shape());
      EXPECT_TRUE(p.value.same_storage(m.flat_params()));
      EXPECT_TRUE(p.grad.same_storage(m.flat_grads()));
      EXPECT_EQ(p.decay, p.value.ndim() == 2) << p.name;
      off += p.value.numel();
    }
    EXPECT_EQ(off, m.num_params());
    EXPECT_EQ(m.flat_params().numel(), mc.n_params());
    EXPECT_EQ(m.parameter("model.layers.1.self_attn.k_proj.weight").value.shape(), (Shape{16, 32}));
    EXPECT_EQ(m.parameter("model.layers.1.self_attn.o_proj.weight").value.shape(), (Shape{32, 32}));
    EXPECT_EQ(m.parameter("model.layers.0.mlp.down_proj.weight").value.shape(), (Shape{32, 128}));
    EXPECT_THROW(m.parameter("nope"), Error);
  }
  // Qwen2: the q, k, v biases follow v_proj (one stacked bias), no decay
  Transformer q2(tiny(true, 4, 2, false, true));
  const auto& ps = q2.parameters();
  ASSERT_EQ(ps.size(), size_t(1 + 2 * 12 + 1));
  EXPECT_EQ(ps[4].name, "model.layers.0.self_attn.v_proj.weight");
  EXPECT_EQ(ps[5].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(ps[6].name, "model.layers.0.self_attn.k_proj.bias");
  EXPECT_EQ(ps[7].name, "model.layers.0.self_attn.v_proj.bias");
  EXPECT_EQ(ps[8].name, "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(ps[5].value.shape(), (Shape{32}));
  EXPECT_EQ(ps[6].value.shape(), (Shape{16}));
  EXPECT_FALSE(ps[7].decay);
}

TEST(Transformer, InitIsAPureFunctionOfSeedNameAndIndex) {
  ModelConfig mc = tiny(false, 4, 2, true, true);
  mc.init_std = 0.02;
  Transformer m(mc);
  m.init(7);
  const double L = double(mc.n_layers);
  for (const Parameter& p : m.parameters()) {
    const float* v = p.value.host<float>();
    double expect_std = 0.02;
    if (p.value.ndim() == 1) {  // norm gains 1, biases 0
      const float fill = p.name.find(".bias") != std::string::npos ? 0.0f : 1.0f;
      for (int64_t i = 0; i < p.value.numel(); ++i) ASSERT_EQ(v[i], fill) << p.name;
      continue;
    }
    if (p.name.find("o_proj") != std::string::npos || p.name.find("down_proj") != std::string::npos)
      expect_std = 0.02 / std::sqrt(2 * L);
    EXPECT_DOUBLE_EQ(m.init_std(p.name), expect_std) << p.name;
    for (int64_t i : {int64_t(0), p.value.numel() / 2, p.value.numel() - 1})
      ASSERT_EQ(v[i], float(expect_std * rng::normal(7, rng::hash_string(p.name), uint64_t(i))));
    double ss = 0;
    for (int64_t i = 0; i < p.value.numel(); ++i) ss += double(v[i]) * v[i];
    const double sample_std = std::sqrt(ss / double(p.value.numel()));
    EXPECT_NEAR(sample_std / expect_std, 1.0, 0.1) << p.name;
  }
  Transformer m2(mc);
  m2.init(7);
  EXPECT_EQ(to_vec(m.flat_params()), to_vec(m2.flat_params()));
  m2.init(8);
  EXPECT_NE(to_vec(m.flat_params()), to_vec(m2.flat_params()));

  ModelConfig mu = tiny(false);
  mu.init = "mup_simple";
  Transformer mm(mu);
  EXPECT_DOUBLE_EQ(mm.init_std("model.embed_tokens.weight"), 0.1);
  EXPECT_DOUBLE_EQ(mm.init_std("model.layers.0.self_attn.q_proj.weight"), 1.0 / std::sqrt(32.0));
  EXPECT_DOUBLE_EQ(mm.init_std("model.layers.0.mlp.down_proj.weight"), 1.0 / std::sqrt(128.0) / 2.0);
  EXPECT_DOUBLE_EQ(mm.init_std("lm_head.weight"), 1.0 / 32.0);
  EXPECT_DOUBLE_EQ(mm.init_std("model.norm.weight"), 0.0);
  for (const Parameter& p : mm.parameters()) EXPECT_EQ(p.lr_scale, 1.0f) << p.name;  // no base width
}

// µP (init mup, mup_base_width 8 at d_model 32: s = 1/4). Init: hidden matrices init_std·√s,
// lm_head init_std·s; at d_model = d₀ the normal init, bitwise. Learning rates: AdamW's first
// step moves an element by lr · lr_scale · g/(|g| + eps), so the largest move in each parameter
// is lr/4 in the hidden matrices and lm_head and lr in the embedding, norm gains and biases.
TEST(Transformer, MupScalesInitAndLearningRatesByTheWidthRatio) {
  ModelConfig mc = tiny(false, 4, 2, true, true);  // untied, q/k-norm and biases: every kind
  mc.init = "mup";
  mc.mup_base_width = 32;  // the base width itself
  Transformer base(mc), normal(tiny(false, 4, 2, true, true));
  base.init(5);
  normal.init(5);
  EXPECT_TRUE(bytes_of(base.flat_params()) == bytes_of(normal.flat_params()));

  mc.mup_base_width = 8;
  EXPECT_DOUBLE_EQ(mc.mup_lr_scale(), 0.25);
  Transformer m(mc);
  EXPECT_DOUBLE_EQ(m.init_std("model.embed_tokens.weight"), 0.1);
  EXPECT_DOUBLE_EQ(m.init_std("model.layers.0.self_attn.q_proj.weight"), 0.05);
  EXPECT_DOUBLE_EQ(m.init_std("model.layers.1.mlp.down_proj.weight"), 0.05 / 2.0);  // / sqrt(2L)
  EXPECT_DOUBLE_EQ(m.init_std("lm_head.weight"), 0.025);
  init_perturbed(m, 3);
  const Tensor before = m.flat_params().to(Device::CPU);
  Batch b = random_batch(2, 8, mc.vocab_size, 4);
  m.zero_grad();
  m.forward(b.tokens, b.targets, 0.0f);
  m.backward(1.0f);
  std::vector<OptimizedTensor> ts;
  for (const Parameter& p : m.parameters()) ts.push_back({p.name, p.value, p.grad, p.decay, p.lr_scale});
  AdamWSettings s;
  s.weight_decay = 0;
  AdamW opt(ts, s);
  const double lr = 1e-3;
  opt.step(lr);
  for (const Parameter& p : m.parameters()) {
    const bool scaled = p.decay && p.name != "model.embed_tokens.weight";
    EXPECT_EQ(p.lr_scale, scaled ? 0.25f : 1.0f) << p.name;
    double most = 0;
    for (int64_t i = 0; i < p.value.numel(); ++i)
      most = std::max(most, std::abs(double(p.value.host<float>()[i]) -
                                     double(before.host<float>()[p.offset + i])));
    EXPECT_NEAR(most, lr * p.lr_scale, 1e-3 * lr) << p.name;
  }
}

// ---- Transformer: gradients vs finite differences ------------------------------------------

// For every parameter tensor, compare the analytic directional derivative g·u with the central
// difference (L(θ+εu) - L(θ-εu)) / 2ε along three unit directions: u = g/|g| (derivative |g|,
// the largest signal) and two random ones. ε = 1e-2 (a step of norm 1e-2 in that tensor): the
// float forward's rounding noise (~1e-6 in the loss) costs ~5e-5 in the difference quotient,
// the truncation error O(ε²) stays well below the 1% tolerance.
void check_gradients(bool tied, int64_t Hkv, bool recompute, bool qwen2 = false) {
  ModelConfig mc = tiny(tied, 4, Hkv, !qwen2, qwen2);
  Transformer m(mc);
  init_perturbed(m, 11);
  m.set_recompute(recompute);
  const int64_t B = 2, T = 8;
  Batch b = random_batch(B, T, mc.vocab_size, 5);
  const float z_loss = 1e-2f;
  m.zero_grad();
  m.forward(b.tokens, b.targets, z_loss);
  m.backward(1.0f);
  std::vector<float> grads = to_vec(m.flat_grads());

  const double eps = 1e-2;
  int checked = 0;
  double worst = 0;
  for (const Parameter& p : m.parameters()) {
    const int64_t n = p.value.numel();
    float* v = p.value.host<float>();
    const std::vector<float> saved(v, v + n);
    const float* g = grads.data() + p.offset;
    double gnorm = 0;
    for (int64_t i = 0; i < n; ++i) gnorm += double(g[i]) * g[i];
    gnorm = std::sqrt(gnorm);
    ASSERT_GT(gnorm, 0) << p.name << " has a zero gradient";
    for (int dir = 0; dir < 3; ++dir) {
      std::vector<double> u(n);
      double unorm = 0;
      for (int64_t i = 0; i < n; ++i) {
        u[i] = dir == 0 ? g[i] : rng::normal(1000 + dir, rng::hash_string(p.name), uint64_t(i));
        unorm += u[i] * u[i];
      }
      for (double& x : u) x /= std::sqrt(unorm);
      double analytic = 0;
      for (int64_t i = 0; i < n; ++i) analytic += double(g[i]) * u[i];
      auto loss_at = [&](double s) {
        for (int64_t i = 0; i < n; ++i) v[i] = float(saved[i] + s * u[i]);
        return m.forward(b.tokens, b.targets, z_loss).loss;
      };
      const double fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
      std::copy(saved.begin(), saved.end(), v);
      const double noise = 2e-4;
      const double err = std::abs(fd - analytic);
      const double rel = err / std::max(std::abs(analytic), 1e-12);
      if (std::abs(analytic) > 20 * noise) worst = std::max(worst, rel);
      if (getenv("RETORT_FD_VERBOSE"))
        std::printf("    %-45s dir %d  analytic % .6e  fd % .6e  rel %.1e\n", p.name.c_str(), dir,
                    analytic, fd, rel);
      EXPECT_LE(err, 0.01 * std::abs(analytic) + noise)
          << p.name << " dir " << dir << ": finite difference " << fd << " vs analytic " << analytic;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * int(m.parameters().size()));
  std::printf("  %zu tensors x 3 directions, worst relative error %.2e\n", m.parameters().size(), worst);
  // The direction u = g/|g| always has a large signal: the test can fail on a wrong gradient.
  EXPECT_LT(worst, 0.01);
}

TEST(Transformer, GradientMatchesFiniteDifferencesTiedGQA) { check_gradients(true, 2, false); }
TEST(Transformer, GradientMatchesFiniteDifferencesUntiedGQA) { check_gradients(false, 2, false); }
TEST(Transformer, GradientMatchesFiniteDifferencesUntiedMHARecompute) { check_gradients(false, 4, true); }
TEST(Transformer, GradientMatchesFiniteDifferencesQkvBias) { check_gradients(true, 2, false, true); }

// ---- Transformer: recompute, determinism, accumulation, evaluate -----------------------------

TEST(Transformer, RecomputeGivesBitwiseIdenticalGradients) {
  for (bool qk : {true, false}) {
    ModelConfig mc = tiny(false, 4, 2, qk);
    Batch b = random_batch(3, 7, mc.vocab_size, 9);  // T < seq_len
    std::vector<float> g[2];
    double loss[2];
    for (int r = 0; r < 2; ++r) {
      Transformer m(mc);
      init_perturbed(m, 3);
      m.set_recompute(r == 1);
      m.zero_grad();
      loss[r] = m.forward(b.tokens, b.targets, 1e-3f).loss;
      m.backward(1.0f);
      g[r] = to_vec(m.flat_grads());
    }
    EXPECT_EQ(loss[0], loss[1]);
    ASSERT_EQ(g[0].size(), g[1].size());
    EXPECT_EQ(std::memcmp(g[0].data(), g[1].data(), g[0].size() * sizeof(float)), 0)
        << "qk_norm " << qk;
  }
}

TEST(Transformer, ForwardIsDeterministicAndEvaluateMatches) {
  ModelConfig mc = tiny(true);
  Transformer m(mc);
  init_perturbed(m, 4);
  Batch b = random_batch(2, 8, mc.vocab_size, 2);
  LossResult r1 = m.forward(b.tokens, b.targets, 1e-4f);
  std::vector<float> logits1 = to_vec(m.logits());
  LossResult r2 = m.forward(b.tokens, b.targets, 1e-4f);
  EXPECT_EQ(r1.loss, r2.loss);
  EXPECT_EQ(r1.ce, r2.ce);
  EXPECT_EQ(r1.z, r2.z);
  EXPECT_EQ(logits1, to_vec(m.logits()));
  EXPECT_DOUBLE_EQ(r1.loss, r1.ce + double(1e-4f) * r1.z);
  EXPECT_GT(r1.ce, 0);
  // The forward-only path gives the same CE, and then backward needs a new forward.
  EXPECT_EQ(m.evaluate(b.tokens, b.targets), r1.ce);
  EXPECT_EQ(logits1, to_vec(m.logits()));
  EXPECT_THROW(m.backward(1.0f), Error);
  // A smaller batch after a larger one (buffers reused) and back.
  Batch s = random_batch(1, 5, mc.vocab_size, 3);
  const double small = m.forward(s.tokens, s.targets, 0).ce;
  EXPECT_EQ(m.forward(b.tokens, b.targets, 1e-4f).loss, r1.loss);
  EXPECT_EQ(m.evaluate(s.tokens, s.targets), small);
}

// A model built without gradients (a loaded teacher, eval) holds no gradient buffer, gives
// bitwise the same forward as one with, and refuses backward.
TEST(Transformer, ModelWithoutGradientsRunsForwardOnly) {
  ModelConfig mc = tiny(false);
  Transformer full(mc), frozen(mc, {}, Device::CPU, Transformer::Gradients::None);
  init_perturbed(full, 4);
  ops::copy(frozen.flat_params(), full.flat_params());
  EXPECT_FALSE(frozen.flat_grads().defined());
  for (const Parameter& p : frozen.parameters()) EXPECT_FALSE(p.grad.defined()) << p.name;
  Batch b = random_batch(2, 8, mc.vocab_size, 5);
  const LossResult a = full.forward(b.tokens, b.targets, 1e-4f), f = frozen.forward(b.tokens, b.targets, 1e-4f);
  EXPECT_EQ(a.loss, f.loss);
  EXPECT_EQ(to_vec(full.logits()), to_vec(frozen.logits()));
  EXPECT_NE(test::error_of([&] { frozen.backward(1.0f); }).find("without gradients"), std::string::npos);
}

// bf16 weight copies (TrainStep arms them for a step's micro-batches): armed, a forward gives
// bitwise the unarmed bf16 result and reads the copy — a change of the parameters after arming
// does not show until the copies are disarmed (which is why TrainStep disarms them before the
// optimizer step); at fp32 precision arming does nothing.
TEST(Transformer, Bf16WeightCopiesAreUsedUntilDisarmed) {
  ModelConfig mc = tiny(false);
  Transformer m(mc);
  init_perturbed(m, 4);
  Batch b = random_batch(2, 8, mc.vocab_size, 2);
  Tensor wv;  // a weight that only products read (q, k are normed: scale-free)
  for (const Parameter& p : m.parameters())
    if (p.name.find("v_proj") != std::string::npos) wv = p.value;
  ASSERT_TRUE(wv.defined());
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  const double plain = m.forward(b.tokens, b.targets, 0).loss;
  {
    Bf16WeightsScope armed(m);
    EXPECT_EQ(m.forward(b.tokens, b.targets, 0).loss, plain);
    ops::scale_inplace(wv, 0.5f);  // the copy keeps the old values
    EXPECT_EQ(m.forward(b.tokens, b.targets, 0).loss, plain);
  }
  const double halved = m.forward(b.tokens, b.targets, 0).loss;
  EXPECT_NE(halved, plain);
  {
    Bf16WeightsScope armed(m);  // armed again: a fresh copy of the halved weight
    EXPECT_EQ(m.forward(b.tokens, b.targets, 0).loss, halved);
  }
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  const double fp32 = m.forward(b.tokens, b.targets, 0).loss;
  Bf16WeightsScope armed(m);  // no-op at fp32
  ops::scale_inplace(wv, 2.0f);
  EXPECT_NE(m.forward(b.tokens, b.targets, 0).loss, fp32);
}

// bf16 logits (set_bf16_logits, as TrainStep under train.precision: bf16): the head's product
// rounded once, the loss read from them (the CE of the fp32-output logits rounded), and
// backward's bf16 dlogits written over them. fp32 products, or a LogitsLoss, keep fp32 logits.
TEST(Transformer, Bf16LogitsAreTheHeadRoundedAndTakeTheirGradientInPlace) {
  ModelConfig mc = tiny(true);
  Transformer m(mc);
  init_perturbed(m, 5);
  const int64_t R = 2 * 8, V = mc.vocab_size;
  Batch b = random_batch(2, 8, V, 3);
  const float z = 1e-3f;
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  const LossResult wide = m.forward(b.tokens, b.targets, z);
  ASSERT_EQ(m.logits().dtype(), DType::F32);
  Tensor l16 = Tensor::empty({R, V}, DType::BF16), lse = Tensor::empty({R}), ce = Tensor::empty({R});
  ops::convert(l16, m.logits());
  ops::cross_entropy_forward(ce, lse, l16, b.targets);
  double want = 0;
  for (int64_t r = 0; r < R; ++r) want += ce.data<float>()[r];
  want /= double(R);

  m.set_bf16_logits(true);
  const LossResult r16 = m.forward(b.tokens, b.targets, z);
  ASSERT_EQ(m.logits().dtype(), DType::BF16);
  EXPECT_NEAR(r16.ce, want, 1e-6 * want);
  EXPECT_NE(r16.ce, wide.ce);  // the rounding shows
  const Tensor logits16 = m.logits();
  EXPECT_EQ(std::memcmp(logits16.raw(), l16.raw(), size_t(R * V) * 2), 0) << "the product rounded once";
  Tensor dl16 = Tensor::empty({R, V}, DType::BF16);
  ops::cross_entropy_backward(dl16, l16, lse, b.targets, 0.5f / float(R), 0.5f * z / float(R));
  m.zero_grad();
  m.backward(0.5f);
  EXPECT_EQ(std::memcmp(logits16.raw(), dl16.raw(), size_t(R * V) * 2), 0)
      << "dlogits written over the logits";
  EXPECT_NEAR(m.evaluate(b.tokens, b.targets), want, 1e-6 * want) << "evaluate reads them too";

  DistillLoss kd(0.5, 1.0, ops::KdTail::Renormalize);
  kd.set_teacher_logits(Tensor::zeros({R, V}));
  m.set_logits_loss(&kd, kd.ce_weight());
  m.forward(b.tokens, b.targets, z);
  EXPECT_EQ(m.logits().dtype(), DType::F32) << "a LogitsLoss reads fp32 logits";
  m.set_logits_loss(nullptr);
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  m.forward(b.tokens, b.targets, z);
  EXPECT_EQ(m.logits().dtype(), DType::F32) << "fp32 products";
}

// forward() given the backward's grad_scale writes the loss's dlogits in the same pass as the
// loss (TrainStep's way): the loss and every gradient are bitwise those of forward() then
// backward(), for each dlogits a model has — fp32 in place, bf16 apart from fp32 logits, bf16
// in place over bf16 logits, and fp32 apart under a LogitsLoss — and backward() refuses
// another scale.
TEST(Transformer, ForwardGivenTheGradScaleGivesTheSameGradients) {
  ModelConfig mc = tiny(true);
  Transformer m(mc);
  init_perturbed(m, 7);
  const int64_t R = 2 * 8, V = mc.vocab_size;
  Batch b = random_batch(2, 8, V, 4);
  const float z = 1e-3f, scale = 0.5f;
  DistillLoss kd(0.5, 1.0, ops::KdTail::Renormalize);
  Tensor teacher = Tensor::empty({R, V});
  for (int64_t i = 0; i < R * V; ++i) teacher.host<float>()[i] = float(rng::normal(5, 1, i));
  kd.set_teacher_logits(teacher);
  struct Case { const char* what; ops::MatmulPrecision precision; bool bf16_logits; bool kd; };
  for (const Case& c : {Case{"fp32", ops::MatmulPrecision::F32, false, false},
                        Case{"bf16 products, fp32 logits", ops::MatmulPrecision::BF16, false, false},
                        Case{"bf16 logits", ops::MatmulPrecision::BF16, true, false},
                        Case{"LogitsLoss", ops::MatmulPrecision::BF16, true, true}}) {
    ops::set_matmul_precision(c.precision);
    m.set_bf16_logits(c.bf16_logits);
    m.set_logits_loss(c.kd ? &kd : nullptr, c.kd ? kd.ce_weight() : 1.0f);
    m.zero_grad();
    const LossResult apart = m.forward(b.tokens, b.targets, z);
    const std::vector<uint8_t> logits = bytes_of(m.logits());
    m.backward(scale);
    const std::vector<float> want = to_vec(m.flat_grads());
    m.zero_grad();
    const LossResult fused = m.forward(b.tokens, b.targets, z, scale);
    // dlogits in place (fp32, bf16 logits) over the logits after the forward already
    const bool in_place = !c.kd && (c.precision == ops::MatmulPrecision::F32 || c.bf16_logits);
    EXPECT_EQ(bytes_of(m.logits()) != logits, in_place) << c.what;
    m.backward(scale);
    EXPECT_EQ(fused.loss, apart.loss) << c.what;
    EXPECT_EQ(fused.z, apart.z) << c.what;
    EXPECT_EQ(to_vec(m.flat_grads()), want) << c.what;
  }
  m.set_logits_loss(nullptr);
  m.forward(b.tokens, b.targets, z, scale);
  const std::string msg = test::error_of([&] { m.backward(0.25f); });
  EXPECT_NE(msg.find("backward(0.25) after a forward that wrote the loss's gradient at grad_scale 0.5"),
            std::string::npos)
      << msg;
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
}

TEST(Transformer, BackwardAccumulatesScaledGradients) {
  ModelConfig mc = tiny(true);
  Transformer m(mc);
  init_perturbed(m, 6);
  Batch b = random_batch(2, 8, mc.vocab_size, 8);
  m.zero_grad();
  m.forward(b.tokens, b.targets, 1e-3f);
  m.backward(1.0f);
  std::vector<float> g1 = to_vec(m.flat_grads());
  // two micro-batches of the same data at 0.5 each = one at 1.0 (up to rounding)
  m.zero_grad();
  for (int i = 0; i < 2; ++i) {
    m.forward(b.tokens, b.targets, 1e-3f);
    m.backward(0.5f);
  }
  std::vector<float> g2 = to_vec(m.flat_grads());
  double num = 0, den = 0;
  for (size_t i = 0; i < g1.size(); ++i) {
    num += double(g1[i] - g2[i]) * (g1[i] - g2[i]);
    den += double(g1[i]) * g1[i];
  }
  EXPECT_LT(std::sqrt(num / den), 1e-6);
  m.zero_grad();
  for (float x : to_vec(m.flat_grads())) ASSERT_EQ(x, 0.0f);
}

TEST(Transformer, BadBatchesAreRejected) {
  ModelConfig mc = tiny(true);
  Transformer m(mc);
  m.init(1);
  EXPECT_THROW(m.backward(1.0f), Error);  // no forward yet
  Batch too_long = random_batch(1, 9, mc.vocab_size, 1);  // T > seq_len = 8
  try {
    m.forward(too_long.tokens, too_long.targets, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seq_len"), std::string::npos) << e.what();
  }
  Batch ok = random_batch(2, 4, mc.vocab_size, 1);
  Tensor wrong_shape = Tensor::zeros({2, 3}, DType::I32);
  EXPECT_THROW(m.forward(ok.tokens, wrong_shape, 0), Error);
  Tensor floats = Tensor::zeros({2, 4}, DType::F32);
  EXPECT_THROW(m.forward(floats, ok.targets, 0), Error);
  ok.targets.host<int32_t>()[5] = int32_t(mc.vocab_size);
  try {
    m.forward(ok.tokens, ok.targets, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target id 64 at position 5"), std::string::npos) << e.what();
  }
  ok.tokens.host<int32_t>()[0] = -1;
  EXPECT_THROW(m.evaluate(ok.tokens, ok.targets), Error);
  Tensor flat = Tensor::zeros({8}, DType::I32);
  EXPECT_THROW(m.evaluate(flat, flat), Error);
}

TEST(Transformer, BindRepointsViewsAtExternalBuffers) {
  ModelConfig mc = tiny(true);
  Transformer m(mc);
  m.init(2);
  Batch b = random_batch(2, 8, mc.vocab_size, 4);
  const double ref = m.forward(b.tokens, b.targets, 0).loss;
  Tensor p = Tensor::empty({m.num_params()}), g = Tensor::zeros({m.num_params()});
  std::memcpy(p.host<float>(), m.flat_params().host<float>(), p.nbytes());
  Transformer m2(mc);
  m2.bind(p, g);
  EXPECT_TRUE(m2.parameters()[3].value.same_storage(p));
  EXPECT_EQ(m2.forward(b.tokens, b.targets, 0).loss, ref);
  m2.backward(1.0f);
  EXPECT_GT(std::abs(g.host<float>()[0]) + std::abs(g.host<float>()[m.num_params() - 1]), 0.0f);
  EXPECT_THROW(m2.bind(Tensor::zeros({3}), g), Error);
}
