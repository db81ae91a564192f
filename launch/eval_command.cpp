// retort eval CHECKPOINT --tokens FILE.h5 [--seq-len T] [--max-windows W] [--out FILE.json]
// [--teacher CHECKPOINT] (SPEC §3; with a teacher also the mean KL(p_teacher ‖ p_model) per
// token at temperature 1 and the teacher's own loss on the same windows).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "data/token_dataset.h"
#include "launch/checkpoint_model.h"
#include "launch/commands.h"
#include "launch/evaluate.h"

namespace retort {

int run_eval(const std::string& checkpoint, const std::string& tokens_path, int64_t seq_len,
             int64_t max_windows, const std::string& out_json, const std::string& teacher_path) {
  if (max_windows < 1) throw ConfigError("--max-windows must be >= 1");
  LoadedModel loaded = load_checkpoint_model(checkpoint);
  const ModelConfig& mc = loaded.model->config();
  const int64_t T = seq_len > 0 ? seq_len : mc.seq_len;
  if (T > mc.seq_len)
    throw ConfigError(str_cat("--seq-len ", T, " exceeds the model's seq_len ", mc.seq_len));
  TokenDataset data = TokenDataset::load(tokens_path);
  if (data.meta().vocab_size > mc.vocab_size)
    throw Error(str_cat(tokens_path, ": vocabulary of ", data.meta().vocab_size,
                        " exceeds the model's vocab_size ", mc.vocab_size));
  LoadedModel teacher;
  if (!teacher_path.empty()) {
    teacher = load_checkpoint_model(teacher_path);
    const ModelConfig& tc = teacher.model->config();
    if (tc.vocab_size != mc.vocab_size)
      throw Error(str_cat(teacher.dir, "/config.yaml: the teacher's vocab_size ", tc.vocab_size,
                          " differs from the model's ", mc.vocab_size, " (", loaded.dir, ")"));
    if (T > tc.seq_len)
      throw ConfigError(str_cat("window length ", T, " exceeds the teacher's seq_len ", tc.seq_len));
  }
  EvalResult r = evaluate_windows(*loaded.model, data.tokens(), T, max_windows, 8, teacher.model.get());
  nlohmann::json j = {{"loss", r.loss}, {"tokens", r.tokens}, {"windows", r.windows}};
  if (teacher.model) {
    j["kl_to_teacher"] = r.kl_to_teacher;
    j["teacher_loss"] = r.teacher_loss;
  }
  std::printf("%s\n", j.dump().c_str());
  if (!out_json.empty()) fs::write_file_atomic(out_json, j.dump(2) + "\n");
  return 0;
}

}  // namespace retort
