// The model's unit seam (what FSDP wraps): unit ranges tile the flat layout, the hooks come in
// the documented order, and a model whose units are bound to outside buffers by its hooks
// computes the same loss and gradients as the plain model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "core/ops.h"
#include "core/random.h"
#include "models/transformer.h"

using namespace retort;

namespace {

ModelConfig tiny(bool tied) {
  ModelConfig m;
  m.vocab_size = 64;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.seq_len = 8;
  m.tie_embeddings = tied;
  m.init_std = 0.1;
  m.resolve();
  return m;
}

void batch(Tensor& tokens, Tensor& targets) {
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    tokens.host<int32_t>()[i] = int32_t(rng::uniform(1, 1, i) * 64);
    targets.host<int32_t>()[i] = int32_t(rng::uniform(1, 2, i) * 64);
  }
}

std::vector<float> to_vec(const Tensor& t) {
  return std::vector<float>(t.host<float>(), t.host<float>() + t.numel());
}

// Binds each unit to a fresh copy of its parameters and a zeroed gradient buffer; after a
// unit's backward adds that buffer into `grads`. Records the calls.
struct CopyingHooks : Transformer::UnitHooks {
  Transformer& m;
  std::vector<float> params, grads;
  std::map<int, Tensor> g_bound;
  std::string log;
  std::vector<float> params16;  // when not empty: bound as the unit's bf16 parameters, rounded,
                                // with its norm gains packed from `params`
  CopyingHooks(Transformer& model, std::vector<float> p) : m(model), params(std::move(p)), grads(params.size()) {}
  Tensor copy_of(int u, const std::vector<float>& from) {
    auto [b, e] = m.unit_range(u);
    Tensor t = Tensor::empty({e - b});
    std::memcpy(t.host<float>(), from.data() + b, (e - b) * sizeof(float));
    return t;
  }
  Tensor copy_of(int u) { return copy_of(u, params); }
  void bind(int u, const Tensor& g) {
    if (params16.empty()) return m.bind_unit(u, copy_of(u), g);
    Tensor p = copy_of(u, params16), p16 = Tensor::empty(p.shape(), DType::BF16);
    ops::convert(p16, p);
    Tensor gains = Tensor::empty({m.unit_gain_elems(u)});
    const float* from = params.data() + m.unit_range(u).first;
    int64_t packed = 0;
    for (const auto& [b, e] : m.unit_gain_runs(u))
      for (int64_t i = b; i < e; ++i) gains.host<float>()[packed++] = from[i];
    m.bind_unit(u, gains, g, p16);
  }
  void before_forward(int u) override { log += "F" + std::to_string(u); bind(u, Tensor()); }
  void after_forward(int u) override { log += "f" + std::to_string(u); m.bind_unit(u, Tensor(), Tensor()); }
  void before_backward(int u) override {
    log += "B" + std::to_string(u);
    auto [b, e] = m.unit_range(u);
    g_bound[u] = Tensor::zeros({e - b});
    bind(u, g_bound[u]);
  }
  void after_backward(int u) override {
    log += "b" + std::to_string(u);
    auto [b, e] = m.unit_range(u);
    for (int64_t i = 0; i < e - b; ++i) grads[b + i] += g_bound[u].host<float>()[i];
    m.bind_unit(u, Tensor(), Tensor());
  }
};

}  // namespace

TEST(UnitHooks, UnitsTileTheFlatLayout) {
  for (bool tied : {true, false}) {
    Transformer m(tiny(tied));
    ASSERT_EQ(m.num_units(), 4);
    int64_t end = 0;
    for (int u = 0; u < m.num_units(); ++u) {
      auto [b, e] = m.unit_range(u);
      EXPECT_EQ(b, end);
      EXPECT_GT(e, b);
      end = e;
    }
    EXPECT_EQ(end, m.num_params());
    EXPECT_EQ(m.unit_range(1).first, m.parameter("model.layers.0.input_layernorm.weight").offset);
    // The norm gains of a layer: input_layernorm, then q_norm, k_norm, post_attention_layernorm
    // side by side; of the head: the final norm; the embedding has none.
    const auto at = [&](const std::string& name, int u) {
      return m.parameter(name).offset - m.unit_range(u).first;
    };
    const int64_t d = 32, hd = 8;
    using Runs = std::vector<std::pair<int64_t, int64_t>>;
    const std::string l1 = "model.layers.1.";
    EXPECT_EQ(m.unit_gain_runs(2), (Runs{{0, d},
                                         {at(l1 + "self_attn.q_norm.weight", 2),
                                          at(l1 + "post_attention_layernorm.weight", 2) + d}}));
    EXPECT_EQ(at(l1 + "post_attention_layernorm.weight", 2),
              at(l1 + "self_attn.q_norm.weight", 2) + 2 * hd);
    EXPECT_EQ(m.unit_gain_elems(2), 2 * d + 2 * hd);
    EXPECT_EQ(m.unit_gain_runs(3), (Runs{{0, d}}));
    EXPECT_TRUE(m.unit_gain_runs(0).empty());
    EXPECT_EQ(m.unit_range(3).first, m.parameter("model.norm.weight").offset);
  }
}

TEST(UnitHooks, BoundUnitsGiveTheSameLossAndGradients) {
  for (bool tied : {true, false})
    for (bool recompute : {false, true}) {
      SCOPED_TRACE(testing::Message() << "tied " << tied << " recompute " << recompute);
      Tensor tokens = Tensor::empty({2, 8}, DType::I32), targets = Tensor::empty({2, 8}, DType::I32);
      batch(tokens, targets);
      Transformer plain(tiny(tied));
      plain.init(4);
      plain.set_recompute(recompute);
      plain.zero_grad();
      const LossResult want = plain.forward(tokens, targets, 1e-3f);
      plain.backward(1.0f);
      const double want_eval = plain.evaluate(tokens, targets);

      Transformer m(tiny(tied));
      m.init(4);
      m.set_recompute(recompute);
      CopyingHooks hooks(m, to_vec(m.flat_params()));
      m.release_flat();
      EXPECT_FALSE(m.flat_params().defined());
      EXPECT_THROW(m.forward(tokens, targets, 1e-3f), Error);  // released, no hooks
      m.set_unit_hooks(&hooks);
      const LossResult got = m.forward(tokens, targets, 1e-3f);
      m.backward(1.0f);
      EXPECT_EQ(got.loss, want.loss);
      EXPECT_EQ(hooks.log, tied ? "F0f0F1f1F2f2F3F0f0f3B3B0b0b3B2b2B1b1B0b0"
                                : "F0f0F1f1F2f2F3f3B3b3B2b2B1b1B0b0");
      std::vector<float> g = to_vec(plain.flat_grads());
      if (tied) {  // the embedding's two contributions are added in another order
        for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(hooks.grads[i], g[i], 1e-6 + 1e-5 * std::abs(g[i])) << i;
      } else {
        EXPECT_EQ(hooks.grads, g);
      }
      hooks.log.clear();
      EXPECT_EQ(m.evaluate(tokens, targets), want_eval);
      EXPECT_EQ(hooks.log, tied ? "F0f0F1f1F2f2F3F0f0f3" : "F0f0F1f1F2f2F3f3");
      m.set_unit_hooks(nullptr);
    }
}

// A unit bound with bf16 parameters (fsdp's bf16 gathers) feeds them to the products and the
// embedding lookup, and its norm gains come from the packed fp32 gains: with the parameters
// bf16-representable, layer 0's matrices doubled in the bf16 buffer and its gains doubled
// there too (but not in the fp32 gains), loss and gradients are bitwise those of the plain
// model whose layer-0 matrices alone are doubled, and not those of the undoubled one.
TEST(UnitHooks, Bf16UnitFeedsTheProducts) {
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  Tensor tokens = Tensor::empty({2, 8}, DType::I32), targets = Tensor::empty({2, 8}, DType::I32);
  batch(tokens, targets);
  for (bool tied : {false, true}) {
    SCOPED_TRACE(testing::Message() << "tied " << tied);
    Transformer plain(tiny(tied)), doubled(tiny(tied)), m(tiny(tied));
    for (Transformer* t : {&plain, &doubled, &m}) {
      t->init(4);
      Tensor rounded = Tensor::empty({t->num_params()}, DType::BF16);
      ops::convert(rounded, t->flat_params());
      ops::convert(t->flat_params(), rounded);
    }
    for (const Parameter& p : doubled.parameters())
      if (p.name.rfind("model.layers.0.", 0) == 0 && p.shape.size() == 2) {
        Tensor v = p.value;
        ops::scale_inplace(v, 2.0f);
      }
    std::vector<float> poisoned = to_vec(doubled.flat_params());  // layer 0's gains doubled too
    for (const Parameter& p : doubled.parameters())
      if (p.name.rfind("model.layers.0.", 0) == 0 && p.shape.size() == 1)
        for (int64_t i = 0; i < p.value.numel(); ++i) poisoned[p.offset + i] *= 2.0f;
    auto run = [&](Transformer& t) {
      t.zero_grad();
      const double loss = t.forward(tokens, targets, 1e-3f).loss;
      t.backward(1.0f);
      return loss;
    };
    const double want = run(doubled), undoubled = run(plain);
    CopyingHooks hooks(m, to_vec(m.flat_params()));
    hooks.params16 = poisoned;
    m.release_flat();
    m.set_unit_hooks(&hooks);
    EXPECT_EQ(run(m), want);
    EXPECT_NE(want, undoubled);
    std::vector<float> g = to_vec(doubled.flat_grads());
    if (tied) {  // the embedding's two contributions are added in another order
      for (size_t i = 0; i < g.size(); ++i)
        ASSERT_NEAR(hooks.grads[i], g[i], 1e-6 + 1e-5 * std::abs(g[i])) << i;
    } else {
      EXPECT_EQ(hooks.grads, g);
    }
    m.set_unit_hooks(nullptr);
    Tensor p16 = Tensor::empty({m.unit_range(1).second}, DType::BF16);
    EXPECT_THROW(m.bind_unit(1, Tensor(), Tensor(), p16), Error);  // no fp32 gains
  }
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  Transformer fp32(tiny(false));
  Tensor p = Tensor::empty({fp32.unit_range(1).second}), p16 = Tensor::empty(p.shape(), DType::BF16);
  EXPECT_THROW(fp32.bind_unit(1, p, Tensor(), p16), Error);  // bf16 weights under fp32 products
}
