// SPEC §2 token dataset writer (atomic) and validating reader.
#include "data/token_dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <system_error>

#include "core/fs.h"
#include "core/hdf5.h"

namespace stdfs = std::filesystem;

namespace retort {
namespace {

// Returns "" when valid, else the reason (without the file name).
std::string check_meta(const TokenDatasetMeta& m) {
  if (m.vocab_size <= 0) return str_cat("attribute 'vocab_size': must be positive, got ", m.vocab_size);
  if (m.vocab_size > (int64_t(1) << 31))
    return str_cat("attribute 'vocab_size': ", m.vocab_size, " does not fit int32 token ids");
  if (m.eos_id < 0 || m.eos_id >= m.vocab_size)
    return str_cat("attribute 'eos_id': ", m.eos_id, " outside [0, ", m.vocab_size, ")");
  return "";
}

std::string check_offsets(const std::vector<int64_t>& off, int64_t n_tokens) {
  if (off.empty()) {
    if (n_tokens > 0) return "dataset 'doc_offsets': empty but 'tokens' is not";
    return "";
  }
  if (off[0] != 0) return str_cat("dataset 'doc_offsets': must start at 0, found ", off[0]);
  for (size_t i = 1; i < off.size(); ++i) {
    if (off[i] < off[i - 1])
      return str_cat("dataset 'doc_offsets': decreasing at index ", i, " (", off[i - 1], " > ",
                     off[i], ")");
  }
  if (off.back() > n_tokens)
    return str_cat("dataset 'doc_offsets': value ", off.back(), " at index ", off.size() - 1,
                   " beyond the ", n_tokens, " tokens");
  return "";
}

std::string check_tokens(const int32_t* tok, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    if (tok[i] < 0 || tok[i] >= vocab)
      return str_cat("dataset 'tokens': token id ", tok[i], " at index ", i, " outside [0, ",
                     vocab, ")");
  }
  return "";
}

// `tokens` mapped in place when the file holds them as they are in memory (how retort and
// h5py write them by default), else read into memory (chunked or compressed files, other
// integer types). The mapping is checked against HDF5's own read of its first and last
// elements before it is used.
Tensor map_or_read_tokens(const h5::File& f) {
  const Shape shape = f.shape("tokens");
  const int64_t at = f.int32_data_offset("tokens");
  if (shape.size() == 1 && shape[0] > 0 && at >= 0) {
    Tensor mapped = Tensor::map_file(f.path(), at, shape, DType::I32);
    const int64_t n = shape[0], k = std::min<int64_t>(n, 64);
    std::vector<int32_t> head(k), tail(k);
    f.read_i32_range("tokens", 0, k, head.data());
    f.read_i32_range("tokens", n - k, k, tail.data());
    const int32_t* m = mapped.data<int32_t>();
    if (std::equal(head.begin(), head.end(), m) && std::equal(tail.begin(), tail.end(), m + n - k))
      return mapped;
  }
  return f.read("tokens", DType::I32, 1);
}

// Writes `path` atomically: the HDF5 file is built as path.tmp (tokens in pieces from
// `fill`), fsynced and renamed over `path`; on failure the temporary is removed.
void write_dataset_file(const std::string& path, int64_t n_tokens,
                        const std::function<void(int64_t, int64_t, int32_t*)>& fill,
                        const std::vector<int64_t>& doc_offsets, const TokenDatasetMeta& meta) {
  stdfs::path parent = stdfs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) {
    stdfs::create_directories(parent, ec);
    if (ec) throw Error(str_cat(path, ": cannot create directory ", parent.string(), ": ", ec.message()));
  }
  const std::string tmp = path + ".tmp";
  try {
    h5::File f = h5::File::create(tmp);
    f.write_i32_pieces("tokens", n_tokens, int64_t(1) << 24, fill);  // 64 MiB pieces
    f.write("doc_offsets", doc_offsets);
    f.set_attr("vocab_size", meta.vocab_size);
    f.set_attr("eos_id", meta.eos_id);
    f.set_attr("tokenizer_sha256", meta.tokenizer_sha256);
    f.close();
    retort::fs::fsync_path(tmp);
    retort::fs::rename_durable(tmp, path);  // atomic on POSIX within one filesystem
  } catch (...) {
    stdfs::remove(tmp, ec);
    throw;
  }
}

}  // namespace

void write_token_dataset(const std::string& path, const std::vector<int32_t>& tokens,
                         const std::vector<int64_t>& doc_offsets, const TokenDatasetMeta& meta) {
  std::string why = check_meta(meta);
  if (why.empty()) why = check_offsets(doc_offsets, int64_t(tokens.size()));
  if (why.empty()) why = check_tokens(tokens.data(), int64_t(tokens.size()), meta.vocab_size);
  if (!why.empty()) throw Error(str_cat(path, ": refusing to write: ", why));
  write_dataset_file(path, int64_t(tokens.size()),
                     [&](int64_t begin, int64_t count, int32_t* out) {
                       std::copy_n(tokens.data() + begin, count, out);
                     },
                     doc_offsets, meta);
}

struct TokenDatasetWriter::RawFile : retort::fs::FileWriter {
  using FileWriter::FileWriter;
};

TokenDatasetWriter::TokenDatasetWriter(std::string path, TokenDatasetMeta meta)
    : path_(std::move(path)), meta_(std::move(meta)), raw_path_(path_ + ".tokens.tmp") {
  const std::string why = check_meta(meta_);
  if (!why.empty()) throw Error(str_cat(path_, ": refusing to write: ", why));
  const std::string parent = stdfs::path(path_).parent_path().string();
  if (!parent.empty()) retort::fs::create_directories(parent);
  raw_ = std::make_unique<RawFile>(raw_path_);
}

TokenDatasetWriter::~TokenDatasetWriter() {
  raw_.reset();
  if (!finished_) retort::fs::remove_all_quietly(raw_path_);
}

void TokenDatasetWriter::append_document(const std::vector<int32_t>& tokens) {
  RETORT_CHECK(!finished_, path_, ": append after finish");
  const std::string why = check_tokens(tokens.data(), int64_t(tokens.size()), meta_.vocab_size);
  if (!why.empty())
    throw Error(str_cat(path_, ": refusing to write document ", doc_offsets_.size(), ": ", why));
  doc_offsets_.push_back(num_tokens_);
  raw_->write(tokens.data(), tokens.size() * sizeof(int32_t));
  num_tokens_ += int64_t(tokens.size());
}

void TokenDatasetWriter::finish() {
  RETORT_CHECK(!finished_, path_, ": finished twice");
  raw_->close();
  raw_.reset();
  std::ifstream raw(raw_path_, std::ios::binary);
  if (!raw) throw Error(str_cat(raw_path_, ": cannot open for reading"));
  write_dataset_file(path_, num_tokens_,
                     [&](int64_t, int64_t count, int32_t* out) {
                       if (!raw.read(reinterpret_cast<char*>(out), count * int64_t(sizeof(int32_t))))
                         throw Error(str_cat(raw_path_, ": read error"));
                     },
                     doc_offsets_, meta_);
  finished_ = true;
  raw.close();
  retort::fs::remove_all_quietly(raw_path_);
}

TokenDataset TokenDataset::load(const std::string& path) {
  h5::File f = h5::File::open_read(path);
  auto fail = [&](const std::string& what) { throw Error(str_cat(path, ": ", what)); };
  for (const char* ds : {"tokens", "doc_offsets"})
    if (!f.has(ds)) fail(str_cat("dataset '", ds, "' not found (not a token dataset?)"));
  for (const char* at : {"vocab_size", "eos_id", "tokenizer_sha256"})
    if (!f.has_attr(at)) fail(str_cat("attribute '", at, "' not found (not a token dataset?)"));

  TokenDataset d;
  d.path_ = path;
  d.meta_.vocab_size = f.attr_int("vocab_size");
  d.meta_.eos_id = f.attr_int("eos_id");
  d.meta_.tokenizer_sha256 = f.attr_string("tokenizer_sha256");
  std::string why = check_meta(d.meta_);
  if (!why.empty()) fail(why);

  d.tokens_ = map_or_read_tokens(f);
  d.doc_offsets_ = f.read_i64("doc_offsets");  // checks rank 1 and integer type
  why = check_offsets(d.doc_offsets_, d.num_tokens());
  if (why.empty()) why = check_tokens(d.token_data(), d.num_tokens(), d.meta_.vocab_size);
  if (!why.empty()) fail(why);
  return d;
}

}  // namespace retort
