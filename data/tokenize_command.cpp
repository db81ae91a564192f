// retort tokenize: read documents → split → train SentencePiece (or take tokenize.tokenizer)
// → encode → write (SPEC §2).
#include "data/tokenize_command.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/random.h"
#include "core/sha256.h"
#include "data/text_sources.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"

namespace stdfs = std::filesystem;

namespace retort {
namespace {

constexpr uint64_t kSplitStream = 0x73706c6974ull;  // "split"

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Encoded {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets;
};

// Encodes docs[i] for selected i (in order), each followed by EOS. Parallel over documents;
// results are concatenated in document order, so the output is thread-count independent.
Encoded encode_split(const Tokenizer& tok, const std::vector<Document>& docs,
                     const std::vector<int64_t>& which) {
  const int32_t eos = tok.eos_id();
  const int64_t n = int64_t(which.size());
  std::vector<std::vector<int32_t>> per_doc(n);
  std::string error;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    try {
      per_doc[i] = tok.encode(docs[which[i]].text);
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = str_cat(docs[which[i]].source, ": ", e.what());
    }
  }
  if (!error.empty()) throw Error(error);
  Encoded out;
  size_t total = 0;
  for (auto& v : per_doc) total += v.size() + 1;
  out.tokens.reserve(total);
  out.offsets.reserve(n);
  for (auto& v : per_doc) {
    out.offsets.push_back(int64_t(out.tokens.size()));
    out.tokens.insert(out.tokens.end(), v.begin(), v.end());
    out.tokens.push_back(eos);
    std::vector<int32_t>().swap(v);
  }
  return out;
}

// tokenize.tokenizer: a tokenizer.model file, or a directory holding one (a previous
// tokenize.out, a transformers directory). Returns the model's bytes.
std::string read_given_tokenizer(const Config& cfg, const std::string& given) {
  std::string path = given;
  if (stdfs::is_directory(given)) {
    path = (stdfs::path(given) / "tokenizer.model").string();
    if (!stdfs::exists(path))
      cfg.fail("tokenize.tokenizer",
               str_cat(given, " holds no tokenizer.model",
                       stdfs::exists(stdfs::path(given) / "tokenizer.json")
                           ? " (its tokenizer.json, a Hugging Face tokenizers file, is not read: "
                             "retort encodes with SentencePiece models only)"
                           : ""));
  } else if (!stdfs::exists(given)) {
    cfg.fail("tokenize.tokenizer", str_cat(given, ": no such file or directory"));
  }
  std::string model = retort::fs::read_file(path);
  Tokenizer tok;
  try {
    tok = Tokenizer::from_serialized(model);
  } catch (const Error& e) {
    throw Error(str_cat(path, ": not a SentencePiece tokenizer.model (tokenize.tokenizer): ", e.what()));
  }
  if (tok.eos_id() < 0)
    throw Error(str_cat(path, ": the tokenizer has no </s> (eos) piece, which retort appends after "
                              "every document (tokenize.tokenizer)"));
  std::printf("tokenize: using %s (vocab %lld, eos id %d); tokenize.vocab_size and "
              "tokenize.character_coverage are unused\n",
              path.c_str(), (long long)tok.vocab_size(), tok.eos_id());
  return model;
}

}  // namespace

std::vector<bool> split_documents(int64_t n, double val_fraction, uint64_t seed) {
  std::vector<bool> is_val(n);
  std::vector<double> u(n);
  int64_t n_val = 0;
  for (int64_t i = 0; i < n; ++i) {
    u[i] = rng::uniform(seed, kSplitStream, uint64_t(i));
    is_val[i] = u[i] < val_fraction;
    n_val += is_val[i];
  }
  if (n >= 2 && val_fraction > 0) {
    // Guarantee both splits are non-empty: move the document with the extreme draw.
    if (n_val == 0) {
      int64_t best = 0;
      for (int64_t i = 1; i < n; ++i) if (u[i] < u[best]) best = i;
      is_val[best] = true;
    } else if (n_val == n) {
      int64_t best = 0;
      for (int64_t i = 1; i < n; ++i) if (u[i] > u[best]) best = i;
      is_val[best] = false;
    }
  }
  return is_val;
}

int run_tokenize(const Config& cfg) {
  const auto t_start = std::chrono::steady_clock::now();
  const std::vector<std::string> inputs = cfg.get_list("tokenize.inputs");
  const std::string out_dir = cfg.get_string("tokenize.out");
  const int64_t vocab_size = cfg.get_int("tokenize.vocab_size");
  const double val_fraction = cfg.get_float("tokenize.val_fraction");
  const int64_t seed = cfg.get_int("tokenize.seed");
  const std::string field = cfg.get_string("tokenize.jsonl_field");
  const double coverage = cfg.get_float("tokenize.character_coverage");
  const std::string given_tokenizer = cfg.get_string("tokenize.tokenizer");
  if (inputs.empty()) cfg.fail("tokenize.inputs", "no input files given");
  if (out_dir.empty()) cfg.fail("tokenize.out", "must name an output directory");
  // 3 specials + 256 byte pieces are always present; leave room for merges.
  if (vocab_size < 300 || vocab_size > (int64_t(1) << 24))
    cfg.fail("tokenize.vocab_size", str_cat("must be in [300, 16777216], got ", vocab_size));
  if (!(val_fraction >= 0 && val_fraction < 1))
    cfg.fail("tokenize.val_fraction", str_cat("must be in [0, 1), got ", val_fraction));
  if (!(coverage > 0 && coverage <= 1))
    cfg.fail("tokenize.character_coverage", str_cat("must be in (0, 1], got ", coverage));
  if (field.empty()) cfg.fail("tokenize.jsonl_field", "must not be empty");
  // A given tokenizer is checked before the (possibly large) inputs are read.
  const std::string given_model =
      given_tokenizer.empty() ? "" : read_given_tokenizer(cfg, given_tokenizer);

  // 1. Documents.
  std::vector<Document> docs = read_documents(inputs, field);
  size_t bytes = 0;
  for (auto& d : docs) bytes += d.text.size();
  std::printf("tokenize: read %zu documents (%.2f MB)\n", docs.size(), bytes / 1e6);
  std::fflush(stdout);
  if (docs.empty()) cfg.fail("tokenize.inputs", "the inputs contain no non-empty documents");

  // 2. Split.
  const std::vector<bool> is_val = split_documents(int64_t(docs.size()), val_fraction, uint64_t(seed));
  std::vector<int64_t> train_idx, val_idx;
  for (int64_t i = 0; i < int64_t(docs.size()); ++i) (is_val[i] ? val_idx : train_idx).push_back(i);
  std::printf("tokenize: split %zu train / %zu val documents (val_fraction %g, seed %lld)\n",
              train_idx.size(), val_idx.size(), val_fraction, (long long)seed);

  // 3. Tokenizer: the given one, or trained on the train documents.
  const auto t_train = std::chrono::steady_clock::now();
  std::string model = given_model;
  if (model.empty()) {
    std::printf("tokenize: training SentencePiece BPE, vocab %lld ...\n", (long long)vocab_size);
    std::fflush(stdout);
    std::vector<std::string_view> train_text;
    for (int64_t i : train_idx) train_text.push_back(docs[i].text);
    TokenizerTrainOptions opt;
    opt.vocab_size = vocab_size;
    opt.character_coverage = coverage;
    model = Tokenizer::train(train_text, opt);
  }
  const double train_s = seconds_since(t_train);
  std::error_code ec;
  stdfs::create_directories(out_dir, ec);
  if (ec) throw Error(str_cat(out_dir, ": cannot create directory: ", ec.message()));
  const std::string model_path = (stdfs::path(out_dir) / "tokenizer.model").string();
  retort::fs::write_file_atomic(model_path, model);
  const std::string model_sha = sha256_hex(model);
  Tokenizer tok = Tokenizer::from_serialized(model);
  std::printf("tokenize: wrote %s (%.1f s)\n", model_path.c_str(), train_s);

  // 4. Encode and write each split.
  const auto t_enc = std::chrono::steady_clock::now();
  TokenDatasetMeta meta{tok.vocab_size(), tok.eos_id(), model_sha};
  nlohmann::json summary;
  for (auto [name, idx] : {std::pair{"train", &train_idx}, std::pair{"val", &val_idx}}) {
    Encoded e = encode_split(tok, docs, *idx);
    const std::string path = (stdfs::path(out_dir) / (std::string(name) + ".h5")).string();
    write_token_dataset(path, e.tokens, e.offsets, meta);
    std::printf("tokenize: %s: %zu documents, %zu tokens -> %s\n", name, idx->size(),
                e.tokens.size(), path.c_str());
    std::fflush(stdout);
    summary[name] = {{"documents", idx->size()}, {"tokens", e.tokens.size()}, {"path", path}};
  }
  const double enc_s = seconds_since(t_enc);

  summary["vocab_size"] = meta.vocab_size;
  summary["eos_id"] = meta.eos_id;
  summary["tokenizer_sha256"] = model_sha;
  if (!given_tokenizer.empty()) summary["tokenizer_given"] = given_tokenizer;
  summary["documents"] = docs.size();
  summary["input_bytes"] = bytes;
  summary["seed"] = seed;
  summary["val_fraction"] = val_fraction;
  summary["seconds"] = {{"tokenizer_train", train_s},
                        {"encode_write", enc_s},
                        {"total", seconds_since(t_start)}};
  const std::string json_path = (stdfs::path(out_dir) / "tokenize.json").string();
  retort::fs::write_file_atomic(json_path, summary.dump(2) + "\n");
  std::printf("tokenize: done in %.1f s; summary in %s\n", seconds_since(t_start), json_path.c_str());
  return 0;
}

}  // namespace retort
