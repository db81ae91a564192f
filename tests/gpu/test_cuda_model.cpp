// The whole model on the GPU against the CPU backend: a training step (forward, loss,
// backward, AdamW) of the same initialised model on the same batch agrees within fp32
// round-off, and repeating it on the GPU is bitwise identical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>

#include "core/adamw.h"
#include "core/cuda/kernels.h"
#include "core/op_profile.h"
#include "core/ops.h"
#include "core/random.h"
#include "models/distill_loss.h"
#include "models/kv_cache_decoder.h"
#include "models/model_config.h"
#include "models/transformer.h"
#include "tests/unit/head_windows_check.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::Batch;
using retort::test::random_batch;

namespace {

ModelConfig small(bool tied, bool qk_norm = true, bool qkv_bias = false, int64_t window = 0,
                  int64_t no_rope = 0) {
  ModelConfig m;
  m.vocab_size = 96;
  m.d_model = 64;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.seq_len = 16;
  m.tie_embeddings = tied;
  m.qk_norm = qk_norm;
  m.qkv_bias = qkv_bias;
  m.sliding_window = window;
  m.no_rope_interval = no_rope;
  m.init_std = 0.05;
  m.resolve();
  return m;
}

// init(seed), then the q, k, v biases (0 after init) set to 0.1·N(0, 1): a bias that is not
// read, or read wrongly, changes the logits.
void init_with_biases(Transformer& m, uint64_t seed) {
  m.init(seed);
  for (const Parameter& p : m.parameters()) {
    if (p.name.find(".bias") == std::string::npos) continue;
    Tensor h = Tensor::empty(p.shape);
    for (int64_t i = 0; i < h.numel(); ++i) h.host<float>()[i] = float(0.1 * rng::normal(seed, p.offset, uint64_t(i)));
    Tensor v = p.value;
    ops::copy(v, h);
  }
}

// ‖a − b‖ / ‖b‖ over two tensors on any devices.
double rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::CPU), hb = b.to(Device::CPU);
  double num = 0, den = 0;
  for (int64_t i = 0; i < ha.numel(); ++i) {
    const double d = double(ha.host<float>()[i]) - hb.host<float>()[i];
    num += d * d;
    den += double(hb.host<float>()[i]) * hb.host<float>()[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

std::vector<OptimizedTensor> optimized(Transformer& m) {
  std::vector<OptimizedTensor> out;
  for (const Parameter& p : m.parameters()) out.push_back({p.name, p.value, p.grad, p.decay});
  return out;
}

struct StepOut {
  double loss;
  Tensor grads, params;  // host copies after backward / after the update
};

StepOut train_step(Device device, bool tied, bool recompute, float perturb = 0, bool qk_norm = true,
                   bool qkv_bias = false, int64_t window = 0, int64_t no_rope = 0) {
  Transformer m(small(tied, qk_norm, qkv_bias, window, no_rope), {}, device);
  m.set_recompute(recompute);
  m.set_bf16_logits(true);  // as TrainStep: bf16 logits under bf16 products, else no effect
  init_with_biases(m, 7);
  if (perturb != 0) ops::scale_inplace(m.flat_params(), 1.0f + perturb);
  AdamW opt(optimized(m), AdamWSettings{});
  const Batch b = random_batch(3, 16, 96, 11);
  m.zero_grad();
  const LossResult r = m.forward(b.tokens, b.targets, 1e-4f);
  m.backward(1.0f);
  StepOut out{r.loss, m.flat_grads().to(Device::CPU), Tensor()};
  opt.step(1e-3);
  out.params = m.flat_params().to(Device::CPU);
  return out;
}

// A distillation step (models/distill_loss.h in the model's head): the teacher is either
// full logits [R, V] (online) or a top-k of k distinct ids per row with descending
// log-probabilities (offline), built on the host and copied to `device`.
enum class Teacher { Dense, Renormalize, Bucket };

StepOut distill_step(Device device, Teacher teacher) {
  const ModelConfig mc = small(true);
  const int64_t B = 3, T = 16, R = B * T, V = mc.vocab_size, k = 5;
  Transformer m(mc, {}, device);
  m.init(7);
  DistillLoss kd(0.6, 2.0, teacher == Teacher::Bucket ? ops::KdTail::Bucket : ops::KdTail::Renormalize);
  m.set_logits_loss(&kd, kd.ce_weight());
  Tensor logits = Tensor::empty({R, V}), ids = Tensor::empty({R, k}, DType::I32), logp = Tensor::empty({R, k});
  for (int64_t i = 0; i < R * V; ++i) logits.host<float>()[i] = float(3 * rng::normal(5, 1, uint64_t(i)));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < k; ++j) {  // distinct ids, log-probabilities descending, mass < 1
      ids.host<int32_t>()[r * k + j] = int32_t((r * 7 + j * 13) % V);
      logp.host<float>()[r * k + j] = float(-1.0 - 0.5 * double(j) - 0.3 * rng::uniform(5, 2, uint64_t(r * k + j)));
    }
  const Tensor logits_d = logits.to(device), ids_d = ids.to(device), logp_d = logp.to(device);
  if (teacher == Teacher::Dense) kd.set_teacher_logits(logits_d);
  else kd.set_topk(ids_d, logp_d);
  const Batch b = random_batch(B, T, V, 11);
  m.zero_grad();
  const LossResult r = m.forward(b.tokens, b.targets, 1e-4f);
  m.backward(1.0f);
  EXPECT_GT(kd.last_kl(), 0);
  return {r.loss, m.flat_grads().to(Device::CPU), Tensor()};
}

}  // namespace

TEST(CudaModel, DistillStepMatchesTheCpu) {
  for (Teacher t : {Teacher::Dense, Teacher::Renormalize, Teacher::Bucket}) {
    const StepOut cpu = distill_step(Device::CPU, t);
    const StepOut gpu = distill_step(Device::CUDA, t);
    const StepOut again = distill_step(Device::CUDA, t);
    EXPECT_NEAR(gpu.loss, cpu.loss, 1e-5 * std::abs(cpu.loss)) << "teacher " << int(t);
    EXPECT_LT(rel_diff(gpu.grads, cpu.grads), 1e-4) << "teacher " << int(t);
    EXPECT_EQ(again.loss, gpu.loss) << "teacher " << int(t);
    EXPECT_EQ(rel_diff(again.grads, gpu.grads), 0.0) << "teacher " << int(t);
  }
}

// Tied and untied embeddings; without qk-norm (RoPE in place on the q, k windows of the packed
// q|k|v product, attention reading them there); Qwen2's q, k, v biases; a sliding window of 5
// (of 16 positions); NoPE on every 2nd layer.
TEST(CudaModel, TrainingStepMatchesTheCpu) {
  for (auto [tied, qk_norm, qkv_bias, window, no_rope] :
       {std::tuple{true, true, false, 0, 0}, {false, true, false, 0, 0}, {false, false, false, 0, 0},
        {true, false, true, 0, 0}, {false, false, false, 5, 0}, {true, true, false, 0, 2}}) {
    SCOPED_TRACE(std::string("tied ") + (tied ? "yes" : "no") + ", qk_norm " + (qk_norm ? "yes" : "no") +
                 ", qkv_bias " + (qkv_bias ? "yes" : "no") + ", window " + std::to_string(window) +
                 ", no_rope " + std::to_string(no_rope));
    const StepOut cpu = train_step(Device::CPU, tied, false, 0, qk_norm, qkv_bias, window, no_rope);
    const StepOut gpu = train_step(Device::CUDA, tied, false, 0, qk_norm, qkv_bias, window, no_rope);
    EXPECT_NEAR(gpu.loss, cpu.loss, 1e-5 * std::abs(cpu.loss));
    EXPECT_LT(rel_diff(gpu.grads, cpu.grads), 1e-4);
    EXPECT_LT(rel_diff(gpu.params, cpu.params), 1e-5);
  }
}

// The KV-cache decoder (generation) on the GPU against the CPU: the prefill's logits and
// those of 6 steps fed the same tokens, with and without qk-norm (without: with q, k, v
// biases and a sliding window of 4, shorter than the prompt), fp32 and bf16 caches.
TEST(CudaModel, KvCacheDecoderMatchesTheCpu) {
  for (bool qk_norm : {true, false})
    for (DType cache : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(std::string("qk_norm ") + (qk_norm ? "yes" : "no") + ", cache " + dtype_name(cache));
      const ModelConfig mc = small(false, qk_norm, !qk_norm, qk_norm ? 0 : 4);
      const int64_t B = 3, P = 5, steps = 6, V = mc.vocab_size;
      Tensor prompt = Tensor::empty({B, P}, DType::I32);
      for (int64_t i = 0; i < B * P; ++i) prompt.host<int32_t>()[i] = int32_t((i * 17 + 3) % V);
      std::vector<Tensor> logits[2];  // host copies: CPU, GPU
      for (int d = 0; d < 2; ++d) {
        const Device dev = d == 0 ? Device::CPU : Device::CUDA;
        Transformer m(mc, {}, dev);
        init_with_biases(m, 7);
        KvCacheDecoder dec(m, B, P + steps, cache);
        logits[d].push_back(dec.prefill(prompt.to(dev)).to(Device::CPU));
        Tensor tokens = Tensor::empty({B}, DType::I32);
        for (int64_t s = 0; s < steps; ++s) {
          for (int64_t b = 0; b < B; ++b) tokens.host<int32_t>()[b] = int32_t((s * 5 + b * 11 + 1) % V);
          logits[d].push_back(dec.step(tokens.to(dev)).to(Device::CPU));
        }
      }
      // bf16 caches: a key rounded on the other side of a bf16 tie now and then
      const double tol = cache == DType::F32 ? 1e-5 : 1e-3;
      for (size_t i = 0; i < logits[0].size(); ++i)
        EXPECT_LT(rel_diff(logits[1][i], logits[0][i]), tol) << (i == 0 ? "prefill" : "step ") << i;
    }
}

TEST(CudaModel, StepIsBitwiseReproducibleAndRecomputeIsExact) {
  const StepOut a = train_step(Device::CUDA, false, false);
  const StepOut b = train_step(Device::CUDA, false, false);
  const StepOut c = train_step(Device::CUDA, false, true);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(rel_diff(a.grads, b.grads), 0.0);
  EXPECT_EQ(rel_diff(a.grads, c.grads), 0.0);
}

// RETORT_OP_PROFILE (core/op_profile.h): each kernel counted once with its GPU time, also when
// the events are read (every 4096 kernels) while the GPU is still behind the host.
TEST(CudaModel, OpProfileCountsEachKernelOnce) {
  op_profile::set_enabled(true);
  op_profile::reset();
  Tensor x = Tensor::zeros({256}, DType::F32, Device::CUDA);
  for (int i = 0; i < 10000; ++i) ops::fill(x, float(i));
  const std::vector<op_profile::Total> totals = op_profile::totals();
  op_profile::set_enabled(false);
  ASSERT_EQ(totals.size(), 1u);
  EXPECT_EQ(totals[0].name, "fill");
  EXPECT_EQ(totals[0].calls, 10000);
  EXPECT_GT(totals[0].seconds, 0.0);
  EXPECT_EQ(x.to(Device::CPU).host<float>()[255], 9999.0f);
}

// ... and the bytes of the kernels that count what they move (the profile's TB/s): x read, y
// (bf16) and rstd written per RMSNorm.
TEST(CudaModel, OpProfileCountsTheBytesAKernelMoves) {
  const int64_t rows = 64, C = 128;
  Tensor x = Tensor::zeros({rows, C}, DType::F32, Device::CUDA);
  Tensor g = Tensor::zeros({C}, DType::F32, Device::CUDA);
  Tensor y = Tensor::zeros({rows, C}, DType::BF16, Device::CUDA);
  Tensor rstd = Tensor::zeros({rows}, DType::F32, Device::CUDA);
  op_profile::set_enabled(true);
  op_profile::reset();
  for (int i = 0; i < 3; ++i) ops::rmsnorm_forward(y, rstd, x, g, 1e-5f);
  ops::fill(x, 1.0f);  // counts no bytes
  const std::vector<op_profile::Total> totals = op_profile::totals();
  op_profile::set_enabled(false);
  ASSERT_EQ(totals.size(), 2u);
  for (const op_profile::Total& t : totals) {
    if (t.name == "fill") {
      EXPECT_EQ(t.bytes, 0.0);
      continue;
    }
    EXPECT_EQ(t.name, "rmsnorm_forward");
    EXPECT_EQ(t.calls, 3);
    EXPECT_EQ(t.bytes, 3.0 * double(rows * C * 4 + rows * C * 2 + rows * 4));
  }
}

TEST(CudaModel, OpsRefuseTensorsOnTwoDevices) {
  Tensor a = Tensor::zeros({4}), b = Tensor::zeros({4}, DType::F32, Device::CUDA);
  try {
    ops::add_inplace(a, b);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different devices"), std::string::npos) << e.what();
  }
}

// ops::topk_log_softmax on GPU tensors, k sorted in shared memory and in global memory (above
// cuda::kSharedSortTopK): the CPU's ids, its log-probs to rounding.
TEST(CudaModel, TopkLogSoftmaxOnTheDeviceForSmallAndLargeK) {
  const int64_t rows = 2, V = 3000;
  Tensor x = Tensor::empty({rows, V});
  for (int64_t i = 0; i < rows * V; ++i) x.data<float>()[i] = float(rng::normal(6, 1, uint64_t(i)));
  const Tensor xd = x.to(Device::CUDA);
  for (int64_t k : {int64_t(64), cuda::kSharedSortTopK + 476}) {
    Tensor ids = Tensor::empty({rows, k}, DType::I32), lp = Tensor::empty({rows, k});
    Tensor ids_d = Tensor::empty({rows, k}, DType::I32, Device::CUDA);
    Tensor lp_d = Tensor::empty({rows, k}, DType::F32, Device::CUDA);
    ops::topk_log_softmax(ids, lp, x, 1.3);
    ops::topk_log_softmax(ids_d, lp_d, xd, 1.3);
    const Tensor got_ids = ids_d.to(Device::CPU), got = lp_d.to(Device::CPU);
    EXPECT_EQ(std::memcmp(got_ids.raw(), ids.raw(), ids.nbytes()), 0) << "k " << k;
    EXPECT_LE(rel_diff(got, lp), 2.5e-7) << "k " << k;
  }
}

// Mixed precision: the bf16 step on the GPU matches the CPU's bf16 emulation closely, and the
// fp32 step within bf16 tolerance. The gradients cannot match the emulation to fp32 round-off:
// a ~1e-7 difference in an fp32 sum (another summation order) moves a downstream bf16
// activation across a rounding boundary now and then, a 2^-8 step in that element, and the
// step amplifies it. How far ulp-level noise carries is measured here too: the emulation with
// its parameters scaled by 1 + 3e-7 (about 2.5 ulp). The GPU must be no farther from the
// emulation than 1.5× that, and clearly closer than the emulation is to fp32 (0.7× bf16's own
// effect): a GPU that skipped or truncated a rounding is not (a planted truncating rounding
// gives 2.8× bf16's effect, 5.9× the perturbation's). Measured (relative L2 of the gradients;
// gpu-emulation, perturbed emulation, emulation-fp32): simulator (sums in the CPU's order,
// bf16 logits) 5.7e-4, 4.8e-3, 8.5e-3 (fp32 logits: 1.9e-3, 3.8e-3, 7.9e-3); parameters
// after one AdamW step 1.9e-4, 1.4e-3 (bf16's effect) — AdamW's first step, ≈ p − lr·sign(g),
// moves a parameter by 2·lr wherever a gradient near 0 changes sign. The H200, before q, k, v
// and the other activations were stored in bf16 (fewer rounding points): 1.6e-3 against
// 7.0e-3, parameters 4.7e-4 against 1.3e-3.
// (Attention runs the plain fp32 kernel here, as on the CPU; cuDNN's bf16 attention is below.)
TEST(CudaModel, Bf16StepMatchesTheCpuEmulationAndFp32WithinBf16Tolerance) {
  const StepOut fp32 = train_step(Device::CPU, false, false);
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  ops::set_attention_kernel(ops::AttentionKernel::Plain);
  const StepOut cpu = train_step(Device::CPU, false, false);
  const StepOut noisy = train_step(Device::CPU, false, false, 3e-7f);
  const StepOut gpu = train_step(Device::CUDA, false, false);
  ops::set_attention_kernel(ops::AttentionKernel::Auto);
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  const double grads = rel_diff(gpu.grads, cpu.grads), noise = rel_diff(noisy.grads, cpu.grads),
               bf16 = rel_diff(cpu.grads, fp32.grads);
  const double params = rel_diff(gpu.params, cpu.params), bf16_params = rel_diff(cpu.params, fp32.params);
  std::fprintf(stderr, "bf16 step, relative L2: gradients gpu-emulation %.2g, perturbed emulation %.2g, "
               "emulation-fp32 %.2g; parameters %.2g, %.2g\n", grads, noise, bf16, params, bf16_params);
  EXPECT_NEAR(gpu.loss, cpu.loss, 1e-5 * std::abs(cpu.loss));
  EXPECT_LT(grads, 1.5 * noise);
  EXPECT_LT(grads, 0.7 * bf16);
  EXPECT_LT(params, 0.7 * bf16_params);
  EXPECT_NEAR(gpu.loss, fp32.loss, 1e-2 * std::abs(fp32.loss));
  EXPECT_LT(rel_diff(gpu.grads, fp32.grads), 1e-2);
}

// train.precision: bf16 on a GPU (attention: auto) runs cuDNN's fused attention in bf16 as
// well: the step stays within bf16 tolerance of fp32 and repeats bitwise (cuDNN's
// deterministic backward), recomputation included. With and without qk-norm (without: cuDNN
// reads q, k, v as windows of the packed q|k|v row, at its pitch), and with a sliding window
// (cuDNN's graph with a second mask).
TEST(CudaModel, Bf16StepWithCudnnAttentionIsWithinBf16ToleranceAndBitwiseReproducible) {
  for (auto [qk_norm, window] : {std::pair{true, 0}, {false, 0}, {false, 5}}) {
    SCOPED_TRACE(std::string("qk_norm ") + (qk_norm ? "yes" : "no") + ", window " + std::to_string(window));
    const StepOut fp32 = train_step(Device::CPU, false, false, 0, qk_norm, false, window);
    ops::set_matmul_precision(ops::MatmulPrecision::BF16);
    ops::set_attention_kernel(ops::AttentionKernel::Cudnn);  // an error if cuDNN refused
    const StepOut a = train_step(Device::CUDA, false, false, 0, qk_norm, false, window);
    const StepOut b = train_step(Device::CUDA, false, false, 0, qk_norm, false, window);
    const StepOut c = train_step(Device::CUDA, false, true, 0, qk_norm, false, window);
    ops::set_attention_kernel(ops::AttentionKernel::Auto);
    ops::set_matmul_precision(ops::MatmulPrecision::F32);
    EXPECT_NEAR(a.loss, fp32.loss, 1e-2 * std::abs(fp32.loss));
    EXPECT_LT(rel_diff(a.grads, fp32.grads), 2e-2);
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(rel_diff(a.grads, b.grads), 0.0);
    EXPECT_EQ(rel_diff(a.grads, c.grads), 0.0);
  }
}

// q, k, v and their gradients as windows of the packed q|k|v product on the GPU: RoPE,
// qk-norm + RoPE, the plain attention kernel (fp32 windows in place, bf16 through fp32 copies)
// and cuDNN's (in place) give
// bitwise what they give on contiguous copies, and write nothing outside their windows.
TEST(CudaModel, OpsOnHeadWindowsAreBitwiseTheOpsOnCopies) {
  for (const auto kernel : {ops::AttentionKernel::Plain, ops::AttentionKernel::Cudnn})
    for (const DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(kernel == ops::AttentionKernel::Plain ? "plain kernel" : "cuDNN");
      ops::set_attention_kernel(kernel);
      test::check_head_windows(Device::CUDA, dt);
    }
  // cuDNN reads and writes bf16 windows in place (the model's layout without qk-norm: q, k, v
  // and dq, dk, dv all windows): no copy kernel runs.
  const int64_t B = 2, T = 16, H = 4, Hkv = 2, hd = 16, S = H + 2 * Hkv;
  const Tensor packed = test::random_in({B, T, S, hd}, DType::BF16, 11).to(Device::CUDA);
  const Tensor dout = test::random_in({B, T, H, hd}, DType::BF16, 12).to(Device::CUDA);
  Tensor grad = Tensor::empty({B, T, S, hd}, DType::BF16, Device::CUDA);
  Tensor out = Tensor::empty({B, T, H, hd}, DType::BF16, Device::CUDA);
  Tensor lse = Tensor::empty({B, H, T}, DType::F32, Device::CUDA);
  const ops::Heads q(packed, 0, H), k(packed, H, Hkv), v(packed, H + Hkv, Hkv);
  ops::set_attention_kernel(ops::AttentionKernel::Cudnn);
  op_profile::set_enabled(true);
  op_profile::reset();
  ops::attention_forward(out, lse, q, k, v);
  ops::attention_backward(ops::Heads(grad, 0, H), ops::Heads(grad, H, Hkv),
                          ops::Heads(grad, H + Hkv, Hkv), dout, q, k, v, out, lse);
  const std::vector<op_profile::Total> totals = op_profile::totals();
  op_profile::set_enabled(false);
  ops::set_attention_kernel(ops::AttentionKernel::Auto);
  std::string names;
  for (const op_profile::Total& t : totals) names += t.name + "; ";
  EXPECT_NE(names.find("attention_cudnn backward graph"), std::string::npos) << names;
  EXPECT_EQ(names.find("copy_rows"), std::string::npos) << names;
}

// A frozen model armed once (distill's online teacher) evaluates under bf16 products without
// rounding a weight again (no f32_to_bf16 kernel), bitwise as unarmed, where each product
// rounds its weight.
TEST(CudaModel, ArmedTeacherEvaluatesWithoutRoundingItsWeights) {
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  Transformer m(small(false), {}, Device::CUDA);
  m.init(7);
  const Batch b = random_batch(3, 16, 96, 11);
  const auto evaluate = [&](int64_t* conversions) {
    op_profile::set_enabled(true);
    op_profile::reset();
    m.evaluate(b.tokens, b.targets);
    *conversions = 0;
    for (const op_profile::Total& t : op_profile::totals())
      if (t.name == "f32_to_bf16") *conversions = t.calls;
    op_profile::set_enabled(false);
    return m.logits().to(Device::CPU);
  };
  int64_t unarmed = 0, armed = 0;
  const Tensor want = evaluate(&unarmed);
  m.arm_bf16_weights();
  const Tensor got = evaluate(&armed);
  m.disarm_bf16_weights();
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  EXPECT_GE(unarmed, 2 * 4 + 1);  // at least q|k|v, o, gate|up, down per layer and the head
  EXPECT_EQ(armed, 0);
  EXPECT_TRUE(test::same_bytes(got, want));
}

// train.attention: cudnn on a shape cuDNN does not take is an error naming the shape; auto
// falls back to the plain kernel (and says so once).
TEST(CudaModel, CudnnAttentionRefusalIsAnErrorOrAFallback) {
  Tensor q = Tensor::zeros({1, 4, 2, 12}, DType::F32, Device::CUDA);
  Tensor out = Tensor::zeros({1, 4, 2, 12}, DType::F32, Device::CUDA);
  Tensor lse = Tensor::zeros({1, 2, 4}, DType::F32, Device::CUDA);
  ops::set_attention_kernel(ops::AttentionKernel::Cudnn);
  try {
    ops::attention_forward(out, lse, q, q, q);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no fused attention engine for B=1 T=4 heads=2 kv_heads=2 head_dim=12"),
              std::string::npos) << e.what();
  }
  ops::set_attention_kernel(ops::AttentionKernel::Auto);
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  testing::internal::CaptureStderr();
  ops::attention_forward(out, lse, q, q, q);
  const std::string said = testing::internal::GetCapturedStderr();
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  EXPECT_NE(said.find("using the plain kernel"), std::string::npos) << said;
  // softmax of equal scores over keys 0..i: lse_i = log(i + 1)
  const Tensor l = lse.to(Device::CPU);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(l.host<float>()[i], std::log(i + 1.0), 1e-6);

  // With a sliding window the shape's line names it; over keys i − 1, i:
  // lse_i = log(min(i + 1, 2)).
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  testing::internal::CaptureStderr();
  ops::attention_forward(out, lse, q, q, q, 2);
  const std::string said_window = testing::internal::GetCapturedStderr();
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  EXPECT_NE(said_window.find("head_dim=12 window=2 (head_dim 12"), std::string::npos) << said_window;
  EXPECT_STREQ(ops::attention_kernel_used(), "plain");
  const Tensor lw = lse.to(Device::CPU);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(lw.host<float>()[i], std::log(std::min(i + 1, 2)), 1e-6);
}

#if RETORT_CUDA_SIM
// A cuDNN that takes only packed layouts (the simulator under SIM_CUDNN_DENSE_ONLY=1) refuses
// attention on head windows: ops retry through contiguous copies, say so once, and compute
// bitwise what cuDNN computes on contiguous tensors.
TEST(CudaModel, CudnnRefusingHeadWindowsGetsContiguousCopies) {
  const int64_t B = 1, T = 12, H = 2, Hkv = 1, hd = 16, S = H + 2 * Hkv;  // a shape of its own
  const DType b16 = DType::BF16;
  const Device gpu = Device::CUDA;
  const Tensor packed = test::random_in({B, T, S, hd}, b16, 21).to(gpu);
  const Tensor dout = test::random_in({B, T, H, hd}, b16, 22).to(gpu);
  const ops::Heads q(packed, 0, H), k(packed, H, Hkv), v(packed, H + Hkv, Hkv);
  Tensor grad = Tensor::empty({B, T, S, hd}, b16, gpu),
         out = Tensor::empty({B, T, H, hd}, b16, gpu);
  Tensor lse = Tensor::empty({B, H, T}, DType::F32, gpu);
  setenv("SIM_CUDNN_DENSE_ONLY", "1", 1);
  ops::set_attention_kernel(ops::AttentionKernel::Cudnn);
  op_profile::set_enabled(true);
  op_profile::reset();
  testing::internal::CaptureStderr();
  ops::attention_forward(out, lse, q, k, v);
  ops::attention_backward(ops::Heads(grad, 0, H), ops::Heads(grad, H, Hkv),
                          ops::Heads(grad, H + Hkv, Hkv), dout, q, k, v, out, lse);
  const std::string said = testing::internal::GetCapturedStderr();
  const std::vector<op_profile::Total> totals = op_profile::totals();
  op_profile::set_enabled(false);
  // The same on contiguous copies of the windows (packed layouts: taken as they are).
  const Tensor qc = test::window_copy(packed, 0, H).to(gpu),
               kc = test::window_copy(packed, H, Hkv).to(gpu),
               vc = test::window_copy(packed, H + Hkv, Hkv).to(gpu);
  Tensor out2 = Tensor::empty(out.shape(), b16, gpu),
         lse2 = Tensor::empty(lse.shape(), DType::F32, gpu);
  Tensor dq = Tensor::empty(qc.shape(), b16, gpu), dk = Tensor::empty(kc.shape(), b16, gpu),
         dv = Tensor::empty(vc.shape(), b16, gpu);
  ops::attention_forward(out2, lse2, qc, kc, vc);
  ops::attention_backward(dq, dk, dv, dout, qc, kc, vc, out, lse);
  ops::set_attention_kernel(ops::AttentionKernel::Auto);
  unsetenv("SIM_CUDNN_DENSE_ONLY");
  for (const char* op : {"attention_forward", "attention_backward"})
    EXPECT_NE(
        said.find(std::string("retort: ") + op + ": cuDNN refused the head windows for B=1 T=12"),
        std::string::npos)
        << said;
  EXPECT_NE(said.find("SIM_CUDNN_DENSE_ONLY"), std::string::npos) << said;  // cuDNN's reason
  std::string names;
  for (const op_profile::Total& t : totals) names += t.name + "; ";
  EXPECT_NE(names.find("copy_rows"), std::string::npos) << names;
  EXPECT_NE(names.find("attention_cudnn backward graph"), std::string::npos) << names;
  EXPECT_TRUE(test::same_bytes(out, out2));
  EXPECT_TRUE(test::same_bytes(lse, lse2));
  EXPECT_TRUE(test::same_bytes(test::window_copy(grad, 0, H), dq));
  EXPECT_TRUE(test::same_bytes(test::window_copy(grad, H, Hkv), dk));
  EXPECT_TRUE(test::same_bytes(test::window_copy(grad, H + Hkv, Hkv), dv));
}

// A cuDNN that accepts the attention graph but computes something else (here the simulator
// reads BINARY_SELECT's mask the other way round: the causal mask inverted) is caught by the
// first-use comparison with the plain kernel: auto falls back with the reason, cudnn is an
// error, and the outputs are the plain kernel's.
TEST(CudaModel, CudnnAttentionThatDisagreesWithThePlainKernelIsNotUsed) {
  const Shape qs{2, 24, 4, 16}, ks{2, 24, 2, 16};  // a shape no other test uses
  Tensor q = Tensor::empty(qs), k = Tensor::empty(ks), v = Tensor::empty(ks);
  uint64_t stream = 70;
  for (Tensor* t : {&q, &k, &v})
    for (int64_t i = 0; i < t->numel(); ++i) t->host<float>()[i] = float(rng::normal(3, ++stream, i));
  const Tensor dq = q.to(Device::CUDA), dk = k.to(Device::CUDA), dv = v.to(Device::CUDA);
  Tensor plain = Tensor::empty(qs, DType::F32, Device::CUDA), out = Tensor::empty(qs, DType::F32, Device::CUDA);
  Tensor lse = Tensor::empty({2, 4, 24}, DType::F32, Device::CUDA);
  ops::set_attention_kernel(ops::AttentionKernel::Plain);
  ops::attention_forward(plain, lse, dq, dk, dv);

  setenv("SIM_CUDNN_SELECT_SWAPPED", "1", 1);
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  ops::set_attention_kernel(ops::AttentionKernel::Auto);
  testing::internal::CaptureStderr();
  ops::attention_forward(out, lse, dq, dk, dv);
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("its forward differs from the plain kernel's by"), std::string::npos) << said;
  EXPECT_STREQ(ops::attention_kernel_used(), "plain");
  EXPECT_EQ(rel_diff(out, plain), 0.0);
  ops::set_attention_kernel(ops::AttentionKernel::Cudnn);
  try {
    ops::attention_forward(out, lse, dq, dk, dv);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("differs from the plain kernel"), std::string::npos) << e.what();
  }
  ops::set_attention_kernel(ops::AttentionKernel::Auto);
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  unsetenv("SIM_CUDNN_SELECT_SWAPPED");
}
#endif
