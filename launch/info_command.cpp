// retort info CONFIG [--json]: parameter and FLOP counts (SPEC §1), a memory estimate for one
// training process (fp32 weights, gradients, AdamW moments, saved activations at the config's
// precision), the KV cache `retort generate` holds in sample mode for generate.batch sequences,
// and the devices this build and machine offer.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/blas_kernels.h"
#include "core/device.h"
#include "launch/commands.h"
#include "launch/train_step.h"
#include "models/kv_cache_decoder.h"
#include "models/model_config.h"

namespace retort {

namespace {

// Bytes saved per token by one block's forward (models/transformer.h BlockActs), `a` bytes per
// activation element (4; 2 under bf16 activations): the residual x_in and x_mid stay fp32
// (8d); h1, h2 (2d); q, k, v; qr, kr with qk-norm (without it RoPE rotates q, k in place);
// att (H·hd); gate, up, act (3F).
int64_t saved_bytes_per_token_per_block(const ModelConfig& m, int64_t a) {
  const int64_t q = m.n_heads * m.head_dim, kv = m.n_kv_heads * m.head_dim;
  return 8 * m.d_model + a * (2 * m.d_model + q + 2 * kv + (m.qk_norm ? q + kv : 0) + q + 3 * m.d_ff);
}

}  // namespace

int run_info(const Config& cfg, bool json) {
  const ModelConfig m = ModelConfig::from_config(cfg);
  const BatchGeometry g = BatchGeometry::from_config(cfg, m.seq_len);
  const bool recompute = cfg.get_bool("train.recompute");
  const int64_t rows = g.micro_seqs * m.seq_len;
  const int64_t blocks_kept = recompute ? 1 : m.n_layers;
  const bool bf16 = cfg.get_string("train.precision") == "bf16";
  const int64_t a = bf16 ? 2 : 4;
  // per token: the blocks (with recompute: one block, and every block's fp32 input), the last
  // residual (fp32), the final norm's output and the logits, a bytes each (dlogits overwrite
  // them; a distilled student's fp32 logits and dlogits are not counted)
  const int64_t act_bytes =
      rows * (blocks_kept * saved_bytes_per_token_per_block(m, a) +
              (recompute ? 4 * m.n_layers * m.d_model : 0) + 4 * m.d_model + a * m.d_model +
              a * m.vocab_size);
  const int64_t N = m.n_params();
  const int64_t weights16 = bf16 ? 2 * N : 0;  // the step's bf16 copy of the weights
  // sample mode's KV cache: generate.seq_len − 1 positions (default the model's seq_len), bf16
  // keys and values under generate.precision: bf16
  const int64_t gen_positions =
      cfg.get_int("generate.seq_len") > 0 ? cfg.get_int("generate.seq_len") - 1 : m.seq_len;
  const bool gen_bf16 = cfg.get_string("generate.precision") == "bf16";
  const int64_t gen_batch = cfg.get_int("generate.batch");
  const int64_t cache_per_seq =
      KvCacheDecoder::cache_bytes(m, 1, gen_positions, gen_bf16 ? DType::BF16 : DType::F32);
  nlohmann::json j = {
      {"params", N},
      {"params_nonembedding", m.n_params_nonemb()},
      {"flops_per_token_6N", m.flops_per_token_6N()},
      {"flops_per_token_exact", m.flops_per_token_exact()},
      {"flops_per_token_mfu", m.flops_per_token_mfu()},
      {"tokens_per_step", g.tokens_per_step()},
      {"flops_per_step_exact", static_cast<double>(m.flops_per_token_exact()) * g.tokens_per_step()},
      {"memory_bytes",
       {{"params", 4 * N}, {"grads", 4 * N}, {"optimizer", 8 * N}, {"weights_bf16", weights16},
        {"activations_per_micro_batch", act_bytes}, {"total", 16 * N + weights16 + act_bytes}}},
      {"generate_kv_cache_bytes",
       {{"per_sequence", cache_per_seq}, {"batch", gen_batch},
        {"total", cache_per_seq * gen_batch}}},
      {"mup_lr_scale", m.mup_lr_scale()},
      {"cuda_built", device::cuda_built()},
      {"cuda_gpus", device::cuda_device_count()}};
  if (json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  auto mib = [](int64_t b) { return b / 1048576.0; };
  const std::string extras =  // a sliding window, µP's learning rates
      str_cat(m.sliding_window > 0 ? str_cat(" window=", m.sliding_window) : "",
              m.mup_base_width > 0 ? str_cat(" muP(d0=", m.mup_base_width, ": hidden lr x", m.mup_lr_scale(), ")") : "");
  std::printf("model        V=%lld d=%lld L=%lld H=%lld Hkv=%lld hd=%lld F=%lld T=%lld %s%s%s%s\n",
              (long long)m.vocab_size, (long long)m.d_model, (long long)m.n_layers,
              (long long)m.n_heads, (long long)m.n_kv_heads, (long long)m.head_dim,
              (long long)m.d_ff, (long long)m.seq_len, m.tie_embeddings ? "tied" : "untied",
              m.qk_norm ? " qk-norm" : "", m.qkv_bias ? " qkv-bias" : "", extras.c_str());
  std::printf("params       N = %lld, N_nonemb = %lld\n", (long long)N,
              (long long)m.n_params_nonemb());
  std::printf("FLOPs/token  6N = %lld, exact = %lld, MFU convention = %lld\n",
              (long long)m.flops_per_token_6N(), (long long)m.flops_per_token_exact(),
              (long long)m.flops_per_token_mfu());
  std::printf("step         %lld tokens = %lld micro-batches of %lld sequences; %.3g FLOP (exact)\n",
              (long long)g.tokens_per_step(), (long long)g.n_micro, (long long)g.micro_seqs,
              j["flops_per_step_exact"].get<double>());
  char w16[64] = "";
  if (bf16) std::snprintf(w16, sizeof w16, " + bf16 weights %.1f MiB", mib(weights16));
  std::printf("memory       params %.1f MiB + grads %.1f MiB + AdamW %.1f MiB%s + activations "
              "%.1f MiB%s = %.1f MiB per process\n",
              mib(4 * N), mib(4 * N), mib(8 * N), w16, mib(act_bytes),
              recompute ? " (recompute)" : "", mib(16 * N + weights16 + act_bytes));
  std::printf("generate     sample mode's KV cache %.1f MiB per sequence (%lld positions, %s) x "
              "generate.batch %lld = %.1f MiB\n",
              mib(cache_per_seq), (long long)gen_positions, gen_bf16 ? "bf16" : "fp32",
              (long long)gen_batch, mib(cache_per_seq * gen_batch));
  std::printf("devices      cpu, OpenBLAS kernels %s%s\n", blas_kernels().c_str(),
              device::cuda_built()
                  ? str_cat("; cuda backend built, ", device::cuda_device_count(),
#if RETORT_CUDA_SIM
                            " simulated GPU(s) (RETORT_CUDA=SIM: the CPU simulator, for tests)")
#else
                            " GPU(s) visible")
#endif
                        .c_str()
                  : "; no cuda backend in this build");
  return 0;
}

}  // namespace retort
