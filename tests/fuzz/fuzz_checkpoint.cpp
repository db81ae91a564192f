// libFuzzer target: loading a consolidated checkpoint (SPEC §4: model.h5, optimizer.h5,
// state.json with the sha256 of each file) through resolve_checkpoint_dir,
// load_model_weights and load_training_state, as `retort eval` and `train --resume` do.
// The input picks a valid checkpoint of a small fixed parameter set, then either flips bytes
// of a data file after its checksum was recorded (the checksum must catch it before libhdf5
// parses the file) or writes the files through HostileH5 and state.json through
// hostile_json. Loads must fail cleanly naming the checkpoint directory, or return finite
// weights, finite moments with exp_avg_sq >= 0, and a state whose step is an integer >= 0.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <fstream>

#include "core/checkpoint.h"
#include "core/sha256.h"
#include "harness.h"
#include "hostile_h5.h"
#include "hostile_json.h"

using namespace retort;
using namespace retort::fuzz;
using nlohmann::json;

namespace {

void write_tensors(HostileH5& f, FuzzedDataProvider& in, const std::string& prefix, double scale) {
  for (const auto& [name, shape] : tiny_params()) {
    std::vector<double> v(shape_numel(shape));
    for (double& x : v) x = scale * in.ConsumeFloatingPointInRange<double>(0, 1);
    f.dataset(prefix + name, Values::of_reals(Elem::F32, shape, v));
  }
}

void expect_finite(const std::vector<NamedTensor>& ts, bool nonnegative) {
  for (const NamedTensor& t : ts) {
    const float* p = t.tensor.host<float>();
    for (int64_t i = 0; i < t.tensor.numel(); ++i)
      if (!std::isfinite(p[i]) || (nonnegative && p[i] < 0))
        bug(str_cat("accepted ", t.name, "[", i, "] = ", p[i]));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  clear_scratch();
  const std::string dir = scratch("step_00000010");
  std::filesystem::create_directories(dir);
  // One time in four the files are written as meant and bytes flipped after the checksum.
  const bool flip = in.ConsumeIntegralInRange(0, 3) == 3;
  FuzzedDataProvider as_meant(nullptr, 0);
  FuzzedDataProvider& shape = flip ? as_meant : in;
  {
    HostileH5 model(shape, dir + "/model.h5");
    write_tensors(model, in, "", 1.0);
    model.extras({"model.norm.weight", "model.extra.weight", "model.layers.0"});
  }
  {
    HostileH5 opt(shape, dir + "/optimizer.h5");
    write_tensors(opt, in, "exp_avg/", -1.0);
    write_tensors(opt, in, "exp_avg_sq/", 1.0);
    opt.extras({"exp_avg", "exp_avg_sq/model.norm.weight"});
  }
  std::ofstream(dir + "/config.yaml") << "model:\n  d_model: 4\n";
  json state = {{"step", 10}, {"tokens_seen", 5120}, {"wall_s", 1.5}, {"optimizer_steps", 10},
                {"seed", 1},
                {"sha256", {{"model.h5", sha256_file(dir + "/model.h5")},
                            {"optimizer.h5", sha256_file(dir + "/optimizer.h5")}}}};
  if (flip) {
    flip_bytes(in, dir + (in.ConsumeBool() ? "/model.h5" : "/optimizer.h5"));
  } else {
    mutate_json(in, state, 10);
  }
  std::ofstream(dir + "/state.json") << (flip ? state.dump() : hostile_json_text(in, state));

  clean_or_error(dir, [&] {
    if (resolve_checkpoint_dir(dir) != dir) bug("resolve_checkpoint_dir moved away from a checkpoint dir");
    std::vector<NamedTensor> weights = tiny_param_zeros(), m = tiny_param_zeros(), v = tiny_param_zeros();
    load_model_weights(dir, weights);
    expect_finite(weights, false);
    const json st = load_training_state(dir, m, v);
    expect_finite(m, false);
    expect_finite(v, true);
    if (!st.contains("step") || !st["step"].is_number_integer() || st["step"].get<int64_t>() < 0)
      bug(str_cat("accepted state ", st.dump()));
  });
  expect_no_open_hdf5_objects();
  return 0;
}
