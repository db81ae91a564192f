#include "parallel/job_check.h"

#include <cstring>

#include "core/sha256.h"
#include "models/model_config.h"

namespace retort {

namespace {

// First 16 bytes of the hex digests of the config and of this executable, as 8 int32.
Tensor job_fingerprint(const Config& cfg) {
  std::string digest = sha256_hex(cfg.to_yaml()).substr(0, 16) +
                       sha256_file("/proc/self/exe").substr(0, 16);
  Tensor t = Tensor::empty({8}, DType::I32);
  std::memcpy(t.host<int32_t>(), digest.data(), 32);
  return t;
}

}  // namespace

void check_same_job(const Mesh& mesh, const Config& cfg) {
  if (mesh.world_size == 1) return;
  Tensor mine = job_fingerprint(cfg);
  Tensor all = Tensor::empty({8 * int64_t(mesh.world_size)}, DType::I32);
  mesh.world->all_gather(all, mine);
  const int32_t* p = all.host<int32_t>();
  std::string config_differs, binary_differs;
  for (int r = 1; r < mesh.world_size; ++r) {
    if (std::memcmp(p + 8 * r, p, 16) != 0) config_differs += str_cat(config_differs.empty() ? "" : ",", r);
    if (std::memcmp(p + 8 * r + 4, p + 4, 16) != 0)
      binary_differs += str_cat(binary_differs.empty() ? "" : ",", r);
  }
  if (!config_differs.empty())
    throw ConfigError(str_cat("rank(s) ", config_differs,
                              " resolved a different config than rank 0 (same file and --set on every rank?)"));
  if (!binary_differs.empty())
    throw Error(str_cat("rank(s) ", binary_differs, " run a different retort binary than rank 0"));
}

void check_mesh_fits_model(const Mesh& mesh, const Config& cfg) {
  if (mesh.tp == 1) return;
  const ModelConfig mc = ModelConfig::from_config(cfg);
  auto need = [&](int64_t value, const char* key) {
    if (value % mesh.tp != 0)
      cfg.fail("parallel.tp", str_cat(mesh.tp, " does not divide ", key, " = ", value,
                                      " (tensor parallelism splits it over the tp ranks)"));
  };
  need(mc.n_kv_heads, "model.n_kv_heads");
  need(mc.d_ff, "model.d_ff");
  need(mc.vocab_size, "model.vocab_size");
}

}  // namespace retort
