// The sequences of a distillation corpus (SPEC §5) from a teacher, one block at a time.
//
// Sequence i (global index) is defined by i alone, never by the batch or rank computing it:
//   score:  tokens = data[i·Ls, (i+1)·Ls), prompt_len 0 (teacher-forced).
//   sample: prompt = data[i·Ls, i·Ls + P) (P = prompt_len), or [eos_id] when P = 0 (stored
//           prompt_len 1: the EOS token is given, not sampled); token t >= prompt is drawn by
//           sample_token(row t-1, u) with u = rng::uniform(seed, rng::hash(kSampleStream, i), t).
// Row t of topk_ids/topk_logprobs (t < Ls-1) = ops::topk_log_softmax(teacher logits after tokens
// ≤ t, logit_temperature), k per row — for sample mode the logits that the draw of token t+1
// used. Both run where the logits are (ops::topk_log_softmax, ops::sample_tokens): from a GPU
// teacher only the [rows, k] results and the drawn tokens reach the host, and in sample mode
// with the KV cache only once per batch (the drawn tokens feed the next step on the device).
// Sequences are computed in batches of `batch` from the block's first sequence, so a block
// (one shard) gives the same bytes whichever rank computes it.
#pragma once
#include <cstdint>
#include <functional>

#include "core/tensor.h"
#include "data/distill_corpus.h"
#include "core/sampling.h"
#include "models/transformer.h"

namespace retort {

struct GeneratorSettings {
  bool sample = false;       // mode
  int64_t seq_len = 0;       // Ls
  int64_t prompt_len = 0;    // P (sample); 0 = start from eos_id
  int64_t k = 32;
  double logit_temperature = 1.0;
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t eos_id = 0;
  int64_t batch = 8;
  bool kv_cache = true;      // false: recompute the whole prefix for every token
  DType kv_cache_dtype = DType::F32;  // the cache's keys and values: F32 or BF16
  // sample mode with the cache: bytes of step top-k rows kept on the teacher's device between
  // fetches to the host (at least one step's B·k·8)
  int64_t kept_topk_bytes = int64_t(256) << 20;
};

// Stream id of the sampling draws (rng::uniform's `stream` is hash(kSampleStream, i)).
inline constexpr uint64_t kSampleStream = 0x67656e6572617465ull;  // "generate"

// Sequences [first, first + count) into `out` (replaced). `data`: the token dataset [n] I32.
// `on_batch(tokens)` is called after each batch with the tokens it processed.
void generate_sequences(Transformer& teacher, const GeneratorSettings& s, const Tensor& data,
                        int64_t first, int64_t count, CorpusSequences& out,
                        const std::function<void(int64_t)>& on_batch = {});

}  // namespace retort
