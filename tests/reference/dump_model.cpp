// dump_model: build a small Transformer, run one forward/backward on random tokens and write
//   OUTDIR/model.h5  every parameter (float32, SPEC name) + the model shape as root attributes
//   OUTDIR/grads.h5  tokens [B, T+1] int32, attributes z_loss/loss/ce/z, grad/<name> per parameter
// for tests/reference/torch_reference.py.
//
// Usage: dump_model OUTDIR [key=value ...]
//   keys: vocab d layers heads kv_heads head_dim ff seq T batch tied qk_norm seed z_loss
//         init init_std perturb_gains (norm gains = 1 + perturb_gains·N(0,1), so that a gain
//         used wrongly shows up) recompute
//         kd (none | online | renormalize | bucket: add the distillation loss of
//         models/distill_loss.h against a second, randomly initialised teacher; offline modes
//         use its top-k log-probs at tau) lambda tau k
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <map>
#include <string>

#include "core/hdf5.h"
#include "core/ops.h"
#include "core/random.h"
#include "models/distill_loss.h"
#include "models/transformer.h"

using namespace retort;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dump_model OUTDIR [key=value ...]\n");
    return 2;
  }
  std::map<std::string, std::string> a = {
      {"vocab", "64"}, {"d", "32"},     {"layers", "2"},      {"heads", "4"},   {"kv_heads", "2"},
      {"head_dim", "0"}, {"ff", "0"},   {"seq", "16"},        {"T", "0"},       {"batch", "2"},
      {"tied", "1"},   {"qk_norm", "1"}, {"qkv_bias", "0"}, {"seed", "1234"},    {"z_loss", "1e-3"},
      {"init", "normal"}, {"init_std", "0.1"}, {"perturb_gains", "0.2"}, {"recompute", "0"},
      {"kd", "none"}, {"lambda", "0.6"}, {"tau", "1.5"}, {"k", "8"}, {"rope_scaling", "none"},
      {"rope_factor", "8"}, {"rope_low", "1"}, {"rope_high", "4"}, {"rope_original", "8192"},
      {"window", "0"}, {"no_rope", "0"}};
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    auto eq = s.find('=');
    if (eq == std::string::npos || !a.count(s.substr(0, eq))) {
      std::fprintf(stderr, "dump_model: bad argument '%s'\n", s.c_str());
      return 2;
    }
    a[s.substr(0, eq)] = s.substr(eq + 1);
  }
  auto I = [&](const char* k) { return std::stoll(a[k]); };
  auto D = [&](const char* k) { return std::stod(a[k]); };
  try {
    ModelConfig mc;
    mc.vocab_size = I("vocab");
    mc.d_model = I("d");
    mc.n_layers = I("layers");
    mc.n_heads = I("heads");
    mc.n_kv_heads = I("kv_heads");
    mc.head_dim = I("head_dim");
    mc.d_ff = I("ff");
    mc.seq_len = I("seq");
    mc.tie_embeddings = I("tied") != 0;
    mc.qk_norm = I("qk_norm") != 0;
    mc.qkv_bias = I("qkv_bias") != 0;
    mc.sliding_window = I("window");
    mc.no_rope_interval = I("no_rope");
    mc.init = a["init"];
    mc.init_std = D("init_std");
    mc.rope_scaling = a["rope_scaling"];
    mc.rope_scaling_factor = D("rope_factor");
    mc.rope_low_freq_factor = D("rope_low");
    mc.rope_high_freq_factor = D("rope_high");
    mc.rope_original_max_position = I("rope_original");
    mc.resolve();
    const int64_t B = I("batch"), T = I("T") > 0 ? I("T") : mc.seq_len;
    const uint64_t seed = uint64_t(I("seed"));
    const float z_loss = float(D("z_loss"));

    Transformer model(mc);
    model.set_recompute(I("recompute") != 0);
    model.init(seed);
    const double pg = D("perturb_gains");
    for (const Parameter& p : model.parameters()) {
      if (p.value.ndim() != 1 || pg == 0) continue;  // norm gains (1) and biases (0) are 1-D
      const double centre = p.name.find(".bias") != std::string::npos ? 0.0 : 1.0;
      float* g = p.value.host<float>();
      for (int64_t i = 0; i < p.value.numel(); ++i)
        g[i] = float(centre + pg * rng::normal(seed + 7, rng::hash_string(p.name), uint64_t(i)));
    }

    Tensor tokens = Tensor::empty({B, T + 1}, DType::I32);
    int32_t* tk = tokens.host<int32_t>();
    for (int64_t i = 0; i < B * (T + 1); ++i)
      tk[i] = int32_t(rng::uniform(seed, rng::hash_string("tokens"), uint64_t(i)) * double(mc.vocab_size));
    Tensor inputs = Tensor::empty({B, T}, DType::I32), targets = Tensor::empty({B, T}, DType::I32);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        inputs.host<int32_t>()[b * T + t] = tk[b * (T + 1) + t];
        targets.host<int32_t>()[b * T + t] = tk[b * (T + 1) + t + 1];
      }

    // Distillation: teacher = same shape, another seed; its logits [R, V] or their top-k.
    const std::string kd_mode = a["kd"];
    const int64_t R = B * T, V = mc.vocab_size, K = I("k");
    std::optional<Transformer> teacher;
    std::optional<DistillLoss> kd;
    Tensor tlogits = Tensor::empty({R, V}), ids = Tensor::empty({R, K}, DType::I32), lp = Tensor::empty({R, K});
    if (kd_mode != "none") {
      ops::KdTail tail = ops::KdTail::Renormalize;
      if (kd_mode != "online" && !parse_kd_tail(kd_mode, &tail)) throw Error("bad kd=" + kd_mode);
      teacher.emplace(mc);
      teacher->init(seed + 99);
      teacher->evaluate(inputs, targets);
      ops::copy(tlogits, teacher->logits());
      const double tau = D("tau");
      for (int64_t r = 0; r < R; ++r) {  // top-k log-softmax(t/τ), by descending probability
        const float* t = tlogits.host<float>() + r * V;
        double m = -1e300, s = 0;
        for (int64_t v = 0; v < V; ++v) m = std::max(m, t[v] / tau);
        for (int64_t v = 0; v < V; ++v) s += std::exp(t[v] / tau - m);
        std::vector<int> order(V);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return t[x] > t[y]; });
        for (int64_t i = 0; i < K; ++i) {
          ids.host<int32_t>()[r * K + i] = order[i];
          lp.host<float>()[r * K + i] = float(t[order[i]] / tau - m - std::log(s));
        }
      }
      kd.emplace(D("lambda"), tau, tail);
      if (kd_mode == "online") kd->set_teacher_logits(tlogits);
      else kd->set_topk(ids, lp);
      model.set_logits_loss(&*kd, kd->ce_weight());
    }

    model.zero_grad();
    LossResult r = model.forward(inputs, targets, z_loss);
    model.backward(1.0f);
    std::printf("N=%lld loss=%.9g ce=%.9g z=%.9g\n", (long long)model.num_params(), r.loss, r.ce, r.z);

    const std::string dir = argv[1];
    h5::File m = h5::File::create(dir + "/model.h5");
    for (const Parameter& p : model.parameters()) m.write(p.name, p.value);
    m.set_attr("vocab_size", mc.vocab_size);
    m.set_attr("d_model", mc.d_model);
    m.set_attr("n_layers", mc.n_layers);
    m.set_attr("n_heads", mc.n_heads);
    m.set_attr("n_kv_heads", mc.n_kv_heads);
    m.set_attr("head_dim", mc.head_dim);
    m.set_attr("d_ff", mc.d_ff);
    m.set_attr("rope_theta", mc.rope_theta);
    m.set_attr("rope_scaling", mc.rope_scaling);
    m.set_attr("rope_scaling_factor", mc.rope_scaling_factor);
    m.set_attr("rope_low_freq_factor", mc.rope_low_freq_factor);
    m.set_attr("rope_high_freq_factor", mc.rope_high_freq_factor);
    m.set_attr("rope_original_max_position", mc.rope_original_max_position);
    m.set_attr("norm_eps", mc.norm_eps);
    m.set_attr("qk_norm", int64_t(mc.qk_norm));
    m.set_attr("qkv_bias", int64_t(mc.qkv_bias));
    m.set_attr("sliding_window", mc.sliding_window);
    m.set_attr("no_rope_interval", mc.no_rope_interval);
    m.set_attr("tie_embeddings", int64_t(mc.tie_embeddings));
    m.close();

    h5::File g = h5::File::create(dir + "/grads.h5");
    g.write("tokens", tokens);
    g.set_attr("z_loss", double(z_loss));
    g.set_attr("loss", r.loss);
    g.set_attr("ce", r.ce);
    g.set_attr("z", r.z);
    if (kd) {
      g.set_attr("kd_mode", kd_mode);
      g.set_attr("kd_lambda", D("lambda"));
      g.set_attr("kd_tau", D("tau"));
      g.set_attr("kl", kd->last_kl());
      if (kd_mode == "online") g.write("teacher_logits", tlogits);
      else g.write("topk_ids", ids), g.write("topk_logprobs", lp);
    }
    for (const Parameter& p : model.parameters()) g.write("grad/" + p.name, p.grad);
    g.close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dump_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
