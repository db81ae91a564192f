// `retort tokenize CONFIG`: text → SentencePiece tokenizer + train/val token datasets.
//
// Reads tokenize.{inputs, out, vocab_size, val_fraction, seed, jsonl_field,
// character_coverage, train_sample_bytes, tokenizer}. Documents are split into train/val by
// hash (seed, document index) (deterministic; at least one document in each split when there
// are >= 2 documents and val_fraction > 0); the tokenizer is trained on a sample of the train
// documents of at most train_sample_bytes (all of them when they fit), or with
// tokenize.tokenizer (a SentencePiece tokenizer.model, a Hugging Face tokenizer.json, or a
// directory holding one) that file is copied and encodes. Two passes over the inputs; memory holds the sample, a 64 MB batch of documents and
// 8 bytes per document, not the corpus; the disk briefly holds each split's tokens twice (a raw
// temporary, then the HDF5 file). Writes
//   <out>/tokenizer.model (or the given tokenizer.json), <out>/train.h5, <out>/val.h5 (SPEC §2),
//   <out>/tokenize.json
// (document/token counts per split, the sample, vocab size, timings). Every file is written
// atomically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace retort {

// Returns the process exit code (0). Throws ConfigError for bad tokenize.* values and
// retort::Error for I/O or tokenizer failures.
int run_tokenize(const Config& cfg);

// The split rule on its own: true = validation. `n` documents; see above.
std::vector<bool> split_documents(int64_t n, double val_fraction, uint64_t seed);

// The tokenizer's training sample (tokenize.train_sample_bytes = cap): the train documents in
// ascending order of this key, up to the first that would take their total past cap bytes.
uint64_t tokenizer_sample_key(uint64_t seed, int64_t index);

}  // namespace retort
