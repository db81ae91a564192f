// Token datasets (SPEC §2): one HDF5 file per split.
//   tokens       int32 [n]      documents concatenated, each followed by eos_id
//   doc_offsets  int64 [n_docs] start of each document in `tokens`; first is 0
//   attributes   vocab_size (int64), eos_id (int64), tokenizer_sha256 (string; "none" if
//                not produced by a tokenizer)
// Readers accept any file with this schema (h5py conventions included).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace retort {

struct TokenDatasetMeta {
  int64_t vocab_size = 0;
  int64_t eos_id = 0;
  std::string tokenizer_sha256 = "none";
};

// Validates (same rules as the reader) then writes `path` atomically: the data goes to
// `path.tmp`, which is renamed over `path` only once complete. On any failure the temp
// file is removed and an existing `path` is left untouched. Creates parent directories.
void write_token_dataset(const std::string& path, const std::vector<int32_t>& tokens,
                         const std::vector<int64_t>& doc_offsets, const TokenDatasetMeta& meta);

// A token dataset written one document at a time, in memory independent of its size (8 bytes
// per document): the tokens go to a raw temporary file, path.tokens.tmp, and finish() writes
// the dataset from it as write_token_dataset does (validated, atomic) and removes it. A writer
// destroyed unfinished removes its temporary and leaves an existing `path` untouched.
class TokenDatasetWriter {
 public:
  TokenDatasetWriter(std::string path, TokenDatasetMeta meta);
  ~TokenDatasetWriter();
  TokenDatasetWriter(const TokenDatasetWriter&) = delete;
  TokenDatasetWriter& operator=(const TokenDatasetWriter&) = delete;
  // One document's tokens, its eos included; throws naming the file for an id outside the vocabulary.
  void append_document(const std::vector<int32_t>& tokens);
  void finish();
  int64_t num_tokens() const { return num_tokens_; }
  int64_t num_docs() const { return int64_t(doc_offsets_.size()); }

 private:
  std::string path_;
  TokenDatasetMeta meta_;
  std::string raw_path_;
  struct RawFile;  // the temporary's writer (core/fs.h)
  std::unique_ptr<RawFile> raw_;
  std::vector<int64_t> doc_offsets_;
  int64_t num_tokens_ = 0;
  bool finished_ = false;
};

// A loaded, validated token dataset. The tokens are memory-mapped from the file when it stores
// them contiguously as little-endian int32 (retort's writer, h5py's default): read on first
// touch, one copy per node in the page cache however many ranks train on it, so a dataset
// larger than a rank's memory share trains. Other layouts (chunked, compressed, other integer
// widths) are read into memory. Replace a mapped file by renaming a new one over it (as
// `retort tokenize` does), never by rewriting it in place while a job reads it.
class TokenDataset {
 public:
  // Throws retort::Error naming the file (and dataset/attribute/index) on any problem:
  // missing/non-HDF5/truncated file, missing dataset or attribute, wrong dtype or rank,
  // doc_offsets not starting at 0 / decreasing / out of bounds, token id outside
  // [0, vocab_size) (first bad index), eos_id outside [0, vocab_size).
  static TokenDataset load(const std::string& path);

  const std::string& path() const { return path_; }
  const TokenDatasetMeta& meta() const { return meta_; }
  int64_t num_tokens() const { return tokens_.numel(); }
  int64_t num_docs() const { return int64_t(doc_offsets_.size()); }
  const Tensor& tokens() const { return tokens_; }  // I32 [n], host
  const int32_t* token_data() const { return num_tokens() ? tokens_.data<int32_t>() : nullptr; }
  const std::vector<int64_t>& doc_offsets() const { return doc_offsets_; }
  bool mapped() const { return tokens_.defined() && tokens_.is_mapped(); }

 private:
  std::string path_;
  TokenDatasetMeta meta_;
  Tensor tokens_;
  std::vector<int64_t> doc_offsets_;
};

}  // namespace retort
