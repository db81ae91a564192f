// The sweep file (docs/SWEEPS.md) and the planner behind `retort sweep`: IsoFLOP grids
// (budget C × size N → tokens D = C / FLOPs-per-token) and the three distillation protocols of
// Busbridge et al. (2025), each run a full retort config with its own schedule length, and the
// compute of every run accounted as in the paper's Eq. 9:
//   C = 3·F(N_S)·D_S  +  F(N_T)·D_S  +  3·F(N_T)·D_T
//       student train    teacher logits  teacher pretraining
// with F(N) the forward FLOPs per token (ModelFamily::forward_flops_per_token).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "scaling/model_family.h"

namespace retort {

// One side of a protocol: IsoFLOP (budgets × sizes) or fixed ratio (sizes × tokens_per_param).
struct RunGrid {
  std::vector<double> budgets;           // FLOPs; non-empty = IsoFLOP
  std::vector<int64_t> sizes;            // family sizes (n_layers)
  std::vector<double> tokens_per_param;  // M = D / N_nonemb; non-empty = fixed ratio
};

enum class Protocol {
  Isoflop,                     // supervised IsoFLOP grid
  FixedTeacherIsoflopStudent,  // teachers D_T = M_T·N_T, students IsoFLOP in student compute
  IsoflopTeacherFixedStudent,  // teachers from an IsoFLOP grid, students D_S = M_S·N_S
  FixedTeacherFixedStudent,    // teachers D_T = M_T·N_T, students D_S = M_S·N_S (M_S list)
};
const char* protocol_name(Protocol p);  // the sweep file's spelling

struct DistillProtocol {
  Protocol protocol;
  RunGrid teachers, students;
};

struct SlurmSpec {
  int64_t nodes = 1;
  int64_t ntasks_per_node = 0;  // 0 = ranks / nodes
  int64_t gpus_per_node = 0;    // 0 = no --gpus-per-node line
  int64_t cpus_per_task = 0;    // 0 = no --cpus-per-task line
  std::string time = "01:00:00", partition, account;
};

// A parsed and checked sweep file.
struct SweepSpec {
  std::string source;         // the file (for error messages)
  std::string name;           // default: the file's stem
  Config base;                // base config after the file's `set:` and the command's --set
  ModelFamily family;
  FlopsMode flops = FlopsMode::Exact;
  double tolerance = 0.01;    // allowed |C_run / C − 1| for IsoFLOP runs
  int64_t ranks = 1;          // processes per run
  double warmup_fraction = 0.05;  // per run train.warmup_steps = round(fraction · steps) ...
  int64_t warmup_steps = -1;      // ... unless >= 0: this many for every run
  int64_t evals_per_run = 4, checkpoints_per_run = 4;
  std::optional<RunGrid> supervised;
  std::vector<DistillProtocol> distillation;
  std::string generate_mode = "score";
  int64_t generate_k = 32;
  // Students' loss (1−λ)·CE + λ·τ²·KL over their corpus' top-k, tail renormalize|bucket.
  // λ 0.5 and bucket: with a top-k corpus pure distillation (λ 1) leaves the tokens outside the
  // top k unconstrained, and the renormalized tail overstates the teacher's confidence
  // (docs/DISTILLATION.md, docs/SWEEPS.md: measured).
  double distill_lambda = 0.5, distill_temperature = 1.0;
  std::string distill_tail = "bucket";
  // Under train.lr_schedule: wsd, runs of one size (students: and one corpus) share a trunk:
  // the longest trains in full and keeps a checkpoint where each shorter run's decay begins;
  // the shorter ones start there (train.branch_from) and train only their decay.
  bool cooldown_branches = false;
  // Seed replicates: the whole plan once per seed (train.seed, and generate.seed of corpora),
  // every name ending -sK. Empty: one replicate with the base config's train.seed, plain names.
  std::vector<int64_t> seeds;
  // Student seed replicates: each student once per seed (its train.seed: initialisation and
  // corpus order), name ending -sK, all reading their teacher's one corpus; teachers, corpora
  // and supervised runs once. With `seeds` too, within each of its replicates.
  std::vector<int64_t> student_seeds;
  SlurmSpec slurm;
};

// Reads and checks a sweep file. `overrides` ("key=value", the command's --set) apply to the
// base config after the file's `set:`. Throws ConfigError "FILE: key 'K': what" for any problem.
SweepSpec read_sweep(const std::string& path, const std::vector<std::string>& overrides = {});
// Same from text; `source` names it in errors, `base_dir` resolves a relative `base:`.
SweepSpec read_sweep_text(const std::string& yaml_text, const std::string& source,
                          const std::string& base_dir,
                          const std::vector<std::string>& overrides = {});

enum class Stage { Train, Corpus, Student };
const char* stage_name(Stage s);      // "train" | "corpus" | "student"
const char* stage_command(Stage s);   // retort subcommand: "train" | "generate" | "distill"
// The run lists of a sweep directory (stages/LIST.txt), in the order they run: cooldown
// branches run after their trunks, teachers' before the corpora.
inline constexpr const char* kStageLists[] = {"train", "train_branch", "corpus", "student", "student_branch"};

struct PlannedRun {
  std::string name, protocol;
  // The run's name without its seed suffixes: seed replicates of one grid point share it (= name
  // without SweepSpec::seeds and student_seeds). seed: its train.seed (a corpus's: its teacher's).
  std::string point;
  int64_t seed = 0;
  Stage stage = Stage::Train;
  int64_t size = 0;             // family size of the trained model (the teacher's for corpora)
  ModelConfig model;
  double budget = 0;            // target C (IsoFLOP runs), else 0
  double tokens_per_param = 0;  // target M (fixed-ratio runs), else 0
  int64_t steps = 0, warmup_steps = 0, eval_every = 0, checkpoint_every = 0;
  int64_t tokens = 0;           // D trained on (steps · batch_tokens); corpora: tokens scored
  int64_t num_sequences = 0;    // corpora only
  double flops_per_token = 0;   // 3·F(N) for training runs, F(N_T) for corpora
  double compute = 0;           // FLOPs this run spends: flops_per_token · tokens
  std::string teacher, corpus;  // names of the runs this one reads
  // Eq. 9 terms (students: their own; train runs: c_student = compute; corpora: logits).
  double c_student = 0, c_teacher_logits = 0, c_teacher_pretrain = 0;
  double c_eq9() const { return c_student + c_teacher_logits + c_teacher_pretrain; }
  double data_epochs = -1;      // times the run reads its data (plan_data_epochs); -1: unknown
  std::string config_path, run_dir;  // absolute
  // Cooldown branches (SweepSpec::cooldown_branches): a branch starts from its trunk's
  // checkpoint at branch_step; a trunk keeps a checkpoint at each of keep_steps.
  std::string branch_of;
  int64_t branch_step = 0;
  std::vector<int64_t> keep_steps;
  // FLOPs this run itself trains: a branch only its last steps − branch_step steps. `compute`
  // stays the run's own C, which its model has had (the trunk trained the rest).
  double c_spent() const { return branch_of.empty() ? compute : compute * double(steps - branch_step) / double(steps); }
  const char* stage_list() const;  // its entry of kStageLists
  // The run whose output this one starts from, in an earlier stage list: a branch its trunk, a
  // corpus its teacher, a student its corpus; "" when it reads no other run. What it waits for
  // under Slurm (submit.sh) and in run_local.sh.
  std::string waits_for() const;
};

// Compute of one protocol: every distinct run it needs, by kind.
struct ProtocolTotal {
  std::string protocol;
  int64_t runs = 0;
  double c_student = 0, c_teacher_logits = 0, c_teacher_pretrain = 0;
  double total() const { return c_student + c_teacher_logits + c_teacher_pretrain; }
};

struct SweepPlan {
  std::string out_dir;  // absolute
  std::vector<PlannedRun> runs;  // in the order of kStageLists
  std::vector<ProtocolTotal> totals;
  const PlannedRun* find(const std::string& name) const;
};

// Plans every run into out_dir (configs/NAME.yaml, runs/NAME/). Throws ConfigError naming the
// sweep file's key when a run cannot hit its budget within the tolerance.
SweepPlan plan_sweep(const SweepSpec& spec, const std::string& out_dir);

// How often each run reads its data when data.train holds `train_tokens` tokens, counted as the
// runs themselves count it (their `data:` line, summary.json's data_epochs):
//   train run  steps·B windows drawn from the (n − 1) / T windows of T tokens   (B = batch_tokens / T)
//   corpus     num_sequences of the n / (T + 1) windows `generate` scores (sample mode: of its
//              prompts; sampling from EOS reads no data: 0)
//   student    steps·B of its corpus' num_sequences (≤ 1 by construction)
// A corpus needing more windows than data.train has is a ConfigError naming it (`retort generate`
// would refuse it, but only once its teacher has trained).
void plan_data_epochs(const SweepSpec& spec, SweepPlan& plan, int64_t train_tokens);

// The retort config of one planned run as YAML: the base config with the run's shape, steps,
// schedule and paths; corpora and students add `generate.*` / `distill.*`.
std::string planned_config_yaml(const SweepSpec& spec, const SweepPlan& plan, const PlannedRun& run);

// Budgets as short text for names and tables: 3e11, 1.5e12.
std::string format_flops(double c);

}  // namespace retort
