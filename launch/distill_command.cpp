// retort distill CONFIG [--set k=v]... [--resume]
// Trains a student (the config's model) on the shared training loop (launch/train_loop.h)
// with the loss  (1 − λ)·CE + λ·τ²·KL(p_T^τ ‖ p_S^τ) + z_loss·lse²  (models/distill_loss.h):
//   offline  distill.corpus:  corpus sequences (data/corpus_batches.h); the teacher
//                             distribution is the corpus' top-k (distill.tail for its tail)
//   online   distill.teacher: a frozen teacher checkpoint runs forward on the same batch;
//                             exact KL over the vocabulary. Tokens come from the corpus when
//                             one is set, else windows of data.train.
// λ = 0 on a corpus is plain CE on the corpus tokens (sequence-level distillation).
// Student, corpus and teacher must share vocab_size and tokenizer_sha256. docs/DISTILLATION.md.
// Meshes as `retort train` (dp, fsdp, tp, sp); under tp the KD loss is vocabulary-parallel
// and the online teacher holds this rank's tp slices (models/distill_loss.h).
// parallel.device: cuda (the meshes parallel/gpu_mesh.cpp allows): the student, its KD loss and
// the online teacher on the GPU; corpus batches are read on the host and their top-k uploaded
// per micro-batch.

#include <cmath>
#include <optional>

#include "data/corpus_batches.h"
#include "data/loader.h"
#include "launch/checkpoint_model.h"
#include "launch/commands.h"
#include "launch/teacher_tokenizer.h"
#include "launch/train_loop.h"
#include "models/distill_loss.h"
#include "core/ops.h"
#include "parallel/gpu_mesh.h"
#include "parallel/job_check.h"
#include "parallel/mesh.h"
#include "parallel/tensor_parallel.h"

namespace retort {

namespace {

constexpr const char* kSameTokenizer = "student and teacher need the same tokenizer";

void check_same_vocab(const std::string& a_what, int64_t a, const std::string& b_what, int64_t b) {
  if (a == b) return;
  throw ConfigError(str_cat("vocabulary mismatch: ", a_what, " is ", a, " but ", b_what, " is ", b,
                            " (student and teacher need the same vocabulary)"));
}

}  // namespace

int run_distill(const Config& cfg, bool resume) {
  Mesh mesh = make_mesh(cfg);
  place_mesh(mesh, cfg);
  check_same_job(mesh, cfg);
  check_mesh_fits_model(mesh, cfg);
  apply_thread_setting(cfg);
  const ModelConfig mc = ModelConfig::from_config(cfg);
  const std::string corpus_dir = cfg.get_string("distill.corpus");
  const std::string teacher_dir = cfg.get_string("distill.teacher");
  const double lambda = cfg.get_float("distill.lambda"), tau = cfg.get_float("distill.temperature");
  if (!(lambda >= 0 && lambda <= 1)) cfg.fail("distill.lambda", str_cat("must be in [0, 1], got ", lambda));
  if (!(tau > 0 && std::isfinite(tau))) cfg.fail("distill.temperature", str_cat("must be > 0, got ", tau));
  ops::KdTail tail;
  if (!parse_kd_tail(cfg.get_string("distill.tail"), &tail))
    cfg.fail("distill.tail", str_cat("must be renormalize or bucket, got '", cfg.get_string("distill.tail"), "'"));
  if (corpus_dir.empty() && teacher_dir.empty())
    cfg.fail("distill.corpus", "set distill.corpus (offline: a corpus written by retort generate) or "
                               "distill.teacher (online: a teacher checkpoint)");
  if (!teacher_dir.empty() && lambda == 0)
    cfg.fail("distill.lambda", "is 0, so the online teacher (distill.teacher) would not be used");
  const uint64_t seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  const std::string student_what = str_cat("model.vocab_size of the student (", cfg.source(), ")");

  // The student's tokenizer is the one of its data files.
  const TokenDataset val_data = open_token_split(cfg, "data.val", mc);
  const std::string& student_sha = val_data.meta().tokenizer_sha256;

  std::optional<CorpusReader> corpus;
  std::optional<CorpusBatches> corpus_batches;
  if (!corpus_dir.empty()) {
    corpus.emplace(corpus_dir);  // a missing or truncated corpus is an Error naming the file
    const CorpusMeta& m = corpus->meta();
    const std::string manifest = corpus_dir + "/manifest.json";
    check_same_vocab(str_cat("vocab_size of the corpus (", manifest, ")"), m.vocab_size, student_what, mc.vocab_size);
    check_same_tokenizer(manifest, m.tokenizer_sha256, val_data.path(), student_sha, kSameTokenizer);
    if (m.seq_len - 1 > mc.seq_len)
      cfg.fail("model.seq_len", str_cat(mc.seq_len, " is shorter than the corpus sequences (", manifest,
                                        ": ", m.seq_len, " tokens, ", m.seq_len - 1, " targets)"));
    if (teacher_dir.empty() && lambda > 0 && std::abs(m.logit_temperature - tau) > 1e-9 * tau)
      cfg.fail("distill.temperature",
               str_cat(tau, " differs from the corpus' logit_temperature ", m.logit_temperature, " (",
                       manifest, "): its top-k log-probabilities are at that temperature"));
    corpus_batches.emplace(*corpus, seed);
  }
  // Under tp the KD loss is vocabulary-parallel and the teacher is tp-sliced like the student
  // (its logits are the same vocabulary shard); both communicate through this regions object.
  std::optional<TensorParallel> tp_regions;
  if (mesh.tp > 1) tp_regions.emplace(mesh.tp_comm, mesh.sp);
  std::optional<LoadedModel> teacher;
  if (!teacher_dir.empty()) {
    teacher = load_checkpoint_model(teacher_dir, mesh.tp_layout(), mesh.device);
    if (tp_regions) teacher->model->set_tensor_parallel(&*tp_regions);
    const ModelConfig& tc = teacher->model->config();
    check_same_vocab(str_cat("model.vocab_size of the teacher (", teacher->dir, "/config.yaml)"),
                     tc.vocab_size, student_what, mc.vocab_size);
    const TeacherTokenizer tt = teacher_tokenizer(*teacher);
    check_same_tokenizer(tt, val_data.path(), student_sha, kSameTokenizer);
    if (corpus) check_same_tokenizer(tt, corpus_dir + "/manifest.json", corpus->meta().tokenizer_sha256, kSameTokenizer);
  }

  // Tokens: the corpus sequences (T = Ls − 1) or windows of data.train (T = model.seq_len).
  std::optional<TokenDataset> train_data;
  std::optional<WindowLoader> windows;
  int64_t T = mc.seq_len;
  if (corpus_batches) {
    T = corpus_batches->seq_len();
    if (cfg.get_int("train.batch_tokens") % T != 0)
      cfg.fail("train.batch_tokens", str_cat(cfg.get_int("train.batch_tokens"), " is not a multiple of the "
                                             "corpus' ", T, " targets per sequence"));
  } else {
    train_data.emplace(open_token_split(cfg, "data.train", mc));
    check_same_tokenizer(train_data->path(), train_data->meta().tokenizer_sha256, val_data.path(), student_sha,
                         kSameTokenizer);
    windows.emplace(train_data->tokens(), mc.seq_len, seed);
  }
  if (teacher && teacher->model->config().seq_len < T)
    throw ConfigError(str_cat(teacher->dir, "/config.yaml: the teacher's model.seq_len ",
                              teacher->model->config().seq_len, " is shorter than the ", T,
                              "-token training sequences"));
  const BatchGeometry geo = BatchGeometry::from_config(cfg, T, mesh.data_ranks());
  const double epochs =
      corpus ? report_data_epochs(cfg, mesh,
                                  str_cat("corpus ", corpus_dir, ": ", corpus->num_sequences(),
                                          " sequences of ", T, " targets"),
                                  corpus->num_sequences(), "corpus sequences", geo.batch_seqs)
             : report_data_epochs(cfg, mesh, windows_source(*train_data, *windows),
                                  windows->num_windows(), "windows", geo.batch_seqs);

  Transformer model(mc, mesh.tp_layout(), mesh.device);
  std::optional<DistillLoss> kd;
  if (lambda > 0) {
    kd.emplace(lambda, tau, tail);
    if (tp_regions) kd->set_tensor_parallel(&*tp_regions, model.tp_layout());
    model.set_logits_loss(&*kd, kd->ce_weight());
  }
  const bool topk = kd && !teacher;  // the teacher distribution comes from the corpus
  Tensor ids, logp;                   // [micro_seqs, T, k] (offline), read on the host
  Tensor ids_dev, logp_dev;           // their copies on the GPU (parallel.device: cuda)
  if (topk) {
    const Shape shape{geo.micro_seqs, T, corpus_batches->k()};
    ids = Tensor::empty(shape, DType::I32);
    logp = Tensor::empty(shape);
    if (mesh.device != Device::CPU) {
      ids_dev = Tensor::empty(shape, DType::I32, mesh.device);
      logp_dev = Tensor::empty(shape, DType::F32, mesh.device);
    }
  }

  bool teacher_armed = false;
  TrainLoopJob job;
  job.model = &model;
  job.geometry = geo;
  job.val_tokens = &val_data.tokens();
  job.extra_summary["data_epochs"] = epochs;
  job.source = [&](int64_t first, int64_t count, Tensor& inputs, Tensor& targets) {
    if (corpus_batches) corpus_batches->fill(first, count, inputs, targets, ids, logp);
    else windows->fill_batch(first, count, inputs, targets);
    if (topk && ids_dev.defined()) {  // stream-ordered after the last micro-batch's backward
      ops::copy(ids_dev, ids);
      ops::copy(logp_dev, logp);
      kd->set_topk(ids_dev, logp_dev);
    } else if (topk) {
      kd->set_topk(ids, logp);
    }
    if (teacher) {  // frozen teacher, forward only on this micro-batch; logits [R, V/tp]
      if (!teacher_armed) {  // its weights rounded to bf16 once, not by every product (a
        teacher->model->arm_bf16_weights();  // no-op at fp32); the training set the precision
        teacher_armed = true;
      }
      teacher->model->evaluate(inputs, targets);
      kd->set_teacher_logits(teacher->model->logits());
    }
  };
  if (kd) {
    const double weight = lambda * tau * tau;
    job.extra_metrics = [weight](const StepResult& r, nlohmann::json& line) { line["kl"] = r.extra / weight; };
  }
  job.extra_summary["distill"] = {
      {"mode", teacher ? "online" : "offline"},
      {"device", mesh.device == Device::CPU ? "cpu" : "cuda"},
      {"corpus", corpus_dir},
      {"teacher", teacher ? teacher->dir : ""},
      {"lambda", lambda},
      {"temperature", tau},
      {"tail", cfg.get_string("distill.tail")},
      {"teacher_forward_flops_per_token",
       teacher ? double(teacher->model->config().flops_per_token_exact()) / 3.0 : 0.0}};
  return run_train_loop(cfg, resume, mesh, job);
}

}  // namespace retort
