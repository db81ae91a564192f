// The sweep planner: model family shapes, IsoFLOP runs hitting their budget within the
// tolerance, per-run schedule length, the Eq. 9 compute accounting of the distillation
// protocols, cooldown branches, seed replicates (of everything, or of students only), what each
// run waits for, and malformed sweep files failing with one line naming the file and key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <yaml-cpp/yaml.h>

#include "core/config.h"
#include "core/lr_schedule.h"
#include "scaling/model_family.h"
#include "scaling/sweep_plan.h"

using namespace retort;

namespace {

const std::string kSrc = RETORT_SOURCE_DIR;

// A small family on tiny.yaml: d_model = 32·L, head_dim 16, seq_len 64, batch 256 tokens.
std::string sweep_text(const std::string& body, const std::string& family = "aspect: 32, head_dim: 16",
                       const std::string& set = "train.batch_tokens: 256") {
  return "base: " + kSrc + "/configs/tiny.yaml\n"
         "set: {train.micro_batch: 0, " + set + "}\n"
         "family: {seq_len: 64, " + family + "}\n"
         "warmup_fraction: 0.1\n" + body;
}

// sweep_text with warmup_steps: N instead of warmup_fraction; `set` extends the set: map.
std::string fixed_warmup(int64_t n, const std::string& body, const std::string& set = "") {
  std::string t = sweep_text(body, "aspect: 32, head_dim: 16", "train.batch_tokens: 256" + set);
  return t.replace(t.find("warmup_fraction: 0.1"), 20, "warmup_steps: " + std::to_string(n));
}

// Cooldown branches under wsd: supervised runs, a teacher, two students of its corpus (the
// seed replicate tests).
const std::string kSeedsBody =
    "cooldown_branches: true\n"
    "supervised: {budgets: [1.2e10, 2.4e10], sizes: [1]}\n"
    "distillation:\n"
    "  - {protocol: fixed_teacher_isoflop_students, teachers: {sizes: [2], tokens_per_param: 1},\n"
    "     students: {budgets: [1.2e10, 2.4e10], sizes: [1]}}\n";
SweepSpec wsd_spec(const std::string& body) {
  return read_sweep_text(sweep_text(body, "aspect: 32, head_dim: 16", "train.batch_tokens: 256, train.lr_schedule: wsd"),
                         "test.yaml", ".");
}

SweepSpec read(const std::string& body) { return read_sweep_text(sweep_text(body), "test.yaml", "."); }

// The error message of reading `text` (must throw ConfigError).
std::string error_of(const std::string& text) {
  try {
    plan_sweep(read_sweep_text(text, "bad.yaml", "."), "/tmp/x");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(ModelFamily, ShapesFollowTheAspectRatioAndHeadDim) {
  ModelFamily f;
  f.base.vocab_size = 512;
  f.base.seq_len = 64;
  f.aspect = 128;
  f.head_dim = 64;
  for (int64_t L : {1, 2, 4, 8}) {
    ModelConfig m = f.shape(L);
    EXPECT_EQ(m.d_model, 128 * L);
    EXPECT_EQ(m.n_heads, 2 * L);
    EXPECT_EQ(m.n_kv_heads, m.n_heads);
    EXPECT_EQ(m.head_dim, 64);
    EXPECT_EQ(m.d_ff, ModelConfig::default_d_ff(m.d_model));
    EXPECT_EQ(train_flops_per_token(m, FlopsMode::SixN), 6.0 * m.n_params_nonemb());
    EXPECT_EQ(train_flops_per_token(m, FlopsMode::Exact), static_cast<double>(m.flops_per_token_exact()));
    EXPECT_DOUBLE_EQ(forward_flops_per_token(m, FlopsMode::Exact), m.flops_per_token_exact() / 3.0);
  }
  f.aspect = 32;
  EXPECT_NE(f.problem(1).find("family.head_dim"), std::string::npos);  // 32 is not a multiple of 64
  EXPECT_THROW(f.shape(1), ConfigError);
  f.aspect = 128;
  f.gqa_group = 4;
  EXPECT_EQ(f.shape(4).n_kv_heads, 2);  // d 512 → 8 query heads, 2 key/value heads
  EXPECT_NE(f.problem(1).find("family.gqa_group"), std::string::npos);  // 2 heads
}

TEST(SweepPlan, IsoflopRunsHitTheirBudgetWithinOnePercent) {
  SweepSpec spec = read("supervised: {budgets: [4.8e10, 9.6e10, 1.92e11], sizes: [1, 2, 3]}\n");
  SweepPlan plan = plan_sweep(spec, "/tmp/retort-test-sweep");
  ASSERT_EQ(plan.runs.size(), 9u);
  std::set<int64_t> steps;
  for (const PlannedRun& r : plan.runs) {
    ASSERT_GT(r.budget, 0);
    EXPECT_EQ(r.stage, Stage::Train);
    EXPECT_EQ(r.tokens, r.steps * 256);
    EXPECT_DOUBLE_EQ(r.flops_per_token, static_cast<double>(r.model.flops_per_token_exact()));
    EXPECT_DOUBLE_EQ(r.compute, r.flops_per_token * r.tokens);
    EXPECT_LE(std::abs(r.compute / r.budget - 1), 0.01) << r.name;
    EXPECT_DOUBLE_EQ(r.c_eq9(), r.compute);
    EXPECT_EQ(r.model.d_model, 32 * r.size);
    EXPECT_EQ(r.run_dir, "/tmp/retort-test-sweep/runs/" + r.name);
    steps.insert(r.steps);
  }
  EXPECT_EQ(steps.size(), 9u);  // every run has its own length
  ASSERT_EQ(plan.totals.size(), 1u);
  EXPECT_EQ(plan.totals[0].protocol, "isoflop");
  EXPECT_EQ(plan.totals[0].runs, 9);
}

TEST(SweepPlan, SixNModeUsesSixTimesNonEmbeddingParams) {
  SweepSpec spec = read("flops: 6N\nsupervised: {budgets: [2.0e10], sizes: [2]}\n");
  SweepPlan plan = plan_sweep(spec, "/tmp/x");
  const PlannedRun& r = plan.runs.at(0);
  EXPECT_DOUBLE_EQ(r.flops_per_token, 6.0 * r.model.n_params_nonemb());
  EXPECT_LE(std::abs(r.compute / 2.0e10 - 1), 0.01);
}

TEST(SweepPlan, EachRunsConfigHasItsOwnScheduleLength) {
  SweepSpec spec = read("evals_per_run: 4\ncheckpoints_per_run: 2\n"
                        "supervised: {budgets: [1.2e10, 4.8e10], sizes: [1, 2]}\n");
  SweepPlan plan = plan_sweep(spec, "/tmp/x");
  for (const PlannedRun& r : plan.runs) {
    Config c = Config::from_yaml(planned_config_yaml(spec, plan, r), r.name);
    EXPECT_EQ(c.get_int("train.steps"), r.steps);
    EXPECT_EQ(c.get_int("train.steps") * c.get_int("train.batch_tokens"), r.tokens);
    EXPECT_EQ(c.get_int("train.warmup_steps"), std::llround(0.1 * r.steps));
    EXPECT_EQ(c.get_int("eval.every"), (r.steps + 3) / 4);
    EXPECT_EQ(c.get_int("checkpoint.every"), (r.steps + 1) / 2);
    EXPECT_EQ(c.get_int("model.d_model"), 32 * r.size);
    EXPECT_EQ(c.get_int("model.n_layers"), r.size);
    EXPECT_EQ(c.get_int("model.n_heads"), 2 * r.size);
    EXPECT_EQ(c.get_string("run.dir"), r.run_dir);
    EXPECT_EQ(ModelConfig::from_config(c).flops_per_token_exact(), r.model.flops_per_token_exact());
  }
}

TEST(SweepPlan, DistillationProtocolsFollowEq9) {
  const std::string body =
      "supervised: {budgets: [2.4e10], sizes: [1, 2]}\n"
      "distillation:\n"
      "  - {protocol: fixed_teacher_isoflop_students, teachers: {sizes: [2], tokens_per_param: 1},\n"
      "     students: {budgets: [1.2e10, 2.4e10], sizes: [1]}}\n"
      "  - {protocol: isoflop_teacher_fixed_students, teachers: {budgets: [2.4e10], sizes: [1, 2]},\n"
      "     students: {sizes: [1], tokens_per_param: 2}}\n"
      "  - {protocol: fixed_teacher_fixed_students, teachers: {sizes: [2], tokens_per_param: 1},\n"
      "     students: {sizes: [1], tokens_per_param: [1, 2, 4]}}\n";
  SweepSpec spec = read(body);
  SweepPlan plan = plan_sweep(spec, "/tmp/x");
  int students = 0, corpora = 0;
  for (const PlannedRun& r : plan.runs) {
    if (r.stage == Stage::Corpus) {
      ++corpora;
      const PlannedRun* t = plan.find(r.teacher);
      ASSERT_NE(t, nullptr);
      EXPECT_DOUBLE_EQ(r.compute, forward_flops_per_token(t->model, FlopsMode::Exact) * r.tokens);
      for (const PlannedRun& s : plan.runs)
        if (s.corpus == r.name) EXPECT_GE(r.tokens, s.tokens);  // long enough for every student
    }
    if (r.stage != Stage::Student) continue;
    ++students;
    const PlannedRun* t = plan.find(r.teacher);
    ASSERT_NE(t, nullptr) << r.name;
    ASSERT_NE(plan.find(r.corpus), nullptr) << r.name;
    const double F_S = forward_flops_per_token(r.model, FlopsMode::Exact);
    const double F_T = forward_flops_per_token(t->model, FlopsMode::Exact);
    EXPECT_DOUBLE_EQ(r.c_student, 3 * F_S * r.tokens);                     // student training
    EXPECT_DOUBLE_EQ(r.c_teacher_logits, F_T * r.tokens);                  // teacher inference on D_S
    EXPECT_DOUBLE_EQ(r.c_teacher_pretrain, 3 * F_T * t->tokens);           // teacher pretraining
    EXPECT_DOUBLE_EQ(r.c_eq9(), r.c_student + r.c_teacher_logits + r.c_teacher_pretrain);
    if (r.budget > 0) EXPECT_LE(std::abs(r.c_student / r.budget - 1), 0.01) << r.name;
    if (r.tokens_per_param > 0)
      EXPECT_LE(std::abs(r.tokens / (r.tokens_per_param * r.model.n_params_nonemb()) - 1), 0.01);
  }
  // ftis: 1 teacher × 2 students; itfs: 2 teachers × 1; ftfs: the same teacher × 3 ratios.
  EXPECT_EQ(students, 2 + 2 + 3);
  EXPECT_EQ(corpora, 3);  // teacher-L2-M1 (shared by ftis and ftfs), sup-2.4e10-L1, sup-2.4e10-L2
  // IsoFLOP teachers are the supervised runs, not copies.
  EXPECT_EQ(plan.find("sup-2.4e10-L2")->protocol, "isoflop");
  ASSERT_NE(plan.find("teacher-L2-M1"), nullptr);
  EXPECT_LE(std::abs(plan.find("teacher-L2-M1")->tokens / (1.0 * plan.find("teacher-L2-M1")->model.n_params_nonemb()) - 1), 0.01);

  // Protocol totals: distinct students + corpora + teachers.
  ASSERT_EQ(plan.totals.size(), 4u);
  for (const ProtocolTotal& t : plan.totals) {
    if (t.protocol != "fixed_teacher_isoflop_students") continue;
    const PlannedRun& teacher = *plan.find("teacher-L2-M1");
    const PlannedRun& corpus = *plan.find("corpus-teacher-L2-M1");
    double students_c = 0;
    for (const PlannedRun& r : plan.runs)
      if (r.protocol == t.protocol && r.stage == Stage::Student) students_c += r.compute;
    EXPECT_EQ(t.runs, 4);
    EXPECT_DOUBLE_EQ(t.c_student, students_c);
    EXPECT_DOUBLE_EQ(t.c_teacher_pretrain, teacher.compute);
    EXPECT_DOUBLE_EQ(t.c_teacher_logits, corpus.compute);
  }
  // The corpus and student configs carry the generate.* / distill.* plan.
  const PlannedRun& corpus = *plan.find("corpus-teacher-L2-M1");
  std::string yaml = planned_config_yaml(spec, plan, corpus);
  EXPECT_NE(yaml.find("teacher: /tmp/x/runs/teacher-L2-M1"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("num_sequences: " + std::to_string(corpus.num_sequences)), std::string::npos);
  // Students: λ 0.5 and the bucket tail unless the sweep's distill: map says otherwise.
  const PlannedRun& student = *plan.find("student-ftis-teacher-L2-M1-1.2e10-L1");
  YAML::Node d = YAML::Load(planned_config_yaml(spec, plan, student))["distill"];
  EXPECT_EQ(d["corpus"].as<std::string>(), corpus.run_dir);
  EXPECT_EQ(d["lambda"].as<double>(), 0.5);
  EXPECT_EQ(d["tail"].as<std::string>(), "bucket");
  const SweepSpec pure = read("distill: {lambda: 1, tail: renormalize, temperature: 2}\n" + body);
  d = YAML::Load(planned_config_yaml(pure, plan_sweep(pure, "/tmp/x"), student))["distill"];
  EXPECT_EQ(d["lambda"].as<double>(), 1.0);
  EXPECT_EQ(d["tail"].as<std::string>(), "renormalize");
  EXPECT_EQ(d["temperature"].as<double>(), 2.0);
}

// cooldown_branches: per size (students: per size and corpus) the longest run is the trunk;
// the others start from its checkpoint where their own wsd decay begins, all on one warmup.
TEST(SweepPlan, CooldownBranchesStartFromTheLongestRunOfTheirSize) {
  const std::string body =
      "cooldown_branches: true\n"
      "supervised: {budgets: [1.2e10, 2.4e10, 4.8e10], sizes: [1, 2]}\n"
      "distillation:\n"
      "  - {protocol: fixed_teacher_isoflop_students, teachers: {sizes: [2], tokens_per_param: 1},\n"
      "     students: {budgets: [1.2e10, 2.4e10], sizes: [1]}}\n";
  const SweepSpec spec = read_sweep_text(
      sweep_text(body, "aspect: 32, head_dim: 16", "train.batch_tokens: 256, train.lr_schedule: wsd"),
      "test.yaml", ".");
  const SweepPlan plan = plan_sweep(spec, "/tmp/x");
  auto run = [&](const std::string& n) -> const PlannedRun& {
    const PlannedRun* r = plan.find(n);
    EXPECT_NE(r, nullptr) << n;
    return *r;
  };
  const double fraction = spec.base.get_float("train.wsd_decay_fraction");
  // L1: the 4.8e10 run is the trunk of the two shorter ones; teacher-L2-M1 (longer than every
  // sup-*-L2) is the trunk of size 2; the 2.4e10 student is the trunk of the 1.2e10 one.
  const std::vector<std::pair<std::string, std::vector<std::string>>> trunks = {
      {"sup-4.8e10-L1", {"sup-1.2e10-L1", "sup-2.4e10-L1"}},
      {"teacher-L2-M1", {"sup-1.2e10-L2", "sup-2.4e10-L2", "sup-4.8e10-L2"}},
      {"student-ftis-teacher-L2-M1-2.4e10-L1", {"student-ftis-teacher-L2-M1-1.2e10-L1"}}};
  for (const auto& [trunk_name, branch_names] : trunks) {
    const PlannedRun& trunk = run(trunk_name);
    EXPECT_TRUE(trunk.branch_of.empty());
    EXPECT_EQ(trunk.c_spent(), trunk.compute);
    std::vector<int64_t> keep;
    int64_t shortest = trunk.steps;
    for (const std::string& n : branch_names) {
      const PlannedRun& b = run(n);
      EXPECT_EQ(b.branch_of, trunk_name);
      EXPECT_LT(b.steps, trunk.steps);
      EXPECT_EQ(b.branch_step, b.steps - wsd_decay_steps(b.steps, fraction));
      EXPECT_DOUBLE_EQ(b.c_spent(), b.flops_per_token * (b.steps - b.branch_step) * 256);
      EXPECT_TRUE(b.keep_steps.empty());
      keep.push_back(b.branch_step);
      shortest = std::min(shortest, b.steps);
      const Config c = Config::from_yaml(planned_config_yaml(spec, plan, b), n);
      EXPECT_EQ(c.get_string("train.branch_from"),
                str_cat(trunk.run_dir, "/checkpoints/step_", std::string(8 - std::to_string(b.branch_step).size(), '0'),
                        b.branch_step));
      EXPECT_EQ(c.get_int("train.warmup_steps"), trunk.warmup_steps);
      // the branch's rate is the trunk's up to the branch point: the run from step 0
      const LrSchedule mine = lr_schedule_from(c, b.steps, b.warmup_steps);
      const LrSchedule trunks_rate = lr_schedule_from(c, trunk.steps, trunk.warmup_steps);
      for (int64_t step = 0; step < b.branch_step; ++step) ASSERT_EQ(mine.at(step), trunks_rate.at(step)) << n;
    }
    std::sort(keep.begin(), keep.end());
    EXPECT_EQ(trunk.keep_steps, keep) << trunk_name;
    EXPECT_EQ(trunk.warmup_steps, std::llround(0.1 * shortest)) << trunk_name;  // the shortest run's
    const Config c = Config::from_yaml(planned_config_yaml(spec, plan, trunk), trunk_name);
    EXPECT_EQ(c.get_int_list("checkpoint.keep_steps"), keep);
    EXPECT_EQ(c.get_string("train.branch_from"), "");
  }
  // Run order: trunks, train branches, corpora, students, student branches.
  std::vector<std::string> lists;
  for (const PlannedRun& r : plan.runs)
    if (lists.empty() || lists.back() != r.stage_list()) lists.push_back(r.stage_list());
  EXPECT_EQ(lists, (std::vector<std::string>{"train", "train_branch", "corpus", "student", "student_branch"}));
  // What each run waits for (submit.sh, run_local.sh): the run it reads, in an earlier list.
  auto list_index = [](const PlannedRun& r) {
    return std::find_if(std::begin(kStageLists), std::end(kStageLists),
                        [&](const char* l) { return l == std::string(r.stage_list()); }) - std::begin(kStageLists);
  };
  for (const PlannedRun& r : plan.runs) {
    const std::string expected = !r.branch_of.empty()          ? r.branch_of
                                 : r.stage == Stage::Corpus  ? "teacher-L2-M1"
                                 : r.stage == Stage::Student ? "corpus-teacher-L2-M1"
                                                             : "";
    EXPECT_EQ(r.waits_for(), expected) << r.name;
    if (expected.empty()) continue;
    ASSERT_NE(plan.find(expected), nullptr) << r.name;
    EXPECT_LT(list_index(*plan.find(expected)), list_index(r)) << r.name;
  }
  // warmup_steps: every run of every group warms up that long.
  const SweepPlan fixed = plan_sweep(read_sweep_text(fixed_warmup(7, body, ", train.lr_schedule: wsd"), "t.yaml", "."), "/tmp/x");
  for (const PlannedRun& r : fixed.runs) {
    if (r.stage != Stage::Corpus) {
      EXPECT_EQ(r.warmup_steps, 7) << r.name;
    }
  }
  // Without the key nothing branches and every run warms up on its own fraction.
  const SweepSpec plain = read_sweep_text(
      sweep_text(body.substr(body.find('\n') + 1), "aspect: 32, head_dim: 16",
                 "train.batch_tokens: 256, train.lr_schedule: wsd"),
      "test.yaml", ".");
  for (const PlannedRun& r : plan_sweep(plain, "/tmp/x").runs) {
    EXPECT_TRUE(r.branch_of.empty() && r.keep_steps.empty()) << r.name;
    if (r.stage != Stage::Corpus) {
      EXPECT_EQ(r.warmup_steps, std::llround(0.1 * r.steps)) << r.name;
    }
  }
}

// seeds: [1, 2] plans the whole sweep once per seed. Seed 1's replicate is, but for "-s1" in its
// names and paths, the sweep planned without seeds (train.seed defaults to 1); seed 2's runs read
// and branch from seed 2's runs only.
TEST(SweepPlan, SeedsReplicateTheWholePlan) {
  const SweepSpec plain_spec = wsd_spec(kSeedsBody), seeded_spec = wsd_spec("seeds: [1, 2]\n" + kSeedsBody);
  const SweepPlan plain = plan_sweep(plain_spec, "/tmp/x"), seeded = plan_sweep(seeded_spec, "/tmp/x");
  ASSERT_EQ(seeded.runs.size(), 2 * plain.runs.size());
  auto erase_all = [](std::string s, const std::string& what) {
    for (size_t at; (at = s.find(what)) != std::string::npos;) s.erase(at, what.size());
    return s;
  };
  int64_t seed2 = 0;
  for (const PlannedRun& r : seeded.runs) {
    const PlannedRun* p = plain.find(r.point);
    ASSERT_NE(p, nullptr) << r.name << " (point " << r.point << ")";
    EXPECT_EQ(p->point, p->name);
    EXPECT_EQ(r.name.find("-s" + std::to_string(r.seed)) != std::string::npos, true) << r.name;
    EXPECT_EQ(r.steps, p->steps);
    EXPECT_EQ(r.branch_step, p->branch_step);
    const std::string yaml = planned_config_yaml(seeded_spec, seeded, r);
    const Config c = Config::from_yaml(yaml, r.name);
    EXPECT_EQ(c.get_int("train.seed"), r.seed) << r.name;
    if (r.seed == 1) {
      EXPECT_EQ(erase_all(yaml, "-s1"), planned_config_yaml(plain_spec, plain, *p)) << r.name;
      continue;
    }
    ASSERT_EQ(r.seed, 2) << r.name;
    ++seed2;
    for (const std::string* other : {&r.teacher, &r.corpus, &r.branch_of})
      if (!other->empty()) EXPECT_EQ(seeded.find(*other)->seed, 2) << r.name << " reads " << *other;
    if (r.stage == Stage::Corpus) {
      EXPECT_EQ(YAML::Load(yaml)["generate"]["seed"].as<int64_t>(), 2);
    }
  }
  EXPECT_EQ(seed2, int64_t(plain.runs.size()));
  ASSERT_EQ(seeded.totals.size(), plain.totals.size());
  for (size_t i = 0; i < plain.totals.size(); ++i) {
    EXPECT_EQ(seeded.totals[i].runs, 2 * plain.totals[i].runs);
    EXPECT_DOUBLE_EQ(seeded.totals[i].total(), 2 * plain.totals[i].total());
  }
}

// student_seeds: [1, 2] plans each student once per seed, all reading their teacher's one corpus;
// teachers, corpora and supervised runs stay single. The seed-1 student is, but for "-s1" in its
// name and paths, the student planned without student_seeds. With seeds: too, within each of its
// replicates.
TEST(SweepPlan, StudentSeedsReplicateOnlyTheStudents) {
  const SweepSpec plain_spec = wsd_spec(kSeedsBody), spec = wsd_spec("student_seeds: [1, 2]\n" + kSeedsBody);
  const SweepPlan plain = plan_sweep(plain_spec, "/tmp/x"), plan = plan_sweep(spec, "/tmp/x");
  int64_t students = 0;
  for (const PlannedRun& p : plain.runs) {
    if (p.stage != Stage::Student) {
      const PlannedRun* r = plan.find(p.name);  // the same run, once
      ASSERT_NE(r, nullptr) << p.name;
      EXPECT_EQ(planned_config_yaml(spec, plan, *r), planned_config_yaml(plain_spec, plain, p)) << p.name;
      continue;
    }
    ++students;
    for (int64_t k : {1, 2}) {
      const PlannedRun* r = plan.find(str_cat(p.name, "-s", k));
      ASSERT_NE(r, nullptr) << p.name << " seed " << k;
      EXPECT_EQ(r->point, p.name);
      EXPECT_EQ(r->seed, k);
      EXPECT_EQ(r->corpus, p.corpus);
      EXPECT_EQ(r->steps, p.steps);
      EXPECT_EQ(r->branch_of, p.branch_of.empty() ? "" : str_cat(p.branch_of, "-s", k));
      const std::string yaml = planned_config_yaml(spec, plan, *r);
      EXPECT_EQ(Config::from_yaml(yaml, r->name).get_int("train.seed"), k);
      if (k == 1) {
        std::string unsuffixed = yaml;
        for (size_t at; (at = unsuffixed.find("-s1")) != std::string::npos;) unsuffixed.erase(at, 3);
        EXPECT_EQ(unsuffixed, planned_config_yaml(plain_spec, plain, p)) << r->name;
      }
    }
  }
  EXPECT_EQ(students, 2);
  EXPECT_EQ(plan.runs.size(), plain.runs.size() + 2);
  // Compute: the students twice, the teacher's training and logits once.
  const ProtocolTotal& a = plain.totals.back();
  const ProtocolTotal& b = plan.totals.back();
  EXPECT_DOUBLE_EQ(b.c_student, 2 * a.c_student);
  EXPECT_DOUBLE_EQ(b.c_teacher_logits, a.c_teacher_logits);
  EXPECT_DOUBLE_EQ(b.c_teacher_pretrain, a.c_teacher_pretrain);

  // With seeds: [1, 2] too: every seed replicate's students once per student seed.
  const SweepPlan both = plan_sweep(wsd_spec("seeds: [1, 2]\nstudent_seeds: [3, 4]\n" + kSeedsBody), "/tmp/x");
  const PlannedRun* r = both.find("student-ftis-teacher-L2-M1-s2-1.2e10-L1-s4");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->seed, 4);
  EXPECT_EQ(r->point, "student-ftis-teacher-L2-M1-1.2e10-L1");
  EXPECT_EQ(r->corpus, "corpus-teacher-L2-M1-s2");
  EXPECT_EQ(both.runs.size(), 2 * plan.runs.size());
}

// data_epochs as the runs count them: train runs over (n − 1)/T windows, corpora over the
// n/(T + 1) windows generate scores (or its prompts), students over their corpus.
TEST(SweepPlan, DataEpochsCountWhatEachRunReads) {
  const std::string body =
      "supervised: {budgets: [1.2e10, 2.4e10], sizes: [1]}\n"
      "distillation:\n"
      "  - {protocol: fixed_teacher_isoflop_students, teachers: {sizes: [2], tokens_per_param: 1},\n"
      "     students: {budgets: [1.2e10, 2.4e10], sizes: [1]}}\n";
  SweepSpec spec = read(body);
  SweepPlan plan = plan_sweep(spec, "/tmp/x");
  for (const PlannedRun& r : plan.runs) EXPECT_EQ(r.data_epochs, -1) << r.name;  // unknown until counted
  const int64_t n = 64 * 2000 + 1;  // 2000 windows of 64 tokens for training, 1969 of 65 for scoring
  plan_data_epochs(spec, plan, n);
  const PlannedRun& sup = *plan.find("sup-1.2e10-L1");
  EXPECT_EQ(sup.steps, 224);  // 1.2e10 / 208896 FLOPs per token / 256 tokens per step
  EXPECT_DOUBLE_EQ(sup.data_epochs, 224 * 4 / 2000.0);
  EXPECT_DOUBLE_EQ(plan.find("sup-2.4e10-L1")->data_epochs, 449 * 4 / 2000.0);
  const PlannedRun& corpus = *plan.find("corpus-teacher-L2-M1");
  EXPECT_EQ(corpus.num_sequences, 449 * 4);  // the hungriest student's sequences
  EXPECT_DOUBLE_EQ(corpus.data_epochs, 449 * 4 / 1969.0);
  for (const PlannedRun& r : plan.runs)
    if (r.stage == Stage::Student) EXPECT_DOUBLE_EQ(r.data_epochs, r.steps * 4.0 / corpus.num_sequences);
  EXPECT_DOUBLE_EQ(plan.find("student-ftis-teacher-L2-M1-2.4e10-L1")->data_epochs, 1.0);

  // Fewer windows than the corpus needs: refused at plan time, naming the corpus and the file.
  const int64_t short_n = 65 * (449 * 4) - 1;
  try {
    plan_data_epochs(spec, plan, short_n);
    ADD_FAILURE() << "a corpus longer than data.train was planned";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("corpus-teacher-L2-M1 needs 1796 windows of 65 tokens from data.train"),
              std::string::npos) << e.what();
  }
  plan_data_epochs(spec, plan, short_n + 1);  // exactly enough
  EXPECT_DOUBLE_EQ(corpus.data_epochs, 1.0);
  EXPECT_THROW(plan_data_epochs(spec, plan, 64), ConfigError);  // not one training window

  // Sample mode reads prompts [i·65, i·65 + P); from EOS (P = 0) it reads no data.
  SweepSpec sample = read_sweep_text(sweep_text(body + "generate: {mode: sample}\n", "aspect: 32, head_dim: 16",
                                                "train.batch_tokens: 256, generate.prompt_len: 8"),
                                     "test.yaml", ".");
  SweepPlan sp = plan_sweep(sample, "/tmp/x");
  plan_data_epochs(sample, sp, n);
  EXPECT_DOUBLE_EQ(sp.find("corpus-teacher-L2-M1")->data_epochs, 1796 / double((n - 8) / 65 + 1));
  sample.base.set("generate.prompt_len", "0");
  plan_data_epochs(sample, sp, n);
  EXPECT_EQ(sp.find("corpus-teacher-L2-M1")->data_epochs, 0);
}

TEST(SweepPlan, ShippedSweepFilesPlan) {
  for (const char* f : {"isoflop-tiny.yaml", "isoflop-cpu.yaml", "isoflop-cpu-wsd.yaml", "isoflop-cpu-wsd-seeds.yaml",
                        "distill-cpu-student-seeds.yaml"}) {
    SweepSpec spec = read_sweep(kSrc + "/configs/sweeps/" + f);
    SweepPlan plan = plan_sweep(spec, "/tmp/x");
    EXPECT_FALSE(plan.runs.empty()) << f;
    for (const PlannedRun& r : plan.runs)
      if (r.budget > 0) EXPECT_LE(std::abs(r.compute / r.budget - 1), spec.tolerance) << f << " " << r.name;
  }
}

TEST(SweepPlan, MalformedFilesNameTheFileAndKey) {
  const std::string ok_sup = "supervised: {budgets: [1.2e10], sizes: [1]}\n";
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"supervised: [", "bad.yaml: malformed YAML"},
      {"- a\n- b\n", "bad.yaml: a sweep file must be a YAML map"},
      {sweep_text("supervized: {budgets: [1e10], sizes: [1]}\n"),
       "bad.yaml: unknown key 'supervized' (did you mean 'supervised'?)"},
      {sweep_text(""), "bad.yaml: key 'supervised': nothing to plan"},
      {sweep_text("supervised: {budgets: [abc], sizes: [1]}\n"),
       "bad.yaml: key 'supervised.budgets[0]': must be a number, got 'abc'"},
      {sweep_text("supervised: {budgets: [-1e10], sizes: [1]}\n"), "key 'supervised.budgets[0]': must be > 0"},
      {sweep_text("supervised: {budgets: [1e10], sizes: [0]}\n"), "key 'supervised.sizes[0]': must be >= 1"},
      {sweep_text("supervised: {budgets: [1e10], sizes: [1.5]}\n"), "key 'supervised.sizes[0]': must be an integer"},
      {sweep_text("supervised: {budgets: [1e10]}\n"), "key 'supervised.sizes': is required"},
      {sweep_text("supervised: {budgets: [1e10], sizes: [1], tokens_per_param: 20}\n"),
       "key 'supervised.tokens_per_param': does not apply"},
      {sweep_text("supervised: {budgets: [1e10], sizes: [1], budget: 2}\n"),
       "unknown key 'supervised.budget' (did you mean 'supervised.budgets'?)"},
      {sweep_text("supervised: {budgets: [1e8], sizes: [1]}\n"),
       "bad.yaml: key 'supervised.budgets': sup-1e8-L1:"},
      {sweep_text("flops: 7N\n" + ok_sup), "bad.yaml: key 'flops': must be 'exact' or '6N'"},
      {sweep_text("tolerance: 2\n" + ok_sup), "key 'tolerance'"},
      {sweep_text("ranks: 2\n" + ok_sup), "bad.yaml: key 'ranks': 2 processes per run"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 24"),
       "key 'supervised.sizes[0]': d_model = family.aspect·L = 32·1 = 32 is not a multiple of family.head_dim (24)"},
      {sweep_text(ok_sup, "aspect: 30, head_dim: 15"), "key 'family.head_dim': must be even"},
      {sweep_text(ok_sup, "aspekt: 32"), "unknown key 'family.aspekt' (did you mean 'family.aspect'?)"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "model.d_model: 64"), "'model.d_model' is set per run by the planner"},
      {"set: {train.lrr: 1}\n" + ok_sup, "bad.yaml: key 'set.train.lrr': set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)"},
      {"base: nowhere.yaml\n" + ok_sup, "bad.yaml: key 'base': config file './nowhere.yaml' does not exist"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "train.batch_tokens: 100"), "key 'set.train.batch_tokens'"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "train.lr_schedule: wds"),
       "bad.yaml: the base config (with set: and --set): "},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "train.lr_schedule: wds"),
       "key 'train.lr_schedule': must be cosine or wsd, got 'wds'"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "train.lr_schedule: wsd, train.wsd_decay_fraction: 0.95"),
       "bad.yaml: key 'warmup_fraction': sup-1.2e10-L1: "},
      {sweep_text("warmup_steps: 5\n" + ok_sup), "bad.yaml: key 'warmup_steps': give warmup_fraction (per run) or warmup_steps"},
      {fixed_warmup(500, ok_sup), "bad.yaml: key 'warmup_steps': sup-1.2e10-L1: 500 warmup steps, but the run has 224 steps"},
      {fixed_warmup(200, ok_sup, ", train.lr_schedule: wsd"),
       "bad.yaml: key 'warmup_steps': sup-1.2e10-L1: 200 warmup steps of 224 run into wsd's decay"},
      {sweep_text("cooldown_branches: true\n" + ok_sup),
       "bad.yaml: key 'cooldown_branches': needs train.lr_schedule: wsd (the base config has cosine"},
      {sweep_text("cooldown_branches: yes\n" + ok_sup), "key 'cooldown_branches': must be true or false"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "train.branch_from: /x"),
       "'train.branch_from' is set per run by the planner"},
      {sweep_text("seeds: []\n" + ok_sup), "bad.yaml: key 'seeds': must be a non-empty list of integers"},
      {sweep_text("seeds: 3\n" + ok_sup), "bad.yaml: key 'seeds': must be a non-empty list of integers"},
      {sweep_text("seeds: [1, -2]\n" + ok_sup), "bad.yaml: key 'seeds[1]': must be >= 0, got -2"},
      {sweep_text("seeds: [4, 4]\n" + ok_sup), "bad.yaml: key 'seeds[1]': seed 4 is listed twice"},
      {sweep_text("seeds: [1, 2]\n" + ok_sup, "aspect: 32, head_dim: 16", "train.seed: 3"),
       "bad.yaml: key 'set.train.seed': 'train.seed' is set per replicate from the sweep's seeds: list"},
      {sweep_text("student_seeds: [1, 2]\n" + ok_sup), "bad.yaml: key 'student_seeds': the sweep plans no students"},
      {sweep_text("student_seeds: []\n" + ok_sup), "bad.yaml: key 'student_seeds': must be a non-empty list of integers"},
      {sweep_text("student_seeds: [2, 2]\n" + ok_sup), "bad.yaml: key 'student_seeds[1]': seed 2 is listed twice"},
      {sweep_text("distillation: {protocol: x}\n"), "key 'distillation': must be a list"},
      {sweep_text("distillation:\n  - {protocol: online}\n"), "key 'distillation[0].protocol': unknown protocol 'online'"},
      {sweep_text("distillation:\n  - {protocol: fixed_teacher_isoflop_students}\n"),
       "key 'distillation[0].teachers': is required"},
      {sweep_text("distillation:\n  - {protocol: fixed_teacher_isoflop_students, teachers: {sizes: [2], budgets: [1e10]},"
                  " students: {budgets: [1e10], sizes: [1]}}\n"),
       "key 'distillation[0].teachers.tokens_per_param': is required"},
      {sweep_text("distill: {lambda: 2}\n" + ok_sup), "key 'distill.lambda': must be in [0, 1]"},
      {sweep_text("distill: {tail: drop}\n" + ok_sup), "key 'distill.tail': must be 'renormalize' or 'bucket', got 'drop'"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "distill.lambda: 1"),
       "bad.yaml: key 'set.distill.lambda': 'distill.lambda' is the sweep file's own key (distill: {lambda: …} beside set:)"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "generate.k: 128"),
       "'generate.k' is the sweep file's own key (generate: {k: …} beside set:)"},
      {sweep_text(ok_sup, "aspect: 32, head_dim: 16", "distill.corpus: /x"), "'distill.corpus' is set per run by the planner"},
      {sweep_text("generate: {mode: beam}\n" + ok_sup), "key 'generate.mode'"},
      {sweep_text("slurm: {nodez: 1}\n" + ok_sup), "unknown key 'slurm.nodez' (did you mean 'slurm.nodes'?)"},
      {sweep_text("slurm: {partition: 'a b'}\n" + ok_sup), "key 'slurm.partition': must not contain spaces"},
      {sweep_text("slurm: {nodes: 2}\n" + ok_sup), "key 'slurm.nodes'"},
  };
  for (const Case& c : cases) {
    std::string err = error_of(c.text);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected: " << c.expect << "\n     got: " << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;  // one line
  }
}
