// `retort tokenize CONFIG`: text → SentencePiece tokenizer + train/val token datasets.
//
// Reads tokenize.{inputs, out, vocab_size, val_fraction, seed, jsonl_field,
// character_coverage, tokenizer}. Documents are split into train/val by hash (seed, document
// index) (deterministic; at least one document in each split when there are >= 2 documents
// and val_fraction > 0); the tokenizer is trained on the train documents only, or with
// tokenize.tokenizer (a tokenizer.model or a directory holding one) that model is copied and
// encodes. Writes
//   <out>/tokenizer.model, <out>/train.h5, <out>/val.h5 (SPEC §2), <out>/tokenize.json
// (document/token counts per split, vocab size, timings). Every file is written atomically.
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

}  // namespace retort
