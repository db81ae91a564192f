// retort tokenize: two passes over the documents, each holding a bounded part of the text.
//   1. count them (the split needs the count) and keep the tokenizer's training sample;
//      train SentencePiece on it (or take tokenize.tokenizer);
//   2. encode them in batches, appending each to its split's dataset (SPEC §2).
#include "data/tokenize_command.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/random.h"
#include "core/sha256.h"
#include "data/hf_bpe_tokenizer.h"
#include "data/text_sources.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"

namespace stdfs = std::filesystem;

namespace retort {
namespace {

constexpr uint64_t kSplitStream = 0x73706c6974ull;    // "split"
constexpr size_t kBatchBytes = size_t(64) << 20;       // text encoded per batch
constexpr size_t kProgressBytes = size_t(1) << 30;     // a progress line per GiB read

// The split rule's draw for document i; below val_fraction: validation (before the fix-up
// that keeps both splits non-empty, split_documents).
double split_draw(uint64_t seed, int64_t i) { return rng::uniform(seed, kSplitStream, uint64_t(i)); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A progress line per GiB of a long pass.
struct PassProgress {
  const char* what;
  size_t bytes = 0, next = kProgressBytes;
  int64_t docs = 0;
  void add(size_t n) {
    bytes += n;
    ++docs;
    if (bytes < next) return;
    next += kProgressBytes;
    std::printf("tokenize: %s %.1f GB, %lld documents\n", what, bytes / 1e9, (long long)docs);
    std::fflush(stdout);
  }
};

// The tokenizer's training text: train documents in ascending order of a hash of (seed,
// index) up to the first that would take the total past `cap` bytes, so at most `cap` bytes are
// held however large the corpus. (A max-heap by hash: what no longer fits is dropped, and no
// later document hashing above a dropped one is taken.) Every train document when they fit.
class TrainingSample {
 public:
  TrainingSample(uint64_t seed, size_t cap) : seed_(seed), cap_(cap) {}
  void offer(int64_t index, std::string&& text) {
    const uint64_t key = tokenizer_sample_key(seed_, index);
    if (key >= cutoff_) return;
    bytes_ += text.size();
    heap_.push_back({key, index, std::move(text)});
    std::push_heap(heap_.begin(), heap_.end());
    while (bytes_ > cap_) {
      std::pop_heap(heap_.begin(), heap_.end());
      cutoff_ = heap_.back().key;
      bytes_ -= heap_.back().text.size();
      heap_.pop_back();
    }
  }
  // The documents in index order (the order SentencePiece saw before there was a sample);
  // the sample is empty afterwards.
  std::vector<std::string> take_in_document_order() {
    std::sort(heap_.begin(), heap_.end(), [](const Entry& a, const Entry& b) { return a.index < b.index; });
    std::vector<std::string> out;
    for (Entry& e : heap_) out.push_back(std::move(e.text));
    heap_.clear();
    return out;
  }
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    uint64_t key;
    int64_t index;
    std::string text;
    bool operator<(const Entry& o) const { return key < o.key; }
  };
  uint64_t seed_;
  size_t cap_, bytes_ = 0;
  uint64_t cutoff_ = UINT64_MAX;
  std::vector<Entry> heap_;  // a max-heap by key
};

// One pass over the documents: counts them and their bytes, and offers those `is_val` puts
// in train to `sample` (when given).
struct PassCount {
  int64_t documents = 0;
  size_t bytes = 0;
};
PassCount sample_pass(const std::vector<std::string>& inputs, const std::string& field,
                      const std::function<bool(int64_t)>& is_val, TrainingSample* sample) {
  PassProgress progress{"read"};
  int64_t i = 0;
  for_each_document(inputs, field, [&](Document&& d) {
    progress.add(d.text.size());
    if (sample && !is_val(i)) sample->offer(i, std::move(d.text));
    ++i;
  });
  return {i, progress.bytes};
}

// What documents are encoded with: a SentencePiece model (trained here or given) or a given
// Hugging Face tokenizer.json, behind one call.
struct DocumentEncoder {
  std::function<std::vector<int32_t>(std::string_view)> encode;
  std::function<int32_t(std::string_view)> token_id;  // an added token or piece; -1: none
  int64_t vocab_size = 0;
  int32_t eos_id = -1;
  int32_t bos_id = -1;  // tokenize.bos_token's id; -1: none
};

DocumentEncoder sentencepiece_encoder(const std::string& model) {
  auto tok = std::make_shared<Tokenizer>(Tokenizer::from_serialized(model));
  return {[tok](std::string_view text) { return tok->encode(text); },
          [tok](std::string_view piece) { return tok->piece_id(piece); }, tok->vocab_size(), tok->eos_id()};
}

// tokenize.bos_token: its id in the encoder's tokenizer (`path`), or one line naming the key.
void set_bos(const Config& cfg, DocumentEncoder& enc, const std::string& bos_token, const std::string& path) {
  if (bos_token.empty()) return;
  enc.bos_id = enc.token_id(bos_token);
  if (enc.bos_id < 0)
    cfg.fail("tokenize.bos_token", str_cat("'", bos_token, "' is not ", path.ends_with(".json") ? "an added token" : "a piece",
                                           " of ", path));
  std::printf("tokenize: every document starts with %s (id %d)\n", bos_token.c_str(), enc.bos_id);
}

// Pass 2's unit of work: documents encoded in parallel (OpenMP, schedule independent of
// the thread count), then appended in document order, each after the bos id (if any) and
// followed by the eos id.
void encode_batch(const DocumentEncoder& enc, const std::vector<Document>& batch,
                  const std::vector<TokenDatasetWriter*>& to) {
  const int64_t n = int64_t(batch.size());
  std::vector<std::vector<int32_t>> ids(n);
  std::string error;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    try {
      ids[i] = enc.encode(batch[i].text);
      if (enc.bos_id >= 0) ids[i].insert(ids[i].begin(), enc.bos_id);
      ids[i].push_back(enc.eos_id);
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = str_cat(batch[i].source, ": ", e.what());
    }
  }
  if (!error.empty()) throw Error(error);
  for (int64_t i = 0; i < n; ++i) to[i]->append_document(ids[i]);
}

// tokenize.tokenizer: a SentencePiece tokenizer.model or a Hugging Face tokenizer.json (a file
// named *.json), or a directory holding one (a previous tokenize.out, a transformers directory;
// tokenizer.model first). Checked and loaded before any input is read.
struct GivenTokenizer {
  std::string path, file_name, bytes;  // file_name: what it is called in tokenize.out
  DocumentEncoder encoder;
};

GivenTokenizer read_given_tokenizer(const Config& cfg, const std::string& given) {
  std::string path = given;
  if (stdfs::is_directory(given)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json"})
      if (path == given && stdfs::exists(stdfs::path(given) / name)) path = (stdfs::path(given) / name).string();
    if (path == given)
      cfg.fail("tokenize.tokenizer", str_cat(given, " holds neither a tokenizer.model nor a tokenizer.json"));
  } else if (!stdfs::exists(given)) {
    cfg.fail("tokenize.tokenizer", str_cat(given, ": no such file or directory"));
  }
  GivenTokenizer g{path, "", retort::fs::read_file(path), {}};
  const char* unused = "tokenize.vocab_size, tokenize.character_coverage and tokenize.train_sample_bytes are unused";
  if (stdfs::path(path).extension() == ".json") {
    auto tok = std::make_shared<HfBpeTokenizer>(HfBpeTokenizer::load(path));
    if (tok->eos_id() < 0)
      throw Error(str_cat(path, ": the tokenizer has none of <|endoftext|>, <|end_of_text|>, </s>, <eos>, one of "
                                "which retort appends after every document (tokenize.tokenizer)"));
    g.file_name = "tokenizer.json";
    g.encoder = {[tok](std::string_view text) { return tok->encode(text); },
                 [tok](std::string_view content) { return tok->added_token_id(content); }, tok->vocab_size(), tok->eos_id()};
    std::printf("tokenize: using %s (byte-level BPE: %s; vocab %lld, eos %s = %d); %s\n", path.c_str(),
                tok->describe().c_str(), (long long)tok->vocab_size(), tok->eos_token().c_str(), tok->eos_id(), unused);
    return g;
  }
  try {
    g.encoder = sentencepiece_encoder(g.bytes);
  } catch (const Error& e) {
    throw Error(str_cat(path, ": not a SentencePiece tokenizer.model (tokenize.tokenizer): ", e.what()));
  }
  if (g.encoder.eos_id < 0)
    throw Error(str_cat(path, ": the tokenizer has no </s> (eos) piece, which retort appends after "
                              "every document (tokenize.tokenizer)"));
  g.file_name = "tokenizer.model";
  std::printf("tokenize: using %s (vocab %lld, eos id %d); %s\n", path.c_str(),
              (long long)g.encoder.vocab_size, g.encoder.eos_id, unused);
  return g;
}

}  // namespace

uint64_t tokenizer_sample_key(uint64_t seed, int64_t index) {
  return rng::hash(seed, 0x73616d706c65ull /* "sample" */, uint64_t(index));
}

std::vector<bool> split_documents(int64_t n, double val_fraction, uint64_t seed) {
  std::vector<bool> is_val(n);
  std::vector<double> u(n);
  int64_t n_val = 0;
  for (int64_t i = 0; i < n; ++i) {
    u[i] = split_draw(seed, i);
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
  const std::string bos_token = cfg.get_string("tokenize.bos_token");
  const int64_t sample_cap = cfg.get_int("tokenize.train_sample_bytes");
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
  if (sample_cap < 1) cfg.fail("tokenize.train_sample_bytes", str_cat("must be >= 1, got ", sample_cap));
  // A given tokenizer is checked before the (possibly large) inputs are read.
  std::optional<GivenTokenizer> given =
      given_tokenizer.empty() ? std::nullopt : std::optional(read_given_tokenizer(cfg, given_tokenizer));
  const bool train_tokenizer = !given;
  if (given) set_bos(cfg, given->encoder, bos_token, given->path);
  if (train_tokenizer && !bos_token.empty() && bos_token != "<s>")  // the trained one's specials
    cfg.fail("tokenize.bos_token", str_cat("'", bos_token, "': a tokenizer trained here has <s> (id ",
                                           Tokenizer::kBosId, ") and no other beginning token"));

  // 1. Count the documents; keep the training sample among those the split rule's draw
  // alone puts in train (the final rule moves one document when a split would be empty).
  const auto t_train = std::chrono::steady_clock::now();
  auto provisional_val = [&](int64_t i) { return split_draw(uint64_t(seed), i) < val_fraction; };
  TrainingSample sample{uint64_t(seed), size_t(sample_cap)};
  const auto [n_docs, bytes] =
      sample_pass(inputs, field, provisional_val, train_tokenizer ? &sample : nullptr);
  std::printf("tokenize: read %lld documents (%.2f MB)\n", (long long)n_docs, bytes / 1e6);
  std::fflush(stdout);
  if (n_docs == 0) cfg.fail("tokenize.inputs", "the inputs contain no non-empty documents");

  // 2. Split.
  const std::vector<bool> is_val = split_documents(n_docs, val_fraction, uint64_t(seed));
  int64_t n_val = 0, moved = -1;
  for (int64_t i = 0; i < n_docs; ++i) {
    n_val += is_val[i];
    if (is_val[i] != provisional_val(i)) moved = i;
  }
  std::printf("tokenize: split %lld train / %lld val documents (val_fraction %g, seed %lld)\n",
              (long long)(n_docs - n_val), (long long)n_val, val_fraction, (long long)seed);

  // 3. Tokenizer: the given one, or trained on the sample of the train documents.
  std::string model = given ? given->bytes : "";
  nlohmann::json summary;
  if (train_tokenizer) {
    if (moved >= 0) {  // the sample was drawn from the provisional split: draw it again
      sample = TrainingSample{uint64_t(seed), size_t(sample_cap)};
      sample_pass(inputs, field, [&](int64_t i) { return i < n_docs && is_val[i]; }, &sample);
    }
    const size_t sample_bytes = sample.bytes();
    const std::vector<std::string> text = sample.take_in_document_order();
    std::printf("tokenize: training SentencePiece BPE, vocab %lld, on %zu train documents "
                "(%.2f MB) ...\n", (long long)vocab_size, text.size(), sample_bytes / 1e6);
    std::fflush(stdout);
    if (text.empty())
      cfg.fail("tokenize.train_sample_bytes", str_cat(sample_cap, " bytes hold no train document"));
    summary["tokenizer_sample"] = {{"documents", text.size()}, {"bytes", sample_bytes}};
    TokenizerTrainOptions opt;
    opt.vocab_size = vocab_size;
    opt.character_coverage = coverage;
    model = Tokenizer::train(std::vector<std::string_view>(text.begin(), text.end()), opt);
  }
  const double train_s = seconds_since(t_train);
  retort::fs::create_directories(out_dir);
  const std::string model_name = given ? given->file_name : "tokenizer.model";
  const std::string model_path = (stdfs::path(out_dir) / model_name).string();
  retort::fs::write_file_atomic(model_path, model);
  const std::string model_sha = sha256_hex(model);
  DocumentEncoder enc = given ? given->encoder : sentencepiece_encoder(model);
  if (!given) set_bos(cfg, enc, bos_token, model_path);
  std::printf("tokenize: wrote %s (%.1f s)\n", model_path.c_str(), train_s);
  std::fflush(stdout);

  // 4. Encode each document into its split, a batch of about 64 MB of text at a time.
  const auto t_enc = std::chrono::steady_clock::now();
  TokenDatasetMeta meta{enc.vocab_size, enc.eos_id, model_sha};
  const std::string train_path = (stdfs::path(out_dir) / "train.h5").string();
  const std::string val_path = (stdfs::path(out_dir) / "val.h5").string();
  TokenDatasetWriter train(train_path, meta), val(val_path, meta);
  std::vector<Document> batch;
  std::vector<TokenDatasetWriter*> to;
  size_t batch_bytes = 0;
  PassProgress progress{"encoded"};
  int64_t i = 0;
  auto flush = [&] {
    encode_batch(enc, batch, to);
    batch.clear();
    to.clear();
    batch_bytes = 0;
  };
  for_each_document(inputs, field, [&](Document&& d) {
    if (i == n_docs)
      throw Error(str_cat("tokenize: the inputs changed between the passes (more than ", n_docs,
                          " documents)"));
    progress.add(d.text.size());
    batch_bytes += d.text.size();
    to.push_back(is_val[i++] ? &val : &train);
    batch.push_back(std::move(d));
    if (batch_bytes >= kBatchBytes) flush();
  });
  flush();
  if (i != n_docs)
    throw Error(str_cat("tokenize: the inputs changed between the passes (", n_docs,
                        " documents, then ", i, ")"));
  for (auto [name, w, path] :
       {std::tuple{"train", &train, &train_path}, std::tuple{"val", &val, &val_path}}) {
    w->finish();
    std::printf("tokenize: %s: %lld documents, %lld tokens -> %s\n", name, (long long)w->num_docs(),
                (long long)w->num_tokens(), path->c_str());
    summary[name] = {{"documents", w->num_docs()}, {"tokens", w->num_tokens()}, {"path", *path}};
  }
  const double enc_s = seconds_since(t_enc);

  summary["vocab_size"] = meta.vocab_size;
  summary["eos_id"] = meta.eos_id;
  if (enc.bos_id >= 0) summary["bos"] = {{"token", bos_token}, {"id", enc.bos_id}};
  summary["tokenizer_sha256"] = model_sha;
  summary["tokenizer_file"] = model_name;
  if (given) summary["tokenizer_given"] = given_tokenizer;
  summary["documents"] = n_docs;
  summary["input_bytes"] = bytes;
  summary["seed"] = seed;
  summary["val_fraction"] = val_fraction;
  summary["seconds"] = {{"tokenizer_train", train_s},
                        {"encode_write", enc_s},
                        {"total", seconds_since(t_start)}};
  const std::string json_path = (stdfs::path(out_dir) / "tokenize.json").string();
  retort::fs::write_file_atomic(json_path, summary.dump(2) + "\n");
  // the other kind's file from an earlier run into this directory no longer describes it
  const char* other = model_name == "tokenizer.model" ? "tokenizer.json" : "tokenizer.model";
  std::error_code ignored;
  stdfs::remove(stdfs::path(out_dir) / other, ignored);
  std::printf("tokenize: done in %.1f s; summary in %s\n", seconds_since(t_start), json_path.c_str());
  return 0;
}

}  // namespace retort
