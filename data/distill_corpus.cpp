// Distillation corpus shards and manifest (SPEC §5); see distill_corpus.h.
#include "data/distill_corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/fs.h"
#include "core/hdf5.h"
#include "core/json_fields.h"
#include "core/sha256.h"

namespace retort {
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "retort-distill-corpus";

std::string join(const std::string& dir, const std::string& file) {
  return (stdfs::path(dir) / file).string();
}

// Why `meta` cannot describe a corpus ("" if it can).
std::string meta_problem(const CorpusMeta& m) {
  if (m.k < 1) return str_cat("k = ", m.k, " must be >= 1");
  if (m.vocab_size < 1) return str_cat("vocab_size = ", m.vocab_size, " must be >= 1");
  if (m.k > m.vocab_size) return str_cat("k = ", m.k, " exceeds vocab_size = ", m.vocab_size);
  if (m.seq_len < 2) return str_cat("seq_len = ", m.seq_len, " must be >= 2");
  if (m.mode != "score" && m.mode != "sample")
    return str_cat("mode '", m.mode, "' must be score or sample");
  if (m.seed > uint64_t(INT64_MAX)) return str_cat("seed ", m.seed, " must be < 2^63");
  if (m.vocab_size > (int64_t(1) << 31)) return str_cat("vocab_size = ", m.vocab_size, " does not fit int32 ids");
  if (m.seq_len > (int64_t(1) << 31)) return str_cat("seq_len = ", m.seq_len, " must be <= 2^31");
  if (!(m.logit_temperature > 0) || !std::isfinite(m.logit_temperature))
    return str_cat("logit_temperature = ", m.logit_temperature, " must be a finite number > 0");
  if (!(m.sample_temperature >= 0) || !std::isfinite(m.sample_temperature))
    return str_cat("sample_temperature = ", m.sample_temperature, " must be a finite number >= 0");
  if (m.sample_top_k < 0) return str_cat("sample_top_k = ", m.sample_top_k, " must be >= 0");
  if (!(m.sample_top_p >= 0 && m.sample_top_p <= 1))
    return str_cat("sample_top_p = ", m.sample_top_p, " must be in [0, 1]");
  if (m.teacher_precision != "fp32" && m.teacher_precision != "bf16")
    return str_cat("teacher_precision '", m.teacher_precision, "' must be fp32 or bf16");
  return "";
}

// First field in which a and b differ, "" when they describe the same corpus.
std::string meta_difference(const CorpusMeta& a, const CorpusMeta& b, bool compare_dtype) {
  auto num = [](auto x) { return str_cat(x); };
  const std::pair<const char*, std::pair<std::string, std::string>> fields[] = {
      {"k", {num(a.k), num(b.k)}},
      {"vocab_size", {num(a.vocab_size), num(b.vocab_size)}},
      {"seq_len", {num(a.seq_len), num(b.seq_len)}},
      {"tokenizer_sha256", {a.tokenizer_sha256, b.tokenizer_sha256}},
      {"teacher_sha256", {a.teacher_sha256, b.teacher_sha256}},
      {"mode", {a.mode, b.mode}},
      {"logit_temperature", {num(a.logit_temperature), num(b.logit_temperature)}},
      {"sample_temperature", {num(a.sample_temperature), num(b.sample_temperature)}},
      {"sample_top_k", {num(a.sample_top_k), num(b.sample_top_k)}},
      {"sample_top_p", {num(a.sample_top_p), num(b.sample_top_p)}},
      {"seed", {num(a.seed), num(b.seed)}},
      {"teacher_precision", {a.teacher_precision, b.teacher_precision}},
      {"logprob_dtype", {compare_dtype ? (a.fp16_logprobs ? "float16" : "float32") : "",
                         compare_dtype ? (b.fp16_logprobs ? "float16" : "float32") : ""}},
  };
  for (const auto& [name, v] : fields)
    if (v.first != v.second) return str_cat(name, " (", v.first, " vs ", v.second, ")");
  return "";
}

// Values in [0, hi) (ids) or [0, hi] (prompt_len), else Error naming the file, dataset, index.
void check_range(const std::string& file, const char* dataset, const int32_t* v, int64_t n,
                 int64_t hi, bool inclusive, int64_t first_index) {
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] < 0 || v[i] > hi || (!inclusive && v[i] == hi))
      throw Error(str_cat(file, ": dataset '", dataset, "': value ", v[i], " at flat index ",
                          first_index + i, " outside [0, ", hi, inclusive ? "]" : ")"));
  }
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::string corpus_shard_name(int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05lld.h5", static_cast<long long>(index));
  return buf;
}

std::string corpus_meta_difference(const CorpusMeta& a, const CorpusMeta& b) {
  return meta_difference(a, b, true);
}

CorpusShardEntry write_corpus_shard(const std::string& dir, int64_t index, const CorpusMeta& meta,
                                    const CorpusSequences& seqs, int compression_level) {
  const std::string path = join(dir, corpus_shard_name(index));
  std::string why = meta_problem(meta);
  const int64_t S = seqs.count, Ls = meta.seq_len, k = meta.k;
  if (why.empty() && index < 0) why = str_cat("shard index ", index, " < 0");
  if (why.empty() && S < 1) why = str_cat("sequence count ", S, " must be >= 1");
  if (why.empty() && (compression_level < 0 || compression_level > 9))
    why = str_cat("compression level ", compression_level, " outside 0..9");
  auto size_check = [&](const char* name, size_t have, int64_t want) {
    if (why.empty() && int64_t(have) != want)
      why = str_cat(name, " has ", have, " elements, expected ", want);
  };
  size_check("tokens", seqs.tokens.size(), S * Ls);
  size_check("prompt_len", seqs.prompt_len.size(), S);
  size_check("topk_ids", seqs.topk_ids.size(), S * (Ls - 1) * k);
  size_check("topk_logprobs", seqs.topk_logprobs.size(), S * (Ls - 1) * k);
  if (!why.empty()) throw Error(str_cat(path, ": refusing to write: ", why));
  // value checks name the dataset and the flat index
  check_range(path, "tokens", seqs.tokens.data(), S * Ls, meta.vocab_size, false, 0);
  check_range(path, "prompt_len", seqs.prompt_len.data(), S, Ls, true, 0);
  check_range(path, "topk_ids", seqs.topk_ids.data(), S * (Ls - 1) * k, meta.vocab_size, false, 0);

  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) throw Error(str_cat(dir, ": cannot create corpus directory: ", ec.message()));
  const std::string tmp = str_cat(path, ".tmp-", ::getpid());
  CorpusShardEntry entry{corpus_shard_name(index), S};
  try {
    h5::File f = h5::File::create(tmp);
    const h5::File::Storage ints{false, compression_level};
    const h5::File::Storage lp{meta.fp16_logprobs, compression_level};
    f.write("tokens", {S, Ls}, seqs.tokens.data(), ints);
    f.write("prompt_len", {S}, seqs.prompt_len.data(), h5::File::Storage{});
    f.write("topk_ids", {S, Ls - 1, k}, seqs.topk_ids.data(), ints);
    f.write("topk_logprobs", {S, Ls - 1, k}, seqs.topk_logprobs.data(), lp);
    f.set_attr("k", meta.k);
    f.set_attr("vocab_size", meta.vocab_size);
    f.set_attr("seq_len", meta.seq_len);
    f.set_attr("tokenizer_sha256", meta.tokenizer_sha256);
    f.set_attr("teacher_sha256", meta.teacher_sha256);
    f.set_attr("mode", meta.mode);
    f.set_attr("logit_temperature", meta.logit_temperature);
    f.set_attr("sample_temperature", meta.sample_temperature);
    f.set_attr("sample_top_k", meta.sample_top_k);
    f.set_attr("sample_top_p", meta.sample_top_p);
    f.set_attr("seed", int64_t(meta.seed));
    f.set_attr("teacher_precision", meta.teacher_precision);
    f.close();
    // The digest of the finished file (read back from the page cache) before it gets its name.
    entry.sha256 = sha256_file(tmp);
    entry.bytes = int64_t(stdfs::file_size(tmp));
    fs::fsync_path(tmp);
    fs::rename_durable(tmp, path);
  } catch (...) {
    stdfs::remove(tmp, ec);
    throw;
  }
  return entry;
}

CorpusShardEntry describe_corpus_shard(const std::string& dir, const std::string& file,
                                       int64_t sequences) {
  const std::string path = join(dir, file);
  CorpusShardEntry e{file, sequences};
  e.sha256 = sha256_file(path);
  std::error_code ec;
  e.bytes = int64_t(stdfs::file_size(path, ec));
  if (ec) throw Error(str_cat(path, ": cannot read the file size: ", ec.message()));
  return e;
}

void verify_corpus_shard(const std::string& dir, const CorpusShardEntry& e) {
  if (e.bytes < 0 && e.sha256.empty()) return;  // an older or foreign manifest: unverified
  const std::string path = join(dir, e.file);
  std::error_code ec;
  if (!stdfs::exists(path, ec)) throw Error(str_cat(path, ": file not found"));
  if (!stdfs::is_regular_file(path, ec))  // (a FIFO would block the hash)
    throw Error(str_cat(path, ": not a regular file"));
  if (e.bytes >= 0) {
    const auto size = stdfs::file_size(path, ec);
    if (ec) throw Error(str_cat(path, ": cannot read the file size: ", ec.message()));
    if (int64_t(size) != e.bytes)
      throw Error(str_cat(path, ": corrupt: ", size, " bytes, ", kManifest, " records ", e.bytes,
                          " (truncated or modified after it was written)"));
  }
  if (!e.sha256.empty()) {
    const std::string actual = sha256_file(path);
    if (actual != e.sha256)
      throw Error(str_cat(path, ": corrupt: sha256 is ", actual, ", ", kManifest, " records ",
                          e.sha256, " (damaged or modified after it was written)"));
  }
}

void write_corpus_manifest(const std::string& dir, const CorpusMeta& meta,
                           const std::vector<CorpusShardEntry>& shards) {
  const std::string path = join(dir, kManifest);
  if (std::string why = meta_problem(meta); !why.empty())
    throw Error(str_cat(path, ": refusing to write: ", why));
  json j;
  j["format"] = kFormat;
  j["version"] = 1;
  j["k"] = meta.k;
  j["vocab_size"] = meta.vocab_size;
  j["seq_len"] = meta.seq_len;
  j["tokenizer_sha256"] = meta.tokenizer_sha256;
  j["teacher_sha256"] = meta.teacher_sha256;
  j["mode"] = meta.mode;
  j["logit_temperature"] = meta.logit_temperature;
  j["sample_temperature"] = meta.sample_temperature;
  j["sample_top_k"] = meta.sample_top_k;
  j["sample_top_p"] = meta.sample_top_p;
  j["seed"] = meta.seed;
  j["logprob_dtype"] = meta.fp16_logprobs ? "float16" : "float32";
  j["teacher_precision"] = meta.teacher_precision;
  int64_t total = 0;
  json list = json::array();
  for (const auto& s : shards) {
    if (s.sequences < 1)
      throw Error(str_cat(path, ": refusing to write: shard ", s.file, " has ", s.sequences,
                          " sequences"));
    json entry = {{"file", s.file}, {"sequences", s.sequences}};
    if (s.bytes >= 0) entry["bytes"] = s.bytes;
    if (!s.sha256.empty()) {
      if (!is_sha256_hex(s.sha256))
        throw Error(str_cat(path, ": refusing to write: shard ", s.file, " has sha256 '", s.sha256,
                            "' (expected 64 lowercase hex digits)"));
      entry["sha256"] = s.sha256;
    }
    list.push_back(entry);
    total += s.sequences;
  }
  j["num_sequences"] = total;
  j["shards"] = list;
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) throw Error(str_cat(dir, ": cannot create corpus directory: ", ec.message()));
  fs::write_file_atomic(path, j.dump(2) + "\n");
}

CorpusMeta read_corpus_manifest(const std::string& dir, std::vector<CorpusShardEntry>* shards) {
  const std::string path = join(dir, kManifest);
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec))
    throw Error(str_cat(dir, ": corpus directory not found"));
  if (!stdfs::exists(path, ec))
    throw Error(str_cat(path, ": not found (not a distillation corpus, or generation has not "
                              "finished)"));
  const json j = read_json_file(path, "not valid JSON");
  if (!j.is_object()) throw Error(str_cat(path, ": expected a JSON object"));
  CorpusMeta m;
  m.k = json_int(j, "k", path);
  m.vocab_size = json_int(j, "vocab_size", path);
  m.seq_len = json_int(j, "seq_len", path);
  m.tokenizer_sha256 = json_string(j, "tokenizer_sha256", path);
  m.teacher_sha256 = json_string(j, "teacher_sha256", path);
  m.mode = json_string(j, "mode", path);
  // Doubles went through a decimal round trip (%.17g): exact comparison with shards is safe.
  m.logit_temperature = j.contains("logit_temperature") ? json_number(j, "logit_temperature", path) : 1.0;
  m.sample_temperature = json_number(j, "sample_temperature", path);
  m.sample_top_k = json_int(j, "sample_top_k", path);
  m.sample_top_p = json_number(j, "sample_top_p", path);
  m.seed = uint64_t(json_int(j, "seed", path, 0));
  const std::string dtype = j.contains("logprob_dtype") ? json_string(j, "logprob_dtype", path) : "float16";
  if (dtype != "float16" && dtype != "float32")
    throw Error(str_cat(path, ": key 'logprob_dtype' is '", dtype, "', expected float16 or float32"));
  m.fp16_logprobs = dtype == "float16";
  if (j.contains("teacher_precision")) m.teacher_precision = json_string(j, "teacher_precision", path);
  if (std::string why = meta_problem(m); !why.empty())
    throw Error(str_cat(path, ": bad metadata: ", why));
  if (shards) {
    shards->clear();
    if (!j.contains("shards") || !j["shards"].is_array())
      throw Error(str_cat(path, ": key 'shards' missing or not a list"));
    for (const auto& e : j["shards"]) {
      if (!e.is_object()) throw Error(str_cat(path, ": 'shards' entries must be objects"));
      CorpusShardEntry s;
      s.file = json_string(e, "file", path);
      s.sequences = json_int(e, "sequences", path);
      if (s.sequences < 1 || s.file.empty() || s.file.find('/') != std::string::npos)
        throw Error(str_cat(path, ": bad shard entry ", e.dump()));
      // Optional (absent in manifests of older versions and other tools: then unverified).
      if (e.contains("bytes")) s.bytes = json_int(e, "bytes", path, 0);
      if (e.contains("sha256")) {
        s.sha256 = json_string(e, "sha256", path);
        for (char& c : s.sha256) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (!is_sha256_hex(s.sha256))
          throw Error(str_cat(path, ": shards[", shards->size(), "]: key 'sha256' must be 64 hex digits"));
      }
      shards->push_back(s);
    }
    if (shards->empty()) throw Error(str_cat(path, ": lists no shards"));
  }
  return m;
}

CorpusMeta read_corpus_shard_meta(const std::string& path, int64_t* sequences) {
  h5::File f = h5::File::open_read(path);
  CorpusMeta m;
  for (const char* a : {"k", "vocab_size", "tokenizer_sha256", "teacher_sha256", "mode",
                        "sample_temperature", "sample_top_k", "sample_top_p", "seed"})
    if (!f.has_attr(a)) throw Error(str_cat(path, ": attribute '", a, "' not found"));
  for (const char* d : {"tokens", "prompt_len", "topk_ids", "topk_logprobs"})
    if (!f.has(d)) throw Error(str_cat(path, ": dataset '", d, "' not found"));
  m.k = f.attr_int("k");
  m.vocab_size = f.attr_int("vocab_size");
  m.tokenizer_sha256 = f.attr_string("tokenizer_sha256");
  m.teacher_sha256 = f.attr_string("teacher_sha256");
  m.mode = f.attr_string("mode");
  m.logit_temperature = f.has_attr("logit_temperature") ? f.attr_float("logit_temperature") : 1.0;
  m.sample_temperature = f.attr_float("sample_temperature");
  m.sample_top_k = f.attr_int("sample_top_k");
  m.sample_top_p = f.attr_float("sample_top_p");
  const int64_t seed = f.attr_int("seed");
  if (seed < 0) throw Error(str_cat(path, ": attribute 'seed' = ", seed, " is negative"));
  m.seed = uint64_t(seed);
  if (f.has_attr("teacher_precision")) m.teacher_precision = f.attr_string("teacher_precision");
  const Shape ts = f.shape("tokens");
  if (ts.size() != 2 || ts[1] < 2)
    throw Error(str_cat(path, ": dataset 'tokens': expected shape [S, Ls] with Ls >= 2, found ",
                        shape_str(ts)));
  m.seq_len = ts[1];
  const std::string lt = f.type_name("topk_logprobs");
  if (lt != "float16" && lt != "float32")
    throw Error(str_cat(path, ": dataset 'topk_logprobs': expected float16 or float32, found ", lt));
  m.fp16_logprobs = lt == "float16";
  if (sequences) *sequences = ts[0];
  return m;
}

void check_corpus_shard(const std::string& path, const CorpusMeta& meta, int64_t sequences,
                        bool check_values) {
  int64_t S = 0;
  const CorpusMeta m = read_corpus_shard_meta(path, &S);
  if (std::string d = meta_difference(m, meta, false); !d.empty())
    throw Error(str_cat(path, ": metadata differs from the corpus: ", d));
  if (S != sequences)
    throw Error(str_cat(path, ": dataset 'tokens' holds ", S, " sequences, the manifest says ",
                        sequences));
  h5::File f = h5::File::open_read(path);
  const int64_t Ls = meta.seq_len, k = meta.k;
  auto expect = [&](const char* name, const Shape& want, std::initializer_list<const char*> types) {
    const Shape have = f.shape(name);
    if (have != want)
      throw Error(str_cat(path, ": dataset '", name, "': expected shape ", shape_str(want),
                          ", found ", shape_str(have)));
    const std::string t = f.type_name(name);
    bool ok = false;
    for (const char* x : types) ok = ok || t == x;
    if (!ok) throw Error(str_cat(path, ": dataset '", name, "': unexpected type ", t));
  };
  const auto ints = {"int8", "int16", "int32", "uint8", "uint16"};
  expect("tokens", {S, Ls}, ints);
  expect("prompt_len", {S}, ints);
  expect("topk_ids", {S, Ls - 1, k}, ints);
  expect("topk_logprobs", {S, Ls - 1, k}, {"float16", "float32"});
  if (!check_values) return;
  // Reading every row also catches truncated data (HDF5 read errors name the dataset).
  CorpusSequences tmp;
  read_corpus_shard_rows(path, meta, 0, S, tmp);
}

void read_corpus_shard_rows(const std::string& path, const CorpusMeta& meta, int64_t first,
                            int64_t count, CorpusSequences& out) {
  h5::File f = h5::File::open_read(path);
  const int64_t Ls = meta.seq_len, k = meta.k;
  auto append_i32 = [&](const char* name, std::vector<int32_t>& dst, int64_t hi, bool incl) {
    Tensor t = f.read_rows(name, DType::I32, first, count);
    const int32_t* p = t.numel() ? t.data<int32_t>() : nullptr;
    const int64_t row = count ? t.numel() / count : 0;
    check_range(path, name, p, t.numel(), hi, incl, first * row);
    dst.insert(dst.end(), p, p + t.numel());
  };
  append_i32("tokens", out.tokens, meta.vocab_size, false);
  append_i32("prompt_len", out.prompt_len, Ls, true);
  append_i32("topk_ids", out.topk_ids, meta.vocab_size, false);
  Tensor lp = f.read_rows("topk_logprobs", DType::F32, first, count);
  const float* p = lp.numel() ? lp.data<float>() : nullptr;
  for (int64_t i = 0; i < lp.numel(); ++i)
    if (!(p[i] <= 0.0f))  // log-probs are <= 0 (and not nan)
      throw Error(str_cat(path, ": dataset 'topk_logprobs': value ", p[i], " at flat index ",
                          first * (Ls - 1) * k + i, " is not a log-probability"));
  out.topk_logprobs.insert(out.topk_logprobs.end(), p, p + lp.numel());
  out.count += count;
}

CorpusReader::CorpusReader(const std::string& dir) : dir_(dir) {
  meta_ = read_corpus_manifest(dir, &shards_);
  for (const auto& s : shards_) {
    // Before the first H5Fopen of the shard (read() opens only shards checked here).
    verify_corpus_shard(dir, s);
    check_corpus_shard(join(dir, s.file), meta_, s.sequences, false);
    shard_start_.push_back(total_);
    total_ += s.sequences;
  }
}

void CorpusReader::read(int64_t first, int64_t count, CorpusSequences& out) const {
  out = CorpusSequences{};
  if (first < 0 || count < 0 || first + count > total_)
    throw Error(str_cat(dir_, ": sequences [", first, ", ", first + count, ") outside [0, ",
                        total_, ")"));
  const int64_t Ls = meta_.seq_len, k = meta_.k;
  out.tokens.reserve(count * Ls);
  out.prompt_len.reserve(count);
  out.topk_ids.reserve(count * (Ls - 1) * k);
  out.topk_logprobs.reserve(count * (Ls - 1) * k);
  // first shard holding `first`: the last start <= first
  size_t s = std::upper_bound(shard_start_.begin(), shard_start_.end(), first) -
             shard_start_.begin() - 1;
  int64_t pos = first;
  while (pos < first + count) {
    const int64_t in_shard = pos - shard_start_[s];
    const int64_t n = std::min(shards_[s].sequences - in_shard, first + count - pos);
    read_corpus_shard_rows(join(dir_, shards_[s].file), meta_, in_shard, n, out);
    pos += n;
    ++s;
  }
}

}  // namespace retort
