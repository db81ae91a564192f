// Generation: the decode-attention op against attention_forward, the KV-cache decoder against
// recomputing the whole prefix with Transformer::evaluate, sampling determinism (a sequence
// depends only on (seed, index)), sampling distributions (chi-square against probabilities
// computed here independently), and the stored top-k against a double-precision log-softmax.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "core/descending_order.h"
#include "core/ops.h"
#include "core/random.h"
#include "launch/corpus_generator.h"
#include "models/kv_cache_decoder.h"
#include "core/sampling.h"
#include "models/transformer.h"
#include "tests/unit/test_support.h"

using namespace retort;

namespace {

ModelConfig tiny(bool tied, int64_t Hkv, bool qk_norm, int64_t T = 16) {
  ModelConfig m;
  m.vocab_size = 48;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = Hkv;
  m.seq_len = T;
  m.tie_embeddings = tied;
  m.qk_norm = qk_norm;
  m.init_std = 0.3;  // peaked distributions: sampling and greedy paths are informative
  m.rope_theta = 100;
  m.resolve();
  return m;
}

Tensor random_tensor(const Shape& s, uint64_t seed) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(rng::normal(seed, 7, i));
  return t;
}

// Data whose every window of length Ls starts with the same prompt.
Tensor repeating_data(int64_t n, const std::vector<int32_t>& pattern) {
  Tensor t = Tensor::empty({n}, DType::I32);
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = pattern[i % pattern.size()];
  return t;
}

Tensor random_tokens(int64_t n, int64_t V, uint64_t seed) {
  Tensor t = Tensor::empty({n}, DType::I32);
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = int32_t(rng::uniform(seed, 3, i) * V);
  return t;
}

// Independent statement of the sampling rule: softmax at temperature over all ids; keep the
// top_k most probable; renormalise; keep the most probable ids until their mass reaches top_p.
std::vector<double> expected_probs(const std::vector<double>& logits, double temp, int top_k,
                                   double top_p) {
  const int V = int(logits.size());
  std::vector<std::pair<double, int>> pr;
  double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (int i = 0; i < V; ++i) z += std::exp((logits[i] - mx) / temp);
  for (int i = 0; i < V; ++i) pr.push_back({std::exp((logits[i] - mx) / temp) / z, i});
  std::stable_sort(pr.begin(), pr.end(), [](auto& a, auto& b) { return a.first > b.first; });
  if (top_k > 0) pr.resize(std::min(top_k, V));
  double mass = 0;
  for (auto& p : pr) mass += p.first;
  for (auto& p : pr) p.first /= mass;
  size_t keep = 0;
  double cum = 0;
  while (keep < pr.size() && cum < top_p - 1e-12) cum += pr[keep++].first;
  pr.resize(keep);
  std::vector<double> out(V, 0.0);
  for (auto& p : pr) out[p.second] = p.first / cum;
  return out;
}

// Pearson chi-square of counts vs probabilities (bins with expected < 5 merged), and the
// 0.1% critical value (Wilson-Hilferty). Fails on any count where the probability is 0.
void expect_distribution(const std::vector<int64_t>& counts, const std::vector<double>& p,
                         int64_t draws, const std::string& what) {
  double chi2 = 0, rest_e = 0, rest_o = 0;
  int df = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(counts[i], 0) << what << ": id " << i << " has probability 0";
      continue;
    }
    const double e = p[i] * draws;
    if (e < 5) {
      rest_e += e;
      rest_o += counts[i];
      continue;
    }
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  if (rest_e > 0) {
    chi2 += (rest_o - rest_e) * (rest_o - rest_e) / std::max(rest_e, 1e-9);
    ++df;
  }
  if (df < 1) return;
  const double z = 3.09, c = 2.0 / (9 * df);
  const double crit = df * std::pow(1 - c + z * std::sqrt(c), 3);
  EXPECT_LT(chi2, crit) << what << ": chi2 " << chi2 << " with " << df << " dof";
}

// Prompts [B, P] with token i = (i·mul + add) % V.
Tensor counting_prompt(int64_t B, int64_t P, int64_t mul, int64_t add, int64_t V) {
  Tensor t = Tensor::empty({B, P}, DType::I32);
  for (int64_t i = 0; i < B * P; ++i) t.data<int32_t>()[i] = int32_t((i * mul + add) % V);
  return t;
}

// The decoder's logits, one vector each: the prefill's, then those of `steps` steps fed tokens
// 1, 2, ... (the same for every run).
std::vector<std::vector<float>> decoded_logits(const Transformer& model, const Tensor& prompt,
                                               int32_t steps, DType cache) {
  const int64_t B = prompt.dim(0);
  KvCacheDecoder dec(model, B, prompt.dim(1) + steps, cache);
  std::vector<std::vector<float>> all;
  const auto keep = [&](const Tensor& l) {
    all.emplace_back(l.data<float>(), l.data<float>() + l.numel());
  };
  keep(dec.prefill(prompt));
  Tensor tokens = Tensor::empty({B}, DType::I32);
  for (int32_t s = 1; s <= steps; ++s) {
    std::fill(tokens.data<int32_t>(), tokens.data<int32_t>() + B, s);
    keep(dec.step(tokens));
  }
  return all;
}

// ‖a − b‖ / ‖b‖
double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST(AttentionDecode, MatchesLastRowOfCausalAttention) {
  for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {6, 1}})
  for (int64_t window : {0, 1, 5}) {  // 0: none; else the last `window` keys only
    const int64_t B = 3, hd = 8, T_max = 20;
    for (int64_t n : {1, 7, 20}) {
      Tensor q = random_tensor({B, n, H, hd}, 1), k = random_tensor({B, n, Hkv, hd}, 2);
      Tensor v = random_tensor({B, n, Hkv, hd}, 3);
      Tensor out = Tensor::empty({B, n, H, hd}), lse = Tensor::empty({B, H, n});
      ops::attention_forward(out, lse, q, k, v, window);
      // cache with the n keys and garbage after them
      Tensor kc = random_tensor({B, T_max, Hkv, hd}, 4), vc = random_tensor({B, T_max, Hkv, hd}, 5);
      Tensor q1 = Tensor::empty({B, H, hd}), o1 = Tensor::empty({B, H, hd});
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(kc.data<float>() + b * T_max * Hkv * hd, k.data<float>() + b * n * Hkv * hd,
                    n * Hkv * hd * 4);
        std::memcpy(vc.data<float>() + b * T_max * Hkv * hd, v.data<float>() + b * n * Hkv * hd,
                    n * Hkv * hd * 4);
        std::memcpy(q1.data<float>() + b * H * hd, q.data<float>() + (b * n + n - 1) * H * hd,
                    H * hd * 4);
      }
      ops::attention_decode(o1, q1, kc, vc, n, window);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < H * hd; ++i)
          ASSERT_NEAR(o1.data<float>()[b * H * hd + i],
                      out.data<float>()[(b * n + n - 1) * H * hd + i], 2e-6)
              << "H " << H << " Hkv " << Hkv << " n " << n << " window " << window;
    }
  }
}

// A bf16 cache is read as the float cache of its rounded values (widened exactly); a bf16 out
// is the float out rounded.
TEST(AttentionDecode, Bf16CacheIsItsRoundedValuesAndBf16OutTheFloatOutRounded) {
  const int64_t B = 2, T_max = 9, H = 4, Hkv = 2, hd = 8, n = 7;
  const Tensor q = random_tensor({B, H, hd}, 6);
  Tensor k = random_tensor({B, T_max, Hkv, hd}, 7), v = random_tensor({B, T_max, Hkv, hd}, 8);
  Tensor k16 = Tensor::empty(k.shape(), DType::BF16), v16 = Tensor::empty(v.shape(), DType::BF16);
  for (auto [x, x16] : {std::pair<Tensor*, Tensor*>{&k, &k16}, {&v, &v16}})
    for (int64_t i = 0; i < x->numel(); ++i) {
      x16->data<uint16_t>()[i] = f32_to_bf16(x->data<float>()[i]);
      x->data<float>()[i] = bf16_to_f32(x16->data<uint16_t>()[i]);
    }
  Tensor o = Tensor::empty({B, H, hd}), o16 = Tensor::empty({B, H, hd});
  ops::attention_decode(o, q, k, v, n);
  ops::attention_decode(o16, q, k16, v16, n);
  EXPECT_EQ(std::memcmp(o.data<float>(), o16.data<float>(), o.nbytes()), 0);
  Tensor rounded = Tensor::empty({B, H, hd}, DType::BF16);
  ops::attention_decode(rounded, q, k16, v16, n);
  for (int64_t i = 0; i < o.numel(); ++i)
    ASSERT_EQ(rounded.data<uint16_t>()[i], f32_to_bf16(o.data<float>()[i])) << i;
  EXPECT_NE(test::error_of([&] { ops::attention_decode(o, q, k16, v, n); })
                .find("attention_decode: k_cache is bfloat16, v_cache float32"),
            std::string::npos);
}

TEST(AttentionDecode, RejectsBadShapes) {
  Tensor q = Tensor::empty({2, 4, 8}), o = Tensor::empty({2, 4, 8});
  Tensor kc = Tensor::empty({2, 5, 3, 8});
  EXPECT_THROW(ops::attention_decode(o, q, kc, kc, 2), Error);  // 4 % 3 != 0
  Tensor kc2 = Tensor::empty({2, 5, 2, 8});
  EXPECT_THROW(ops::attention_decode(o, q, kc2, kc2, 6), Error);  // n_keys > T_max
}

// Greedy decoding with the cache vs recomputing the prefix each step: same tokens, logits
// within 1e-5 (relative to the logits' scale). Qwen2's q, k, v biases set to random values;
// sliding windows (the cache a ring of window rows) shorter and longer than the prompt; NoPE
// layers (with and without qk-norm).
TEST(KvCacheDecoder, MatchesFullRecompute) {
  struct Case { bool tied; int64_t Hkv; bool qk; bool bias = false; int64_t window = 0; int64_t no_rope = 0; };
  for (Case c : {Case{true, 2, true}, Case{false, 4, true}, Case{true, 1, false}, Case{true, 2, false, true},
                 Case{true, 2, true, false, 3}, Case{false, 1, false, true, 6}, Case{true, 2, false, false, 0, 2},
                 Case{false, 2, true, false, 0, 2}}) {
    ModelConfig cfg = tiny(c.tied, c.Hkv, c.qk);
    cfg.qkv_bias = c.bias;
    cfg.sliding_window = c.window;
    cfg.no_rope_interval = c.no_rope;
    Transformer model(cfg);
    model.init(11);
    for (const Parameter& p : model.parameters())
      if (p.name.find(".bias") != std::string::npos)
        for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<float>()[i] = float(rng::normal(12, p.offset, i));
    const int64_t B = 3, P = 4, T = cfg.seq_len, V = cfg.vocab_size;
    KvCacheDecoder dec(model, B + 1, T);  // capacity larger than the batch
    Tensor prompt = Tensor::empty({B, P}, DType::I32);
    for (int64_t i = 0; i < B * P; ++i) prompt.data<int32_t>()[i] = int32_t((i * 17 + 3) % V);
    std::vector<std::vector<int32_t>> seq(B);
    for (int64_t b = 0; b < B; ++b)
      seq[b].assign(prompt.data<int32_t>() + b * P, prompt.data<int32_t>() + (b + 1) * P);
    const Tensor* logits = &dec.prefill(prompt);
    double worst = 0;
    for (int64_t len = P; len <= T; ++len) {
      // reference: the whole prefix [B, len]
      Tensor in = Tensor::empty({B, len}, DType::I32);
      for (int64_t b = 0; b < B; ++b) std::memcpy(in.data<int32_t>() + b * len, seq[b].data(), len * 4);
      model.evaluate(in, in);
      const float* ref = model.logits().data<float>();
      const int64_t rows = len == P ? P : 1;  // prefill checks every prompt row
      for (int64_t b = 0; b < B; ++b)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t t = len - rows + r;
          const float* got = logits->data<float>() + (len == P ? b * P + r : b) * V;
          for (int64_t j = 0; j < V; ++j) {
            const double want = ref[(b * len + t) * V + j];
            worst = std::max(worst, std::abs(got[j] - want) / (1.0 + std::abs(want)));
          }
        }
      if (len == T) break;
      Tensor step = Tensor::empty({B}, DType::I32);
      for (int64_t b = 0; b < B; ++b) {
        const float* row = ref + (b * len + len - 1) * V;  // greedy from the reference
        const float* got = logits->data<float>() + (len == P ? b * P + P - 1 : b) * V;
        const int32_t tok = int32_t(std::max_element(row, row + V) - row);
        ASSERT_EQ(int32_t(std::max_element(got, got + V) - got), tok) << "len " << len;
        seq[b].push_back(tok);
        step.data<int32_t>()[b] = tok;
      }
      logits = &dec.step(step);
      EXPECT_EQ(dec.pos(), len + 1);
    }
    EXPECT_LT(worst, 1e-5) << "tied " << c.tied << " Hkv " << c.Hkv << " qk_norm " << c.qk << " bias " << c.bias
                           << " window " << c.window << " no_rope " << c.no_rope;
    EXPECT_THROW(dec.step(Tensor::zeros({B}, DType::I32)), Error);  // cache full
  }
}

// bf16 products (generate.precision: bf16): the decoder of an armed model reads the weights'
// bf16 copies, bitwise what each product rounds the fp32 weights to without them; within bf16
// rounding of the fp32 decoder.
TEST(KvCacheDecoder, ArmedBf16WeightsAreBitwiseThePerProductRounding) {
  ModelConfig cfg = tiny(true, 2, true);
  Transformer model(cfg);
  model.init(13);
  const Tensor prompt = counting_prompt(2, 3, 11, 5, cfg.vocab_size);
  const auto decode = [&] {
    std::vector<float> all;
    for (const std::vector<float>& l : decoded_logits(model, prompt, 4, DType::F32))
      all.insert(all.end(), l.begin(), l.end());
    return all;
  };
  const std::vector<float> fp32 = decode();
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  const std::vector<float> rounded_per_product = decode();
  model.arm_bf16_weights();
  const std::vector<float> armed = decode();
  model.disarm_bf16_weights();
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  ASSERT_EQ(armed.size(), fp32.size());
  EXPECT_EQ(std::memcmp(armed.data(), rounded_per_product.data(), armed.size() * 4), 0);
  EXPECT_GT(rel_rms(armed, fp32), 0);  // the products did round
  EXPECT_LT(rel_rms(armed, fp32), 2e-2);
}

// A bf16 cache (generate.precision: bf16): the prefill's logits are the float cache's (its
// attention reads the prompt's own keys and values); every step's within bf16 rounding of them.
TEST(KvCacheDecoder, Bf16CacheWithinBf16RoundingOfTheFloatCache) {
  ModelConfig cfg = tiny(false, 2, true);
  Transformer model(cfg);
  model.init(17);
  const Tensor prompt = counting_prompt(3, 4, 7, 2, cfg.vocab_size);
  const int32_t steps = 6;
  const auto f32 = decoded_logits(model, prompt, steps, DType::F32);
  const auto bf16 = decoded_logits(model, prompt, steps, DType::BF16);
  EXPECT_EQ(bf16[0], f32[0]);
  for (int32_t s = 1; s <= steps; ++s) {
    EXPECT_GT(rel_rms(bf16[s], f32[s]), 0) << "step " << s;  // the cache did round
    EXPECT_LT(rel_rms(bf16[s], f32[s]), 1e-2) << "step " << s;
  }
}

// What a decoder allocates for its caches is what `retort info` reports for generate.batch;
// with a sliding window shorter than the sequences, a ring of window rows.
TEST(KvCacheDecoder, CacheBytesAreWhatItAllocates) {
  for (int64_t window : {0, 4, 10, 12}) {
    ModelConfig cfg = tiny(false, 2, true);
    cfg.sliding_window = window;
    Transformer model(cfg);
    model.init(3);
    const int64_t rows = window == 4 ? 4 : 10;
    for (DType t : {DType::F32, DType::BF16}) {
      const KvCacheDecoder dec(model, 3, 10, t);
      EXPECT_EQ(dec.cache_bytes(), KvCacheDecoder::cache_bytes(cfg, 3, 10, t));
      EXPECT_EQ(dec.cache_bytes(),  // keys and values · layers · sequences · rows · kv width
                2 * cfg.n_layers * 3 * rows * 2 * cfg.head_dim * (t == DType::BF16 ? 2 : 4))
          << "window " << window;
    }
  }
}

// The generator with and without the cache: same sampled tokens, same top-k ids, log-probs
// within 1e-5; score mode's rows are the teacher-forced log-softmax.
TEST(Generator, KvCacheAndRecomputeAgree) {
  ModelConfig cfg = tiny(true, 2, true);
  Transformer model(cfg);
  model.init(5);
  Tensor data = random_tokens(400, cfg.vocab_size, 9);
  GeneratorSettings s;
  s.sample = true;
  s.seq_len = 12;
  s.prompt_len = 3;
  s.k = 5;
  s.seed = 77;
  s.batch = 3;
  s.sampling = {0.9, 20, 0.95};
  s.logit_temperature = 1.5;
  CorpusSequences a, b, fetched_often;
  generate_sequences(model, s, data, 2, 7, a);
  s.kept_topk_bytes = 2 * s.batch * s.k * 8;  // the steps' top-k rows fetched every 2 steps
  generate_sequences(model, s, data, 2, 7, fetched_often);
  EXPECT_EQ(fetched_often.topk_ids, a.topk_ids);
  EXPECT_EQ(fetched_often.topk_logprobs, a.topk_logprobs);
  EXPECT_EQ(fetched_often.tokens, a.tokens);
  s.kv_cache = false;
  generate_sequences(model, s, data, 2, 7, b);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.topk_ids, b.topk_ids);
  for (size_t i = 0; i < a.topk_logprobs.size(); ++i)
    ASSERT_NEAR(a.topk_logprobs[i], b.topk_logprobs[i], 1e-5);
  for (int64_t j = 0; j < 7; ++j) {
    EXPECT_EQ(a.prompt_len[j], 3);
    for (int t = 0; t < 3; ++t)  // prompts come from window 2 + j
      EXPECT_EQ(a.tokens[j * 12 + t], data.data<int32_t>()[(2 + j) * 12 + t]);
  }
}

TEST(Generator, SamplingIsDeterministicPerSequence) {
  ModelConfig cfg = tiny(false, 2, true);
  Transformer model(cfg);
  model.init(3);
  Tensor data = random_tokens(300, cfg.vocab_size, 4);
  GeneratorSettings s;
  s.sample = true;
  s.seq_len = 10;
  s.prompt_len = 0;  // from EOS
  s.eos_id = 1;
  s.k = 4;
  s.seed = 123;
  s.batch = 4;
  CorpusSequences all, part, again, other;
  generate_sequences(model, s, data, 0, 9, all);
  s.batch = 1;  // other batching, other range: sequences 3..7 alone
  generate_sequences(model, s, data, 3, 5, part);
  for (int64_t j = 0; j < 5 * 10; ++j) ASSERT_EQ(part.tokens[j], all.tokens[3 * 10 + j]);
  for (int64_t j = 0; j < 5 * 9 * 4; ++j) ASSERT_EQ(part.topk_ids[j], all.topk_ids[3 * 9 * 4 + j]);
  s.batch = 4;
  generate_sequences(model, s, data, 0, 9, again);
  EXPECT_EQ(again.tokens, all.tokens);
  EXPECT_EQ(again.topk_logprobs, all.topk_logprobs);
  s.seed = 124;
  generate_sequences(model, s, data, 0, 9, other);
  EXPECT_NE(other.tokens, all.tokens);
  for (int64_t j = 0; j < 9; ++j) {
    EXPECT_EQ(all.tokens[j * 10], 1);  // EOS start, stored prompt_len 1
    EXPECT_EQ(all.prompt_len[j], 1);
  }
}

// The rows' top-k and draws run on the OpenMP threads: with 3 threads the corpus is bitwise the
// same run to run, and it is the 1-thread corpus (the same tokens and ids; log-probs within
// 1e-5, the forward's own sums depend on the thread count), in both modes and without the cache.
TEST(Generator, ThreadsShareTheRowsWithoutChangingThem) {
  ModelConfig cfg = tiny(true, 2, true);
  Transformer model(cfg);
  model.init(8);
  Tensor data = random_tokens(400, cfg.vocab_size, 6);
  GeneratorSettings s;
  s.seq_len = 12;
  s.prompt_len = 3;
  s.k = 6;
  s.seed = 5;
  s.batch = 3;
  s.sampling = {0.9, 0, 0.9};
  const int threads = omp_get_max_threads();
  for (int mode = 0; mode < 3; ++mode) {  // score, sample, sample recomputing the prefix
    s.sample = mode > 0;
    s.kv_cache = mode == 1;
    CorpusSequences one, three, again;
    omp_set_num_threads(1);
    generate_sequences(model, s, data, 1, 7, one);
    omp_set_num_threads(3);
    generate_sequences(model, s, data, 1, 7, three);
    generate_sequences(model, s, data, 1, 7, again);
    EXPECT_EQ(three.tokens, again.tokens) << "mode " << mode;
    EXPECT_EQ(three.topk_logprobs, again.topk_logprobs) << "mode " << mode;
    EXPECT_EQ(one.tokens, three.tokens) << "mode " << mode;
    EXPECT_EQ(one.topk_ids, three.topk_ids) << "mode " << mode;
    for (size_t i = 0; i < one.topk_logprobs.size(); ++i)
      ASSERT_NEAR(one.topk_logprobs[i], three.topk_logprobs[i], 1e-5) << "mode " << mode;
  }
  omp_set_num_threads(threads);
}

// sample_token with uniform draws follows the stated distribution, for several settings.
TEST(Sampling, DistributionMatchesIndependentComputation) {
  const std::vector<double> lg = {1.0, 2.5, 0.3, 2.4, -1.0, 0.9, 2.5, 0.0, 1.7, -0.5};
  std::vector<float> lf(lg.begin(), lg.end());
  const int64_t V = int64_t(lg.size()), N = 20000;
  struct P { double t; int k; double p; };
  for (P c : {P{1.0, 0, 1.0}, P{0.7, 0, 1.0}, P{1.3, 4, 1.0}, P{1.0, 0, 0.6}, P{0.8, 6, 0.8},
              P{2.0, 3, 0.5}}) {
    const SamplingParams sp{c.t, c.k, c.p};
    const std::vector<double> want = expected_probs(lg, c.t, c.k, c.p);
    const std::vector<double> said = sampling_probabilities(lf.data(), V, sp);
    for (int64_t i = 0; i < V; ++i) EXPECT_NEAR(said[i], want[i], 1e-6) << i;
    std::vector<int64_t> counts(V, 0);
    for (int64_t d = 0; d < N; ++d) ++counts[sample_token(lf.data(), V, sp, rng::uniform(42, 1, d))];
    expect_distribution(counts, want, N, str_cat("T=", c.t, " top_k=", c.k, " top_p=", c.p));
  }
  // ties broken by the smaller id (ids 1 and 6 share the largest logit)
  EXPECT_EQ(sample_token(lf.data(), V, {0.0, 0, 1.0}, 0.5), 1);
  const std::vector<double> top1 = sampling_probabilities(lf.data(), V, {1.0, 1, 1.0});
  EXPECT_EQ(top1[1], 1.0);
}

// The order top-k and top-p use: descending logit, ties by the smaller id (-0 ties with +0),
// across signs, tiny and huge magnitudes and infinities; checked against a plain comparison sort.
TEST(Sampling, TopkOrderIsDescendingLogitThenSmallerId) {
  std::vector<float> lf = {0.5f, -0.0f, 2.0f, 0.0f, -3.0f, 2.0f, -INFINITY, 1e-30f, -1e-30f,
                           INFINITY, -3.0f, 1e30f, -1e30f, 0.5f, 7.25f};
  for (int i = 0; i < 200; ++i)  // and random values with repeats
    lf.push_back(float(std::round(rng::normal(3, 9, uint64_t(i)) * 4) / 4));
  const int64_t V = int64_t(lf.size());
  std::vector<int32_t> want(V);
  std::iota(want.begin(), want.end(), 0);
  std::sort(want.begin(), want.end(), [&](int32_t a, int32_t b) {
    return lf[a] > lf[b] || (lf[a] == lf[b] && a < b);
  });
  for (int64_t k : {int64_t(1), int64_t(7), V}) {
    const std::vector<int32_t> ids = ids_by_descending_value(lf.data(), V, k);
    for (int64_t i = 0; i < k; ++i) ASSERT_EQ(ids[i], want[i]) << "k " << k << " rank " << i;
  }
  // top_p's kept prefix is in that order: ids 1 and 3 share the largest logit (each ≈ 0.47 of
  // the probability), and top_p 0.4 keeps only the first of them
  std::vector<float> finite = {1.0f, 3.0f, -0.0f, 3.0f, 0.0f};
  const std::vector<double> top = sampling_probabilities(finite.data(), 5, {1.0, 0, 0.4});
  EXPECT_EQ(top[1], 1.0);
  EXPECT_EQ(top[3], 0.0);
  EXPECT_EQ(sample_token(finite.data(), 5, {1.0, 2, 1.0}, 0.99), 3);  // top_k 2: ids 1, 3
}

// A row with no finite weight (a diverged teacher's) draws its first id in that order, whatever
// u, top_k and top_p, as the GPU's draw does: the first +inf, a NaN with the sign bit clear
// (before +inf), or with every logit -inf the first id; a NaN with the sign bit set is last and
// weighs nothing. Greedy takes the same first id.
TEST(Sampling, RowsWithoutAFiniteWeightDrawTheirFirstId) {
  const float inf = INFINITY, nan = std::numeric_limits<float>::quiet_NaN();
  struct Row {
    std::vector<float> logits;
    int32_t first;
  };
  for (const Row& r : {Row{{1.0f, inf, 2.0f, inf}, 1}, Row{{1.0f, inf, nan, 0.0f}, 2},
                       Row{{-inf, -inf, -inf}, 0}})
    for (const SamplingParams p : {SamplingParams{0.0, 0, 1.0}, {1.0, 0, 1.0}, {0.7, 2, 1.0}, {1.0, 0, 0.5}})
      for (double u : {0.0, 0.5, 0.999}) {
        const int64_t V = int64_t(r.logits.size());
        EXPECT_EQ(sample_token(r.logits.data(), V, p, u), r.first) << "u " << u;
        EXPECT_EQ(sampling_probabilities(r.logits.data(), V, p)[size_t(r.first)], 1.0);
      }
  const std::vector<float> negative_nan = {1.0f, -nan, 3.0f};  // the NaN weighs nothing
  EXPECT_EQ(sampling_probabilities(negative_nan.data(), 3, {1.0, 0, 1.0})[1], 0.0);
  EXPECT_EQ(sample_token(negative_nan.data(), 3, {0.0, 0, 1.0}, 0.5), 2);
}

// The op behind a corpus's top-k rows, against the plain reference (a stable sort and a double
// log-softmax): rows of distinct values, of many ties (the ids decide, -0 ties with +0), of one
// value throughout; bad shapes and temperatures refused naming the op.
TEST(TopkLogSoftmax, EachRowsLargestLogProbsInOrder) {
  const int64_t rows = 3, V = 50, k = 12;
  Tensor logits = Tensor::empty({rows, V});
  float* x = logits.data<float>();
  for (int64_t v = 0; v < V; ++v) {
    x[v] = float(rng::normal(5, 1, uint64_t(v)));
    x[V + v] = float(std::round(rng::normal(5, 2, uint64_t(v)) * 2) / 2);
    x[2 * V + v] = 1.5f;
  }
  Tensor ids = Tensor::empty({rows, k}, DType::I32), logprobs = Tensor::empty({rows, k});
  ops::topk_log_softmax(ids, logprobs, logits, 0.8);
  const test::TopK want = test::teacher_topk(logits, 0.8, k);
  for (int64_t i = 0; i < rows * k; ++i) {
    ASSERT_EQ(ids.data<int32_t>()[i], want.ids.data<int32_t>()[i]) << i;
    const float w = want.logp.data<float>()[i];
    EXPECT_NEAR(logprobs.data<float>()[i], w, 2e-7 * std::max(1.0f, std::abs(w))) << i;
  }
  for (int64_t i = 0; i < k; ++i) EXPECT_EQ(ids.data<int32_t>()[2 * k + i], i);  // all tied
  Tensor wide = Tensor::empty({rows, V + 1}, DType::I32), wide_lp = Tensor::empty({rows, V + 1});
  for (const auto& [what, f] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"k > V", [&] { ops::topk_log_softmax(wide, wide_lp, logits, 1.0); }},
           {"ids and logprobs differ", [&] { ops::topk_log_softmax(wide, logprobs, logits, 1.0); }},
           {"tau 0", [&] { ops::topk_log_softmax(ids, logprobs, logits, 0.0); }}}) {
    EXPECT_NE(test::error_of(f).find("topk_log_softmax: "), std::string::npos) << what;
  }
}

// The op behind a sampled corpus's tokens: each row's sample_token with its own draw (row r's
// u from its own stream); bad parameters refused naming the op.
TEST(SampleTokens, EachRowsDrawWithItsOwnU) {
  const int64_t rows = 40, V = 30;
  Tensor logits = Tensor::empty({rows, V});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < V; ++v)
      logits.data<float>()[r * V + v] = float(rng::normal(4, 1, uint64_t(r * V + v)));
  const RowDraws draws{4, 2, 100, 7};
  EXPECT_EQ(draws.u(3), rng::uniform(4, rng::hash(2, 103), 7));
  Tensor tokens = Tensor::empty({rows}, DType::I32);
  for (const SamplingParams& p : {SamplingParams{1.0, 0, 1.0}, SamplingParams{0.0, 0, 1.0},
                                  SamplingParams{0.7, 5, 1.0}, SamplingParams{1.3, 0, 0.8}}) {
    ops::sample_tokens(tokens, logits, draws, p);
    const int32_t* got = tokens.data<int32_t>();
    std::set<int32_t> distinct(got, got + rows);
    EXPECT_GT(distinct.size(), p.temperature == 0 ? 1u : 5u);  // each row its own draw
    for (int64_t r = 0; r < rows; ++r)
      ASSERT_EQ(got[r], sample_token(logits.data<float>() + r * V, V, p, draws.u(r))) << r;
  }
  Tensor too_few = Tensor::empty({rows - 1}, DType::I32);
  for (const auto& [what, f] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"too few tokens", [&] { ops::sample_tokens(too_few, logits, draws, {}); }},
           {"top_p 0", [&] { ops::sample_tokens(tokens, logits, draws, {1.0, 0, 0.0}); }},
           {"temperature < 0",
            [&] { ops::sample_tokens(tokens, logits, draws, {-1.0, 0, 1.0}); }}}) {
    EXPECT_NE(test::error_of(f).find("sample_tokens: "), std::string::npos) << what;
  }
}

// Through the model: thousands of sequences with the same prompt; the first sampled token's
// frequencies match the teacher's distribution at that prompt (computed from evaluate()).
TEST(Generator, SampledTokensFollowTheTeacher) {
  ModelConfig cfg = tiny(true, 2, true);
  cfg.init_std = 0.15;
  Transformer model(cfg);
  model.init(21);
  const std::vector<int32_t> prompt = {5, 9, 2, 30};  // Ls = 4: every window starts with it
  const int64_t N = 3000, V = cfg.vocab_size;
  Tensor data = repeating_data(N * 4, prompt);
  Tensor in = Tensor::empty({1, 3}, DType::I32);
  std::memcpy(in.data<int32_t>(), prompt.data(), 12);
  model.evaluate(in, in);
  std::vector<double> lg(V);
  for (int64_t j = 0; j < V; ++j) lg[j] = model.logits().data<float>()[2 * V + j];
  struct P { double t; int k; double p; };
  for (P c : {P{1.0, 0, 1.0}, P{0.6, 8, 1.0}, P{1.2, 0, 0.7}}) {
    GeneratorSettings s;
    s.sample = true;
    s.seq_len = 4;
    s.prompt_len = 3;
    s.k = 3;
    s.seed = 99;
    s.batch = 64;
    s.sampling = {c.t, c.k, c.p};
    CorpusSequences out;
    generate_sequences(model, s, data, 0, N, out);
    std::vector<int64_t> counts(V, 0);
    for (int64_t i = 0; i < N; ++i) ++counts[out.tokens[i * 4 + 3]];
    expect_distribution(counts, expected_probs(lg, c.t, c.k, c.p), N,
                        str_cat("model T=", c.t, " top_k=", c.k, " top_p=", c.p));
  }
}

// A teacher with NaN logits in one sequence (an embedding row of NaNs for a token only that
// sequence's prompt reads; untied, so no other sequence's logits see it) stops the block at
// that sequence's batch, naming it, in score and sample mode; in score mode the other
// sequences are generated.
TEST(Generator, NonFiniteTeacherLogitsNameTheSequence) {
  ModelConfig cfg = tiny(false, 4, true);
  Transformer model(cfg);
  model.init(8);
  const int64_t Ls = 9, V = cfg.vocab_size, poisoned = V - 1;
  Tensor data = random_tokens(100, V - 1, 2);  // ids < V − 1 ...
  data.data<int32_t>()[5 * Ls + 2] = int32_t(poisoned);  // ... but in sequence 5
  const Parameter& embed = model.parameters()[0];
  ASSERT_EQ(embed.name, "model.embed_tokens.weight");
  Tensor row = embed.value.slice(poisoned, poisoned + 1);
  ops::fill(row, std::numeric_limits<float>::quiet_NaN());
  for (bool sample : {false, true}) {
    GeneratorSettings s;
    s.seq_len = Ls;
    s.k = 4;
    s.batch = 2;
    s.sample = sample;
    s.prompt_len = 3;  // sampling: the poisoned token is in the prompt
    CorpusSequences out;
    // sequence 5 alone (another could draw the poisoned id and fail first)
    const std::string e = test::error_of([&] { generate_sequences(model, s, data, 5, 1, out); });
    EXPECT_EQ(e.rfind("generate: the teacher's top-k log-probability at sequence 5, position ", 0), 0u) << e;
    EXPECT_NE(e.find(" is nan: its logits are not finite"), std::string::npos) << e;
  }
  GeneratorSettings score;
  score.seq_len = Ls;
  score.k = 4;
  CorpusSequences out;
  generate_sequences(model, score, data, 6, 4, out);  // sequences 6 .. 9: all finite
}

// Stored top-k rows: the k largest of a double-precision log-softmax at logit_temperature.
TEST(Generator, ScoreModeTopkIsTeacherLogSoftmax) {
  ModelConfig cfg = tiny(false, 4, true);
  Transformer model(cfg);
  model.init(8);
  const int64_t Ls = 9, V = cfg.vocab_size, k = 6;
  Tensor data = random_tokens(100, V, 2);
  GeneratorSettings s;
  s.seq_len = Ls;
  s.k = k;
  s.logit_temperature = 0.7;
  s.batch = 2;
  CorpusSequences out;
  generate_sequences(model, s, data, 1, 5, out);
  for (int64_t j = 0; j < 5; ++j) {
    Tensor in = Tensor::empty({1, Ls}, DType::I32);
    std::memcpy(in.data<int32_t>(), data.data<int32_t>() + (1 + j) * Ls, Ls * 4);
    for (int64_t t = 0; t < Ls; ++t) ASSERT_EQ(out.tokens[j * Ls + t], in.data<int32_t>()[t]);
    EXPECT_EQ(out.prompt_len[j], 0);
    model.evaluate(in, in);
    for (int64_t t = 0; t < Ls - 1; ++t) {
      const float* row = model.logits().data<float>() + t * V;
      double mx = -1e300, z = 0;
      for (int64_t i = 0; i < V; ++i) mx = std::max(mx, row[i] / 0.7);
      for (int64_t i = 0; i < V; ++i) z += std::exp(row[i] / 0.7 - mx);
      std::vector<std::pair<double, int>> lp;
      for (int64_t i = 0; i < V; ++i) lp.push_back({row[i] / 0.7 - mx - std::log(z), int(i)});
      std::sort(lp.begin(), lp.end(), [](auto& a, auto& b) { return a.first > b.first; });
      for (int64_t r = 0; r < k; ++r) {
        const int64_t o = (j * (Ls - 1) + t) * k + r;
        EXPECT_EQ(out.topk_ids[o], lp[r].second);
        EXPECT_NEAR(out.topk_logprobs[o], lp[r].first, 1e-5);
      }
    }
  }
}
