// retort bench CONFIG: times steady-state training steps (forward, backward, clip, AdamW)
// on synthetic tokens and prints JSON. Also measures the sgemm ceiling (ops::matmul,
// 1024³) in the same process so model FLOP/s can be read as a fraction of it.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/blas_kernels.h"
#include "core/device.h"
#include "core/fs.h"
#include "core/op_profile.h"
#include "core/ops.h"
#include "core/random.h"
#include "launch/commands.h"
#include "launch/train_step.h"
#include "parallel/job_check.h"
#include "parallel/gpu_mesh.h"
#include "parallel/mesh.h"

namespace retort {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Best-of-5 GFLOP/s of a square fp32 matmul of size n.
// The matmul ceiling of this device at the run's precision: GFLOP/s of the best of 5 square
// [n, n] @ [n, n]ᵀ products (one warm-up first; the GPU is synchronised around each).
double matmul_gflops(int64_t n, Device device) {
  Tensor a = Tensor::empty({n, n}, DType::F32, device), b = Tensor::empty({n, n}, DType::F32, device),
         c = Tensor::empty({n, n}, DType::F32, device);
  ops::fill(a, 0.5f);
  ops::fill(b, 0.25f);
  ops::matmul(c, a, false, b, true);
  device::synchronize();
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    double t = now_s();
    ops::matmul(c, a, false, b, true);
    device::synchronize();
    best = std::min(best, now_s() - t);
  }
  return 2.0 * n * n * n / best / 1e9;
}

// Bytes sent per rank on each mesh axis (ring algorithms; parallel/communicator.h).
constexpr const char* kAxisNames[3] = {"dp", "fsdp", "tp"};
struct AxisBytes {
  int64_t bytes[3] = {0, 0, 0};
};

AxisBytes axis_wire_bytes(const Mesh& mesh) {
  AxisBytes b;
  b.bytes[0] = mesh.dp_comm->wire_bytes();
  b.bytes[1] = mesh.fsdp_comm->wire_bytes();
  b.bytes[2] = mesh.tp_comm->wire_bytes();
  return b;
}

// The textbook volumes per optimizer step and rank, for P = this tp rank's parameters (4 bytes
// each, or 2 gathered with parallel.param_gather bf16; gradients G = 4 bytes each, or 2 with
// parallel.grad_reduce bf16), m micro-batches of
// R = micro_seqs·T rows:
//   dp:   2·G·(n−1)/n                     (all-reduce; of the fsdp shard G/f when sharded)
//   fsdp: m·(2·P + G)·(f−1)/f             (gather for forward and backward, reduce-scatter;
//                                          P + G with keep_params)
//   tp:   m·(8L + 4)·R·d·(t−1)/t          (per layer 2 regions × (forward + backward) × one
//                                          all-reduce = all-gather + reduce-scatter under sp
//                                          (Korthikanti et al. 2022); + embedding and head)
AxisBytes theoretical_wire_bytes(const Mesh& mesh, const ModelConfig& mc, const BatchGeometry& g,
                                 int64_t params, bool keep_params, bool bf16_grads,
                                 bool bf16_params) {
  AxisBytes b;
  const double P = double(params) * (bf16_params ? 2 : 4), G = double(params) * (bf16_grads ? 2 : 4),
               m = double(g.n_micro);
  const double f = mesh.fsdp, n = mesh.dp, t = mesh.tp;
  b.bytes[0] = int64_t(2 * (G / f) * (n - 1) / n);
  b.bytes[1] = int64_t(m * ((keep_params ? 1 : 2) * P + G) * (f - 1) / f);
  const double R = double(g.micro_seqs * g.seq_len), d = double(mc.d_model);
  b.bytes[2] = int64_t(m * (8 * double(mc.n_layers) + 4) * R * d * 4 * (t - 1) / t);
  return b;
}

// RETORT_OP_PROFILE=1: the timed steps' GPU time per kernel (core/op_profile.h), per step and
// as a share of the median step, also printed on stderr; the matmuls (timed per shape, each
// with its TFLOP/s) summed apart.
nlohmann::json op_profile_json(const std::vector<op_profile::Total>& profile, int64_t steps,
                               double step_s) {
  nlohmann::json ops = nlohmann::json::array(), shapes = nlohmann::json::array();
  std::fprintf(stderr, "retort bench: GPU time per step by kernel (RETORT_OP_PROFILE; step %.1f ms)\n",
               step_s * 1e3);
  op_profile::Total all{"all matmuls"};
  for (const op_profile::Total& t : profile) {
    const double ms = t.seconds / steps * 1e3;
    if (t.flops > 0) {  // one product shape
      all.calls += t.calls;
      all.seconds += t.seconds;
      all.flops += t.flops;
      shapes.push_back({{"shape", t.name}, {"calls_per_step", t.calls / steps}, {"ms_per_step", ms},
                        {"tflops", t.flops / t.seconds / 1e12}});
      continue;
    }
    nlohmann::json op = {{"kernel", t.name}, {"calls_per_step", t.calls / steps},
                         {"ms_per_step", ms}, {"share_of_step", ms / (step_s * 1e3)}};
    char bandwidth[32] = "";  // kernels that count the bytes they move (RETORT_KERNEL_MOVING)
    if (t.bytes > 0) {
      op["gb_per_s"] = t.bytes / t.seconds / 1e9;
      std::snprintf(bandwidth, sizeof bandwidth, "  %.4g GB/s", t.bytes / t.seconds / 1e9);
    }
    ops.push_back(op);
    std::fprintf(stderr, "  %-36s %9.2f ms  %6lld calls  %5.1f%%%s\n", t.name.c_str(), ms,
                 static_cast<long long>(t.calls / steps), 100 * ms / (step_s * 1e3), bandwidth);
  }
  nlohmann::json matmul;
  if (all.calls > 0) {
    const double ms = all.seconds / steps * 1e3;
    matmul = {{"calls_per_step", all.calls / steps}, {"ms_per_step", ms},
              {"tflops", all.flops / all.seconds / 1e12}, {"shapes", shapes}};
    std::fprintf(stderr, "  %-36s %9.2f ms  %6lld calls  %.3g TFLOP/s\n", all.name.c_str(), ms,
                 static_cast<long long>(all.calls / steps), all.flops / all.seconds / 1e12);
    for (const auto& sh : shapes)
      std::fprintf(stderr, "    %-34s %9.2f ms  %6lld calls  %.3g TFLOP/s\n",
                   sh["shape"].get<std::string>().c_str(), sh["ms_per_step"].get<double>(),
                   static_cast<long long>(sh["calls_per_step"].get<int64_t>()),
                   sh["tflops"].get<double>());
  }
  return {{"kernels", ops}, {"matmul", matmul}};
}

// train.matmul_tuning: timed: what the timing chose per product shape (ops::TunedProduct), also
// printed on stderr.
nlohmann::json tuned_products_json() {
  nlohmann::json products = nlohmann::json::array();
  for (const ops::TunedProduct& t : ops::matmul_tuned_products()) {
    products.push_back({{"shape", t.shape}, {"key", t.key}, {"candidates", t.candidates},
                        {"chosen", t.chosen}, {"heuristic_us", t.heuristic_us},
                        {"chosen_us", t.chosen_us}});
    std::fprintf(stderr, "  %-36s %d candidates, chose #%d: %9.1f us (heuristic's first %9.1f us)\n",
                 t.shape.c_str(), t.candidates, t.chosen, t.chosen_us, t.heuristic_us);
  }
  return products;
}

}  // namespace

int run_bench(const Config& cfg) {
  Mesh mesh = make_mesh(cfg);
  place_mesh(mesh, cfg);
  check_same_job(mesh, cfg);
  check_mesh_fits_model(mesh, cfg);
  apply_thread_setting(cfg);
  const ModelConfig mc = ModelConfig::from_config(cfg);
  const BatchGeometry geo = BatchGeometry::from_config(cfg, mc.seq_len, mesh.data_ranks());
  const int64_t steps = cfg.get_int("bench.steps"), warmup = cfg.get_int("bench.warmup");
  if (steps < 1) cfg.fail("bench.steps", "must be >= 1");
  if (warmup < 0) cfg.fail("bench.warmup", "must be >= 0");
  int64_t ceiling_n = cfg.get_int("bench.ceiling_n");
  if (ceiling_n < 0) cfg.fail("bench.ceiling_n", "must be >= 0 (0: 8192 on a GPU, 1024 on the CPU)");

  Transformer model(mc, mesh.tp_layout(), mesh.device);
  model.set_recompute(cfg.get_bool("train.recompute"));
  model.init(static_cast<uint64_t>(cfg.get_int("train.seed")));
  TrainStep trainer(model, cfg, geo, mesh);
  // Synthetic tokens: uniform ids, a pure function of the sample index.
  auto source = [&](int64_t first, int64_t count, Tensor& inputs, Tensor& targets) {
    int32_t* in = inputs.host<int32_t>();
    int32_t* tg = targets.host<int32_t>();
    const int64_t T = mc.seq_len;
    for (int64_t s = 0; s < count; ++s)
      for (int64_t t = 0; t <= T; ++t) {
        auto id = static_cast<int32_t>(rng::hash(7, first + s, t) % mc.vocab_size);
        if (t < T) in[s * T + t] = id;
        if (t > 0) tg[s * T + t - 1] = id;
      }
  };

  std::vector<double> times;
  AxisBytes before;
  for (int64_t i = 0; i < warmup + steps; ++i) {
    if (i == warmup) {
      before = axis_wire_bytes(mesh);
      op_profile::reset();
    }
    double t = now_s();
    trainer.run(i, 1e-4, source);
    device::synchronize();
    if (i >= warmup) times.push_back(now_s() - t);
  }
  const AxisBytes after = axis_wire_bytes(mesh);
  const std::vector<op_profile::Total> profile = op_profile::totals();  // before the ceiling's matmuls
  const bool keep = cfg.get_bool("parallel.fsdp_keep_params");
  const bool bf16_grads = cfg.get_string("parallel.grad_reduce") == "bf16";  // checked by TrainStep
  const bool bf16_params = cfg.get_string("parallel.param_gather") == "bf16";  // checked by TrainStep
  const AxisBytes theory =
      theoretical_wire_bytes(mesh, mc, geo, model.num_params(), keep, bf16_grads, bf16_params);
  nlohmann::json comm;
  for (int a = 0; a < 3; ++a)
    comm[kAxisNames[a]] = {{"measured_bytes_per_step", (after.bytes[a] - before.bytes[a]) / steps},
                           {"theory_bytes_per_step", theory.bytes[a]}};
  const double step_s = median(times);
  const double tok_s = geo.tokens_per_step() / step_s;
  const double gflops_mfu = tok_s * mc.flops_per_token_mfu() / 1e9;
  const double gflops_exact = tok_s * mc.flops_per_token_exact() / 1e9;
  const bool gpu = mesh.device == Device::CUDA;
  if (ceiling_n == 0) ceiling_n = gpu ? 8192 : 1024;
  const double ceiling = matmul_gflops(ceiling_n, mesh.device);
  const double peak_tflops = cfg.get_float("bench.peak_tflops");
  if (!mesh.is_root()) return 0;
  nlohmann::json j = {{"config", cfg.source()},
                      {"threads", omp_get_max_threads()},
                      {"tokens_per_step", geo.tokens_per_step()},
                      {"steps_timed", steps},
                      {"step_s_median", step_s},
                      {"tokens_per_s", tok_s},
                      {"flops_per_token_mfu", mc.flops_per_token_mfu()},
                      {"flops_per_token_exact", mc.flops_per_token_exact()},
                      {"achieved_gflops", gflops_mfu},
                      {"achieved_gflops_exact", gflops_exact},
                      {"device", gpu ? "cuda" : "cpu"},
                      {"precision", cfg.get_string("train.precision")},
                      {"grad_reduce", cfg.get_string("parallel.grad_reduce")},
                      {"param_gather", cfg.get_string("parallel.param_gather")},
                      {"attention_kernel", ops::attention_kernel_used()},
                      {"matmul_ceiling_gflops", ceiling},
                      {"blas_kernels", blas_kernels()},
                      {"matmul_ceiling_n", ceiling_n},
                      {"fraction_of_matmul_ceiling", gflops_mfu / ceiling},
                      {"mfu", peak_tflops > 0 ? nlohmann::json(gflops_mfu / (peak_tflops * 1e3))
                                              : nlohmann::json(nullptr)},
                      {"gpu_peak_bytes", device::gpu_peak_bytes()},
                      {"peak_rss_bytes", fs::peak_rss_bytes()},
                      {"world_size", mesh.world_size},
                      {"mesh", {{"dp", mesh.dp}, {"fsdp", mesh.fsdp}, {"tp", mesh.tp}, {"sp", mesh.tp_layout().sp}}},
                      {"communication_per_rank", comm}};
  if (op_profile::enabled()) j["op_profile"] = op_profile_json(profile, steps, step_s);
  j["matmul_tuning"] = cfg.get_string("train.matmul_tuning");
  if (ops::matmul_tuning() == ops::MatmulTuning::Timed) {
    std::fprintf(stderr, "retort bench: cuBLASLt algorithms timed per product shape (train.matmul_tuning: timed)\n");
    j["tuned_products"] = tuned_products_json();
  }
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

}  // namespace retort
