// retort generate CONFIG.yaml [--set generate.key=value]...: a distillation corpus (SPEC §5)
// from a teacher checkpoint.
//
// Shard s holds sequences [s·S, min(N, (s+1)·S)) (S = generate.shard_sequences) and is
// computed by rank s mod world; a sequence depends only on its global index (see
// corpus_generator.h), so the corpus is the same for any number of ranks. Each shard is
// written atomically; on a rerun, shards that exist and validate are kept (resume after a
// crash). Existing shards or a manifest with other metadata are never touched: the job stops
// with a config error first. After a barrier, rank 0 writes manifest.json last, atomically.
//
// Checksums: manifest.json records each shard's size and sha256 (readers check them before
// libhdf5 parses a shard). The rank that writes a shard hashes the finished temporary file,
// i.e. the bytes written; the rank that keeps a shard on a rerun takes the digest from the
// existing manifest after checking the file against it, or, without one, hashes the file after
// validating every value. One all-reduce brings every digest to rank 0. No side files: a shard
// kept across a crash is hashed again on the rerun (it is read whole for validation anyway).
//
// Preemption (SIGUSR1/SIGTERM, core/preemption.h): shards are written in rounds of one per
// rank; after a signal every rank finishes its shard of the current round, no manifest is
// written, and the job exits 75. Rerunning the same command keeps the finished shards and
// writes the rest: the corpus is bitwise identical to an uninterrupted one.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <optional>
#include <regex>

#include "core/checkpoint.h"
#include "core/dir_lock.h"
#include "core/fs.h"
#include "core/ops.h"
#include "core/preemption.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "data/distill_corpus.h"
#include "data/token_dataset.h"
#include "launch/checkpoint_model.h"
#include "launch/commands.h"
#include "launch/teacher_tokenizer.h"
#include "launch/corpus_generator.h"
#include "launch/preemption_vote.h"
#include "parallel/collective_watchdog.h"
#include "parallel/gpu_mesh.h"
#include "parallel/mesh.h"

namespace retort {
namespace stdfs = std::filesystem;

namespace {

struct Plan {
  std::string teacher, data, out;
  GeneratorSettings gen;
  CorpusMeta meta;
  int64_t num_sequences = 0, shard_sequences = 0;
  int compression = 0;
  int64_t num_shards() const { return (num_sequences + shard_sequences - 1) / shard_sequences; }
  int64_t shard_first(int64_t s) const { return s * shard_sequences; }
  int64_t shard_count(int64_t s) const {
    return std::min(shard_sequences, num_sequences - shard_first(s));
  }
};

// Key checks that need neither the teacher nor the data (ConfigError naming the key).
Plan read_keys(const Config& cfg) {
  Plan p;
  auto need = [&](const char* key) {
    std::string v = cfg.get_string(key);
    if (v.empty()) cfg.fail(key, "must be set");
    return v;
  };
  p.teacher = need("generate.teacher");
  p.data = need("generate.data");
  p.out = need("generate.out");
  const std::string mode = cfg.get_string("generate.mode");
  if (mode != "score" && mode != "sample") cfg.fail("generate.mode", "must be score or sample, got '" + mode + "'");
  GeneratorSettings& g = p.gen;
  g.sample = mode == "sample";
  auto at_least = [&](const char* key, int64_t lo) {
    int64_t v = cfg.get_int(key);
    if (v < lo) cfg.fail(key, str_cat("must be >= ", lo, ", got ", v));
    return v;
  };
  g.k = at_least("generate.k", 1);
  p.num_sequences = at_least("generate.num_sequences", 0);
  g.seq_len = cfg.get_int("generate.seq_len");
  if (g.seq_len != 0 && g.seq_len < 2) cfg.fail("generate.seq_len", "must be >= 2 (or 0)");
  g.prompt_len = at_least("generate.prompt_len", 0);
  g.sampling.temperature = cfg.get_float("generate.temperature");
  if (!(g.sampling.temperature >= 0)) cfg.fail("generate.temperature", "must be >= 0");
  g.sampling.top_k = at_least("generate.top_k", 0);
  g.sampling.top_p = cfg.get_float("generate.top_p");
  if (!(g.sampling.top_p > 0 && g.sampling.top_p <= 1)) cfg.fail("generate.top_p", "must be in (0, 1]");
  g.seed = uint64_t(at_least("generate.seed", 0));
  g.logit_temperature = cfg.get_float("generate.logit_temperature");
  if (!(g.logit_temperature > 0)) cfg.fail("generate.logit_temperature", "must be > 0");
  const std::string dt = cfg.get_string("generate.logprob_dtype");
  if (dt != "f16" && dt != "f32") cfg.fail("generate.logprob_dtype", "must be f16 or f32, got '" + dt + "'");
  p.compression = int(at_least("generate.compression", 0));
  if (p.compression > 9) cfg.fail("generate.compression", "must be 0 (none) or a gzip level 1..9");
  p.shard_sequences = at_least("generate.shard_sequences", 1);
  g.batch = at_least("generate.batch", 1);
  g.kv_cache = cfg.get_bool("generate.kv_cache");
  const std::string precision = cfg.get_string("generate.precision");
  if (precision != "fp32" && precision != "bf16")
    cfg.fail("generate.precision", "must be fp32 or bf16, got '" + precision + "'");
  for (const char* axis : {"parallel.fsdp", "parallel.tp"})
    if (cfg.get_int(axis) != 1)
      cfg.fail(axis, "generate is data-parallel only (the teacher is loaded whole on every "
                     "rank; use its consolidated checkpoint)");
  CorpusMeta& m = p.meta;
  m.k = g.k;
  m.mode = mode;
  m.logit_temperature = g.logit_temperature;
  // sampling settings are recorded as used; score mode records the neutral values
  m.sample_temperature = g.sample ? g.sampling.temperature : 1.0;
  m.sample_top_k = g.sample ? g.sampling.top_k : 0;
  m.sample_top_p = g.sample ? g.sampling.top_p : 1.0;
  m.seed = g.sample ? g.seed : 0;
  m.fp16_logprobs = dt == "f16";
  m.teacher_precision = precision;
  return p;
}

struct Existing {
  std::vector<bool> present;               // per shard: a file is there
  bool has_manifest = false;
  std::vector<CorpusShardEntry> manifest;  // its entries (same layout as this plan)
};

// Existing outputs: refuse (ConfigError) when they belong to another corpus. Returns, for
// each shard, whether a file is there, and the existing manifest's entries. Same decision on
// every rank (reads only attributes). A shard that the existing manifest checksums is not
// opened here: its rank verifies the checksum before libhdf5 parses it (shard_to_keep).
Existing check_existing(const Plan& p) {
  Existing out;
  std::vector<bool>& present = out.present;
  present.assign(p.num_shards(), false);
  std::error_code ec;
  if (!stdfs::exists(p.out, ec)) return out;
  if (!stdfs::is_directory(p.out, ec))
    throw ConfigError(str_cat("key 'generate.out': ", p.out, " exists and is not a directory"));
  const std::string manifest = p.out + "/manifest.json";
  if (stdfs::exists(manifest, ec)) {
    std::vector<CorpusShardEntry>& shards = out.manifest;
    out.has_manifest = true;
    CorpusMeta m;
    try {
      m = read_corpus_manifest(p.out, &shards);
    } catch (const Error& e) {
      throw ConfigError(str_cat("key 'generate.out': refusing to overwrite an unreadable "
                                "corpus manifest: ", e.what()));
    }
    if (std::string d = corpus_meta_difference(m, p.meta); !d.empty())
      throw ConfigError(str_cat(manifest, ": existing corpus has different metadata: ", d,
                                "; choose another generate.out"));
    bool same = int64_t(shards.size()) == p.num_shards();
    for (int64_t s = 0; same && s < p.num_shards(); ++s)
      same = shards[s].file == corpus_shard_name(s) && shards[s].sequences == p.shard_count(s);
    if (!same)
      throw ConfigError(str_cat(manifest, ": existing corpus has another layout (num_sequences/"
                                "shard_sequences); choose another generate.out"));
  }
  const std::regex shard_re("shard-([0-9]{5,})\\.h5");
  for (const auto& e : stdfs::directory_iterator(p.out, ec)) {
    std::smatch mt;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, mt, shard_re)) continue;
    const int64_t s = std::stoll(mt[1]);
    if (s >= p.num_shards())
      throw ConfigError(str_cat(e.path().string(), ": belongs to a larger corpus (this one has ",
                                p.num_shards(), " shards); choose another generate.out"));
    present[s] = true;
    if (out.has_manifest && !out.manifest[s].sha256.empty()) continue;
    int64_t count = 0;
    CorpusMeta m;
    try {
      m = read_corpus_shard_meta(e.path().string(), &count);
    } catch (const Error&) {
      continue;  // unreadable (crash mid-write is impossible: shards are renamed into place)
    }
    if (std::string d = corpus_meta_difference(m, p.meta); !d.empty())
      throw ConfigError(str_cat(e.path().string(), ": existing shard has different metadata: ",
                                d, "; choose another generate.out"));
    if (count != p.shard_count(s))
      throw ConfigError(str_cat(e.path().string(), ": existing shard holds ", count,
                                " sequences, this corpus needs ", p.shard_count(s),
                                " (different num_sequences/shard_sequences)"));
  }
  return out;
}

// Whether the existing shard s can be kept, and its manifest entry: checked against the
// existing manifest's size and sha256 first when it has them (before libhdf5 reads the
// file), then every attribute, shape and value. Logs why a shard is regenerated.
bool shard_to_keep(const Plan& p, const Existing& old, int64_t s, CorpusShardEntry& entry) {
  const std::string file = corpus_shard_name(s);
  try {
    const bool listed = old.has_manifest && !old.manifest[s].sha256.empty();
    if (listed) verify_corpus_shard(p.out, old.manifest[s]);
    check_corpus_shard(p.out + "/" + file, p.meta, p.shard_count(s), true);
    entry = listed ? old.manifest[s] : describe_corpus_shard(p.out, file, p.shard_count(s));
    return true;
  } catch (const Error& e) {
    std::fprintf(stderr, "retort generate: regenerating %s/%s (%s)\n", p.out.c_str(), file.c_str(),
                 e.what());
    return false;
  }
}

// Every shard's size and sha256 on rank 0 (each rank knows those of its own shards): one
// all-reduce (sum) of [shards, 10] int32 words (8 of digest, 2 of size), zero where unknown.
std::vector<CorpusShardEntry> gather_entries(const Mesh& mesh, const Plan& p,
                                             const std::vector<CorpusShardEntry>& mine) {
  const int64_t n = p.num_shards(), W = 10;
  Tensor words = Tensor::zeros({n, W}, DType::I32);
  int32_t* w = words.host<int32_t>();
  for (int64_t s = 0; s < n; ++s) {
    if (mine[s].sha256.empty()) continue;
    for (int i = 0; i < 8; ++i)
      w[s * W + i] = int32_t(uint32_t(std::stoul(mine[s].sha256.substr(8 * i, 8), nullptr, 16)));
    w[s * W + 8] = int32_t(uint32_t(uint64_t(mine[s].bytes)));
    w[s * W + 9] = int32_t(uint32_t(uint64_t(mine[s].bytes) >> 32));
  }
  if (mesh.world_size > 1) mesh.world->all_reduce(words, ReduceOp::Sum);
  std::vector<CorpusShardEntry> all(n);
  for (int64_t s = 0; s < n; ++s) {
    char hex[65];
    for (int i = 0; i < 8; ++i) std::snprintf(hex + 8 * i, 9, "%08x", uint32_t(w[s * W + i]));
    all[s] = {corpus_shard_name(s), p.shard_count(s),
              int64_t(uint64_t(uint32_t(w[s * W + 8])) | uint64_t(uint32_t(w[s * W + 9])) << 32), hex};
  }
  return all;
}

// Removes `*.tmp-PID` files that a killed or failed run left in the corpus directory.
void remove_stale_temporaries(const std::string& out) {
  static const std::regex tmp_re("(shard-[0-9]{5,}\\.h5|manifest\\.json)\\.tmp-[0-9]+");
  std::error_code ec;
  std::vector<stdfs::path> stale;
  for (const auto& e : stdfs::directory_iterator(out, ec))
    if (std::regex_match(e.path().filename().string(), tmp_re)) stale.push_back(e.path());
  for (const auto& path : stale) stdfs::remove(path, ec);
}

}  // namespace

int run_generate(const Config& cfg_in) {
  install_preemption_handlers();  // before the teacher loads: a signal then stops at round 0
  Config cfg = cfg_in;
  Plan p = read_keys(cfg);
  // every launched rank is a data-parallel replica of the teacher
  const int world = launched_world_size();
  if (!cfg.was_set("parallel.dp")) cfg.set("parallel.dp", std::to_string(world));
  Mesh mesh = make_mesh(cfg);
  place_mesh(mesh, cfg);
  apply_thread_setting(cfg);
  const bool root = mesh.is_root();

  LoadedModel teacher = load_checkpoint_model(p.teacher, {}, mesh.device);
  // bf16: the teacher's products on bf16 weights rounded once (tensor cores on a GPU), fp32
  // accumulation, the KV cache's keys and values rounded to bf16 (half its memory and its reads),
  // every other op in fp32
  if (p.meta.teacher_precision == "bf16") {
    ops::set_matmul_precision(ops::MatmulPrecision::BF16);
    teacher.model->arm_bf16_weights();  // frozen: armed for the whole run
    p.gen.kv_cache_dtype = DType::BF16;
  }
  const ModelConfig& mc = teacher.model->config();
  TokenDataset data = TokenDataset::load(p.data);
  if (data.meta().vocab_size > mc.vocab_size)
    throw Error(str_cat(p.data, ": vocabulary of ", data.meta().vocab_size,
                        " exceeds the teacher's vocab_size ", mc.vocab_size, " (", teacher.dir, ")"));
  check_same_tokenizer(teacher_tokenizer(teacher), p.data, data.meta().tokenizer_sha256,
                       "the teacher reads the data in its own tokenizer's ids");
  GeneratorSettings& g = p.gen;
  // A sequence of Ls tokens has Ls − 1 targets and the teacher reads Ls − 1 inputs, so the
  // default Ls = seq_len + 1 gives students of the same seq_len full-length sequences.
  if (g.seq_len == 0) g.seq_len = mc.seq_len + 1;
  if (g.seq_len > mc.seq_len + 1)
    cfg.fail("generate.seq_len", str_cat(g.seq_len, " exceeds the teacher's seq_len ", mc.seq_len,
                                         " + 1 (a sequence's last token is never an input)"));
  if (g.k > mc.vocab_size)
    cfg.fail("generate.k", str_cat(g.k, " exceeds the teacher's vocab_size ", mc.vocab_size));
  if (g.sample && g.prompt_len >= g.seq_len)
    cfg.fail("generate.prompt_len", str_cat(g.prompt_len, " must be < seq_len ", g.seq_len));
  g.eos_id = data.meta().eos_id;
  // sequences the data supports: windows [i·Ls, (i+1)·Ls) (score) or prompts [i·Ls, i·Ls+P)
  const int64_t n = data.num_tokens(), Ls = g.seq_len;
  int64_t available = -1;  // -1: unlimited (sample mode from EOS)
  if (!g.sample) available = n / Ls;
  else if (g.prompt_len > 0) available = n >= g.prompt_len ? (n - g.prompt_len) / Ls + 1 : 0;
  if (p.num_sequences == 0) {
    if (available < 0)
      cfg.fail("generate.num_sequences", "must be set when sampling from EOS (prompt_len 0)");
    p.num_sequences = available;
  }
  if (p.num_sequences == 0 || (available >= 0 && p.num_sequences > available))
    cfg.fail("generate.num_sequences",
             str_cat(p.num_sequences, " sequences need ", g.sample ? "prompts" : "windows",
                     " of ", p.data, ", which has ", n, " tokens: ", available, " available at seq_len ", Ls));

  CorpusMeta& m = p.meta;
  m.vocab_size = mc.vocab_size;
  m.seq_len = Ls;
  m.tokenizer_sha256 = data.meta().tokenizer_sha256;
  m.teacher_sha256 = checkpoint_weights_sha256(teacher.dir);

  const Existing existing = check_existing(p);
  std::optional<DirLock> out_lock;  // one job at a time per corpus (rank 0's; it aborts the others)
  if (root) {
    fs::create_directories(p.out);
    out_lock.emplace(p.out, "generate.out");
    remove_stale_temporaries(p.out);  // a killed run's half-written shards
  }
  mesh.world->barrier();  // every rank has checked before anyone writes

  // This rank's shards: s ≡ rank (mod world). Keep those that exist and validate.
  std::vector<bool> todo(p.num_shards(), false);
  std::vector<CorpusShardEntry> mine(p.num_shards());  // this rank's shards' manifest entries
  int64_t reused = 0, todo_tokens = 0;
  for (int64_t s = mesh.rank; s < p.num_shards(); s += mesh.world_size) {
    if (existing.present[s] && shard_to_keep(p, existing, s, mine[s])) {
      ++reused;
      continue;
    }
    todo[s] = true;
    todo_tokens += p.shard_count(s) * Ls;
  }

  // Off a terminal: one line per 16 batches (and the last).
  Progress progress(str_cat("rank ", mesh.rank, " tokens"), todo_tokens, 16, 0, root);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  int64_t done_tokens = 0, written = 0;
  double last_print = -1e9;
  // A finished shard is written (HDF5, compression, checksum) on a thread of its own while the
  // next one is generated, at most one write in flight; a failed write throws at the next wait.
  // Only that thread calls HDF5 meanwhile.
  CorpusSequences seqs, being_written;
  std::future<CorpusShardEntry> writing;
  int64_t writing_shard = -1;
  const auto wait_for_write = [&] {
    if (!writing.valid()) return;
    mine[writing_shard] = writing.get();
    ++written;
  };
  // Round r: every rank handles shard r·world + rank (if it is to be written), after all ranks
  // agreed that none was asked to stop. On SIGUSR1/SIGTERM every rank therefore finishes the
  // shard it is on (written atomically) and starts no other; the rerun keeps what is done.
  const int64_t rounds = (p.num_shards() + mesh.world_size - 1) / mesh.world_size;
  bool preempted = false;
  for (int64_t r = 0; r < rounds && !preempted; ++r) {
    preempted = any_rank_preempted(mesh);
    const int64_t s = r * mesh.world_size + mesh.rank;
    if (preempted || s >= p.num_shards() || !todo[s]) continue;
    generate_sequences(*teacher.model, g, data.tokens(), p.shard_first(s), p.shard_count(s), seqs,
                       [&](int64_t tokens) {
                         done_tokens += tokens;
                         if (elapsed() - last_print < 2.0 && done_tokens < todo_tokens) return;
                         last_print = elapsed();
                         char detail[96];
                         std::snprintf(detail, sizeof detail, "shard %lld | %.0f tok/s",
                                       static_cast<long long>(s), done_tokens / std::max(1e-9, elapsed()));
                         progress.update(done_tokens, detail);
                       });
    wait_for_write();
    being_written = std::move(seqs);
    writing_shard = s;
    writing = std::async(std::launch::async, [&p, &m, &being_written, s] {
      return write_corpus_shard(p.out, s, m, being_written, p.compression);
    });
  }
  wait_for_write();
  progress.finish();
  const double wall = elapsed();
  {
    // Ranks finish their shards at different times (on a resume, one rank may have all of its
    // work left): wait for ranks that are still working; a stopped or dead one ends the job.
    PatientCollectives patient;
    mesh.world->barrier();  // every shard is in place
  }

  if (preempted) {  // no manifest: the corpus is incomplete until a rerun finishes it
    int64_t complete = 0;
    std::error_code ec;
    for (int64_t s = 0; root && s < p.num_shards(); ++s)
      complete += stdfs::exists(p.out + "/" + corpus_shard_name(s), ec) ? 1 : 0;
    if (root)
      std::printf("generate preempted (%s): %lld of %lld shards of %s complete, no manifest yet; "
                  "exit %d, rerun the same command to finish the corpus\n",
                  preemption_signal() ? preemption_signal() : "a signal on another rank",
                  static_cast<long long>(complete), static_cast<long long>(p.num_shards()),
                  p.out.c_str(), kPreemptedExitCode);
    return kPreemptedExitCode;
  }

  const std::vector<CorpusShardEntry> entries = gather_entries(mesh, p, mine);
  if (root) {
    for (const CorpusShardEntry& e : entries) check_corpus_shard(p.out + "/" + e.file, m, e.sequences, false);
    // An existing manifest has this corpus' metadata and layout (check_existing); it is
    // rewritten only to add checksums (an older version wrote it) or to record a regenerated
    // shard whose bytes differ (e.g. another thread count).
    if (!existing.has_manifest || existing.manifest != entries) write_corpus_manifest(p.out, m, entries);
    std::printf("generate: %s: %lld sequences of %lld tokens in %lld shards (rank 0: %lld written, "
                "%lld kept; %.0f tok/s over %.1f s)\n",
                p.out.c_str(), static_cast<long long>(p.num_sequences), static_cast<long long>(Ls),
                static_cast<long long>(p.num_shards()), static_cast<long long>(written),
                static_cast<long long>(reused), done_tokens / std::max(1e-9, wall), wall);
  }
  mesh.world->barrier();
  return 0;
}

}  // namespace retort
