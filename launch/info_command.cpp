// retort info CONFIG [--json]: parameter and FLOP counts (SPEC §1) and a memory estimate
// for one process (fp32 weights, gradients, AdamW moments, saved activations), and the
// devices this build and machine offer.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/device.h"
#include "launch/commands.h"
#include "launch/train_step.h"
#include "models/model_config.h"

namespace retort {

namespace {

// Floats saved per token by one block's forward (see models/transformer.h BlockActs):
// h1, x_mid, h2, residual (4d); q, qr, att (3·H·hd); k, kr, v (3·Hkv·hd); gate, up, act (3F).
int64_t saved_floats_per_token_per_block(const ModelConfig& m) {
  return 4 * m.d_model + 3 * m.n_heads * m.head_dim + 3 * m.n_kv_heads * m.head_dim + 3 * m.d_ff;
}

}  // namespace

int run_info(const Config& cfg, bool json) {
  const ModelConfig m = ModelConfig::from_config(cfg);
  const BatchGeometry g = BatchGeometry::from_config(cfg, m.seq_len);
  const bool recompute = cfg.get_bool("train.recompute");
  const int64_t rows = g.micro_seqs * m.seq_len;
  const int64_t blocks_kept = recompute ? 1 : m.n_layers;
  const int64_t act_bytes =
      4 * rows * (blocks_kept * saved_floats_per_token_per_block(m) +
                  (recompute ? m.n_layers * m.d_model : 0) + 2 * m.d_model + m.vocab_size);
  const int64_t N = m.n_params();
  nlohmann::json j = {
      {"params", N},
      {"params_nonembedding", m.n_params_nonemb()},
      {"flops_per_token_6N", m.flops_per_token_6N()},
      {"flops_per_token_exact", m.flops_per_token_exact()},
      {"flops_per_token_mfu", m.flops_per_token_mfu()},
      {"tokens_per_step", g.tokens_per_step()},
      {"flops_per_step_exact", static_cast<double>(m.flops_per_token_exact()) * g.tokens_per_step()},
      {"memory_bytes",
       {{"params", 4 * N}, {"grads", 4 * N}, {"optimizer", 8 * N},
        {"activations_per_micro_batch", act_bytes}, {"total", 16 * N + act_bytes}}},
      {"cuda_built", device::cuda_built()},
      {"cuda_gpus", device::cuda_device_count()}};
  if (json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  auto mib = [](int64_t b) { return b / 1048576.0; };
  std::printf("model        V=%lld d=%lld L=%lld H=%lld Hkv=%lld hd=%lld F=%lld T=%lld %s%s\n",
              (long long)m.vocab_size, (long long)m.d_model, (long long)m.n_layers,
              (long long)m.n_heads, (long long)m.n_kv_heads, (long long)m.head_dim,
              (long long)m.d_ff, (long long)m.seq_len, m.tie_embeddings ? "tied" : "untied",
              m.qk_norm ? " qk-norm" : "");
  std::printf("params       N = %lld, N_nonemb = %lld\n", (long long)N,
              (long long)m.n_params_nonemb());
  std::printf("FLOPs/token  6N = %lld, exact = %lld, MFU convention = %lld\n",
              (long long)m.flops_per_token_6N(), (long long)m.flops_per_token_exact(),
              (long long)m.flops_per_token_mfu());
  std::printf("step         %lld tokens = %lld micro-batches of %lld sequences; %.3g FLOP (exact)\n",
              (long long)g.tokens_per_step(), (long long)g.n_micro, (long long)g.micro_seqs,
              j["flops_per_step_exact"].get<double>());
  std::printf("memory       params %.1f MiB + grads %.1f MiB + AdamW %.1f MiB + activations "
              "%.1f MiB%s = %.1f MiB per process\n",
              mib(4 * N), mib(4 * N), mib(8 * N), mib(act_bytes), recompute ? " (recompute)" : "",
              mib(16 * N + act_bytes));
  std::printf("devices      cpu%s\n",
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
