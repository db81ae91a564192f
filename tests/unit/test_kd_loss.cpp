// Knowledge-distillation loss (core/ops.h "knowledge distillation", models/distill_loss.h):
// (1) forward KL and the gradient against a double-precision reference written from the
//     definition (docs/DISTILLATION.md), the gradient by central finite differences of it;
// (2) backward adds into dlogits and scales; (3) in the model: the loss composes as
//     (1−λ)·CE + λτ²·KL + z (finite differences through the whole model), and a student
//     initialised as its teacher has KL ≈ 0 and zero KD gradient.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <vector>

#include "core/ops.h"
#include "core/random.h"
#include "models/distill_loss.h"
#include "models/transformer.h"
#include "tests/unit/test_support.h"

using namespace retort;

namespace {

constexpr uint64_t kSeed = 4242;
constexpr int64_t R = 7, V = 50, K = 8;

Tensor randn(const Shape& s, uint64_t stream, double scale) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(scale * rng::normal(kSeed, stream, i));
  return t;
}

using test::TopK;
TopK make_topk(const Tensor& teacher, double tau) { return test::teacher_topk(teacher, tau, K); }

// ---- double reference, straight from the definitions -------------------------------------
enum class Mode { Renormalize, Bucket, Dense };

// Σ_r KL_r for logits z (double), teacher top-k or teacher logits.
double ref_loss(const std::vector<double>& z, Mode mode, const TopK& tk, const Tensor& teacher, double tau) {
  double total = 0;
  for (int64_t r = 0; r < R; ++r) {
    const double* x = z.data() + r * V;
    double m = -1e300, s = 0;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, x[v] / tau);
    for (int64_t v = 0; v < V; ++v) s += std::exp(x[v] / tau - m);
    auto logq = [&](int64_t v) { return x[v] / tau - m - std::log(s); };
    if (mode == Mode::Dense) {
      const float* t = teacher.data<float>() + r * V;
      double mt = -1e300, st = 0;
      for (int64_t v = 0; v < V; ++v) mt = std::max(mt, t[v] / tau);
      for (int64_t v = 0; v < V; ++v) st += std::exp(t[v] / tau - mt);
      for (int64_t v = 0; v < V; ++v) {
        const double lp = t[v] / tau - mt - std::log(st);
        total += std::exp(lp) * (lp - logq(v));
      }
      continue;
    }
    const int32_t* id = tk.ids.data<int32_t>() + r * K;
    const float* lp = tk.logp.data<float>() + r * K;
    double psum = 0, qin = 0;
    for (int64_t i = 0; i < K; ++i) psum += std::exp(double(lp[i])), qin += std::exp(logq(id[i]));
    for (int64_t i = 0; i < K; ++i) {
      const double p = mode == Mode::Renormalize ? std::exp(double(lp[i])) / psum : std::exp(double(lp[i]));
      total += p * (std::log(p) - logq(id[i]));
    }
    if (mode == Mode::Bucket) {
      const double P = 1 - psum, Q = 1 - qin;
      if (P > 0) total += P * (std::log(P) - std::log(Q));
    }
  }
  return total;
}

struct OpResult {
  Tensor kl = Tensor::empty({R}), lse = Tensor::empty({R}), aux = Tensor::empty({R});
};

OpResult op_forward(const Tensor& z, Mode mode, const TopK& tk, const Tensor& teacher, float tau) {
  OpResult o;
  if (mode == Mode::Dense) ops::kd_dense_forward(o.kl, o.lse, o.aux, z, teacher, tau);
  else
    ops::kd_topk_forward(o.kl, o.lse, o.aux, z, tk.ids, tk.logp, tau,
                         mode == Mode::Bucket ? ops::KdTail::Bucket : ops::KdTail::Renormalize);
  return o;
}

void op_backward(Tensor& d, const Tensor& z, const OpResult& o, Mode mode, const TopK& tk,
                 const Tensor& teacher, float tau, float scale) {
  if (mode == Mode::Dense) ops::kd_dense_backward(d, z, o.lse, teacher, o.aux, tau, scale);
  else
    ops::kd_topk_backward(d, z, o.lse, o.aux, tk.ids, tk.logp, tau,
                          mode == Mode::Bucket ? ops::KdTail::Bucket : ops::KdTail::Renormalize, scale);
}

class KdOp : public ::testing::TestWithParam<std::tuple<Mode, double>> {};

TEST_P(KdOp, ForwardAndGradientMatchDoubleReferenceAndFiniteDifferences) {
  const auto [mode, tau] = GetParam();
  Tensor z = randn({R, V}, 1, 2.0), teacher = randn({R, V}, 2, 2.5);
  const TopK tk = make_topk(teacher, tau);
  std::vector<double> zd(z.data<float>(), z.data<float>() + R * V);

  // Forward: Σ_r kl_r vs the reference, and per row.
  OpResult o = op_forward(z, mode, tk, teacher, float(tau));
  double sum = 0;
  for (int64_t r = 0; r < R; ++r) sum += o.kl.data<float>()[r];
  const double ref = ref_loss(zd, mode, tk, teacher, tau);
  ASSERT_GT(ref, 1e-2);  // a real divergence, not a degenerate zero
  EXPECT_NEAR(sum, ref, 1e-5 * ref + 1e-6);

  // Backward adds scale · dKL/dz on top of what dlogits holds.
  const float scale = 0.37f;
  Tensor base = randn({R, V}, 3, 0.1), d = randn({R, V}, 3, 0.1);
  op_backward(d, z, o, mode, tk, teacher, float(tau), scale);
  // Central differences of the double reference: every element.
  const double eps = 1e-5;
  double gmax = 0, err = 0;
  for (int64_t i = 0; i < R * V; ++i) {
    std::vector<double> zp = zd, zm = zd;
    zp[i] += eps;
    zm[i] -= eps;
    const double fd = (ref_loss(zp, mode, tk, teacher, tau) - ref_loss(zm, mode, tk, teacher, tau)) / (2 * eps);
    const double got = (double(d.data<float>()[i]) - base.data<float>()[i]) / scale;
    gmax = std::max(gmax, std::abs(fd));
    err = std::max(err, std::abs(got - fd));
  }
  ASSERT_GT(gmax, 1e-3);
  EXPECT_LT(err, 2e-5 * std::max(1.0, gmax)) << "max |grad − fd| (max |fd| " << gmax << ")";
}

INSTANTIATE_TEST_SUITE_P(Modes, KdOp,
                         ::testing::Values(std::make_tuple(Mode::Renormalize, 1.0),
                                           std::make_tuple(Mode::Renormalize, 2.0),
                                           std::make_tuple(Mode::Bucket, 1.0),
                                           std::make_tuple(Mode::Bucket, 0.7),
                                           std::make_tuple(Mode::Dense, 1.0),
                                           std::make_tuple(Mode::Dense, 2.0)));

TEST(KdOp, IdenticalDistributionsGiveZeroLossAndGradient) {
  Tensor z = randn({R, V}, 5, 2.0);
  OpResult o = op_forward(z, Mode::Dense, TopK{}, z, 1.5f);
  Tensor d = Tensor::zeros({R, V});
  op_backward(d, z, o, Mode::Dense, TopK{}, z, 1.5f, 1.0f);
  for (int64_t r = 0; r < R; ++r) EXPECT_NEAR(o.kl.data<float>()[r], 0.0, 1e-6);
  for (int64_t i = 0; i < R * V; ++i) ASSERT_NEAR(d.data<float>()[i], 0.0, 1e-7);
}

TEST(KdOp, BucketWithTheWholeVocabularyEqualsRenormalize) {
  // k = V: no tail on either side, so both options are the full KL.
  Tensor z = randn({2, 6}, 6, 1.0), t = randn({2, 6}, 7, 1.0);
  Tensor ids = Tensor::empty({2, 6}, DType::I32), lp = Tensor::empty({2, 6});
  for (int64_t r = 0; r < 2; ++r) {
    double m = -1e300, s = 0;
    for (int v = 0; v < 6; ++v) m = std::max(m, double(t.data<float>()[r * 6 + v]));
    for (int v = 0; v < 6; ++v) s += std::exp(t.data<float>()[r * 6 + v] - m);
    for (int v = 0; v < 6; ++v) {
      ids.data<int32_t>()[r * 6 + v] = v;
      lp.data<float>()[r * 6 + v] = float(t.data<float>()[r * 6 + v] - m - std::log(s));
    }
  }
  Tensor kl1 = Tensor::empty({2}), kl2 = Tensor::empty({2}), kl3 = Tensor::empty({2});
  Tensor l = Tensor::empty({2}), a = Tensor::empty({2});
  ops::kd_topk_forward(kl1, l, a, z, ids, lp, 1.0f, ops::KdTail::Renormalize);
  ops::kd_topk_forward(kl2, l, a, z, ids, lp, 1.0f, ops::KdTail::Bucket);
  ops::kd_dense_forward(kl3, l, a, z, t, 1.0f);
  for (int r = 0; r < 2; ++r) {
    EXPECT_NEAR(kl1.data<float>()[r], kl3.data<float>()[r], 1e-5);
    EXPECT_NEAR(kl2.data<float>()[r], kl3.data<float>()[r], 1e-5);
  }
}

TEST(KdOp, BadInputsAreRejected) {
  Tensor z = randn({R, V}, 1, 1.0), teacher = randn({R, V}, 2, 1.0);
  TopK tk = make_topk(teacher, 1.0);
  OpResult o;
  tk.ids.data<int32_t>()[3] = int32_t(V);
  EXPECT_THROW(op_forward(z, Mode::Bucket, tk, teacher, 1.0f), Error);
  tk = make_topk(teacher, 1.0);
  EXPECT_THROW(op_forward(z, Mode::Bucket, tk, teacher, 0.0f), Error);
  Tensor wrong = randn({R, V - 1}, 2, 1.0);
  EXPECT_THROW(op_forward(z, Mode::Dense, tk, wrong, 1.0f), Error);
  o = op_forward(z, Mode::Dense, tk, teacher, 1.0f);
  EXPECT_THROW(op_backward(z, z, o, Mode::Dense, tk, teacher, 1.0f, 1.0f), Error);  // aliasing
}

// Vocabulary-parallel ids: each global id lands on exactly one of the shards, as id − begin;
// an id outside the vocabulary is an error naming it.
TEST(KdOp, ShardIdsSplitTheVocabulary) {
  const int64_t vocab = 12, shards = 3, Vl = vocab / shards;
  Tensor ids = Tensor::empty({2, 6}, DType::I32), out = Tensor::empty({2, 6}, DType::I32);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int32_t>()[i] = int32_t((i * 5) % vocab);
  std::vector<int> owners(size_t(ids.numel()), 0);
  for (int64_t s = 0; s < shards; ++s) {
    ops::vocab_shard_ids(out, ids, s * Vl, Vl, vocab);
    for (int64_t i = 0; i < ids.numel(); ++i) {
      const int32_t id = ids.data<int32_t>()[i], local = out.data<int32_t>()[i];
      if (local < 0) continue;
      ++owners[size_t(i)];
      EXPECT_EQ(s * Vl + local, id) << "element " << i << " on shard " << s;
      EXPECT_LT(local, Vl);
    }
  }
  for (int n : owners) EXPECT_EQ(n, 1);
  ids.data<int32_t>()[7] = int32_t(vocab);
  try {
    ops::vocab_shard_ids(out, ids, 0, Vl, vocab);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("top-k id 12 (element 7) is out of range [0, 12)"),
              std::string::npos) << e.what();
  }
}

// ---- in the model ------------------------------------------------------------------------

ModelConfig tiny_config() {
  ModelConfig mc;
  mc.vocab_size = 40;
  mc.d_model = 16;
  mc.n_layers = 1;
  mc.n_heads = 2;
  mc.seq_len = 6;
  mc.init_std = 0.3;
  mc.resolve();
  return mc;
}

Tensor random_ids(const Shape& s, uint64_t stream, int32_t n) {
  Tensor t = Tensor::empty(s, DType::I32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<int32_t>()[i] = int32_t(rng::uniform(kSeed, stream, i) * n) % n;
  return t;
}

TEST(DistillLossInModel, LossComposesAndGradientMatchesFiniteDifferences) {
  const ModelConfig mc = tiny_config();
  Transformer teacher(mc), student(mc);
  teacher.init(1);
  student.init(2);
  Tensor tokens = random_ids({2, 6}, 10, 40), targets = random_ids({2, 6}, 11, 40);
  teacher.evaluate(tokens, targets);
  Tensor tlogits = Tensor::empty(teacher.logits().shape());
  ops::copy(tlogits, teacher.logits());
  for (int mode = 0; mode < 2; ++mode) {  // 0: online (dense), 1: offline top-k with a bucket
    const double lambda = 0.6, tau = 1.7;
    DistillLoss kd(lambda, tau, ops::KdTail::Bucket);
    Tensor ids = Tensor::empty({12, 5}, DType::I32), lp = Tensor::empty({12, 5});
    if (mode == 0) {
      kd.set_teacher_logits(tlogits);
    } else {
      for (int64_t r = 0; r < 12; ++r)
        for (int64_t i = 0; i < 5; ++i) {
          ids.data<int32_t>()[r * 5 + i] = int32_t((r * 7 + i * 3) % 40);
          lp.data<float>()[r * 5 + i] = float(-1.0 - 0.5 * i);
        }
      kd.set_topk(ids, lp);
    }
    student.set_logits_loss(&kd, kd.ce_weight());
    const float z_loss = 1e-2f;
    student.zero_grad();
    LossResult lr = student.forward(tokens, targets, z_loss);
    EXPECT_NEAR(lr.extra, lambda * tau * tau * kd.last_kl(), 1e-12);
    EXPECT_NEAR(lr.loss, double(kd.ce_weight()) * lr.ce + lr.extra + z_loss * lr.z, 1e-9);  // ce_weight = float(1 − λ)
    ASSERT_GT(kd.last_kl(), 1e-3);
    student.backward(1.0f);
    Tensor grad = Tensor::empty(student.flat_grads().shape());
    ops::copy(grad, student.flat_grads());
    // Finite differences on a spread of parameters (embedding, block, final norm).
    float* p = student.flat_params().data<float>();
    double gmax = 0;
    for (int64_t i = 0; i < grad.numel(); ++i) gmax = std::max(gmax, std::abs(double(grad.data<float>()[i])));
    const double eps = 1e-2;
    for (int64_t i = 0; i < student.num_params(); i += student.num_params() / 37) {
      const float saved = p[i];
      p[i] = saved + float(eps);
      const double lp1 = student.forward(tokens, targets, z_loss).loss;
      p[i] = saved - float(eps);
      const double lm1 = student.forward(tokens, targets, z_loss).loss;
      p[i] = saved;
      EXPECT_NEAR(grad.data<float>()[i], (lp1 - lm1) / (2 * eps), 3e-3 * gmax) << "mode " << mode << " param " << i;
    }
  }
}

TEST(DistillLossInModel, StudentInitialisedAsTeacherHasZeroKlAndZeroGradient) {
  const ModelConfig mc = tiny_config();
  Transformer teacher(mc), student(mc);
  teacher.init(3);
  student.init(3);
  Tensor tokens = random_ids({2, 6}, 12, 40), targets = random_ids({2, 6}, 13, 40);
  teacher.evaluate(tokens, targets);
  DistillLoss kd(1.0, 2.0, ops::KdTail::Renormalize);  // λ = 1: KD only
  kd.set_teacher_logits(teacher.logits());
  student.set_logits_loss(&kd, kd.ce_weight());
  student.zero_grad();
  LossResult r = student.forward(tokens, targets, 0.0f);
  EXPECT_NEAR(kd.last_kl(), 0.0, 1e-7);
  EXPECT_NEAR(r.loss, 0.0, 1e-6);
  student.backward(1.0f);
  const float* g = student.flat_grads().data<float>();
  for (int64_t i = 0; i < student.num_params(); ++i) ASSERT_NEAR(g[i], 0.0f, 1e-7f) << "param element " << i;

  // Control: a different student gets a non-zero gradient from the same loss.
  student.init(4);
  student.zero_grad();
  student.forward(tokens, targets, 0.0f);
  student.backward(1.0f);
  double gmax = 0;
  for (int64_t i = 0; i < student.num_params(); ++i) gmax = std::max(gmax, double(std::abs(g[i])));
  EXPECT_GT(gmax, 1e-3);
}

TEST(DistillLossInModel, WithoutALogitsLossTheModelIsUnchanged) {
  const ModelConfig mc = tiny_config();
  Transformer a(mc), b(mc);
  a.init(5);
  b.init(5);
  Tensor tokens = random_ids({2, 6}, 14, 40), targets = random_ids({2, 6}, 15, 40);
  DistillLoss kd(0.0, 1.0, ops::KdTail::Renormalize);  // λ = 0: CE only, through the hook
  kd.set_teacher_logits(Tensor::zeros({12, 40}));
  b.set_logits_loss(&kd, kd.ce_weight());
  a.zero_grad();
  b.zero_grad();
  const double la = a.forward(tokens, targets, 1e-3f).loss, lb = b.forward(tokens, targets, 1e-3f).loss;
  EXPECT_EQ(la, lb);
  a.backward(0.5f);
  b.backward(0.5f);
  EXPECT_EQ(0, std::memcmp(a.flat_grads().raw(), b.flat_grads().raw(), a.flat_grads().nbytes()));
}

}  // namespace
